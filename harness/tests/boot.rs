//! End to end: `harness up --keep`, `harness exec`, `harness down` with each
//! backend, and `harness gc` after the harness is killed with SIGKILL mid-boot;
//! after each, nothing of the run remains (QEMU process, domain, namespace, tap,
//! overlay). Builds the default image first when it is not cached.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn harness() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    c
}

mod common;

fn require_vm() {
    common::require_root(&[("qemu-system-x86_64", "qemu-system-x86"), ("debootstrap", "debootstrap"), ("genisoimage", "genisoimage")]);
}

fn ensure_image() {
    let list = harness().args(["image", "list"]).output().expect("image list");
    if String::from_utf8_lossy(&list.stdout).contains("debian-12") {
        return;
    }
    let out = harness().args(["image", "build", "debian-12"]).stderr(Stdio::inherit()).output().expect("image build");
    assert!(out.status.success(), "image build failed: {}", String::from_utf8_lossy(&out.stdout));
}

fn runs_dir() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    std::env::var_os("HARNESS_RUNS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".local/state/devstack-harness/runs"))
}

/// Everything of run `id` still present on the machine.
fn leftovers(id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let name = format!("dh-{id}");
    let ps = Command::new("pgrep").args(["-af", "qemu-system"]).output().expect("pgrep");
    for line in String::from_utf8_lossy(&ps.stdout).lines() {
        if line.contains(&format!("-name {name} ")) || line.contains(&format!("guest={name},")) {
            left.push(format!("process: {line}"));
        }
    }
    if let Ok(o) = Command::new("virsh").args(["-c", "qemu:///system", "list", "--all", "--name"]).output() {
        if String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == name) {
            left.push(format!("domain {name}"));
        }
    }
    let ns = format!("/run/netns/dh-{id}-edge");
    if std::path::Path::new(&ns).exists() {
        left.push(ns);
    }
    let tap = format!("/sys/class/net/dh{id}t0");
    if std::path::Path::new(&tap).exists() {
        left.push(tap);
    }
    let overlay = runs_dir().join(id).join("disk.qcow2");
    if overlay.exists() {
        left.push(overlay.display().to_string());
    }
    left
}

fn run_id_from(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.strip_prefix("run ")).and_then(|l| l.split_whitespace().next()).expect("`run ID is up` line").to_owned()
}

fn up_exec_down(backend: &str) {
    let out = harness().args(["up", "--keep", "--backend", backend]).stderr(Stdio::inherit()).output().expect("harness up");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "harness up --backend {backend} failed:\n{stdout}");
    let id = run_id_from(&stdout);
    let ex = harness().args(["exec", &id, "--", "uname", "-a"]).output().expect("harness exec");
    let uname = String::from_utf8_lossy(&ex.stdout);
    let down = harness().args(["down", &id]).output().expect("harness down");
    assert!(ex.status.success() && uname.contains("Linux devstack"), "exec: {uname}{}", String::from_utf8_lossy(&ex.stderr));
    assert!(down.status.success(), "down: {}", String::from_utf8_lossy(&down.stderr));
    let left = leftovers(&id);
    assert!(left.is_empty(), "run {id} left: {left:#?}");
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn up_exec_down_with_qemu() {
    require_vm();
    ensure_image();
    up_exec_down("qemu");
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn up_exec_down_with_libvirt() {
    require_vm();
    let ping = Command::new("virsh").args(["-c", "qemu:///system", "version"]).output();
    if !ping.is_ok_and(|o| o.status.success()) {
        panic!("libvirtd does not answer at qemu:///system (virtlogd -d; libvirtd -d; bash .ci/setup starts them)");
    }
    ensure_image();
    up_exec_down("libvirt");
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn gc_after_sigkill_mid_boot() {
    require_vm();
    ensure_image();
    // Runs kept from before (finished ones keep their run.json) are not this one's,
    // even when the kernel gave their owner the same pid.
    let names = || -> std::collections::HashSet<std::ffi::OsString> {
        std::fs::read_dir(runs_dir()).map(|rd| rd.flatten().map(|e| e.file_name()).collect()).unwrap_or_default()
    };
    let earlier = names();
    let mut child =
        harness().args(["up", "--keep", "--backend", "qemu"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("harness up");
    let pid = child.id();
    // Wait until the run recorded its VM (QEMU started), then kill the harness.
    let start = Instant::now();
    let id = loop {
        assert!(start.elapsed() < Duration::from_secs(120), "no run recorded a VM");
        let found = std::fs::read_dir(runs_dir()).ok().and_then(|rd| {
            rd.flatten().filter(|e| !earlier.contains(&e.file_name())).find_map(|e| {
                let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path().join("run.json")).ok()?).ok()?;
                (rec["owner_pid"] == pid && !rec["vm"].is_null()).then(|| e.file_name().to_string_lossy().into_owned())
            })
        });
        if let Some(id) = found {
            break id;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(!leftovers(&id).is_empty(), "the killed run should have left its VM behind");
    let gc = harness().args(["gc"]).output().expect("harness gc");
    assert!(gc.status.success(), "gc: {}", String::from_utf8_lossy(&gc.stderr));
    let left = leftovers(&id);
    assert!(left.is_empty(), "after gc, run {id} left: {left:#?}\ngc said: {}", String::from_utf8_lossy(&gc.stdout));
}

/// The QEMU processes the harness names (`-name dh-RUN`), by name.
fn harness_qemus() -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if let Some(w) = args.windows(2).find(|w| w[0] == "-name" && w[1].starts_with("dh-")) {
            out.insert(w[1].clone());
        }
    }
    out
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn gc_after_sigkill_the_moment_qemu_starts() {
    require_vm();
    ensure_image();
    // Killed as soon as its QEMU process exists: before the harness can have read
    // QEMU's pidfile and recorded the VM in run.json. gc must still find it (by
    // the run's own VM name) and stop it.
    let earlier = harness_qemus();
    let mut child =
        harness().args(["up", "--keep", "--backend", "qemu"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("harness up");
    let start = Instant::now();
    let name = loop {
        assert!(start.elapsed() < Duration::from_secs(300), "no QEMU started within 300 s");
        if let Some(n) = harness_qemus().difference(&earlier).next() {
            break n.clone();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let id = name.trim_start_matches("dh-").to_owned();
    let gc = harness().args(["gc"]).output().expect("harness gc");
    assert!(gc.status.success(), "gc: {}", String::from_utf8_lossy(&gc.stderr));
    assert!(!harness_qemus().contains(&name), "after gc, QEMU {name} still runs; gc said: {}", String::from_utf8_lossy(&gc.stdout));
    let left = leftovers(&id);
    assert!(left.is_empty(), "after gc, run {id} left: {left:#?}\ngc said: {}", String::from_utf8_lossy(&gc.stdout));
}

/// A `harness up` (without --keep: it owns its run until killed) whose stdout is
/// read on a thread until it says the run is up.
fn up_owned(runs: &std::path::Path) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = harness()
        .args(["up", "--backend", "qemu", "--memory-mib", "1024"])
        .env("HARNESS_RUNS_DIR", runs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("harness up");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(" is up") {
                let _ = tx.send(run_id_from(&line));
            }
        }
    });
    (child, rx)
}

fn exec_ok(runs: &std::path::Path, id: &str) -> bool {
    harness().args(["exec", id, "--", "true"]).env("HARNESS_RUNS_DIR", runs).status().is_ok_and(|s| s.success())
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn gc_removes_exactly_the_dead_run_and_never_a_live_one() {
    require_vm();
    ensure_image();
    let runs = tempfile::tempdir().expect("runs dir");
    let (mut a, a_up) = up_owned(runs.path());
    let (mut b, b_up) = up_owned(runs.path());
    // Two TCG boots at once on two cores: generous.
    let deadline = Duration::from_secs(600);
    let a_id = a_up.recv_timeout(deadline).expect("run A up");
    let b_id = b_up.recv_timeout(deadline).expect("run B up");
    let gc = |what: &str| {
        let o = harness().args(["gc"]).env("HARNESS_RUNS_DIR", runs.path()).output().expect("harness gc");
        assert!(o.status.success(), "gc ({what}): {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let said = gc("both alive");
    assert!(!said.contains("removed"), "gc removed something of a live run:\n{said}");
    assert!(exec_ok(runs.path(), &a_id) && exec_ok(runs.path(), &b_id), "a live run stopped answering after gc:\n{said}");
    // A dies without a chance to clean up; its QEMU, namespace and tap stay behind.
    a.kill().expect("SIGKILL");
    let _ = a.wait();
    assert!(!leftovers(&a_id).is_empty(), "the killed run should have left its VM behind");
    let said = gc("A killed");
    let removed: Vec<&str> = said.lines().filter(|l| l.starts_with("removed")).collect();
    assert!(!removed.is_empty() && removed.iter().all(|l| !l.contains(&b_id)), "gc must remove A's and only A's:\n{said}");
    assert!(leftovers(&a_id).is_empty(), "after gc, run {a_id} left: {:#?}", leftovers(&a_id));
    assert!(exec_ok(runs.path(), &b_id), "B stopped answering after gc removed A");
    // B's owner tears it down on SIGTERM.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(b.id() as i32), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let _ = b.wait();
    assert!(leftovers(&b_id).is_empty(), "run {b_id} left: {:#?}", leftovers(&b_id));
}

/// The cached default image's kernel, which the accelerator probe boots.
fn image_kernel() -> PathBuf {
    ensure_image();
    harness::image::list(&harness::image::cache_root())
        .into_iter()
        .rev()
        .find_map(|i| i.kernel)
        .expect("the default image has a kernel beside it")
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn accel_probe_boots_a_kernel_under_tcg() {
    require_vm();
    let kernel = image_kernel();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(harness::accel::probe(harness::accel::Accel::Tcg, &kernel, Duration::from_secs(60)))
        .expect("the probe kernel reaches its panic under TCG");
    // auto never fails; when it picks TCG it says why in one line.
    let d = rt.block_on(harness::accel::decide(harness::accel::AccelChoice::Auto, Some(&kernel))).expect("auto decides");
    if d.accel == harness::accel::Accel::Tcg {
        assert!(d.reason.contains("using TCG") && !d.reason.contains('\n'), "{}", d.reason);
    }
    eprintln!("accel decision here: {:?}: {}", d.accel, d.reason);
}

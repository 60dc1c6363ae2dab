//! The parts of the devstack cloud that run without DevStack's sources (this
//! machine cannot reach them; the real run is the .github/ devstack workflow):
//! the rendered driver script (bash and shellcheck), the busybox probe that runs
//! inside a CirrOS instance (run here with busybox's own applets against the real
//! responder), and the edge's user-mode uplink (slirp4netns, tested against the
//! host's loopback only).

use harness::scenario::{self, Plan};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::Netns;

fn scenario_files() -> Vec<std::path::PathBuf> {
    harness::suite::toml_files(Path::new("../scenarios")).expect("scenarios/")
}

fn mirrored() -> Plan {
    let text = r#"
[devstack]
git_base = "https://git.example.internal/mirror"
branch = "stable/2025.2"
apt_mirror = "http://apt.example.internal/ubuntu"
pip_index_url = "https://pypi.example.internal/simple"

[[forward]]
public_port = 8022
to = "floating_ip"
port = 22
"#;
    scenario::parse(Path::new("mirrored.toml"), text).expect("scenario")
}

#[test]
#[ignore = "needs shellcheck; cargo nextest run --run-ignored all"]
fn rendered_driver_script_is_valid_bash_and_passes_shellcheck() {
    common::require(&[("shellcheck", "shellcheck")]);
    let renderer = harness::render::Renderer::new(None).expect("templates");
    let mut plans: Vec<Plan> = scenario_files().iter().map(|p| scenario::load(p).expect("scenario")).collect();
    plans.push(mirrored());
    let dir = tempfile::tempdir().expect("tempdir");
    for plan in &plans {
        let script = harness::cloud::devstack::render_devstack(plan, "0123abcd", &renderer).expect("render");
        let path = dir.path().join(format!("{}.sh", plan.name));
        std::fs::write(&path, &script).expect("write");
        let out = Command::new("bash").arg("-n").arg(&path).output().expect("bash");
        assert!(out.status.success(), "{}: bash -n: {}", plan.name, String::from_utf8_lossy(&out.stderr));
        let out = Command::new("shellcheck").args(["-s", "bash", "-S", "warning"]).arg(&path).output().expect("shellcheck");
        assert!(out.status.success(), "{}: shellcheck:\n{}", plan.name, String::from_utf8_lossy(&out.stdout));
        assert!(script.contains(&format!("GIT_BASE={}", plan.devstack.git_base)), "{}", plan.name);
        assert!(script.contains("--protocol tcp --dst-port 22 "), "{}: SSH must be open", plan.name);
        assert!(script.contains("NAME=harness-0123abcd"), "{}", plan.name);
    }
    let m = harness::cloud::devstack::render_devstack(&mirrored(), "0123abcd", &renderer).expect("render");
    assert!(m.contains("BRANCH=stable/2025.2"));
    assert!(m.contains("index-url = %s\\n' 'https://pypi.example.internal/simple'"));
    assert!(m.contains("#http://apt.example.internal/ubuntu#g"));
    // Without mirrors, the guest's apt and pip are left as the image has them.
    let plain = harness::cloud::devstack::render_devstack(&plans[0], "0123abcd", &renderer).expect("render");
    assert!(!plain.contains("pip.conf") && !plain.contains("sed -i -E"));
}

#[test]
fn scenario_rejects_a_mirror_a_shell_would_read() {
    let e = scenario::parse(Path::new("bad.toml"), "[devstack]\napt_mirror = \"http://x/$(reboot)\"\n").unwrap_err().to_string();
    assert!(e.starts_with("bad.toml:2:"), "{e}");
    assert!(e.contains("expected an http(s):// or file:// URL"), "{e}");
}

/// A client namespace and a responder namespace joined by a veth pair.
struct Pair {
    client: Netns,
    server: Netns,
}

fn pair(tag: &str) -> Pair {
    let client = Netns::create(&format!("{tag}c"));
    let server = Netns::create(&format!("{tag}s"));
    let ok = Command::new("ip")
        .args(["link", "add", "c0", "netns", &client.0, "type", "veth", "peer", "name", "s0", "netns", &server.0])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "veth pair");
    for (ns, dev, addr) in [(&client, "c0", "10.99.0.1/24"), (&server, "s0", "10.99.0.2/24")] {
        for args in [&["ip", "addr", "add", addr, "dev", dev][..], &["ip", "link", "set", dev, "up"], &["ip", "link", "set", "lo", "up"]] {
            let out = ns.exec(args);
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    Pair { client, server }
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs root and network namespaces; cargo nextest run --run-ignored all"]
fn busybox_probe_reports_what_the_responder_saw() {
    common::require_root(&[("busybox", "busybox"), ("ip", "iproute2"), ("python3", "python3")]);
    let p = pair("bb");
    let dir = tempfile::tempdir().expect("tempdir");
    // A PATH of busybox applets only, as in CirrOS.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let busybox = String::from_utf8(Command::new("sh").args(["-c", "command -v busybox"]).output().expect("sh").stdout).expect("utf8");
    for applet in ["sh", "ping", "nc", "wget", "cut", "tr", "sed", "grep", "head", "tail", "sleep", "cat", "echo"] {
        std::os::unix::fs::symlink(busybox.trim(), bin.join(applet)).expect("symlink");
    }
    let probe = dir.path().join("probe.sh");
    std::fs::write(&probe, harness::scripts::script("probe.sh")).expect("probe");
    let responder = dir.path().join("responder.py");
    std::fs::write(&responder, harness::scripts::script("responder.py")).expect("responder");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &p.server.0, "python3"])
        .arg(&responder)
        .args(["10.99.0.2", "--tcp", "80", "--udp", "5353"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("responder");
    let mut ready = [0u8; 6];
    child.stdout.take().expect("stdout").read_exact(&mut ready).expect("ready line");
    let _responder = Child(child);

    let run = |args: &[&str]| -> serde_json::Value {
        let out = Command::new("ip")
            .args(["netns", "exec", &p.client.0, "env", "-i"])
            .arg(format!("PATH={}", bin.display()))
            .arg("sh")
            .arg(&probe)
            .args(args)
            .output()
            .expect("probe");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{args:?}: not one JSON line ({e}): {text:?}"))
    };
    let tcp = run(&["tcp", "10.99.0.2", "80", "5"]);
    assert_eq!(tcp["outcome"], "reachable", "{tcp}");
    assert_eq!(tcp["detail"], "seen_as 10.99.0.1", "{tcp}");
    // CirrOS's busybox has nc -u; Debian's has not, and the probe must say so.
    let udp = run(&["udp", "10.99.0.2", "5353", "5"]);
    let usage = Command::new("busybox").args(["nc", "--help"]).output().expect("busybox");
    if String::from_utf8_lossy(&usage.stderr).contains(" -u") {
        assert_eq!(udp["outcome"], "reachable", "{udp}");
        assert_eq!(udp["detail"], "seen_as 10.99.0.1", "{udp}");
    } else {
        assert_eq!(udp["outcome"], "unreachable", "{udp}");
        assert!(udp["detail"].as_str().is_some_and(|d| d.contains("no -u")), "{udp}");
    }
    let icmp = run(&["icmp", "10.99.0.2", "5"]);
    assert_eq!(icmp["outcome"], "reachable", "{icmp}");
    assert!(icmp["detail"].as_str().is_some_and(|d| d.contains("time=")), "{icmp}");
    // Nothing listens on 81, and nothing answers at .3: both unreachable, in time.
    let closed = run(&["tcp", "10.99.0.2", "81", "2"]);
    assert_eq!(closed["outcome"], "unreachable", "{closed}");
    let absent = run(&["icmp", "10.99.0.3", "2"]);
    assert_eq!(absent["outcome"], "unreachable", "{absent}");
}

#[test]
#[ignore = "needs root and network namespaces; cargo nextest run --run-ignored all"]
fn edge_uplink_is_user_mode_and_removed_at_teardown() {
    common::require_root(&[("slirp4netns", "slirp4netns"), ("iptables", "iptables"), ("python3", "python3")]);
    let runs = tempfile::tempdir().expect("tempdir");
    std::env::set_var("HARNESS_RUNS_DIR", runs.path());
    let plan = scenario::parse(Path::new("default.toml"), "").expect("plan");
    let mut run = harness::run::Run::create("uplink-test").expect("run");
    let edge = harness::run::edge_netns(&run.id);
    run.add_netns(&edge).expect("edge netns");
    // The only traffic: to this machine's loopback, which the test lets slirp reach.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(b"hello from the host\n").expect("write");
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(harness::netplane::uplink(&plan, &mut run, true)).expect("uplink");
    let out = Command::new("ip")
        .args(["netns", "exec", &edge, "python3", "-c"])
        .arg(format!("import socket; s=socket.create_connection(('10.0.2.2', {port}), timeout=5); print(s.recv(100).decode().strip())"))
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello from the host", "{}", String::from_utf8_lossy(&out.stderr));
    server.join().expect("server");
    let nat = String::from_utf8_lossy(
        &Command::new("ip").args(["netns", "exec", &edge, "iptables-save", "-t", "nat"]).output().expect("save").stdout,
    )
    .into_owned();
    assert!(nat.contains(&format!("-A POSTROUTING -o dh{}u0 -j MASQUERADE", run.id)), "{nat}");
    assert!(nat.contains("--dport 53 -j DNAT --to-destination 10.0.2.3"), "{nat}");
    let slirp = run.record.helpers.clone();
    assert_eq!(run.teardown(), Vec::<String>::new());
    assert!(!Path::new(&format!("/run/netns/{edge}")).exists(), "the edge namespace remains");
    for pid in slirp {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&cmdline).contains(&run.id), "slirp4netns {pid} still runs");
    }
}

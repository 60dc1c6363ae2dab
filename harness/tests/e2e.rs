//! Every shipped scenario end to end through the `harness` binary (boot, host
//! recipe, replica cloud, checks, state collection, teardown), its normalized
//! result compared with `snapshots/scenarios/` (accept a change with `cargo insta
//! review`); the host's own addresses, routes and firewall rules exactly as before.
//! Then a scenario that must fail (exit 1, JUnit failure with the observation,
//! the VM kept for inspection), and the devstack cloud where DevStack's sources
//! cannot be reached (exit 3, with the reason).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{harness, json, root};

fn require_vm() {
    common::require_root(&[("qemu-system-x86_64", "qemu-system-x86"), ("debootstrap", "debootstrap"), ("xmllint", "libxml2-utils")]);
}

/// The host namespace's addresses, routes and rules.
fn host_state() -> String {
    let mut s = String::new();
    for args in
        [&["ip", "-o", "addr"][..], &["ip", "route", "show", "table", "all"][..], &["iptables-save"][..], &["nft", "list", "ruleset"][..]]
    {
        if let Ok(o) = Command::new(args[0]).args(&args[1..]).output() {
            for l in String::from_utf8_lossy(&o.stdout).lines() {
                if l.starts_with('#') {
                    continue;
                }
                // Counters change with any traffic; the rules are what matter.
                let l = if l.starts_with(':') { l.split(" [").next().unwrap_or(l) } else { l };
                s.push_str(l);
                s.push('\n');
            }
        }
    }
    s
}

fn xmllint(xml: &Path) {
    let out = Command::new("xmllint").args(["--noout", "--schema", "harness/tests/data/junit.xsd"]).arg(xml).current_dir(root()).output();
    let out = out.expect("xmllint");
    assert!(out.status.success(), "JUnit does not validate: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn scenarios_end_to_end() {
    require_vm();
    let before = host_state();
    let dir = tempfile::tempdir().expect("tempdir");
    let junit = dir.path().join("junit.xml");
    // --trace: every check's packet followed hop by hop, reachable ones too.
    let out =
        harness(&["run", "--backend", "qemu", "--diagnostics", "--trace", "--format", "json", "--junit", junit.to_str().expect("utf8")]);
    assert_eq!(host_state(), before, "the host's own addresses, routes or rules changed");
    let v = json(&out);
    xmllint(&junit);
    let results: std::collections::HashMap<String, serde_json::Value> =
        v["scenarios"].as_array().expect("scenarios").iter().map(|r| (r["name"].as_str().expect("name").to_owned(), r.clone())).collect();
    insta::glob!("../../scenarios", "*.toml", |path| {
        let name = path.file_stem().expect("stem").to_string_lossy().into_owned();
        let result = &results[&name];
        let run_dir = PathBuf::from(result["run_dir"].as_str().expect("run_dir"));
        if name == "instance-egress" {
            let tcp = result["checks"].as_array().expect("checks").iter().find(|c| c["port"] == 80).expect("the TCP egress check");
            assert_eq!(tcp["observed"]["seen_as"], "203.0.113.10", "the responder must see the public IP");
        }
        assert_eq!(result["passed"], true, "{name}: a check did not match; run directory {}", run_dir.display());
        for c in result["checks"].as_array().expect("checks") {
            let path = c["path"].as_array().unwrap_or_else(|| panic!("{name}: {} was not traced", c["name"]));
            if c["expect"] == "reachable" {
                // Every hop saw it, both ways, and the trace names no death.
                let unseen: Vec<_> = path.iter().filter(|h| h["saw"] != true).collect();
                assert!(unseen.is_empty() && c["died_at"].is_null(), "{name}: {}: {unseen:#?} {}", c["name"], c["died_at"]);
                assert!(path.iter().any(|h| h["hop"].as_str().is_some_and(|h| h.ends_with("(reply)"))), "{name}: no way back in {path:#?}");
            } else {
                // Where each repro's packet dies, and why, as its report says.
                let died = &c["died_at"];
                let (hop, reason) = (died["hop"].as_str().unwrap_or(""), died["reason"].as_str().unwrap_or(""));
                let (want_hop, want_reason) = expected_death(&name, c["name"].as_str().expect("name"));
                assert!(
                    hop.starts_with(want_hop) && reason.contains(want_reason),
                    "{name}: {}: died at {hop:?}: {reason:?}; expected {want_hop:?}: {want_reason:?}",
                    c["name"]
                );
            }
        }
        // Warm: one prepared state; every scenario but the first restores it in a VM
        // of its own. A scenario that reboots the guest is a group of its own, as is
        // one with a local.conf of its own.
        let text = std::fs::read_to_string(path).expect("scenario");
        let own_group = text.contains("host_reboot") || text.contains("[devstack.values]");
        if own_group {
            assert_ne!(result["start"]["key"], results["floating-ip-ingress"]["start"]["key"], "{name}: {}", result["start"]);
        } else if name != "floating-ip-ingress" {
            assert_eq!(result["start"]["kind"], "restored", "{name}: {}", result["start"]);
            assert_eq!(result["start"]["key"], results["floating-ip-ingress"]["start"]["key"]);
            assert_ne!(result["run_id"], results["floating-ip-ingress"]["run_id"]);
        }
        // The guest's state was collected before teardown.
        assert!(run_dir.join("state/host/iptables-save.txt").is_file(), "no collected state in {}", run_dir.display());
        let text = std::fs::read_to_string(run_dir.join(format!("snapshot-{name}.txt"))).expect("snapshot text");
        insta::with_settings!({snapshot_path => "../../snapshots/scenarios", prepend_module_to_snapshot => false, omit_expression => true, snapshot_suffix => ""}, {
            insta::assert_snapshot!(name.clone(), text);
        });
        // `harness run` made the same comparison itself.
        assert_eq!(result["snapshot"]["outcome"], "matched", "{name}: {}", result["snapshot"]);
    });
    assert_eq!(out.status.code(), Some(0), "every shipped scenario comes out as it expects: {v:#}");
}

/// The hop (its name's start) and a part of the reason each shipped check that
/// expects no answer dies with.
fn expected_death(scenario: &str, check: &str) -> (&'static str, &'static str) {
    match (scenario, check) {
        ("repro-no-masquerade" | "repro-masquerade-wrong-range", _) => ("cloud edge", "no route to 192.168.100."),
        ("repro-forward-policy-drop", _) => ("host FORWARD", "policy DROP, no rule matched"),
        ("repro-ip-forward-off", _) => ("host br-ex", "ip_forward = 0"),
        ("repro-ovs-bridge-down", _) => ("router qg-", "and br-ex is down"),
        ("repro-ovs-bridge-no-address", c) if c.starts_with("host") => ("host br-ex", "never sent"),
        ("repro-ovs-bridge-no-address", _) => ("router qg-", "no device of the host, the router or the edge has that address"),
        ("repro-default-route-mgmt", _) => ("host POSTROUTING", "leaves through mgmt0, not eth0"),
        // Dropped at routing, after nat PREROUTING counted it, before FORWARD.
        ("repro-rp-filter-strict", _) => ("host PREROUTING", "rp_filter = 1 (strict) on eth0"),
        // Open vSwitch drops it at the router's port; the instance's own MTU let it out.
        ("repro-instance-mtu-1500", _) => ("instance", "do not fit qr-"),
        // After a real reboot: br-ex back from OVS's database without its address.
        ("repro-reboot-not-persisted", _) => ("router qg-", "the gateway 192.168.100.1 does not answer ARP"),
        // PUBLIC_INTERFACE=eth0: mybr0 is left out of br-ex. From the host, the route to
        // the floating range goes to mybr0; the router's masqueraded request leaves and its
        // answer comes back, to be routed to the empty mybr0.
        ("repro-single-nic-public-interface", c) if c.starts_with("host") => ("host br-ex", "never sent"),
        ("repro-single-nic-public-interface", _) => ("host eth0 (reply)", "leaves through mybr0, not br-ex"),
        // Disassociated: nothing translates the floating IP any more.
        ("tempest-basic-ops", _) => ("router", ""),
        (s, c) => panic!("{s}: {c}: no expected death written down for this check"),
    }
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn a_check_that_does_not_match_is_exit_1_and_the_run_stays_for_inspection() {
    require_vm();
    // The repro without MASQUERADE, but claiming egress works: its egress must fail.
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(root().join("scenarios/repro-no-masquerade.toml")).expect("repro");
    let wrong = text.replace("expect = \"unreachable\"", "expect = \"reachable\"");
    assert_ne!(wrong, text, "the repro declares an unreachable check");
    let scenario = dir.path().join("claims-egress.toml");
    std::fs::write(&scenario, wrong).expect("write");
    let junit = dir.path().join("junit.xml");
    let out = harness(&[
        "run",
        "--backend",
        "qemu",
        "--keep",
        "on-failure",
        "--format",
        "json",
        "--junit",
        junit.to_str().expect("utf8"),
        scenario.to_str().expect("utf8"),
    ]);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    let r = &v["scenarios"][0];
    let run_id = r["run_id"].as_str().expect("run_id").to_owned();
    let run_dir = PathBuf::from(r["run_dir"].as_str().expect("run_dir"));
    // The failed check's packet was traced: the answer had no way back into the edge.
    let died = &r["checks"][1]["died_at"];
    assert!(died["hop"].as_str().is_some_and(|h| h.starts_with("cloud edge")), "{died}");
    // Kept: the VM still answers, `harness diagnose` traces it again; then
    // `harness down` removes it.
    let exec = harness(&["exec", &run_id, "--", "iptables-save", "-t", "nat"]);
    let diagnose = harness(&["diagnose", &run_id, "responder"]);
    let down = harness(&["down", &run_id]);
    let said = String::from_utf8_lossy(&diagnose.stdout);
    assert!(diagnose.status.success() && said.contains("died at cloud edge") && said.contains("no route to 192.168.100."), "{said}");
    assert_eq!(exec.status.code(), Some(0), "the kept VM answers: {}", String::from_utf8_lossy(&exec.stderr));
    assert!(!String::from_utf8_lossy(&exec.stdout).contains("MASQUERADE"), "the scenario leaves MASQUERADE out");
    assert_eq!(down.status.code(), Some(0), "{}", String::from_utf8_lossy(&down.stderr));
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("<failure message=\"expected reachable, observed unreachable"), "{xml}");
    assert!(xml.contains("; died at cloud edge"), "JUnit's failure carries where the packet died: {xml}");
    xmllint(&junit);
    for f in ["console.log", "state/host/iptables-save.txt", "state/host/routes.json", "state/ovs/ovs-vsctl-show.txt", "state/journal.txt"]
    {
        assert!(run_dir.join(f).is_file(), "{f} is missing from {}", run_dir.display());
    }
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn the_devstack_cloud_without_its_sources_is_an_infrastructure_failure() {
    require_vm();
    common::require(&[("slirp4netns", "slirp4netns")]);
    // DevStack's sources at the guest's own loopback, where nothing listens: the
    // preflight fails in the guest, and no packet leaves this machine.
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("devstack-offline.toml");
    let egress = std::fs::read_to_string(root().join("scenarios/instance-egress.toml")).expect("scenario");
    std::fs::write(&scenario, format!("{egress}\n[devstack]\ngit_base = \"http://127.0.0.1:9\"\n")).expect("write");
    let out = harness(&["run", "--backend", "qemu", "--cloud", "devstack", "--format", "json", scenario.to_str().expect("utf8")]);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(3), "{v:#}");
    let error = v["infrastructure_failures"][0]["error"].as_str().expect("error");
    assert!(error.contains("http://127.0.0.1:9/openstack/devstack.git"), "{error}");
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn ctrl_c_keeps_what_finished_and_tears_down_the_rest() {
    require_vm();
    // Two VM groups: a second scenario whose VM differs cannot share the first's.
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = dir.path().join("runs");
    let second = dir.path().join("ingress-bigger-vm.toml");
    let ingress = std::fs::read_to_string(root().join("scenarios/floating-ip-ingress.toml")).expect("scenario");
    std::fs::write(&second, format!("{ingress}\n[vm]\nmemory_mib = 2100\n")).expect("write");
    let junit = dir.path().join("junit.xml");
    let child = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--backend", "qemu", "--no-snapshots", "--format", "json", "--junit"])
        .arg(&junit)
        .arg("scenarios/instance-egress.toml")
        .arg(&second)
        .current_dir(root())
        .env("HARNESS_RUNS_DIR", &runs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("harness run");
    // Wait until the first group has its result and the second group's run exists.
    let started = std::time::Instant::now();
    let second_run = loop {
        assert!(started.elapsed() < std::time::Duration::from_secs(900), "the second group never started");
        let dirs: Vec<PathBuf> = std::fs::read_dir(&runs).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        let first_done = dirs.iter().any(|d| d.join("result-instance-egress.json").exists());
        if let (true, Some(d)) = (first_done, dirs.iter().find(|d| !d.join("result-instance-egress.json").exists())) {
            break d.clone();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // Let it get somewhere (its VM recorded), then Ctrl-C.
    let record = second_run.join("run.json");
    while !std::fs::read_to_string(&record).is_ok_and(|r| r.contains("\"pid\"")) {
        assert!(started.elapsed() < std::time::Duration::from_secs(900), "the second group's VM never started");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let out = child.wait_with_output().expect("harness exits");
    let v = json(&out);
    assert_eq!(out.status.code(), Some(3), "interrupted: {v:#}");
    assert_eq!(v["interrupted"], true, "{v:#}");
    assert_eq!(v["scenarios"][0]["name"], "instance-egress");
    assert_eq!(v["scenarios"][0]["passed"], true, "{v:#}");
    let f = &v["infrastructure_failures"][0];
    assert_eq!(f["scenario"], "ingress-bigger-vm");
    assert!(f["error"].as_str().is_some_and(|e| e.contains("interrupted")), "{f}");
    let xml = std::fs::read_to_string(&junit).expect("JUnit written after Ctrl-C");
    assert!(xml.contains("instance-egress") && xml.contains("interrupted"), "{xml}");
    xmllint(&junit);
    let id = second_run.file_name().expect("id").to_string_lossy().into_owned();
    assert!(!Path::new(&format!("/run/netns/dh-{id}-edge")).exists(), "the interrupted group's namespace remains");
    let rec: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&record).expect("record")).expect("json");
    assert_eq!(rec["status"], "down", "{rec:#}");
}

/// `harness run` of instance-egress with its prepared states in `states`; the JSON.
fn warm_run(states: &Path, extra: &[&str]) -> serde_json::Value {
    // QEMU unless `extra` names the backend.
    let backend: &[&str] = if extra.contains(&"--backend") { &[] } else { &["--backend", "qemu"] };
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--format", "json"])
        .args(backend)
        .args(extra)
        .arg("scenarios/instance-egress.toml")
        .current_dir(root())
        .env("HARNESS_STATES_DIR", states)
        .output()
        .expect("harness run");
    let v = json(&out);
    assert_eq!(out.status.code(), Some(0), "{v:#}\n{}", String::from_utf8_lossy(&out.stderr));
    let r = &v["scenarios"][0];
    assert_eq!(r["passed"], true, "{v:#}");
    assert_eq!(r["snapshot"]["outcome"], "matched", "the same snapshot, cold or warm: {v:#}");
    v
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn warm_runs_save_restore_and_rebuild_what_changed_or_broke() {
    require_vm();
    let states = tempfile::tempdir().expect("states");
    // Cold: booted, built, saved.
    let first = warm_run(states.path(), &[]);
    let start = &first["scenarios"][0]["start"];
    assert_eq!(start["kind"], "saved", "{first:#}");
    let key = start["key"].as_str().expect("key").to_owned();
    // Warm: restored from it, same result.
    let second = warm_run(states.path(), &[]);
    assert_eq!(second["scenarios"][0]["start"], serde_json::json!({ "kind": "restored", "key": key }), "{second:#}");
    // One byte of a template changes the key: cold again.
    let templates = tempfile::tempdir().expect("templates");
    let replica = std::fs::read_to_string(root().join("harness/templates/replica.sh")).expect("replica.sh");
    std::fs::write(templates.path().join("replica.sh"), format!("{replica}#\n")).expect("write");
    let changed = warm_run(states.path(), &["--templates", templates.path().to_str().expect("utf8")]);
    let changed_start = &changed["scenarios"][0]["start"];
    assert_eq!(changed_start["kind"], "saved", "{changed:#}");
    assert_ne!(changed_start["key"].as_str(), Some(key.as_str()));
    // A truncated state is found, removed and rebuilt; the run passes.
    let state = states.path().join(&key).join("state.bin");
    let len = std::fs::metadata(&state).expect("state").len();
    std::fs::OpenOptions::new().write(true).open(&state).expect("open").set_len(len / 2).expect("truncate");
    let rebuilt = warm_run(states.path(), &[]);
    assert_eq!(rebuilt["scenarios"][0]["start"], serde_json::json!({ "kind": "saved", "key": key }), "{rebuilt:#}");
    // `--no-cache` neither restores nor saves.
    let cold = warm_run(states.path(), &["--no-cache"]);
    assert_eq!(cold["scenarios"][0]["start"]["kind"], "cold", "{cold:#}");
}

/// Runs left up by a test, taken down when dropped (a failed assertion included).
struct Down(Vec<String>);

impl Drop for Down {
    fn drop(&mut self) {
        for id in &self.0 {
            let _ = harness(&["down", id]);
        }
    }
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn groups_and_restores_run_at_once_with_jobs_and_see_nothing_of_each_other() {
    require_vm();
    // Group A: three scenarios of one VM group (the first prepares or restores the
    // state, the other two restore it at once); group B: a scenario whose VM
    // differs. Three slots: A's first beside B, then A's other two together.
    let dir = tempfile::tempdir().expect("tempdir");
    let second = dir.path().join("ingress-bigger-vm.toml");
    let ingress = std::fs::read_to_string(root().join("scenarios/floating-ip-ingress.toml")).expect("scenario");
    std::fs::write(&second, format!("{ingress}\n[vm]\nmemory_mib = 2100\n")).expect("write");
    let names = ["instance-egress", "floating-ip-ingress", "repro-no-masquerade", "ingress-bigger-vm"];
    let out = harness(&[
        "run",
        "--backend",
        "qemu",
        "--jobs",
        "3",
        "--keep",
        "always",
        "--no-snapshots",
        "--format",
        "json",
        "scenarios/instance-egress.toml",
        "scenarios/floating-ip-ingress.toml",
        "scenarios/repro-no-masquerade.toml",
        second.to_str().expect("utf8"),
    ]);
    let v = json(&out);
    let rs = v["scenarios"].as_array().expect("scenarios").clone();
    let down = Down(rs.iter().filter_map(|r| r["run_id"].as_str().map(str::to_owned)).collect());
    assert_eq!(out.status.code(), Some(0), "{v:#}");
    let got: Vec<&str> = rs.iter().map(|r| r["name"].as_str().unwrap_or("")).collect();
    assert_eq!(got, names, "results in the order given: {v:#}");
    let ids = down.0.clone();
    let records: Vec<serde_json::Value> = rs
        .iter()
        .map(|r| {
            let path = PathBuf::from(r["run_dir"].as_str().expect("run_dir")).join("run.json");
            serde_json::from_str(&std::fs::read_to_string(&path).expect("run.json")).expect("json")
        })
        .collect();
    // A's later two are restored from A's state, each in a VM of its own.
    let key = &rs[0]["start"]["key"];
    assert!(key.is_string(), "{v:#}");
    for r in &rs[1..3] {
        assert_eq!(r["start"], serde_json::json!({ "kind": "restored", "key": key }), "{v:#}");
        assert!(r.get("shared_vm").is_none(), "{r:#}");
    }
    // At once: A's first beside B, and A's other two together.
    let created: Vec<i64> = records.iter().map(|r| r["created"].as_i64().expect("created")).collect();
    assert!((created[0] - created[3]).abs() <= 1, "A and B not at once: created {created:?}");
    assert!((created[1] - created[2]).abs() <= 1, "A's restores not at once: created {created:?}");
    let ports: std::collections::BTreeSet<String> = records.iter().map(|r| r["ssh_port"].to_string()).collect();
    assert_eq!(ports.len(), 4, "{ports:?}");
    for (me, mine) in ids.iter().enumerate() {
        let links = Command::new("ip").args(["netns", "exec", &format!("dh-{mine}-edge"), "ip", "-o", "link"]).output().expect("ip");
        let links = String::from_utf8_lossy(&links.stdout).into_owned();
        let pid = records[me]["vm"]["pid"].as_i64().expect("pid");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).expect("QEMU");
        // My cloud edge holds my tap; my QEMU uses my run's files (its own overlay).
        assert!(links.contains(&format!("dh{mine}t0")), "{mine}'s edge lacks its tap: {links}");
        assert!(cmdline.contains(&format!("runs/{mine}/disk.qcow2")), "{cmdline}");
        for theirs in ids.iter().filter(|t| *t != mine) {
            assert!(!links.contains(theirs.as_str()), "{mine}'s edge sees {theirs}'s: {links}");
            assert!(!cmdline.contains(theirs.as_str()), "{mine}'s QEMU names {theirs}: {cmdline}");
        }
        // My guest answers with my pinned host key, on my port.
        let exec = harness(&["exec", mine, "--", "ip", "-o", "link", "show", "dev", "eth0"]);
        assert_eq!(exec.status.code(), Some(0), "{}", String::from_utf8_lossy(&exec.stderr));
    }
    drop(down);
    for id in &ids {
        assert!(!Path::new(&format!("/run/netns/dh-{id}-edge")).exists(), "{id}'s namespace outlived harness down");
    }
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn warm_runs_through_libvirt_save_and_restore() {
    require_vm();
    common::require(&[("virsh", "libvirt-clients")]);
    let states = tempfile::tempdir().expect("states");
    // Saved through libvirt (the run goes on in its domain restored), then restored.
    let first = warm_run(states.path(), &["--backend", "libvirt"]);
    let r = &first["scenarios"][0];
    assert_eq!(r["backend"], "libvirt", "{first:#}");
    assert_eq!(r["start"]["kind"], "saved", "{first:#}");
    let key = r["start"]["key"].as_str().expect("key").to_owned();
    let second = warm_run(states.path(), &["--backend", "libvirt"]);
    assert_eq!(second["scenarios"][0]["backend"], "libvirt", "{second:#}");
    assert_eq!(second["scenarios"][0]["start"], serde_json::json!({ "kind": "restored", "key": key }), "{second:#}");
    // A libvirt state is not a QEMU one: the QEMU backend makes its own.
    let qemu = warm_run(states.path(), &["--backend", "qemu"]);
    assert_ne!(qemu["scenarios"][0]["start"]["key"].as_str(), Some(key.as_str()), "{qemu:#}");
    // Nothing of either stays defined or running.
    let list = Command::new("virsh").args(["-c", "qemu:///system", "list", "--all", "--name"]).output().expect("virsh");
    let names = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(!names.contains(&format!("dh-s{}", &key[..12])), "the restored domain outlived its run: {names}");
}

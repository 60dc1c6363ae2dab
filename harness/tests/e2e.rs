//! Every shipped scenario, end to end (boot, host recipe, replica cloud, checks),
//! its normalized result compared with `snapshots/scenarios/` (accept a change with
//! `cargo insta review`). Afterwards the host's own addresses, routes and
//! firewall rules must be exactly as before.

use harness::boot::BootOptions;
use harness::progress::Progress;
use harness::runner;
use harness::scenario;
use harness::vm::BackendChoice;
use std::process::Command;

mod common;

fn can_boot() -> bool {
    common::can_boot(&[("qemu-system-x86_64", "qemu-system-x86"), ("debootstrap", "debootstrap"), ("ping", "iputils-ping")])
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

#[test]
fn scenarios_end_to_end() {
    if !can_boot() {
        return;
    }
    std::env::set_current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).expect("repo root");
    let before = host_state();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let opts = BootOptions { backend: BackendChoice::Qemu, ..BootOptions::default() };
    let mut paths: Vec<_> = std::fs::read_dir("scenarios").expect("scenarios").flatten().map(|e| e.path()).collect();
    paths.sort();
    let plans: Vec<scenario::Plan> = paths.iter().map(|p| scenario::load(p).expect("scenario")).collect();
    // As `harness run` does: scenarios that can share a VM share it.
    let mut results = std::collections::HashMap::new();
    for group in runner::groups(&plans, |p| p.cloud) {
        let rs = rt.block_on(runner::run_group(&group, group[0].cloud, &opts, &Progress::new(false))).unwrap_or_else(|e| panic!("{e}"));
        for r in rs {
            results.insert(r.name.clone(), r);
        }
    }
    assert_eq!(host_state(), before, "the host's own addresses, routes or rules changed");
    insta::glob!("../../scenarios", "*.toml", |path| {
        let name = path.file_stem().expect("stem").to_string_lossy().into_owned();
        let result = &results[&name];
        if name == "instance-egress" {
            let tcp = result.checks.iter().find(|c| c.port == Some(80)).expect("the TCP egress check");
            assert_eq!(tcp.observed.seen_as.as_deref(), Some("203.0.113.10"), "the responder must see the public IP");
        }
        assert!(result.passed, "{name}: a check did not match; run directory {}", result.run_dir.display());
        insta::with_settings!({snapshot_path => "../../snapshots/scenarios", prepend_module_to_snapshot => false, omit_expression => true, snapshot_suffix => ""}, {
            insta::assert_snapshot!(name.clone(), runner::snapshot_text(result));
        });
    });
}

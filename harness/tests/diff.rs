//! `harness diff` end to end on the replica: the shipped local.conf against the
//! same file with its floating range moved off the provider network. Both run;
//! the report names the lint error the change adds, the checks it breaks (the
//! instance's egress: the host's MASQUERADE is for the provider network's range,
//! so the router's new address leaves untranslated; where its packets died) and
//! the datapath state that differs, and exits 1.

mod common;

#[test]
#[ignore = "boots two VMs on the replica (~4 min under TCG): needs root, QEMU; cargo nextest run --run-ignored all"]
fn a_floating_range_off_the_provider_network_breaks_egress_and_says_where() {
    common::require_root(&[("qemu-system-x86_64", "qemu-system-x86"), ("debootstrap", "debootstrap")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = dir.path().join("rendered");
    let r = common::harness(&["render", "scenarios/instance-egress.toml", "--out", &rendered.display().to_string()]);
    assert!(r.status.success(), "render: {}", String::from_utf8_lossy(&r.stderr));
    let old = rendered.join("local.conf");
    let text = std::fs::read_to_string(&old).expect("local.conf");
    // What a user moving the floating range writes: the range, its gateway and pool.
    let moved = text
        .replace("FLOATING_RANGE=192.168.100.0/24", "FLOATING_RANGE=10.99.0.0/24")
        .replace("PUBLIC_NETWORK_GATEWAY=192.168.100.1", "PUBLIC_NETWORK_GATEWAY=10.99.0.1")
        .replace("start=192.168.100.100,end=192.168.100.200", "start=10.99.0.100,end=10.99.0.200");
    assert_ne!(moved, text, "the rendered local.conf sets FLOATING_RANGE, its gateway and pool as expected");
    let new = dir.path().join("moved.local.conf");
    std::fs::write(&new, moved).expect("write");
    let diff = |format: &str| {
        common::harness(&[
            "diff",
            &old.display().to_string(),
            &new.display().to_string(),
            "scenarios/instance-egress.toml",
            "--format",
            format,
        ])
    };
    let out = diff("json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(1), "a check that passed now fails: exit 1; {report:#}");
    let added: Vec<&str> = report["lint_added"].as_array().expect("lint_added").iter().filter_map(|d| d.as_str()).collect();
    assert!(added.iter().any(|d| d.starts_with("error[floating-range]")), "{added:?}");
    assert!(report["lint_gone"].as_array().expect("lint_gone").is_empty(), "{report:#}");
    let scenario = &report["scenarios"][0];
    assert_eq!(scenario["scenario"], "instance-egress");
    let regressions: Vec<&serde_json::Value> =
        scenario["checks"].as_array().expect("checks").iter().filter(|c| c["regression"] == true).collect();
    assert!(
        regressions.iter().any(|c| c["check"].as_str().is_some_and(|n| n.contains("seen as the public IP"))),
        "the instance's egress must break: {scenario:#}"
    );
    for c in &regressions {
        assert_eq!(c["old"]["passed"], true, "{c:#}");
        assert_eq!(c["new"]["passed"], false, "{c:#}");
        assert!(c["new"]["died_at"].as_str().is_some_and(|d| d.starts_with("died at ")), "the trace names the hop: {c:#}");
    }
    let state: Vec<&str> = scenario["state"].as_array().expect("state").iter().filter_map(|l| l.as_str()).collect();
    assert!(state.iter().any(|l| l.starts_with('+') && l.contains("10.99.0.")), "the new floating range is in the state: {state:?}");
    assert!(state.iter().any(|l| l.starts_with('-') && l.contains("192.168.100.")), "the old one is gone: {state:?}");
    // The Markdown table, for a pull request's job summary.
    let md = diff("markdown");
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(md.contains("| instance-egress |") && md.contains("regression"), "{md}");
}

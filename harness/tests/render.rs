//! Every rendered artifact of every shipped scenario, as insta snapshots under
//! `snapshots/render/`, and the cloud-init files checked by real cloud-init.

use harness::keys::RunKeys;
use harness::render::{Rendered, Renderer};
use harness::scenario;
use std::path::Path;
use std::process::Command;

fn render(path: &Path) -> Rendered {
    let plan = scenario::load(path).expect("shipped scenario loads");
    // Fixed keys and run id, so that the snapshots are stable.
    let keys = RunKeys::from_seed(7).expect("keys");
    Renderer::new(None).expect("templates").render(&plan, "snapshot-run", &keys).expect("render")
}

#[test]
fn rendered_artifacts() {
    // scenarios/neutron/ too: what the neutron cloud builds from starts here as well.
    insta::glob!("../../scenarios", "{*.toml,neutron/*.toml}", |path| {
        let rendered = render(path);
        let stem = path.file_stem().expect("stem").to_string_lossy().into_owned();
        for (name, text) in rendered.files() {
            insta::with_settings!({snapshot_path => "../../snapshots/render", prepend_module_to_snapshot => false, omit_expression => true, snapshot_suffix => ""}, {
                insta::assert_snapshot!(format!("{stem}__{name}"), text);
            });
        }
    });
}

/// Debian's cloud-init runs under the system Python, not whatever python3 is first on PATH.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn require_cloud_init() {
    let ok = Command::new("cloud-init").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "this test needs cloud-init (apt-get install cloud-init; bash .ci/setup does)");
}

#[test]
#[ignore = "needs cloud-init; cargo nextest run --run-ignored all"]
fn user_data_passes_cloud_init_schema() {
    require_cloud_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let dirs =
        [std::fs::read_dir("../scenarios").expect("scenarios dir"), std::fs::read_dir("../scenarios/neutron").expect("scenarios/neutron")];
    for entry in dirs.into_iter().flatten() {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            continue;
        }
        let rendered = render(&path);
        let file = dir.path().join("user-data");
        std::fs::write(&file, &rendered.user_data).expect("write");
        let out = Command::new("cloud-init").args(["schema", "--config-file"]).arg(&file).output().expect("run cloud-init schema");
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains("Valid cloud-config"), "{}: cloud-init schema said:\n{text}", path.display());
    }
}

#[test]
#[ignore = "needs cloud-init; cargo nextest run --run-ignored all"]
fn network_config_is_read_by_cloud_init() {
    require_cloud_init();
    // cloud-init 22.4 has no `schema` for network-config; its own parser (the code
    // that reads the seed at boot) is the check: it must yield both NICs with
    // the scenario's addresses and the default route.
    let script = r#"
import sys, yaml
from cloudinit.net.network_state import parse_net_config_data
cfg = yaml.safe_load(open(sys.argv[1]))
ns = parse_net_config_data(cfg, skip_broken=False)
for iface in sorted(ns.iter_interfaces(), key=lambda i: i["name"]):
    for s in iface.get("subnets", []):
        print(iface["name"], iface.get("mac_address"), s.get("address"), s.get("prefix"), s.get("netmask"))
for r in ns.iter_routes():
    print("route", r.get("network"), r.get("gateway"))
for iface in ns.iter_interfaces():
    for s in iface.get("subnets", []):
        for r in s.get("routes", []):
            print("route", iface["name"], r.get("network"), r.get("prefix"), r.get("gateway"))
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = render(Path::new("../scenarios/instance-egress.toml"));
    let file = dir.path().join("network-config");
    std::fs::write(&file, &rendered.network_config).expect("write");
    let out = Command::new(SYSTEM_PYTHON).args(["-c", script]).arg(&file).output().expect("run python");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "cloud-init could not read network-config:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("eth0 52:54:00:d5:00:10 192.168.0.10"), "{text}");
    assert!(text.contains("mgmt0 52:54:00:d5:00:99 10.0.2.15"), "{text}");
    assert!(text.contains("route eth0 0.0.0.0") && text.contains("192.168.0.1"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("route mgmt0")), "the management NIC must have no route: {text}");
}

#[test]
#[ignore = "needs shellcheck; cargo nextest run --run-ignored all"]
fn every_rendered_host_recipe_passes_shellcheck() {
    let ok = Command::new("shellcheck").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok, "this test needs shellcheck (apt-get install shellcheck; bash .ci/setup does)");
    let dir = tempfile::tempdir().expect("tempdir");
    insta::glob!("../../scenarios", "{*.toml,neutron/*.toml}", |path| {
        let script = dir.path().join("host-recipe.sh");
        std::fs::write(&script, render(path).host_recipe).expect("write");
        let out = Command::new("shellcheck").args(["-s", "bash"]).arg(&script).output().expect("shellcheck");
        assert!(out.status.success(), "{}: the rendered host recipe:\n{}", path.display(), String::from_utf8_lossy(&out.stdout));
    });
}

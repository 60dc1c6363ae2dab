//! The `harness` binary: exit codes and what it prints for the commands of the
//! foundation (render, lint, localconf parse).

use std::process::Command;

fn harness(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness")).args(args).output().expect("run harness");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn render_writes_every_artifact_and_its_local_conf_lints_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let (code, stdout, stderr) = harness(&["render", "../scenarios/floating-ip-ingress.toml", "--out", out.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{stderr}");
    for name in ["user-data", "meta-data", "network-config", "host-recipe.sh", "local.conf", "id_ed25519"] {
        assert!(out.join(name).exists(), "{name} missing; printed:\n{stdout}");
    }
    let (code, stdout, _) =
        harness(&["lint", out.join("local.conf").to_str().expect("utf8"), "--scenario", "../scenarios/floating-ip-ingress.toml"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("0 error(s), 0 warning(s)"), "{stdout}");
}

#[test]
fn lint_exit_codes_and_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("local.conf");
    std::fs::write(&file, "[[local|localrc]]\nQ_AGENT=openvswitch\nFLOATING_RANGE=172.24.4.0/24\n").expect("write");
    let f = file.to_str().expect("utf8");
    let (code, stdout, _) = harness(&["lint", f]);
    assert_eq!(code, 1, "errors mean exit 1");
    assert!(stdout.contains("local.conf:3: error[floating-range]:"), "{stdout}");
    assert!(stdout.contains("    3 | FLOATING_RANGE=172.24.4.0/24"), "{stdout}");
    let (code, stdout, _) = harness(&["lint", f, "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let d = v["diagnostics"].as_array().expect("array");
    assert!(
        d.iter().any(|d| d["rule"] == "floating-range"
            && d["line"] == 3
            && d["severity"] == "error"
            && d["hint"].as_str().is_some_and(|h| h.contains("192.168.100.0/24"))),
        "{stdout}"
    );
}

#[test]
fn bad_input_is_exit_2_with_file_and_line() {
    let (code, _, stderr) = harness(&["lint", "/nonexistent/local.conf"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/local.conf"), "{stderr}");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = dir.path().join("s.toml");
    std::fs::write(&s, "[provider]\nbridge = \"mybr0\"\nfloating_range = \"nope\"\n").expect("write");
    let (code, _, stderr) = harness(&["render", s.to_str().expect("utf8"), "--out", dir.path().join("o").to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("s.toml:3:18: expected a CIDR"), "{stderr}");
    assert!(!dir.path().join("o").exists(), "nothing is written for bad input");
    let (code, _, _) = harness(&["render"]);
    assert_eq!(code, 2, "a usage error is bad input too");
}

#[test]
fn templates_can_be_overridden() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("t")).expect("mkdir");
    std::fs::write(dir.path().join("t/local.conf"), "[[local|localrc]]\n# custom {{ plan.name }}\n").expect("write");
    let out = dir.path().join("o");
    let (code, _, stderr) = harness(&[
        "--templates",
        dir.path().join("t").to_str().expect("utf8"),
        "render",
        "../scenarios/instance-egress.toml",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(out.join("local.conf")).expect("read"), "[[local|localrc]]\n# custom instance-egress\n");
    std::fs::write(dir.path().join("t/local.conf"), "{% if %}").expect("write");
    let (code, _, stderr) = harness(&[
        "--templates",
        dir.path().join("t").to_str().expect("utf8"),
        "render",
        "../scenarios/instance-egress.toml",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("template local.conf") && stderr.contains("1:"), "{stderr}");
}

#[test]
fn localconf_parse_json() {
    let (code, stdout, _) = harness(&["localconf", "parse", "tests/fixtures/meta-cases.conf", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["files"][0]["group"], "local");
    assert_eq!(v["localrc"]["assignments"][0]["name"], "HOST_IP");
}

//! The composite Action's steps (action/steps.sh, in action.yml's order), run as
//! GitHub would run them but for what needs GitHub (KVM's udev rule, the caches,
//! the artifact upload): cache keys, build, then a shipped scenario with a
//! local.conf of "the user's" through `--local-conf`; outputs, JUnit and the job
//! summary checked.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn outputs(file: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

#[test]
#[ignore = "boots VMs: needs root, QEMU, libvirt; cargo nextest run --run-ignored all"]
fn the_actions_steps_run_a_shipped_scenario_with_a_users_local_conf() {
    common::require_root(&[("qemu-system-x86_64", "qemu-system-x86"), ("python3", "python3")]);
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let steps = root.join("action/steps.sh");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_harness"));
    let workspace = tempfile::tempdir().expect("workspace");
    let ws = workspace.path();
    // "Their" local.conf: the one instance-egress renders, kept in their repository.
    let plan = harness::scenario::load(&root.join("scenarios/instance-egress.toml")).expect("scenario");
    let conf = harness::render::Renderer::new(None).expect("templates").local_conf(&plan).expect("local.conf");
    std::fs::create_dir_all(ws.join("devstack")).expect("dir");
    std::fs::write(ws.join("devstack/local.conf"), conf).expect("write");
    let (output, summary) = (ws.join("github-output"), ws.join("step-summary.md"));
    let step = |name: &str, env: &[(&str, &str)]| {
        let out = Command::new("bash")
            .arg(&steps)
            .arg(name)
            .current_dir(ws)
            .env("GITHUB_WORKSPACE", ws)
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("RUNNER_TEMP", ws)
            .env("HARNESS_BIN_DIR", bin.parent().expect("dir"))
            .env("HARNESS_SUDO", "")
            .envs(env.iter().copied())
            .output()
            .expect("steps.sh");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "steps.sh {name}:\n{text}");
        text
    };
    step("keys", &[]);
    let keys = outputs(&output);
    assert!(keys.iter().any(|(k, v)| k == "build" && v.starts_with("harness-")), "{keys:?}");
    assert!(keys.iter().any(|(k, v)| k == "images" && v.starts_with("harness-images-")), "{keys:?}");
    let built = step("build", &[]);
    assert!(built.contains(env!("CARGO_PKG_VERSION")), "{built}");
    let ran = step(
        "run",
        &[
            ("INPUT_SCENARIOS", &root.join("scenarios/instance-egress.toml").display().to_string()),
            ("INPUT_LOCAL_CONF", "devstack/local.conf"),
            ("INPUT_RETRIES", "1"),
            ("INPUT_JUNIT", "out/junit.xml"),
        ],
    );
    let outs = outputs(&output);
    let get = |k: &str| outs.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("exit-code"), "0", "{ran}");
    assert_eq!(get("junit"), ws.join("out/junit.xml").display().to_string());
    assert!(Path::new(&get("junit")).is_file(), "JUnit written: {ran}");
    assert!(Path::new(&get("run-dir")).is_dir(), "run directories: {ran}");
    let md = std::fs::read_to_string(&summary).expect("job summary");
    assert!(md.contains("| ✅ | instance-egress (replica) | instance reaches the responder over TCP, seen as the public IP |"), "{md}");
    // The run built from the user's local.conf, not the scenario's.
    let run_dirs: Vec<PathBuf> = std::fs::read_dir(get("run-dir")).expect("runs").flatten().map(|e| e.path()).collect();
    let rendered = std::fs::read_to_string(run_dirs[0].join("rendered/local.conf")).expect("rendered local.conf");
    assert_eq!(rendered, std::fs::read_to_string(ws.join("devstack/local.conf")).expect("theirs"));

    // The diff mode, as a pull request that touches the local.conf runs it: the
    // file at the base revision against the workspace's.
    let git = |args: &[&str]| {
        let o = Command::new("git").args(args).current_dir(ws).output().expect("git");
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "-q"]);
    git(&["add", "devstack/local.conf"]);
    git(&["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "base"]);
    let theirs = std::fs::read_to_string(ws.join("devstack/local.conf")).expect("theirs");
    std::fs::write(ws.join("devstack/local.conf"), theirs.replace("[[local|localrc]]", "[[local|localrc]]\n# reviewed")).expect("write");
    std::fs::write(&summary, "").expect("empty summary");
    let diffed = step(
        "diff",
        &[
            ("INPUT_SCENARIOS", &root.join("scenarios/instance-egress.toml").display().to_string()),
            ("INPUT_LOCAL_CONF", "devstack/local.conf"),
            ("INPUT_DIFF_BASE", "HEAD"),
        ],
    );
    let outs = outputs(&output);
    let get = |k: &str| outs.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("exit-code"), "0", "a comment changes no check: {diffed}");
    let md = std::fs::read_to_string(&summary).expect("job summary");
    assert!(md.contains("### harness diff") && md.contains("| instance-egress |") && md.contains("0 regression(s)"), "{md}");
}

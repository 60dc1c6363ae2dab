//! The repository's pre-commit hook (.pre-commit-hooks.yaml), run by pre-commit
//! itself (`pre-commit try-repo`) in a project of its own: a bad local.conf fails
//! with its diagnostic, a good one passes.

use std::path::Path;
use std::process::Command;

const PRE_COMMIT: &str = "/opt/devstack-harness-tools/bin/pre-commit";

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "needs pre-commit (bash .ci/setup installs it); cargo nextest run --run-ignored all"]
fn the_hook_fails_a_bad_local_conf_and_passes_a_good_one() {
    assert!(Path::new(PRE_COMMIT).is_file(), "this test needs pre-commit at {PRE_COMMIT} (bash .ci/setup installs it)");
    let harness_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let project = tempfile::tempdir().expect("tempdir");
    let p = project.path();
    std::fs::create_dir_all(p.join("bad")).expect("dir");
    std::fs::create_dir_all(p.join("good")).expect("dir");
    std::fs::write(p.join("bad/local.conf"), "[[local|localrc]]\nFLOATING_RANGE=172.24.4.0/24\n").expect("write");
    let good = harness::render::Renderer::new(None)
        .expect("templates")
        .local_conf(&harness::scenario::load(&harness_repo.join("scenarios/instance-egress.toml")).expect("scenario"))
        .expect("local.conf");
    std::fs::write(p.join("good/local.conf"), good).expect("write");
    git(p, &["init", "-q"]);
    git(p, &["add", "."]);
    let run = |file: &str| {
        Command::new(PRE_COMMIT)
            .args(["try-repo", harness_repo.to_str().expect("utf8"), "devstack-local-conf", "--files", file])
            .current_dir(p)
            // The binary under test, so that the hook does not build another.
            .env("HARNESS_BIN", env!("CARGO_BIN_EXE_harness"))
            .env("PRE_COMMIT_HOME", p.join(".cache"))
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@localhost")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@localhost")
            .output()
            .expect("pre-commit")
    };
    let bad = run("bad/local.conf");
    let text = format!("{}{}", String::from_utf8_lossy(&bad.stdout), String::from_utf8_lossy(&bad.stderr));
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("bad/local.conf:2: error[floating-range]"), "{text}");
    let ok = run("good/local.conf");
    let text = format!("{}{}", String::from_utf8_lossy(&ok.stdout), String::from_utf8_lossy(&ok.stderr));
    assert_eq!(ok.status.code(), Some(0), "{text}");
    assert!(text.contains("lint DevStack local.conf (devstack-harness)") && text.contains("Passed"), "{text}");
}

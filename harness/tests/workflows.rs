//! The GitHub workflows: both pass actionlint (which also runs shellcheck on their
//! scripts), a broken one does not, and ci.yml runs what `.ci/run` runs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn actionlint() -> PathBuf {
    let venv = PathBuf::from("/opt/devstack-harness-tools/bin/actionlint");
    if venv.is_file() {
        return venv;
    }
    let found = Command::new("sh").args(["-c", "command -v actionlint"]).output().expect("sh");
    let path = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    assert!(!path.is_empty(), "this test needs actionlint (bash .ci/setup installs it from PyPI)");
    path.into()
}

fn lint(bin: &Path, files: &[&Path]) -> (bool, String) {
    let out = Command::new(bin).arg("-no-color").args(files).output().expect("actionlint");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
#[ignore = "needs actionlint (bash .ci/setup installs it); cargo nextest run --run-ignored all"]
fn workflows_pass_actionlint() {
    let bin = actionlint();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ci = root.join(".github/workflows/ci.yml");
    let devstack = root.join(".github/workflows/devstack.yml");
    // action.yml uses the composite Action at the root (`uses: ./`): actionlint reads
    // its metadata and checks the inputs the workflow passes.
    let action = root.join(".github/workflows/action.yml");
    let release = root.join(".github/workflows/release.yml");
    let (ok, text) = lint(&bin, &[&ci, &devstack, &action, &release]);
    assert!(ok, "actionlint:\n{text}");
    // The check can fail: a job without runs-on, and a script with an unquoted expansion.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yml");
    std::fs::write(&bad, "on: push\njobs:\n  x:\n    steps:\n      - run: echo hi\n").expect("write");
    let (ok, text) = lint(&bin, &[&bad]);
    assert!(!ok && text.contains("runs-on"), "a broken workflow must fail actionlint:\n{text}");
}

#[test]
#[ignore = "needs actionlint (bash .ci/setup installs it); cargo nextest run --run-ignored all"]
fn actionlint_checks_the_inputs_given_to_the_action() {
    let bin = actionlint();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // A project with the Action at its root and a workflow that passes it an input it lacks.
    let project = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(project.path().join(".github/workflows")).expect("dirs");
    // actionlint finds the project (and `./`) by its .git.
    let init = Command::new("git").args(["init", "-q"]).current_dir(project.path()).status().expect("git");
    assert!(init.success());
    std::fs::copy(root.join("action.yml"), project.path().join("action.yml")).expect("action.yml");
    let workflow = std::fs::read_to_string(root.join(".github/workflows/action.yml")).expect("workflow");
    let bad = workflow.replace("          retries: 1\n", "          retries: 1\n          local_conf: typo\n");
    assert_ne!(bad, workflow);
    let path = project.path().join(".github/workflows/uses-action.yml");
    std::fs::write(&path, bad).expect("write");
    let out = Command::new(&bin).arg("-no-color").arg(&path).current_dir(project.path()).output().expect("actionlint");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("input \"local_conf\" is not defined in action"), "{text}");
}

#[test]
#[ignore = "needs actionlint (bash .ci/setup installs it); cargo nextest run --run-ignored all"]
fn the_copy_paste_job_in_the_docs_passes_actionlint() {
    let bin = actionlint();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/github.md")).expect("docs/github.md");
    // Every whole workflow of the page: the three-line Action and the long form.
    let jobs: Vec<&str> = doc.split("```yaml\n").skip(1).filter_map(|b| b.split("```").next()).filter(|b| b.contains("\njobs:")).collect();
    assert!(jobs.len() >= 2, "docs/github.md shows the Action and the long form");
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, job) in jobs.iter().enumerate() {
        let path = dir.path().join(format!("floating-ips-{i}.yml"));
        std::fs::write(&path, job).expect("write");
        let (ok, text) = lint(&bin, &[&path]);
        assert!(ok, "workflow {i} of docs/github.md:\n{text}");
    }
}

#[test]
fn ci_workflow_runs_what_ci_run_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ci = std::fs::read_to_string(root.join(".github/workflows/ci.yml")).expect("ci.yml");
    assert!(ci.contains("bash .ci/run"), "ci.yml must run .ci/run");
    let run = std::fs::read_to_string(root.join(".ci/run")).expect(".ci/run");
    assert!(run.contains("bash .ci/setup") && run.contains("bash .ci/test"), ".ci/run is setup + test");
    // The README's two commands are the ones CI keeps true.
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(readme.contains("cargo run --release -- run") && readme.contains("bash .ci/run"));
    let devstack = std::fs::read_to_string(root.join(".github/workflows/devstack.yml")).expect("devstack.yml");
    assert!(devstack.contains("--cloud devstack") && devstack.contains("--image ubuntu-24.04") && devstack.contains("--junit"));
}

//! What the tests that need the machine share. Such a test is `#[ignore]`d with
//! its reason, so that a plain `cargo nextest run` shows it as skipped; `.ci/test`
//! runs them all (`--run-ignored all`), and there a missing prerequisite fails the
//! test, never passes it silently.

use std::process::{Command, Output};

/// Why a test is ignored by default: say it in `#[ignore = ...]`.
#[allow(dead_code)]
pub const HOW_TO_RUN: &str = "cargo nextest run --run-ignored all (as root, after bash .ci/setup)";

/// Fail unless running as root with every `(tool, package)` installed.
#[allow(dead_code)]
pub fn require_root(tools: &[(&str, &str)]) {
    assert!(nix::unistd::geteuid().is_root(), "this test needs root (namespaces, taps, VMs): run it as root, after bash .ci/setup");
    require(tools);
}

/// Fail unless every `(tool, package)` is installed.
#[allow(dead_code)]
pub fn require(tools: &[(&str, &str)]) {
    let missing: Vec<String> = tools
        .iter()
        .filter(|(tool, _)| {
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| !o.status.success()).unwrap_or(true)
        })
        .map(|(tool, pkg)| format!("{tool} (apt-get install {pkg})"))
        .collect();
    assert!(missing.is_empty(), "this test needs {} (bash .ci/setup installs everything)", missing.join(", "));
}

/// A network namespace made by a test and deleted when dropped.
#[allow(dead_code)]
pub struct Netns(pub String);

#[allow(dead_code)]
impl Netns {
    pub fn create(tag: &str) -> Netns {
        let name = format!("dh-test-{tag}-{}", std::process::id());
        let out = Command::new("ip").args(["netns", "add", &name]).output().expect("ip (apt-get install iproute2)");
        assert!(out.status.success(), "cannot create a network namespace (needs root): {}", String::from_utf8_lossy(&out.stderr).trim());
        Netns(name)
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.0]).args(args).output().expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The repository's root, where `harness` finds scenarios/ and snapshots/.
#[allow(dead_code)]
pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The `harness` binary, run from the repository's root.
#[allow(dead_code)]
pub fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness")).args(args).current_dir(root()).output().expect("run harness")
}

/// The JSON document that ends a `--format json` run's stdout.
#[allow(dead_code)]
pub fn json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let start = stdout.find("\n{").map_or(0, |i| i + 1);
    serde_json::from_str(&stdout[start..])
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr)))
}

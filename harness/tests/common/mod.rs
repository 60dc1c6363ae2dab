//! What the VM tests share: whether this machine can boot a VM at all, and if not,
//! a SKIP line that says why.

use std::process::{Command, Output};

/// True when running as root with every `(tool, package)` installed.
#[allow(dead_code)]
pub fn can_boot(tools: &[(&str, &str)]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: booting VMs needs root (namespaces, taps)");
        return false;
    }
    have(tools)
}

/// A network namespace made by a test and deleted when dropped.
#[allow(dead_code)]
pub struct Netns(pub String);

#[allow(dead_code)]
impl Netns {
    pub fn create(tag: &str) -> Option<Netns> {
        let name = format!("dh-test-{tag}-{}", std::process::id());
        let out = Command::new("ip").args(["netns", "add", &name]).output().ok()?;
        if !out.status.success() {
            eprintln!("SKIP: cannot create a network namespace (needs root and iproute2): {}", String::from_utf8_lossy(&out.stderr).trim());
            return None;
        }
        Some(Netns(name))
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

/// True when every `(tool, package)` is installed; otherwise a SKIP line.
#[allow(dead_code)]
pub fn have(tools: &[(&str, &str)]) -> bool {
    for (tool, pkg) in tools {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| !o.status.success()).unwrap_or(true) {
            eprintln!("SKIP: {tool} is not installed (apt-get install {pkg})");
            return false;
        }
    }
    true
}

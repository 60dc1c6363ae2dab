//! What the VM tests share: whether this machine can boot a VM at all, and if not,
//! a SKIP line that says why.

use std::process::Command;

/// True when running as root with every `(tool, package)` installed.
pub fn can_boot(tools: &[(&str, &str)]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: booting VMs needs root (namespaces, taps)");
        return false;
    }
    for (tool, pkg) in tools {
        if Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().map(|o| !o.status.success()).unwrap_or(true) {
            eprintln!("SKIP: {tool} is not installed (apt-get install {pkg})");
            return false;
        }
    }
    true
}

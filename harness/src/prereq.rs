//! What a command needs from this machine, checked before any long step: a
//! missing tool fails the command in well under a second, naming the package
//! that brings it (`harness doctor` says more, and checks that KVM works).

use std::fmt;

/// A command the harness runs, and the Debian/Ubuntu package that has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub command: &'static str,
    pub package: &'static str,
}

const fn t(command: &'static str, package: &'static str) -> Tool {
    Tool { command, package }
}

/// Booting a VM: the overlay, the seed, the namespaces and taps, the edge's NAT,
/// the responder and the probe in the internet namespace.
pub const BOOT: &[Tool] = &[
    t("qemu-img", "qemu-utils"),
    t("genisoimage", "genisoimage"),
    t("ip", "iproute2"),
    t("iptables", "iptables"),
    t("sysctl", "procps"),
    t("python3", "python3"),
];
/// The QEMU backend (and the KVM probe of every run).
pub const QEMU: &[Tool] = &[t("qemu-system-x86_64", "qemu-system-x86")];
/// Building a debootstrap image (only when it is not cached).
pub const DEBOOTSTRAP: &[Tool] =
    &[t("debootstrap", "debootstrap"), t("mkfs.ext4", "e2fsprogs"), t("chroot", "coreutils"), t("unshare", "util-linux")];
/// The devstack cloud's uplink.
pub const UPLINK: &[Tool] = &[t("slirp4netns", "slirp4netns")];

/// The tools of `needed` that are not on PATH.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Missing {
    pub what: String,
    pub tools: Vec<Tool>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.tools.iter().map(|t| t.command).collect();
        let mut packages: Vec<&str> = self.tools.iter().map(|t| t.package).collect();
        packages.dedup();
        write!(
            f,
            "{} needs {} on PATH, and this machine lacks {}: apt-get install {} (or bash .ci/setup, which installs everything)",
            self.what,
            if names.len() == 1 { "this command" } else { "these commands" },
            names.join(", "),
            packages.join(" ")
        )
    }
}

/// Check that every tool of `needed` is on PATH.
pub fn require(what: &str, needed: &[Tool]) -> Result<(), Missing> {
    let mut tools: Vec<Tool> = needed.iter().copied().filter(|t| which::which(t.command).is_err()).collect();
    tools.dedup();
    if tools.is_empty() {
        Ok(())
    } else {
        Err(Missing { what: what.into(), tools })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_command_and_its_package() {
        assert_eq!(require("sh", &[t("sh", "dash")]), Ok(()));
        let e = require("harness run", &[t("sh", "dash"), t("no-such-tool-xyz", "xyz-utils")]).expect_err("missing");
        assert_eq!(e.tools, vec![t("no-such-tool-xyz", "xyz-utils")]);
        let text = e.to_string();
        assert!(text.contains("lacks no-such-tool-xyz: apt-get install xyz-utils"), "{text}");
    }
}

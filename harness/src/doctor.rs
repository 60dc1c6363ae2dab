//! `harness doctor`: what this machine has and lacks for a run, each missing
//! piece with the exact command that fixes it.

use crate::accel::{self, Accel};
use serde::Serialize;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// A run cannot work without it.
    pub required: bool,
    pub detail: String,
    pub fix: String,
}

fn tool_version(cmd: &str, arg: &str) -> Result<String, String> {
    match Command::new(cmd).arg(arg).output() {
        // Some tools (ssh -V) print their version on stderr.
        Ok(o) if o.status.success() => {
            let text = if o.stdout.is_empty() { &o.stderr } else { &o.stdout };
            Ok(String::from_utf8_lossy(text).lines().next().unwrap_or("").trim().to_owned())
        }
        Ok(o) => Err(format!("{cmd} {arg} exited {}", o.status)),
        Err(e) => Err(format!("{cmd}: {e}")),
    }
}

fn tool(name: &'static str, cmd: &str, arg: &str, package: &str, required: bool) -> Check {
    match tool_version(cmd, arg) {
        Ok(v) => Check { name, ok: true, required, detail: v, fix: String::new() },
        Err(e) => Check { name, ok: false, required, detail: e, fix: format!("apt-get install -y {package}") },
    }
}

/// The user libvirt runs QEMU as, from /etc/libvirt/qemu.conf (Debian's default: libvirt-qemu).
fn libvirt_qemu_user() -> String {
    let conf = std::fs::read_to_string("/etc/libvirt/qemu.conf").unwrap_or_default();
    conf.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("user").map(|r| r.trim_start().trim_start_matches('=').trim().trim_matches('"').to_owned()))
        .unwrap_or_else(|| "libvirt-qemu".into())
}

fn user_can_use_kvm(user: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    if user == "root" || user == "+0" {
        return true;
    }
    let Ok(meta) = std::fs::metadata("/dev/kvm") else { return false };
    let mode = meta.mode();
    if mode & 0o006 == 0o006 {
        return true;
    }
    let Ok(Some(u)) = nix::unistd::User::from_name(user) else { return false };
    if meta.uid() == u.uid.as_raw() && mode & 0o600 == 0o600 {
        return true;
    }
    let groups =
        Command::new("id").args(["-G", user]).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    groups.split_whitespace().any(|g| g == meta.gid().to_string()) && mode & 0o060 == 0o060
}

pub async fn run(libvirt_uri: &str) -> Vec<Check> {
    let mut checks = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    checks.push(Check {
        name: "privileges",
        ok: root,
        required: true,
        detail: if root {
            "running as root".into()
        } else {
            "not root: namespaces, taps and debootstrap need root (CAP_NET_ADMIN, CAP_SYS_ADMIN)".into()
        },
        fix: "run the harness as root (sudo)".into(),
    });
    checks.push(tool("qemu", accel::QEMU, "--version", "qemu-system-x86", true));
    checks.push(tool("qemu-img", "qemu-img", "--version", "qemu-utils", true));
    checks.push(tool("debootstrap", "debootstrap", "--version", "debootstrap", true));
    checks.push(tool("genisoimage", "genisoimage", "--version", "genisoimage", true));
    checks.push(tool("iproute2", "ip", "-V", "iproute2", true));
    checks.push(tool("iptables", "iptables", "--version", "iptables", true));
    checks.push(tool("ssh client", "ssh", "-V", "openssh-client", false));

    // KVM: a probe kernel must boot, not only /dev/kvm exist.
    let kernel = crate::image::list(&crate::image::cache_root()).into_iter().rev().find_map(|i| i.kernel);
    let kvm = match (Path::new("/dev/kvm").exists(), &kernel) {
        (false, _) => Check {
            name: "kvm",
            ok: false,
            required: false,
            detail: "/dev/kvm does not exist: runs use TCG (slower)".into(),
            fix: "enable virtualization (on a cloud VM: nested virtualization), or accept TCG".into(),
        },
        (true, None) => Check {
            name: "kvm",
            ok: false,
            required: false,
            detail: "/dev/kvm exists; not probed yet (no image kernel to probe with)".into(),
            fix: "harness image build debian-12, then harness doctor".into(),
        },
        (true, Some(k)) => match accel::probe(Accel::Kvm, k, Duration::from_secs(10)).await {
            Ok(()) => {
                Check { name: "kvm", ok: true, required: false, detail: "a probe kernel booted under KVM".into(), fix: String::new() }
            }
            Err(e) => Check {
                name: "kvm",
                ok: false,
                required: false,
                detail: format!("/dev/kvm exists but does not work ({e}): runs fall back to TCG"),
                fix: "nothing to do: --accel auto uses TCG; on a cloud VM, enable nested virtualization for speed".into(),
            },
        },
    };
    checks.push(kvm);

    let lv = crate::vm::libvirt::LibvirtBackend::new(libvirt_uri);
    match lv.ping().await {
        Ok(()) => {
            checks.push(Check {
                name: "libvirtd",
                ok: true,
                required: false,
                detail: format!("answers at {libvirt_uri}"),
                fix: String::new(),
            });
            let user = libvirt_qemu_user();
            let slow = Path::new("/dev/kvm").exists() && !user_can_use_kvm(&user);
            checks.push(Check {
                name: "libvirt create time",
                ok: !slow,
                required: false,
                detail: if slow {
                    format!("libvirt runs QEMU as {user:?}, who cannot open /dev/kvm: libvirt then discards its QEMU capability cache and re-probes on every create (about 60 s per `virsh create` here)")
                } else {
                    format!("libvirt runs QEMU as {user:?}, who can open /dev/kvm (or there is none)")
                },
                fix: "set user = \"root\" and group = \"root\" in /etc/libvirt/qemu.conf and restart libvirtd (pkill libvirtd; libvirtd -d), or use --backend qemu".into(),
            });
        }
        Err(e) => checks.push(Check {
            name: "libvirtd",
            ok: false,
            required: false,
            detail: format!("{}; --backend auto uses QEMU directly", e.to_string().lines().next().unwrap_or("")),
            fix: "apt-get install -y libvirt-daemon-system; virtlogd -d; libvirtd -d".into(),
        }),
    }

    let cache = crate::image::cache_root();
    let _ = std::fs::create_dir_all(&cache);
    let free = nix::sys::statvfs::statvfs(&cache).map(|s| s.blocks_available() * s.fragment_size()).unwrap_or(0);
    let gib = free as f64 / f64::from(1u32 << 30);
    checks.push(Check {
        name: "disk",
        ok: gib >= 5.0,
        required: true,
        detail: format!("{gib:.1} GiB free in {}", cache.display()),
        fix: "free at least 5 GiB there, or set XDG_CACHE_HOME to a larger disk".into(),
    });
    checks
}

pub fn format(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let tag = if c.ok {
            "ok  "
        } else if c.required {
            "FAIL"
        } else {
            "warn"
        };
        s.push_str(&format!("{tag} {:<20} {}\n", c.name, c.detail));
        if !c.ok {
            s.push_str(&format!("     {:<20} fix: {}\n", "", c.fix));
        }
    }
    s
}

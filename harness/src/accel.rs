//! Accelerator choice. `/dev/kvm` existing proves nothing: on a nested cloud VM it
//! can exist while QEMU asserts or hangs on it. So `auto` boots a 512-byte probe
//! guest under KVM with a deadline, and falls back to TCG when it does not
//! print and exit as it should, saying so.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// How much longer than under KVM every wait may take.
    pub fn timeout_factor(self) -> u32 {
        match self {
            Accel::Kvm => 1,
            Accel::Tcg => 4,
        }
    }
}

/// The accelerator chosen, and why (one line, shown to the user).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccelDecision {
    pub accel: Accel,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    #[error("--accel kvm: {0}")]
    KvmUnusable(String),
}

pub const QEMU: &str = "qemu-system-x86_64";

/// The CPU model every VM uses: `-cpu max` was slower and erratic under TCG and let
/// the guest load kvm_amd; `host` makes QEMU assert on a nested /dev/kvm.
pub const CPU_MODEL: &str = "qemu64";

/// `qemu-system-x86_64 --version`'s first line (asked once): a saved VM state is
/// only restored by the QEMU that saved it.
pub fn qemu_version() -> String {
    static V: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    V.get_or_init(|| {
        std::process::Command::new(QEMU)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_owned())
            .unwrap_or_default()
    })
    .clone()
}

/// Boot `kernel` with no root file system under `accel`: a working accelerator gets
/// it to its "VFS: Unable to mount root fs" panic, and QEMU exits (-no-reboot).
/// On a nested cloud VM whose KVM is broken, QEMU asserts or the guest hangs.
/// (A real-mode boot sector is not enough: it ran under that broken KVM here.)
pub async fn probe(accel: Accel, kernel: &Path, deadline: Duration) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new(QEMU);
    cmd.args(["-nodefaults", "-display", "none", "-machine", "q35", "-cpu", CPU_MODEL, "-m", "256", "-serial", "stdio", "-no-reboot"])
        .args(["-accel", accel.as_str()])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Err(_) => Err(format!("a probe kernel did not reach its panic within {} s (the guest hangs)", deadline.as_secs())),
        Ok(Err(e)) => Err(format!("cannot wait for QEMU: {e}")),
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            if out.status.success() && stdout.contains("Unable to mount root fs") {
                Ok(())
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().rfind(|l| !l.contains("warning:")).unwrap_or("no message").trim().to_owned();
                Err(format!("QEMU exited with {}: {last}", out.status))
            }
        }
    }
}

/// The probe's verdict is kept until the machine reboots (keyed by the boot id and
/// the kernel image; one entry per kernel, so that runs alternating images do not
/// probe again): under a hanging KVM each probe costs its whole deadline.
async fn probe_cached(kernel: &Path, deadline: Duration) -> Result<(), String> {
    type Verdicts = std::collections::BTreeMap<String, Result<(), String>>;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let boot_id = boot_id.trim();
    let key = format!("{boot_id}|{}", kernel.display());
    let path = crate::image::cache_root().join("kvm-probe.json");
    let mut verdicts: Verdicts = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    if let Some(verdict) = verdicts.get(&key) {
        return verdict.clone().map_err(|e| format!("{e}; probed earlier since this boot"));
    }
    let verdict = probe(Accel::Kvm, kernel, deadline).await;
    verdicts.retain(|k, _| k.starts_with(&format!("{boot_id}|")));
    verdicts.insert(key, verdict.clone());
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::write(&path, serde_json::to_vec(&verdicts).unwrap_or_default());
    }
    verdict
}

fn kvm_device_usable() -> Result<(), String> {
    let path = Path::new("/dev/kvm");
    if !path.exists() {
        return Err("/dev/kvm does not exist".into());
    }
    std::fs::OpenOptions::new().read(true).write(true).open(path).map(|_| ()).map_err(|e| format!("/dev/kvm cannot be opened: {e}"))
}

/// Decide the accelerator, probing with `kernel`. `auto` never fails: it falls back to TCG.
/// With no kernel to probe with, a usable /dev/kvm is trusted, and the reason says so.
pub async fn decide(choice: AccelChoice, kernel: Option<&Path>) -> Result<AccelDecision, AccelError> {
    let deadline = Duration::from_secs(10);
    match choice {
        AccelChoice::Tcg => Ok(AccelDecision { accel: Accel::Tcg, reason: "TCG as asked (--accel tcg)".into() }),
        AccelChoice::Kvm => {
            kvm_device_usable().map_err(AccelError::KvmUnusable)?;
            if let Some(k) = kernel {
                probe(Accel::Kvm, k, deadline).await.map_err(AccelError::KvmUnusable)?;
            }
            Ok(AccelDecision { accel: Accel::Kvm, reason: "KVM as asked; a probe kernel booted under it".into() })
        }
        AccelChoice::Auto => {
            let verdict = match (kvm_device_usable(), kernel) {
                (Ok(()), Some(k)) => probe_cached(k, deadline).await.map(|()| "KVM: a probe kernel booted under it"),
                (Ok(()), None) => Ok("KVM: /dev/kvm opens (not probed: the image has no kernel beside it)"),
                (Err(e), _) => Err(e),
            };
            Ok(match verdict {
                Ok(why) => AccelDecision { accel: Accel::Kvm, reason: why.into() },
                Err(why) => AccelDecision {
                    accel: Accel::Tcg,
                    reason: format!("KVM does not work here ({why}); using TCG, slower, with timeouts x{}", Accel::Tcg.timeout_factor()),
                },
            })
        }
    }
}

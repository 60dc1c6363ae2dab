//! QEMU started directly. The command line is built from small functions, one per
//! concern. QEMU daemonizes with a pidfile, so that a VM kept with `--keep`
//! outlives the harness and `harness down` / `harness gc` can find it.

use super::{disk_args, mgmt_nic_args, BootSource, Hypervisor, VmConfig, VmError, VmHandle};
use crate::accel::{CPU_MODEL, QEMU};
use std::path::Path;
use std::time::Duration;

pub struct QemuBackend;

fn machine_args(cfg: &VmConfig) -> Vec<String> {
    vec![
        "-name".into(),
        cfg.name.clone(),
        "-machine".into(),
        format!("q35,accel={}", cfg.accel.as_str()),
        "-cpu".into(),
        CPU_MODEL.into(),
        "-smp".into(),
        cfg.cpus.to_string(),
        "-m".into(),
        cfg.memory_mib.to_string(),
        "-nodefaults".into(),
        "-display".into(),
        "none".into(),
    ]
}

fn boot_args(cfg: &VmConfig) -> Vec<String> {
    match &cfg.boot {
        BootSource::Direct { kernel, initrd, cmdline } => {
            let mut v = vec!["-kernel".into(), kernel.display().to_string(), "-append".into(), cmdline.clone()];
            if let Some(i) = initrd {
                v.extend(["-initrd".into(), i.display().to_string()]);
            }
            v
        }
        BootSource::Firmware => vec![],
    }
}

fn console_args(cfg: &VmConfig) -> Vec<String> {
    vec!["-serial".into(), format!("file:{}", cfg.console_log.display())]
}

fn data_nic_args(cfg: &VmConfig) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("tap,id=data,ifname={},script=no,downscript=no", cfg.data_tap),
        "-device".into(),
        format!("virtio-net-pci,netdev=data,mac={}", cfg.data_mac),
    ]
}

/// A QMP socket to save the state through, and the state to start from.
fn state_args(cfg: &VmConfig) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(q) = &cfg.qmp_socket {
        v.extend(["-qmp".into(), format!("unix:{},server=on,wait=off", q.display())]);
    }
    if let Some(state) = &cfg.incoming {
        // QEMU hands `exec:` to /bin/sh: the path is quoted for it.
        v.extend(["-incoming".into(), format!("exec:cat {}", crate::exec::quote(&[state.display().to_string()]))]);
    }
    v
}

fn daemon_args(pidfile: &Path) -> Vec<String> {
    vec!["-daemonize".into(), "-pidfile".into(), pidfile.display().to_string()]
}

/// The whole command line, in the order the guest sees its devices: the data NIC
/// first so that it is eth0.
pub fn args(cfg: &VmConfig, pidfile: &Path) -> Vec<String> {
    let mut a = machine_args(cfg);
    a.extend(boot_args(cfg));
    a.extend(console_args(cfg));
    for d in &cfg.disks {
        a.extend(disk_args(d, None));
    }
    a.extend(data_nic_args(cfg));
    a.extend(mgmt_nic_args(cfg, None));
    a.extend(state_args(cfg));
    a.extend(daemon_args(pidfile));
    a
}

impl Hypervisor for QemuBackend {
    fn name(&self) -> &'static str {
        "qemu"
    }

    async fn start(&self, cfg: &VmConfig) -> Result<VmHandle, VmError> {
        let pidfile = cfg.run_dir.join("qemu.pid");
        let args = args(cfg, &pidfile);
        let cmdline = format!("{QEMU} {}", args.join(" "));
        let _ = std::fs::write(cfg.run_dir.join("qemu.cmdline"), &cmdline);
        // With -daemonize, QEMU returns once the VM is set up (devices opened).
        let out = tokio::process::Command::new(QEMU)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| VmError::QemuStart { detail: e.to_string(), fix: "apt-get install qemu-system-x86".into() })?;
        if !out.status.success() {
            return Err(VmError::QemuStart {
                detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
                fix: format!("the command line is in {}", cfg.run_dir.join("qemu.cmdline").display()),
            });
        }
        let pid = std::fs::read_to_string(&pidfile)
            .map_err(|source| VmError::Io { path: pidfile.clone(), source })?
            .trim()
            .parse::<i32>()
            .map_err(|e| VmError::QemuStart { detail: format!("bad pidfile {}: {e}", pidfile.display()), fix: "report this".into() })?;
        Ok(VmHandle::Qemu { pid, name: cfg.name.clone() })
    }
}

/// True when `pid` is alive (not a zombie) and is the QEMU named `name`: pids are
/// reused, so a bare pid is never enough to kill.
pub fn is_ours(pid: i32, name: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    if cmdline.is_empty() {
        return false; // a zombie has no command line
    }
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.windows(2).any(|w| w[0] == b"-name" && w[1] == name.as_bytes())
}

/// SIGTERM, then SIGKILL after `timeout`; returns when the process is gone.
/// Synchronous: it runs in Drop guards and signal paths.
pub fn stop(pid: i32, name: &str, timeout: Duration) -> Result<(), VmError> {
    use crate::wait::{until_blocking, Step};
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    if !is_ours(pid, name) {
        return Ok(());
    }
    let gone = || if is_ours(pid, name) { Step::NotYet(format!("QEMU pid {pid} ({name}) still runs")) } else { Step::Done(()) };
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    if until_blocking(&format!("QEMU {name} to exit on SIGTERM"), timeout, Duration::from_millis(50), gone).is_ok() {
        return Ok(());
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    until_blocking(&format!("QEMU {name} to exit on SIGKILL"), Duration::from_secs(10), Duration::from_millis(50), gone)
        .map_err(|e| VmError::Stop { name: name.into(), detail: e.to_string(), fix: format!("kill -9 {pid}") })
}

/// QEMU processes started by the harness (`-name dh-...`): (pid, name).
pub fn harness_processes() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if !args.first().is_some_and(|a| a.ends_with(QEMU)) {
            continue;
        }
        if let Some(w) = args.windows(2).find(|w| w[0] == "-name" && w[1].starts_with("dh-")) {
            out.push((pid, w[1].clone()));
        }
    }
    out
}

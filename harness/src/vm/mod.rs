//! Boot stage: a typed [`VmConfig`] in, a running VM out, through one of two
//! backends behind the [`Hypervisor`] trait: QEMU started directly, or libvirt.
//! Both give the guest the same devices: the root overlay and the seed on NVMe,
//! a data-plane NIC on a tap (moved into the run's cloud-edge namespace), and a
//! user-mode management NIC restricted to a 127.0.0.1 port forward to SSH.

pub mod libvirt;
pub mod qemu;
pub mod qmp;

use crate::accel::Accel;
use crate::image::DiskBus;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot start QEMU: {detail}\n  fix: {fix}")]
    QemuStart { detail: String, fix: String },
    #[error("libvirt ({uri}): {detail}\n  fix: {fix}")]
    Libvirt { uri: String, detail: String, fix: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot stop {name}: {detail}\n  fix: {fix}")]
    Stop { name: String, detail: String, fix: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BootSource {
    /// QEMU loads the kernel itself: no bootloader, and no initrd when the kernel has
    /// the disk and file-system drivers built in.
    Direct { kernel: PathBuf, initrd: Option<PathBuf>, cmdline: String },
    /// The image's own bootloader.
    Firmware,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disk {
    pub id: String,
    pub path: PathBuf,
    pub format: String,
    pub bus: DiskBus,
    pub readonly: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmConfig {
    /// `dh-<run id>`: also what `harness gc` looks for.
    pub name: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub accel: Accel,
    pub boot: BootSource,
    pub disks: Vec<Disk>,
    /// The data-plane NIC's tap (created beforehand, in the host namespace).
    pub data_tap: String,
    pub data_mac: String,
    pub mgmt_mac: String,
    /// 127.0.0.1 port forwarded to the guest's SSH, the only way into the guest.
    pub ssh_port: u16,
    pub mgmt_guest_ip: String,
    /// The serial console, written from the first byte.
    pub console_log: PathBuf,
    pub run_dir: PathBuf,
    /// A QMP socket (QEMU backend), for saving the VM's state.
    pub qmp_socket: Option<PathBuf>,
    /// Start from this saved state (a migration stream) instead of booting.
    pub incoming: Option<PathBuf>,
}

/// What is needed to find and stop a VM later, from another process too.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "backend", rename_all = "lowercase")]
pub enum VmHandle {
    Qemu { pid: i32, name: String },
    Libvirt { uri: String, domain: String },
}

impl VmHandle {
    pub fn backend(&self) -> &'static str {
        match self {
            VmHandle::Qemu { .. } => "qemu",
            VmHandle::Libvirt { .. } => "libvirt",
        }
    }

    /// Stop the VM and wait until it is gone. Synchronous on purpose: it runs in
    /// Drop guards and signal paths too.
    pub fn stop(&self, timeout: Duration) -> Result<(), VmError> {
        match self {
            VmHandle::Qemu { pid, name } => qemu::stop(*pid, name, timeout),
            VmHandle::Libvirt { uri, domain } => libvirt::stop(uri, domain),
        }
    }

    pub fn is_running(&self) -> bool {
        match self {
            VmHandle::Qemu { pid, name } => qemu::is_ours(*pid, name),
            VmHandle::Libvirt { uri, domain } => libvirt::is_running(uri, domain),
        }
    }
}

/// A way to run a [`VmConfig`].
pub trait Hypervisor {
    fn name(&self) -> &'static str;
    /// Start the VM. Returns once QEMU has opened its devices (the tap among
    /// them), so that the caller can move the tap into its namespace.
    fn start(&self, cfg: &VmConfig) -> impl std::future::Future<Output = Result<VmHandle, VmError>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    Auto,
    Libvirt,
    Qemu,
}

/// The chosen backend.
pub enum Backend {
    Qemu(qemu::QemuBackend),
    Libvirt(libvirt::LibvirtBackend),
}

impl Backend {
    /// `auto`: libvirt when its daemon answers at `uri`, else QEMU directly.
    pub async fn choose(choice: BackendChoice, uri: &str) -> Result<Backend, VmError> {
        match choice {
            BackendChoice::Qemu => Ok(Backend::Qemu(qemu::QemuBackend)),
            BackendChoice::Libvirt => {
                let b = libvirt::LibvirtBackend::new(uri);
                b.ping().await?;
                Ok(Backend::Libvirt(b))
            }
            BackendChoice::Auto => {
                let b = libvirt::LibvirtBackend::new(uri);
                Ok(match b.ping().await {
                    Ok(()) => Backend::Libvirt(b),
                    Err(_) => Backend::Qemu(qemu::QemuBackend),
                })
            }
        }
    }
}

impl Hypervisor for Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Qemu(b) => b.name(),
            Backend::Libvirt(b) => b.name(),
        }
    }

    async fn start(&self, cfg: &VmConfig) -> Result<VmHandle, VmError> {
        match self {
            Backend::Qemu(b) => b.start(cfg).await,
            Backend::Libvirt(b) => b.start(cfg).await,
        }
    }
}

/// The QEMU device arguments both backends use (libvirt passes the ones it has no
/// element for through `<qemu:commandline>`): disks, and the management NIC.
/// `slot`: a fixed PCI slot on pcie.0, for libvirt, whose own devices would
/// otherwise collide with these; QEMU alone places them itself.
fn at(slot: Option<u8>) -> String {
    slot.map(|s| format!(",bus=pcie.0,addr={s:#x}")).unwrap_or_default()
}

pub fn disk_args(d: &Disk, slot: Option<u8>) -> Vec<String> {
    let ro = if d.readonly { ",readonly=on" } else { "" };
    // cache=unsafe: the overlay is thrown away with the run, so flushes buy nothing.
    let cache = if d.readonly { "" } else { ",cache=unsafe" };
    let device = match d.bus {
        DiskBus::Nvme => format!("nvme,drive={},serial={}", d.id, d.id),
        DiskBus::Virtio => format!("virtio-blk-pci,drive={}", d.id),
    };
    vec![
        "-drive".into(),
        format!("if=none,id={},file={},format={}{ro}{cache}", d.id, d.path.display(), d.format),
        "-device".into(),
        device + &at(slot),
    ]
}

/// User-mode networking with `restrict=on`: the guest cannot reach anything through
/// it; the only traffic is the forwarded SSH port on 127.0.0.1.
pub fn mgmt_nic_args(cfg: &VmConfig, slot: Option<u8>) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("user,id=mgmt,restrict=on,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:{}-{}:22", cfg.ssh_port, cfg.mgmt_guest_ip),
        "-device".into(),
        format!("virtio-net-pci,netdev=mgmt,mac={}{}", cfg.mgmt_mac, at(slot)),
    ]
}

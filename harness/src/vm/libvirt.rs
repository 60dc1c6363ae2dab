//! libvirt through the `virt` crate, so that VMs can run on another hypervisor
//! host (`--connect URI`). The domain XML is built from a typed model
//! ([`DomainXml`]), serialized with escaping, never pasted from strings.
//!
//! libvirt 9 has no element for an emulated NVMe disk nor for user-mode
//! networking with a restricted host forward, so those devices go through
//! `<qemu:commandline>` with the same arguments the QEMU backend uses.

use super::{disk_args, mgmt_nic_args, BootSource, Hypervisor, VmConfig, VmError, VmHandle};
use crate::accel::{Accel, CPU_MODEL};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

pub struct LibvirtBackend {
    uri: String,
}

/// One XML element. Text and attribute values are escaped on output.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: Option<String>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn new(name: &str) -> Element {
        Element { name: name.into(), attrs: vec![], text: None, children: vec![] }
    }
    pub fn attr(mut self, k: &str, v: impl Into<String>) -> Element {
        self.attrs.push((k.into(), v.into()));
        self
    }
    pub fn text(mut self, t: impl Into<String>) -> Element {
        self.text = Some(t.into());
        self
    }
    pub fn child(mut self, c: Element) -> Element {
        self.children.push(c);
        self
    }
    pub fn children(mut self, cs: impl IntoIterator<Item = Element>) -> Element {
        self.children.extend(cs);
        self
    }

    pub fn write(&self, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        out.push_str(&format!("{pad}<{}", self.name));
        for (k, v) in &self.attrs {
            out.push_str(&format!(" {k}=\"{}\"", escape(v)));
        }
        match (&self.text, self.children.is_empty()) {
            (None, true) => out.push_str("/>\n"),
            (Some(t), true) => out.push_str(&format!(">{}</{}>\n", escape(t), self.name)),
            (_, false) => {
                out.push_str(">\n");
                for c in &self.children {
                    c.write(out, depth + 1);
                }
                out.push_str(&format!("{pad}</{}>\n", self.name));
            }
        }
    }
}

/// A UUID made from a domain name (its SHA-256, shaped as a UUID).
pub fn uuid_of(name: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// The domain, as a typed model of what the harness needs.
#[derive(Debug, Clone)]
pub struct DomainXml {
    pub name: String,
    /// Derived from the name: libvirt restores a saved domain only under the name
    /// and UUID it was saved with, so both follow from the prepared state's key.
    pub uuid: String,
    pub kvm: bool,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub boot: BootSource,
    pub console_log: String,
    pub data_tap: String,
    pub data_mac: String,
    /// Arguments for devices libvirt has no element for.
    pub qemu_args: Vec<String>,
}

impl DomainXml {
    pub fn from_config(cfg: &VmConfig) -> DomainXml {
        // Slots 0x10 and up of pcie.0: libvirt fills slot 1 (root ports) and 0x1f.
        let mut qemu_args = Vec::new();
        let mut slot = 0x10u8;
        for d in &cfg.disks {
            qemu_args.extend(disk_args(d, Some(slot)));
            slot += 1;
        }
        qemu_args.extend(mgmt_nic_args(cfg, Some(slot)));
        DomainXml {
            name: cfg.name.clone(),
            uuid: uuid_of(&cfg.name),
            kvm: cfg.accel == Accel::Kvm,
            memory_mib: cfg.memory_mib,
            vcpus: cfg.cpus,
            boot: cfg.boot.clone(),
            console_log: cfg.console_log.display().to_string(),
            data_tap: cfg.data_tap.clone(),
            data_mac: cfg.data_mac.clone(),
            qemu_args,
        }
    }

    pub fn to_element(&self) -> Element {
        let mut os = Element::new("os").child(Element::new("type").attr("arch", "x86_64").attr("machine", "q35").text("hvm"));
        if let BootSource::Direct { kernel, initrd, cmdline } = &self.boot {
            os = os.child(Element::new("kernel").text(kernel.display().to_string()));
            if let Some(i) = initrd {
                os = os.child(Element::new("initrd").text(i.display().to_string()));
            }
            os = os.child(Element::new("cmdline").text(cmdline.clone()));
        }
        let devices = Element::new("devices")
            .child(Element::new("emulator").text(format!("/usr/bin/{}", crate::accel::QEMU)))
            .child(
                Element::new("interface")
                    .attr("type", "ethernet")
                    .child(Element::new("mac").attr("address", self.data_mac.clone()))
                    // managed='no': the harness made the tap and moves it into its namespace.
                    .child(Element::new("target").attr("dev", self.data_tap.clone()).attr("managed", "no"))
                    .child(Element::new("model").attr("type", "virtio")),
            )
            .child(
                Element::new("serial")
                    .attr("type", "file")
                    .child(Element::new("source").attr("path", self.console_log.clone()))
                    .child(Element::new("target").attr("port", "0")),
            )
            .child(Element::new("memballoon").attr("model", "none"));
        Element::new("domain")
            .attr("type", if self.kvm { "kvm" } else { "qemu" })
            .attr("xmlns:qemu", "http://libvirt.org/schemas/domain/qemu/1.0")
            .child(Element::new("name").text(self.name.clone()))
            .child(Element::new("uuid").text(self.uuid.clone()))
            .child(Element::new("memory").attr("unit", "MiB").text(self.memory_mib.to_string()))
            .child(Element::new("vcpu").text(self.vcpus.to_string()))
            .child(os)
            .child(Element::new("features").child(Element::new("acpi")))
            .child(
                Element::new("cpu")
                    .attr("mode", "custom")
                    .attr("match", "exact")
                    .child(Element::new("model").attr("fallback", "allow").text(CPU_MODEL)),
            )
            .child(Element::new("on_poweroff").text("destroy"))
            .child(Element::new("on_reboot").text("destroy"))
            .child(Element::new("on_crash").text("destroy"))
            .child(devices)
            .child(
                Element::new("qemu:commandline").children(self.qemu_args.iter().map(|a| Element::new("qemu:arg").attr("value", a.clone()))),
            )
    }

    pub fn to_xml(&self) -> String {
        let mut s = String::new();
        self.to_element().write(&mut s, 0);
        s
    }
}

fn libvirt_err(uri: &str, e: impl std::fmt::Display, fix: &str) -> VirtErrorParts {
    VirtErrorParts { uri: uri.into(), detail: e.to_string(), fix: fix.into() }
}

struct VirtErrorParts {
    uri: String,
    detail: String,
    fix: String,
}

impl From<VirtErrorParts> for VmError {
    fn from(p: VirtErrorParts) -> VmError {
        VmError::Libvirt { uri: p.uri, detail: p.detail, fix: p.fix }
    }
}

const DAEMON_FIX: &str = "start libvirt: `virtlogd -d && libvirtd -d` (no systemd) or `systemctl start libvirtd`; or use --backend qemu";

impl LibvirtBackend {
    pub fn new(uri: &str) -> LibvirtBackend {
        // libvirt prints every error to stderr by default; the harness reports them itself.
        virt::error::clear_error_callback();
        LibvirtBackend { uri: uri.into() }
    }

    /// Does the daemon answer?
    pub async fn ping(&self) -> Result<(), VmError> {
        let uri = self.uri.clone();
        tokio::task::spawn_blocking(move || -> Result<(), VmError> {
            let mut c = Connect::open(Some(&uri)).map_err(|e| libvirt_err(&uri, e, DAEMON_FIX))?;
            let _ = c.close();
            Ok(())
        })
        .await
        .map_err(|e| VmError::Libvirt { uri: self.uri.clone(), detail: e.to_string(), fix: DAEMON_FIX.into() })?
    }
}

impl Hypervisor for LibvirtBackend {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    async fn start(&self, cfg: &VmConfig) -> Result<VmHandle, VmError> {
        let xml = DomainXml::from_config(cfg).to_xml();
        let path = cfg.run_dir.join("domain.xml");
        std::fs::write(&path, &xml).map_err(|source| VmError::Io { path: path.clone(), source })?;
        let uri = self.uri.clone();
        let name = cfg.name.clone();
        let incoming = cfg.incoming.clone();
        tokio::task::spawn_blocking(move || -> Result<VmHandle, VmError> {
            // Restored with this run's own files, tap and port; running at once.
            if let Some(state) = &incoming {
                restore(&uri, state, &path)?;
                return Ok(VmHandle::Libvirt { uri, domain: name });
            }
            let mut conn = Connect::open(Some(&uri)).map_err(|e| libvirt_err(&uri, e, DAEMON_FIX))?;
            // A transient domain: it disappears when destroyed, nothing stays defined.
            let result = Domain::create_xml(&conn, &xml, 0);
            let _ = conn.close();
            result.map_err(|e| libvirt_err(&uri, e, &format!("the domain XML is in {}", path.display())))?;
            Ok(VmHandle::Libvirt { uri, domain: name })
        })
        .await
        .map_err(|e| VmError::Libvirt { uri: self.uri.clone(), detail: e.to_string(), fix: "report this".into() })?
    }
}

pub fn stop(uri: &str, domain: &str) -> Result<(), VmError> {
    virt::error::clear_error_callback();
    let mut conn = Connect::open(Some(uri)).map_err(|e| libvirt_err(uri, e, DAEMON_FIX))?;
    if let Ok(d) = Domain::lookup_by_name(&conn, domain) {
        if d.is_active().unwrap_or(false) {
            d.destroy().map_err(|e| libvirt_err(uri, e, &format!("virsh -c {uri} destroy {domain}")))?;
        }
    }
    let _ = conn.close();
    Ok(())
}

/// Save a running domain's memory and devices to `to` (libvirt's save image); the
/// domain stops. Synchronous.
pub fn save(uri: &str, domain: &str, to: &std::path::Path) -> Result<(), VmError> {
    virt::error::clear_error_callback();
    let mut conn = Connect::open(Some(uri)).map_err(|e| libvirt_err(uri, e, DAEMON_FIX))?;
    let result = Domain::lookup_by_name(&conn, domain).and_then(|d| {
        let path = std::ffi::CString::new(to.display().to_string()).expect("a path without NUL");
        // virt 0.4 wraps restore but not save: the C call, on a domain pointer the
        // crate owns for the duration of the call.
        let ret = unsafe { sys::virDomainSaveFlags(d.as_ptr(), path.as_ptr(), std::ptr::null(), 0) };
        if ret == -1 {
            Err(virt::error::Error::last_error())
        } else {
            Ok(())
        }
    });
    let _ = conn.close();
    result.map_err(|e| libvirt_err(uri, e, &format!("virsh -c {uri} save {domain} FILE")).into())
}

/// Restore a domain saved by [`save`] with the domain XML in `xml_path` (the same
/// name, UUID and devices; other files, tap and port allowed), running.
/// Synchronous.
pub fn restore(uri: &str, from: &std::path::Path, xml_path: &std::path::Path) -> Result<(), VmError> {
    let xml = std::fs::read_to_string(xml_path).map_err(|source| VmError::Io { path: xml_path.into(), source })?;
    virt::error::clear_error_callback();
    let mut conn = Connect::open(Some(uri)).map_err(|e| libvirt_err(uri, e, DAEMON_FIX))?;
    let result = Domain::domain_restore_flags(&conn, &from.display().to_string(), Some(&xml), sys::VIR_DOMAIN_SAVE_RUNNING);
    let _ = conn.close();
    let fix = format!("virsh -c {uri} restore {} --xml {}", from.display(), xml_path.display());
    result.map_err(|e| libvirt_err(uri, e, &fix).into())
}

pub fn is_running(uri: &str, domain: &str) -> bool {
    virt::error::clear_error_callback();
    let Ok(mut conn) = Connect::open(Some(uri)) else { return false };
    let up = Domain::lookup_by_name(&conn, domain).ok().and_then(|d| d.is_active().ok()).unwrap_or(false);
    let _ = conn.close();
    up
}

/// Domains whose names start with `dh-` (the harness's).
pub fn harness_domains(uri: &str) -> Vec<String> {
    virt::error::clear_error_callback();
    let Ok(mut conn) = Connect::open(Some(uri)) else { return vec![] };
    let names = conn
        .list_all_domains(0)
        .map(|ds| ds.iter().filter_map(|d| d.get_name().ok()).filter(|n| n.starts_with("dh-")).collect())
        .unwrap_or_default();
    let _ = conn.close();
    names
}

//! The boot pipeline of one run: plan -> render -> image -> overlay -> seed ->
//! cloud-edge namespace and tap -> VM -> SSH -> cloud-init done. Each phase is
//! timed from the start of the boot; a failure says what was expected, what was
//! seen, and where the logs are (the serial console from its first byte).

use crate::accel::{self, AccelChoice, AccelDecision};
use crate::image::{self, BootMethod, Image};
use crate::keys::RunKeys;
use crate::progress::Progress;
use crate::render::{Nics, Rendered, Renderer};
use crate::run::{self, Run};
use crate::scenario::Plan;
use crate::seed::{IsoSeed, SeedBuilder};
use crate::ssh::{self, Ssh};
use crate::vm::{Backend, BackendChoice, BootSource, Disk, Hypervisor, VmConfig, VmHandle};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Accel(#[from] accel::AccelError),
    #[error(transparent)]
    Seed(#[from] crate::seed::SeedError),
    #[error(transparent)]
    Vm(#[from] crate::vm::VmError),
    #[error(transparent)]
    Run(#[from] run::RunError),
    #[error("{what}: expected {expected}, saw {seen}\n--- last console lines ---\n{console_tail}\n--- whole console log: {console} (run directory {run_dir})")]
    Guest { what: String, expected: String, seen: String, console_tail: String, console: PathBuf, run_dir: PathBuf },
    #[error(transparent)]
    Netplane(#[from] crate::netplane::NetplaneError),
    #[error("interrupted; everything the run created was removed")]
    Interrupted,
}

impl BootError {
    pub fn is_bad_input(&self) -> bool {
        match self {
            BootError::Render(e) => e.is_bad_input(),
            BootError::Image(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BootOptions {
    pub backend: BackendChoice,
    pub accel: AccelChoice,
    pub connect: String,
    pub images_dir: Option<PathBuf>,
    pub templates: Option<PathBuf>,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            backend: BackendChoice::Auto,
            accel: AccelChoice::Auto,
            connect: "qemu:///system".into(),
            images_dir: None,
            templates: None,
        }
    }
}

/// Seconds from the start of the boot (the call of [`boot`], image already cached)
/// at which each phase ended: prepared (overlay, seed), vm_started, ssh_ready (the
/// first successful SSH command), cloud_init_done.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub phases: Vec<(String, f64)>,
}

impl Timings {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.phases.iter().find(|(n, _)| n == name).map(|(_, t)| *t)
    }
}

/// Whether a boot may start from, or be saved as, a prepared state.
#[derive(Debug, Clone)]
pub enum Warm {
    Off,
    /// With what decided the state besides the image, the accelerator and QEMU.
    On {
        inputs: serde_json::Value,
    },
}

/// How the VM came to be.
#[derive(Debug, Clone)]
pub enum Start {
    /// Booted, and not to be saved.
    Cold,
    /// Booted so that its state can be saved (QMP, migratable devices) under `key`.
    Saveable { key: String, inputs: serde_json::Value, via: crate::prepared::SaveVia, seed: PathBuf, client_private_key: String },
    /// Restored from a prepared state.
    Restored(Box<crate::prepared::Entry>),
}

pub struct Booted {
    pub start: Start,
    pub ssh: Ssh,
    pub accel: AccelDecision,
    pub backend: &'static str,
    pub image: Image,
    pub rendered: Rendered,
    pub timings: Timings,
}

/// The last `n` lines of the console log.
pub fn console_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Write a private key, readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?.write_all(text.as_bytes())
}

static IMAGE_BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static ACCEL_SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether runs of `plan` can restore and save prepared states: its image says
/// how to boot a VM that is to be saved (both backends can save one).
pub fn warm_capable(plan: &Plan, opts: &BootOptions) -> bool {
    let recipes = image::recipes_dir(opts.images_dir.as_deref());
    let Ok(recipe) = image::load_recipe(recipes.as_deref(), &plan.vm.image) else { return false };
    recipe.file.boot.warm.is_some()
}

/// Boot the scenario's VM for `run` and wait until SSH works and cloud-init is done.
pub async fn boot(plan: &Plan, opts: &BootOptions, warm: &Warm, run: &mut Run, progress: &Progress) -> Result<Booted, BootError> {
    let start = Instant::now();
    let mut timings = Timings::default();
    let timings_path = run.path("timings.json");
    let mark = |name: &str, timings: &mut Timings| {
        timings.phases.push((name.into(), start.elapsed().as_secs_f64()));
        let _ = std::fs::write(&timings_path, serde_json::to_vec_pretty(&timings.phases).expect("serializable"));
    };

    run.record.scenario = plan.name.clone();

    // The image (built once, then taken from the cache).
    let recipe = image::load_recipe(image::recipes_dir(opts.images_dir.as_deref()).as_deref(), &plan.vm.image)?;
    let cache = image::cache_root();
    // One build at a time: VM groups that run at once (`--jobs`) may want the same
    // image, and the second finds it built by the first.
    let _building = IMAGE_BUILD.lock().await;
    let image = match image::cached(&recipe, &cache) {
        Some(i) => i,
        None => {
            progress.phase(&format!("image {} is not in the cache: building it (once)", recipe.name));
            let r = recipe.clone();
            let c = cache.clone();
            let p = Progress::new(false);
            tokio::task::spawn_blocking(move || image::ensure(&r, &c, &p))
                .await
                .map_err(|e| run::RunError::Command { what: "image build".into(), detail: e.to_string() })??
        }
    };
    drop(_building);
    run.record.image = Some(format!("{}-{}", image.name, image.hash));
    let accel = accel::decide(opts.accel, image.kernel.as_deref()).await?;
    // Once per process: with a VM per scenario the same sentence would repeat.
    if !ACCEL_SAID.swap(true, std::sync::atomic::Ordering::SeqCst) {
        progress.phase(&accel.reason);
    } else {
        progress.detail(&accel.reason);
    }
    run.record.accel = Some(accel.accel.as_str().into());
    // A warm run needs an image that says how to boot a VM to be saved.
    let warm_boot = match (warm, &image.boot.warm) {
        (Warm::On { inputs }, Some(w)) => Some((inputs, w.clone())),
        (Warm::On { .. }, None) => {
            progress.detail(&format!("image {} has no [boot.warm]: a cold run", image.name));
            None
        }
        (Warm::Off, _) => None,
    };
    // Warm runs take QEMU unless libvirt was asked for: QEMU restores one state in
    // several VMs at once, libvirt only under the name it was saved with.
    let backend = match (&warm_boot, opts.backend) {
        (Some(_), BackendChoice::Auto) => Backend::Qemu(crate::vm::qemu::QemuBackend),
        _ => Backend::choose(opts.backend, &opts.connect).await?,
    };
    let libvirt = matches!(backend, Backend::Libvirt(_));
    let warm_key = match &warm_boot {
        Some((inputs, w)) => {
            let all = serde_json::json!({
                "inputs": inputs, "image": format!("{}-{}", image.name, image.hash), "accel": accel.accel.as_str(),
                "qemu": crate::accel::qemu_version(), "machine": "q35", "cpu": crate::accel::CPU_MODEL, "boot": w,
                "backend": backend.name(),
            });
            Some((crate::prepared::key(&all), all))
        }
        None => None,
    };
    let entry = match &warm_key {
        Some((key, _)) => match crate::prepared::lookup(key) {
            Ok(e) => e,
            Err(why) => {
                progress.phase(&why);
                None
            }
        },
        None => None,
    };

    // Keys: this run's own, or those of the saved guest, whose host key is pinned.
    let keys = match &entry {
        Some(e) => RunKeys::from_saved(&e.meta.client_private_key, &e.meta.host_public_key)?,
        None => RunKeys::generate()?,
    };
    let rendered = Renderer::new(opts.templates.as_deref())?.render(plan, &format!("dh-{}", run.id), &keys)?;
    rendered.write(&run.path("rendered"))?;
    let key_path = run.path("id_ed25519");
    write_private(&key_path, &keys.client_private).map_err(|source| run::RunError::Io { path: key_path.clone(), source })?;
    run.record.host_public_key = keys.host_public.clone();

    let overlay = run.path("disk.qcow2");
    let seed = match &entry {
        Some(e) => {
            image::overlay_on(&e.disk(), &overlay)?;
            let seed = run.path("seed.iso");
            std::fs::copy(e.seed(), &seed).map_err(|source| run::RunError::Io { path: seed.clone(), source })?;
            seed
        }
        None => {
            image::overlay(&image, &overlay, plan.vm.disk_gib)?;
            IsoSeed.build(&rendered, &run.dir)?
        }
    };
    mark("prepared", &mut timings);

    // The cloud edge: a namespace holding the guest's gateway on its data-plane tap.
    let edge = run::edge_netns(&run.id);
    let tap = run::data_tap(&run.id);
    run.add_netns(&edge)?;
    run.add_tap(&tap)?;

    let nics = Nics::default();
    let port = free_port().map_err(|source| run::RunError::Io { path: "127.0.0.1:0".into(), source })?;
    run.record.ssh_port = Some(port);
    // A VM to be saved (or restored) boots the way its image says for warm runs.
    let (bus, initrd, cmdline) = match &warm_boot {
        Some((_, w)) => (w.disk_bus, w.initrd.then(|| image.dir.join("initrd.img")), w.cmdline.clone()),
        None => (image.boot.disk_bus, image.initrd.clone(), image.boot.cmdline.clone()),
    };
    let boot = match image.boot.method {
        BootMethod::Direct => BootSource::Direct {
            kernel: image.kernel.clone().ok_or_else(|| image::ImageError::BadRecipe {
                path: image.dir.display().to_string(),
                message: "direct boot without a kernel".into(),
            })?,
            initrd,
            // The hostname on the kernel command line: free, where cloud-init's
            // set_hostname costs seconds under TCG.
            cmdline: format!("{cmdline} systemd.hostname={}", plan.world.hostname),
        },
        BootMethod::Firmware => BootSource::Firmware,
    };
    let qmp_socket = warm_key.as_ref().filter(|_| !libvirt).map(|_| run.path("qmp.sock"));
    // libvirt restores a domain only under the name it was saved with: the state's.
    let name = match &warm_key {
        Some((key, _)) if libvirt => format!("dh-s{}", &key[..12]),
        _ => run::vm_name(&run.id),
    };
    let cfg = VmConfig {
        name,
        memory_mib: plan.vm.memory_mib,
        cpus: plan.vm.cpus,
        accel: accel.accel,
        boot,
        disks: vec![
            Disk { id: "root".into(), path: overlay, format: "qcow2".into(), bus, readonly: false },
            Disk { id: "seed".into(), path: seed.clone(), format: "raw".into(), bus, readonly: true },
        ],
        data_tap: tap.clone(),
        data_mac: nics.data_mac.clone(),
        mgmt_mac: nics.mgmt_mac.clone(),
        ssh_port: port,
        mgmt_guest_ip: nics.mgmt_address.split('/').next().unwrap_or("10.0.2.15").into(),
        console_log: run.path("console.log"),
        run_dir: run.dir.clone(),
        qmp_socket: qmp_socket.clone(),
        incoming: entry.as_ref().map(|e| e.state()),
    };
    // Recorded before the start, so that a kill in between still leaves a trace for gc.
    let vm_start = Instant::now();
    let handle = backend.start(&cfg).await?;
    run.record.vm = Some(handle.clone());
    run.set_status("booting");
    mark("vm_started", &mut timings);
    progress.phase(&format!(
        "VM {} started ({}, {}); console: {}",
        cfg.name,
        backend.name(),
        accel.accel.as_str(),
        cfg.console_log.display()
    ));

    // QEMU has the tap open: move it into the edge namespace and give it the gateway address.
    crate::netplane::attach_tap(plan, run).await?;

    let factor = accel.accel.timeout_factor();
    run.save()?;
    let target = run.ssh_target().expect("the SSH port was recorded above");
    let console = cfg.console_log.clone();
    let h = handle.clone();
    let console_for_check = console.clone();
    let alive = move || -> Result<(), String> {
        let tail = console_tail(&console_for_check, 40);
        if tail.contains("Kernel panic") {
            return Err("the guest kernel panicked".into());
        }
        if !h.is_running() {
            return Err("the VM process exited".into());
        }
        Ok(())
    };
    let guest_err = |what: &str, expected: &str, seen: String| BootError::Guest {
        what: what.into(),
        expected: expected.into(),
        seen,
        console_tail: console_tail(&console, 25),
        console: console.clone(),
        run_dir: run.dir.clone(),
    };
    if let (Some(_), Some(q)) = (&entry, &qmp_socket) {
        crate::prepared::resume_restored(q).await.map_err(|e| guest_err("restore", "the saved state to load and run", e.to_string()))?;
    }
    let ssh_deadline = Duration::from_secs(30 * u64::from(factor));
    let ssh = match Ssh::connect(target, ssh_deadline, alive).await {
        Ok(s) => s,
        Err(e) => {
            return Err(guest_err("SSH", &format!("sshd answering on 127.0.0.1:{port} within {} s", ssh_deadline.as_secs()), e.to_string()))
        }
    };
    // ssh_ready: the first successful command.
    let _ = ssh.exec("true", Duration::from_secs(30)).await.map_err(|e| guest_err("SSH", "a first command to run", e.to_string()))?;
    mark("ssh_ready", &mut timings);
    progress.phase(&format!("SSH ready ({:.1} s after the VM started)", vm_start.elapsed().as_secs_f64()));

    let start = match (entry, warm_key) {
        (Some(e), _) => {
            set_clock(&ssh).await.map_err(|seen| guest_err("restore", "the guest's clock to be set", seen))?;
            mark("restored", &mut timings);
            progress.phase(&format!(
                "restored prepared state {} ({:.1} s after the VM started)",
                e.meta.key,
                vm_start.elapsed().as_secs_f64()
            ));
            Start::Restored(Box::new(e))
        }
        (None, warm_key) => {
            let ci_timeout = Duration::from_secs(60 * u64::from(factor));
            let status =
                ssh::wait_cloud_init(&ssh, ci_timeout).await.map_err(|e| guest_err("cloud-init", "cloud-init to finish", e.to_string()))?;
            if !status.done {
                return Err(guest_err("cloud-init", "status: done", status.detail));
            }
            mark("cloud_init_done", &mut timings);
            progress.phase(&format!("cloud-init done ({:.1} s after the VM started)", vm_start.elapsed().as_secs_f64()));
            match warm_key {
                Some((key, inputs)) => {
                    let via = match &handle {
                        VmHandle::Libvirt { uri, domain } => crate::prepared::SaveVia::Libvirt { uri: uri.clone(), domain: domain.clone() },
                        VmHandle::Qemu { .. } => crate::prepared::SaveVia::Qmp(run.path("qmp.sock")),
                    };
                    Start::Saveable { key, inputs, via, seed, client_private_key: keys.client_private.clone() }
                }
                None => Start::Cold,
            }
        }
    };
    run.set_status("up");
    Ok(Booted { start, ssh, accel, backend: backend.name(), image, rendered, timings })
}

/// Set the guest's clock, which stopped when its state was saved.
async fn set_clock(ssh: &Ssh) -> Result<(), String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let set =
        crate::exec::Executor::run(ssh, &crate::exec::Cmd::new(["date", "-s", &format!("@{now}")]).timeout(Duration::from_secs(30))).await;
    match set {
        Ok(o) if o.status == 0 => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

/// After libvirt saved a run's domain (which stops it): restore it from `state`
/// with the run's own domain XML, its tap back in the cloud edge, SSH connected
/// again, the clock set. The run goes on as before.
pub async fn resume_after_libvirt_save(plan: &Plan, run: &Run, uri: &str, state: &Path, ssh: &Ssh) -> Result<(), BootError> {
    let guest_err = |what: &str, seen: String| BootError::Guest {
        what: "resume after saving".into(),
        expected: what.into(),
        seen,
        console_tail: console_tail(&run.path("console.log"), 25),
        console: run.path("console.log"),
        run_dir: run.dir.clone(),
    };
    // libvirt opens the tap by name in its own namespace.
    crate::netplane::detach_tap(run).await?;
    let (uri, state, xml) = (uri.to_owned(), state.to_owned(), run.path("domain.xml"));
    tokio::task::spawn_blocking(move || crate::vm::libvirt::restore(&uri, &state, &xml))
        .await
        .map_err(|e| guest_err("libvirt to restore the domain", e.to_string()))??;
    crate::netplane::attach_tap(plan, run).await?;
    ssh.reconnect(Duration::from_secs(120)).await.map_err(|e| guest_err("SSH to answer again", e.to_string()))?;
    set_clock(ssh).await.map_err(|seen| guest_err("the guest's clock to be set", seen))
}

/// Removes a run's resources when dropped (panics included), unless disarmed.
/// It re-reads the run's record from disk, so it sees every resource recorded.
pub struct TeardownGuard {
    pub id: String,
    pub armed: bool,
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(mut run) = Run::open(&self.id) {
                for p in run.teardown() {
                    eprintln!("teardown: {p}");
                }
            }
        }
    }
}

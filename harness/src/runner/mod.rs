//! Runner: the scenarios of one VM group end to end. Boot, the network plane and
//! the cloud's early start happen here, once per VM; the scenarios' own stages are
//! in [`steps`], against executors only. The guest's state is collected before
//! teardown, which happens on every path out unless `keep` says the VM stays.

mod state;
pub mod steps;

pub use state::{normalize_state, snapshot_text, write_sections};
pub use steps::{run_scenarios, ScenarioResult, Vm};

use crate::boot::{self, BootError, BootOptions, TeardownGuard};
use crate::cloud::{self, CloudError};
use crate::exec::{Cmd, ExecError, Executor, HostNetns};
use crate::netplane::{self, NetplaneError};
use crate::progress::Progress;
use crate::render::{RenderError, Renderer};
use crate::run::{self, Run, RunError};
use crate::scenario::{CloudKind, Plan};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Netplane(#[from] NetplaneError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("host recipe verify failed:\n{0}")]
    Recipe(String),
    #[error("run {run}: {what}")]
    Diagnose { run: String, what: String },
    #[error("host reboot: {0}")]
    Reboot(String),
}

impl RunnerError {
    /// Bad input (a template, a recipe, a value of local.conf): retrying cannot help.
    pub fn is_bad_input(&self) -> bool {
        match self {
            RunnerError::Render(_) => true,
            RunnerError::Cloud(e) => e.is_bad_input(),
            RunnerError::Boot(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

/// When a run's VM stays up after the run, for `harness ssh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Leave it up when a check failed or the infrastructure did.
    OnFailure,
    Always,
    #[default]
    Never,
}

/// What the harness looks at beyond the checks' outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Diagnostics {
    /// Collect the guest's diagnostics (journals, configs, every table: `state/`)
    /// before teardown in every case; else only when a check failed, the
    /// infrastructure did, or the VM stays up. (The normalized state each snapshot
    /// compares is collected in every case.)
    pub always: bool,
    /// Trace every check's packet ([`crate::trace`]); else only those of checks
    /// that failed or expect no answer.
    pub trace_all: bool,
}

/// Scenarios that can share one VM: the same image, VM, world, local.conf and cloud,
/// and host recipes that differ only in their rules (ip_forward, FORWARD,
/// MASQUERADE), which are reverted and re-applied between them.
pub fn share_key(plan: &Plan, kind: CloudKind) -> String {
    serde_json::json!({
        "vm": plan.vm, "world": plan.world, "devstack": plan.devstack,
        "local_conf": plan.user_local_conf.as_ref().map(|(_, t)| t),
        "lo": plan.host_recipe.lo_public_ip, "bridge": plan.host_recipe.bridge, "cloud": kind.as_str(),
        // Not the security group: the neutron cloud puts each scenario's in force
        // through its API (`Cloud::scenario`).
        "instance_host": plan.instance_host,
        // A reboot leaves a VM as no other scenario expects it: its own group.
        "reboots": plan.checks.iter().any(|c| c.host_reboot).then(|| plan.name.clone()),
    })
    .to_string()
}

/// Group `plans` by [`share_key`], keeping the order of first appearance.
pub fn groups(plans: &[Plan], kind: impl Fn(&Plan) -> CloudKind) -> Vec<Vec<&Plan>> {
    let mut out: Vec<(String, Vec<&Plan>)> = Vec::new();
    for p in plans {
        let key = share_key(p, kind(p));
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(p),
            None => out.push((key, vec![p])),
        }
    }
    out.into_iter().map(|(_, g)| g).collect()
}

/// Collect the guest's state into the run's `state/` directory (before teardown).
async fn collect_diagnostics(guest: &dyn Executor, run: &Run) -> Result<(), ExecError> {
    let out = guest.run(&Cmd::new(["bash", steps::COLLECT_DIAGNOSTICS]).timeout(Duration::from_secs(120))).await?;
    write_sections(&out.stdout, &run.path("state"));
    Ok(())
}

/// Run scenarios that share one VM (see [`groups`]) in one VM: boot and build the
/// cloud once, then for each scenario start from exactly the state it declares.
/// `warm`: restore the group's prepared state, or save it (see [`run_vm`]).
pub async fn run_group(
    plans: &[&Plan],
    cloud_kind: CloudKind,
    opts: &BootOptions,
    progress: &Progress,
    keep: Keep,
    warm: bool,
) -> Result<Vec<ScenarioResult>, RunnerError> {
    let renderer = Renderer::new(opts.templates.as_deref())?;
    let inputs = if warm { Some(warm_inputs(plans[0], cloud_kind, &renderer)?) } else { None };
    run_vm(plans, cloud_kind, opts, progress, keep, Diagnostics::default(), inputs.as_ref()).await
}

/// Run `plans` in one VM. `warm`: the inputs of the prepared state of their VM
/// group ([`warm_inputs`] of the group's first scenario, which need not be
/// `plans[0]`): the VM is restored from that state when the cache has it, else
/// booted, prepared and saved as it.
pub async fn run_vm(
    plans: &[&Plan],
    cloud_kind: CloudKind,
    opts: &BootOptions,
    progress: &Progress,
    keep: Keep,
    diagnostics: Diagnostics,
    warm: Option<&serde_json::Value>,
) -> Result<Vec<ScenarioResult>, RunnerError> {
    let renderer = Renderer::new(opts.templates.as_deref())?;
    let mut run = Run::create(&plans[0].name)?;
    let mut guard = TeardownGuard { id: run.id.clone(), armed: true };
    let mut guest = None;
    let result = run_group_in(plans, cloud_kind, opts, &renderer, progress, warm, diagnostics.trace_all, &mut run, &mut guest).await;
    let failed = result.as_ref().map_or(true, |rs| rs.iter().any(|r| !r.passed));
    let kept = keep == Keep::Always || (keep == Keep::OnFailure && failed);
    // About 2 s under TCG: worth it when somebody will look.
    if let Some(ssh) = guest.as_ref().filter(|_| failed || kept || diagnostics.always) {
        match collect_diagnostics(ssh, &run).await {
            Ok(()) => progress.detail(&format!("the guest's state is in {}", run.path("state").display())),
            Err(e) => progress.phase(&format!("could not collect the guest's state: {e}")),
        }
    }
    if kept {
        guard.armed = false;
        run.record.keep = true;
        let _ = run.save();
        progress.phase(&format!("run {} stays up: harness ssh {0}; harness down {0}", run.id));
    }
    result
}

/// Everything that decides a VM group's prepared state besides the image, the
/// accelerator and QEMU (which `boot` adds): the harness and its code that builds
/// states, the group's shared settings, the first scenario's host recipe, the
/// local.conf, templates, scripts.
pub fn warm_inputs(first: &Plan, kind: CloudKind, renderer: &Renderer) -> Result<serde_json::Value, RenderError> {
    let local_conf = renderer.local_conf(first)?;
    // What the harness's Rust derives from the local.conf (the Neutron files, the
    // host steps' values, the initial networks) is built into the state too.
    let derived = crate::localconf::plan::neutron(&crate::localconf::parse(&local_conf), &first.world);
    Ok(serde_json::json!({
        "derived": derived,
        "harness": env!("CARGO_PKG_VERSION"),
        // The code that builds a state (harness/build.rs).
        "code": env!("HARNESS_STATE_CODE"),
        "group": share_key(first, kind),
        "host_recipe": renderer.host_recipe(first)?,
        "local_conf": local_conf,
        "templates": renderer.digest_for(kind),
        "scripts": crate::scripts::digest(),
    }))
}

/// How a VM group's VM came to be, in each of its results.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct StartInfo {
    /// `cold` (booted and built), `saved` (booted, built, then saved as `key`) or
    /// `restored` (from the prepared state `key`).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn run_group_in(
    plans: &[&Plan],
    cloud_kind: CloudKind,
    opts: &BootOptions,
    renderer: &Renderer,
    progress: &Progress,
    warm: Option<&serde_json::Value>,
    trace_all: bool,
    run: &mut Run,
    guest_out: &mut Option<crate::ssh::Ssh>,
) -> Result<Vec<ScenarioResult>, RunnerError> {
    let first = plans[0];
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    progress.phase(&format!("{}: run {} ({})", names.join(", "), run.id, run.dir.display()));
    let cloud = cloud::for_kind(cloud_kind);

    // The host recipe a prepared state was built with (its group's first scenario's).
    let state_recipe = warm.and_then(|w| w["host_recipe"].as_str()).map(str::to_owned);
    let warm = match warm {
        Some(inputs) => boot::Warm::On { inputs: inputs.clone() },
        None => boot::Warm::Off,
    };
    let t = Instant::now();
    let booted = boot::boot(first, opts, &warm, run, progress).await?;
    let boot_s = t.elapsed().as_secs_f64();
    *guest_out = Some(booted.ssh.clone());
    let guest = &booted.ssh;
    cloud.start_early(guest).await?;
    steps::install_scripts(guest).await?;

    let t = Instant::now();
    netplane::build(first, plans, run).await?;
    if cloud.needs().uplink {
        netplane::uplink(first, run, false).await?;
    }
    let netplane_s = t.elapsed().as_secs_f64();

    let internet = HostNetns::new(&run::internet_netns(&run.id));
    let edge = HostNetns::new(&run::edge_netns(&run.id));
    let vm = Vm {
        guest,
        internet: &internet,
        edge: &edge,
        internet_probe: run.path("probe.py"),
        trace: steps::TraceAt {
            all: trace_all,
            host_script: run.path("trace-counters.sh"),
            edge_tap: run::data_tap(&run.id),
            edge_veth: netplane::edge_veth(&run.id),
            internet_veth: netplane::inet_veth(&run.id),
        },
        cloud: &*cloud,
        renderer,
        local_conf: &booted.rendered.local_conf,
        run_id: &run.id,
        run_dir: &run.dir,
        progress,
        accel: booted.accel.accel.as_str().into(),
        backend: booted.backend.into(),
        boot_s,
        netplane_s,
    };
    let (prepared, start) = match &booted.start {
        boot::Start::Cold => (None, StartInfo { kind: "cold", key: None }),
        boot::Start::Restored(e) => {
            let t = Instant::now();
            cloud.resumed(&vm.site(first)).await?;
            (
                Some(steps::Prepared {
                    deployed: e.meta.deployed.clone(),
                    host_recipe_s: 0.0,
                    cloud_s: t.elapsed().as_secs_f64(),
                    recipe: state_recipe.clone().unwrap_or_default(),
                }),
                StartInfo { kind: "restored", key: Some(e.meta.key.clone()) },
            )
        }
        boot::Start::Saveable { key, inputs, via, seed, client_private_key } => {
            let p = steps::prepare(first, &vm).await?;
            let t = Instant::now();
            // The page cache is memory the state would carry for nothing (a
            // neutron guest's state halves).
            guest.run(&Cmd::new(["sync"]).timeout(Duration::from_secs(60))).await?;
            guest.run(&Cmd::new(["sysctl", "-qw", "vm.drop_caches=3"]).timeout(Duration::from_secs(60))).await?;
            let saved = crate::prepared::save(crate::prepared::SaveInput {
                key,
                via,
                overlay: &run.path("disk.qcow2"),
                seed,
                guest_id: &run.id,
                client_private_key: client_private_key.clone(),
                host_public_key: run.record.host_public_key.clone(),
                deployed: p.deployed.clone(),
                scenario: &first.name,
                inputs: inputs.clone(),
            })
            .await;
            // libvirt's save stopped the domain: the run goes on in it restored.
            if let (crate::prepared::SaveVia::Libvirt { uri, .. }, Ok(e)) = (via, &saved) {
                boot::resume_after_libvirt_save(first, run, uri, &e.state(), guest).await?;
            }
            match saved {
                Ok(e) => {
                    // The cache stays within its size: least recently used states go first.
                    for k in crate::prepared::prune(crate::prepared::max_bytes()) {
                        progress.detail(&format!("removed prepared state {k} (cache size limit)"));
                    }
                    progress.phase(&format!(
                        "saved prepared state {key} ({:.0} MB) in {:.1} s: the next run of this group restores it",
                        e.bytes() as f64 / 1e6,
                        t.elapsed().as_secs_f64()
                    ));
                    (Some(p), StartInfo { kind: "saved", key: Some(key.clone()) })
                }
                // The run goes on cold; the next one tries again.
                Err(err) => {
                    progress.phase(&format!("could not save the prepared state: {err}"));
                    (Some(p), StartInfo { kind: "cold", key: None })
                }
            }
        }
    };
    let mut results = run_scenarios(plans, &vm, prepared).await?;
    for r in &mut results {
        r.start = start.clone();
    }
    Ok(results)
}

/// Trace again, in a kept run's VM, the checks of the scenario it is in (all, or
/// those whose name contains `only`), for a person iterating on a fix: `harness
/// diagnose`. The VM is as the run and the person left it.
pub async fn diagnose(run: &Run, only: Option<&str>) -> Result<Vec<(String, Option<crate::checks::Trace>)>, RunnerError> {
    let bad = |what: String| RunnerError::Diagnose { run: run.id.clone(), what };
    let path = run.path(steps::IN_FORCE);
    let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("{}: {e} (did its checks start?)", path.display())))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let file = v["scenario"].as_str().map(std::path::PathBuf::from).ok_or_else(|| bad(format!("{}: no scenario", path.display())))?;
    let plan = crate::scenario::load(&file).map_err(|e| bad(format!("the scenario it ran: {e}")))?;
    let d: crate::cloud::Deployed = serde_json::from_value(v["deployed"].clone()).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let target = run.ssh_target().ok_or_else(|| bad("its VM has no SSH port: is it up? (harness ps)".into()))?;
    let guest = crate::ssh::Ssh::connect(target, Duration::from_secs(10), || Ok(())).await.map_err(ExecError::from)?;
    steps::install_scripts(&guest).await?;
    let (internet, edge) = (HostNetns::new(&run::internet_netns(&run.id)), HostNetns::new(&run::edge_netns(&run.id)));
    let internet_probe = run.path("probe.py").display().to_string();
    let probes = crate::checks::Probes { guest: &guest, internet: &internet, internet_probe: &internet_probe };
    let host_script = run.path("trace-counters.sh").display().to_string();
    let at = crate::trace::Places {
        guest: &guest,
        edge: &edge,
        internet: &internet,
        host_script: &host_script,
        edge_tap: run::data_tap(&run.id),
        edge_veth: netplane::edge_veth(&run.id),
        internet_veth: netplane::inet_veth(&run.id),
    };
    let chosen: Vec<_> = plan.checks.iter().filter(|c| only.is_none_or(|o| c.name.contains(o))).collect();
    if chosen.is_empty() {
        let names: Vec<&str> = plan.checks.iter().map(|c| c.name.as_str()).collect();
        return Err(bad(format!(
            "scenario {} has no check named like {:?}; its checks: {}",
            plan.name,
            only.unwrap_or(""),
            names.join("; ")
        )));
    }
    let mut out = vec![];
    for c in chosen {
        out.push((c.name.clone(), crate::trace::trace(c, &plan, &d, &probes, &at).await));
    }
    Ok(out)
}

//! One scenario end to end: boot, network plane, host recipe (apply, verify), cloud
//! build, port forwards, checks, the guest's state, then teardown on every path
//! out. The result is what `harness run` prints and what the snapshots record.

use crate::boot::{self, BootError, BootOptions, TeardownGuard};
use crate::checks::{self, CheckResult};
use crate::cloud::{self, CloudError, CloudValues};
use crate::netplane;
use crate::progress::Progress;
use crate::run::{Run, RunError};
use crate::scenario::{CloudAction, CloudKind, Endpoint, Plan};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    #[error("host recipe verify failed:\n{0}")]
    Recipe(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub cloud: String,
    pub image: String,
    pub accel: String,
    pub backend: String,
    pub passed: bool,
    pub checks: Vec<CheckResult>,
    /// Set when this scenario ran in the VM booted for another scenario (named
    /// here), after being reset to the state it declares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_vm: Option<String>,
    pub timings: BTreeMap<String, f64>,
    /// The scenario file, for annotations that point at its checks.
    pub file: std::path::PathBuf,
    pub run_id: String,
    /// Rendered files, console log, timings, step logs and the guest's `state/`.
    pub run_dir: std::path::PathBuf,
    /// How many times the run was made: more than 1 when the infrastructure failed
    /// before (`--retries`), which makes the result flaky.
    pub attempts: u32,
    /// Passed or failed its checks only after an infrastructure failure.
    pub flaky: bool,
    /// The comparison with the stored snapshot, when `harness run` made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<crate::snapshot::SnapshotOutcome>,
    /// The guest's addresses, routes, OVS bridges and ports and iptables rules,
    /// normalized so that two runs of one scenario compare equal.
    #[serde(skip)]
    pub state: String,
}

/// Drop what changes run to run: iptables comments and counters, ids, MACs.
pub fn normalize_state(raw: &str, run_id: &str, v: &CloudValues) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        if line.starts_with("# Generated") || line.starts_with("# Completed") {
            continue;
        }
        let mut l = line.to_owned();
        if l.starts_with(':') {
            l = l.split(" [").next().unwrap_or(&l).to_owned();
        }
        for (id, tag) in
            [(&v.router_id, "<router-id>"), (&v.gw_port_id, "<gw-port>"), (&v.int_port_id, "<int-port>"), (&v.vm_port_id, "<vm-port>")]
        {
            l = l.replace(id.as_str(), tag);
        }
        l = l.replace(run_id, "<run>");
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

/// Scenarios that can share one VM: the same image, VM, world, local.conf and cloud,
/// and host recipes that differ only in their rules (ip_forward, FORWARD,
/// MASQUERADE), which are reverted and re-applied between them.
fn share_key(plan: &Plan, kind: CloudKind) -> String {
    serde_json::json!({
        "vm": plan.vm, "world": plan.world, "devstack": plan.devstack,
        "local_conf": plan.user_local_conf.as_ref().map(|(_, t)| t),
        "lo": plan.host_recipe.lo_public_ip, "bridge": plan.host_recipe.bridge, "cloud": kind.as_str(),
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

fn recipe_path(i: usize) -> String {
    format!("/usr/local/sbin/harness-host-recipe-{i}")
}

/// When a run's VM stays up after the run (`--keep`), for `harness ssh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Keep {
    /// Leave it up when a check failed or the infrastructure did.
    OnFailure,
    Always,
    #[default]
    Never,
}

/// Split the guest's diagnostics ("=== FILE ===" sections) into files under `dir`.
fn write_sections(text: &str, dir: &std::path::Path) {
    let mut current: Option<(std::path::PathBuf, String)> = None;
    let flush = |c: &mut Option<(std::path::PathBuf, String)>| {
        if let Some((path, body)) = c.take() {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(path, body);
        }
    };
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("=== ").and_then(|l| l.strip_suffix(" ===")) {
            flush(&mut current);
            // Names come from the guest: no way out of `dir`.
            let safe: std::path::PathBuf = name.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..").collect();
            current = Some((dir.join(safe), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&mut current);
}

/// Collect the guest's state into the run's `state/` directory (before teardown).
async fn collect_diagnostics(ssh: &crate::ssh::Ssh, run: &Run) -> Result<(), crate::ssh::SshError> {
    let out = ssh.exec(netplane::script("collect-diagnostics.sh"), Duration::from_secs(120)).await?;
    write_sections(&out.stdout, &run.path("state"));
    Ok(())
}

/// Run scenarios that share one VM (see [`groups`]): boot and build the cloud once,
/// then for each scenario start from exactly the state it declares. The guest's
/// state is collected into the run directory before teardown, which happens on
/// every path out unless `keep` says the VM stays.
pub async fn run_group(
    plans: &[&Plan],
    cloud_kind: CloudKind,
    opts: &BootOptions,
    progress: &Progress,
    keep: Keep,
) -> Result<Vec<ScenarioResult>, RunnerError> {
    let mut run = Run::create(&plans[0].name)?;
    let mut guard = TeardownGuard { id: run.id.clone(), armed: true };
    let mut ssh = None;
    let result = run_group_in(plans, cloud_kind, opts, progress, &mut run, &mut ssh).await;
    if let Some(ssh) = &ssh {
        match collect_diagnostics(ssh, &run).await {
            Ok(()) => progress.detail(&format!("the guest's state is in {}", run.path("state").display())),
            Err(e) => progress.phase(&format!("could not collect the guest's state: {e}")),
        }
    }
    let failed = result.as_ref().map_or(true, |rs| rs.iter().any(|r| !r.passed));
    if keep == Keep::Always || (keep == Keep::OnFailure && failed) {
        guard.armed = false;
        run.record.keep = true;
        let _ = run.save();
        progress.phase(&format!("run {} stays up: harness ssh {0}; harness down {0}", run.id));
    }
    result
}

async fn run_group_in(
    plans: &[&Plan],
    cloud_kind: CloudKind,
    opts: &BootOptions,
    progress: &Progress,
    run: &mut Run,
    ssh_out: &mut Option<crate::ssh::Ssh>,
) -> Result<Vec<ScenarioResult>, RunnerError> {
    let first = plans[0];
    let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
    progress.phase(&format!("{}: run {} ({})", names.join(", "), run.id, run.dir.display()));

    let t = Instant::now();
    let booted = boot::boot(first, opts, run, progress).await?;
    let boot_s = t.elapsed().as_secs_f64();
    *ssh_out = Some(booted.ssh.clone());
    let ssh = &booted.ssh;
    if cloud_kind == CloudKind::Replica {
        // Open vSwitch takes 15-20 s to start under TCG: start it now, in the
        // background, while the network plane and the host recipe are set up; the
        // replica's build waits for it.
        ssh.exec("systemctl start --no-block openvswitch-switch.service", Duration::from_secs(30)).await?;
    }
    let t = Instant::now();
    netplane::build(first, plans, run)?;
    if cloud_kind == CloudKind::Devstack {
        // DevStack fetches its sources: the edge gets a user-mode uplink (never for the replica).
        netplane::uplink(first, run, false)?;
    }
    let netplane_s = t.elapsed().as_secs_f64();
    checks::install_probe(ssh).await?;
    let mut values = CloudValues::from_local_conf(&booted.rendered.local_conf, first, &run.id, cloud_kind)?;
    let renderer = crate::render::Renderer::new(opts.templates.as_deref())
        .map_err(|e| CloudError::Template("host-recipe.sh".into(), e.to_string()))?;
    let keys = crate::keys::RunKeys::from_seed(0).map_err(|e| CloudError::Template("keys".into(), e.to_string()))?;

    let mut results = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let total = Instant::now();
        let mut timings = BTreeMap::new();
        if i == 0 {
            timings.insert("boot".to_owned(), boot_s);
        }
        let t = Instant::now();
        let recipe =
            renderer.render(plan, &run.id, &keys).map_err(|e| CloudError::Template("host-recipe.sh".into(), e.to_string()))?.host_recipe;
        ssh.upload(recipe.into_bytes(), &recipe_path(i), 0o755).await?;
        if i > 0 {
            // Back to the shared state: the previous scenario's rules and forwards
            // out, its connections forgotten, the floating IP associated.
            let prev = plans[i - 1];
            let mut reset = vec![format!("{} revert-rules", recipe_path(i - 1))];
            reset.extend(forward_rules(prev, &values).iter().map(|r| format!("iptables -w -t nat -D {r}")));
            reset.push("conntrack -F >/dev/null 2>&1; true".into());
            cloud::guest_step(
                ssh,
                "reset between scenarios",
                &format!("set -e; {} 2>&1", reset.join("; ")),
                Duration::from_secs(60),
                &run.path(&format!("reset-{i}.log")),
            )
            .await?;
            cloud::floating_ip(ssh, &values, "fip-associate", &run.path(&format!("reset-{i}-fip.log"))).await?;
        }
        let log = run.path(&format!("host-recipe-{}.log", plan.name));
        let applied =
            cloud::guest_step(ssh, "host recipe apply", &format!("{} apply 2>&1", recipe_path(i)), Duration::from_secs(60), &log).await?;
        let verify = ssh.exec(&format!("{} verify 2>&1", recipe_path(i)), Duration::from_secs(60)).await?;
        let _ = std::fs::write(&log, format!("{applied}{}", verify.stdout));
        if verify.status != 0 {
            return Err(RunnerError::Recipe(verify.stdout));
        }
        timings.insert("host_recipe".to_owned(), t.elapsed().as_secs_f64() + if i == 0 { netplane_s } else { 0.0 });
        progress.phase(&format!("{}: host recipe applied and verified", plan.name));
        progress.detail(&format!("{}: the recipe's output is in {}", plan.name, log.display()));

        let t = Instant::now();
        if i == 0 {
            let site = cloud::Site { ssh, run_dir: &run.dir, run_id: &run.id, templates: opts.templates.as_deref(), progress };
            cloud::build(plan, cloud_kind, &mut values, &site).await?;
            progress.phase(&format!(
                "{}: {} cloud built (floating IP {}, instance {})",
                plan.name,
                cloud_kind.as_str(),
                values.floating_ip,
                values.fixed_ip
            ));
        }
        for r in forward_rules(plan, &values) {
            let out = ssh.exec(&format!("iptables -w -t nat -A {r}"), Duration::from_secs(30)).await?;
            if out.status != 0 {
                return Err(RunnerError::Recipe(format!("port forward `{r}`: {}", out.stderr)));
            }
        }
        timings.insert("cloud".to_owned(), t.elapsed().as_secs_f64());

        let t = Instant::now();
        let mut checks_done = Vec::new();
        for c in &plan.checks {
            if let Some(action) = c.before {
                let verb = match action {
                    CloudAction::FipDisassociate => "fip-disassociate",
                    CloudAction::FipAssociate => "fip-associate",
                };
                cloud::floating_ip(ssh, &values, verb, &run.path(&format!("{verb}.log"))).await?;
            }
            let r = checks::run_check(c, plan, &values, ssh, run).await;
            progress.phase(&format!(
                "{}: {} {}: {:?} ({})",
                plan.name,
                if r.passed { "ok  " } else { "FAIL" },
                r.name,
                r.outcome,
                r.observed.detail.lines().next().unwrap_or("")
            ));
            progress.detail(&format!("{}: {}: observed {}", plan.name, r.name, r.observed.detail));
            checks_done.push(r);
        }
        timings.insert("checks".to_owned(), t.elapsed().as_secs_f64());

        let raw = ssh.exec(netplane::script("collect-state.sh"), Duration::from_secs(60)).await?;
        let _ = std::fs::write(run.path(&format!("state-{}.txt", plan.name)), &raw.stdout);
        let state = normalize_state(&raw.stdout, &run.id, &values);
        timings.insert("total".to_owned(), total.elapsed().as_secs_f64() + if i == 0 { boot_s + netplane_s } else { 0.0 });
        let result = ScenarioResult {
            name: plan.name.clone(),
            cloud: cloud_kind.as_str().into(),
            image: plan.vm.image.clone(),
            accel: booted.accel.accel.as_str().into(),
            backend: booted.backend.into(),
            passed: checks_done.iter().all(|r| r.passed),
            checks: checks_done,
            shared_vm: (i > 0).then(|| first.name.clone()),
            timings,
            file: plan.source.clone(),
            run_id: run.id.clone(),
            run_dir: run.dir.clone(),
            attempts: 1,
            flaky: false,
            snapshot: None,
            state,
        };
        let _ = std::fs::write(run.path(&format!("result-{}.json", plan.name)), serde_json::to_vec_pretty(&result).expect("serializable"));
        // What the snapshot of this scenario compares (snapshots/scenarios/NAME.snap).
        let _ = std::fs::write(run.path(&format!("snapshot-{}.txt", plan.name)), snapshot_text(&result));
        results.push(result);
    }
    Ok(results)
}

/// The guest's DNAT rules for a scenario's `[[forward]]`s (without -A/-D).
fn forward_rules(plan: &Plan, v: &CloudValues) -> Vec<String> {
    plan.forwards
        .iter()
        .map(|f| {
            let to = checks::resolve(&f.to, Endpoint::Host, plan, v);
            format!(
                "PREROUTING -i {} -p {} --dport {} -j DNAT --to-destination {to}:{}",
                plan.world.guest_nic, f.protocol, f.public_port, f.port
            )
        })
        .collect()
}

/// The part of a result that a snapshot records: no timings, ids or machine facts.
pub fn snapshot_text(r: &ScenarioResult) -> String {
    let mut s = format!("scenario: {}\ncloud: {}\nimage: {}\npassed: {}\n\n## checks\n", r.name, r.cloud, r.image, r.passed);
    for c in &r.checks {
        let port = c.port.map(|p| format!(":{p}")).unwrap_or_default();
        s.push_str(&format!(
            "- {} [{:?} from {:?} to {}{port}] expect {:?}, outcome {:?}{} -> {}\n",
            c.name,
            c.kind,
            c.from,
            c.to,
            c.expect,
            c.outcome,
            c.observed.seen_as.as_ref().map(|a| format!(", seen as {a}")).unwrap_or_default(),
            if c.passed { "pass" } else { "FAIL" }
        ));
    }
    s.push_str("\n## guest state\n");
    s.push_str(&r.state);
    s
}

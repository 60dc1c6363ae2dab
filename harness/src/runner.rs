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
use crate::ssh::Ssh;
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
    pub timings: BTreeMap<String, f64>,
    #[serde(skip)]
    pub run_id: String,
    #[serde(skip)]
    pub run_dir: std::path::PathBuf,
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
        for (id, tag) in [(&v.router_id, "<router-id>"), (&v.gw_port_id, "<gw-port>"), (&v.int_port_id, "<int-port>"), (&v.vm_port_id, "<vm-port>")] {
            l = l.replace(id.as_str(), tag);
        }
        l = l.replace(run_id, "<run>");
        out.push_str(l.trim_end());
        out.push('\n');
    }
    out
}

async fn apply_forwards(plan: &Plan, v: &CloudValues, ssh: &Ssh) -> Result<(), RunnerError> {
    for f in &plan.forwards {
        let to = checks::resolve(&f.to, Endpoint::Host, plan, v);
        let nic = &plan.world.guest_nic;
        let cmd = format!(
            "iptables -w -t nat -A PREROUTING -i {nic} -p {p} --dport {pp} -j DNAT --to-destination {to}:{port}",
            p = f.protocol,
            pp = f.public_port,
            port = f.port
        );
        let out = ssh.exec(&cmd, Duration::from_secs(30)).await?;
        if out.status != 0 {
            return Err(RunnerError::Recipe(format!("port forward `{cmd}`: {}", out.stderr)));
        }
    }
    Ok(())
}

pub async fn run_scenario(plan: &Plan, cloud_kind: CloudKind, opts: &BootOptions, progress: &Progress) -> Result<ScenarioResult, RunnerError> {
    let total = Instant::now();
    let mut run = Run::create(&plan.name)?;
    let _guard = TeardownGuard { id: run.id.clone(), armed: true };
    progress.phase(&format!("{}: run {} ({})", plan.name, run.id, run.dir.display()));
    let mut timings = BTreeMap::new();

    let t = Instant::now();
    let booted = boot::boot(plan, opts, &mut run, progress).await?;
    timings.insert("boot".to_owned(), t.elapsed().as_secs_f64());
    let ssh = &booted.ssh;

    let t = Instant::now();
    netplane::build(plan, &mut run)?;
    let applied = cloud::guest_step(ssh, "host recipe apply", "harness-host-recipe apply 2>&1", Duration::from_secs(60), &run.path("host-recipe.log")).await?;
    let verify = ssh.exec("harness-host-recipe verify 2>&1", Duration::from_secs(60)).await?;
    let _ = std::fs::write(run.path("host-recipe.log"), format!("{applied}{}", verify.stdout));
    if verify.status != 0 {
        return Err(RunnerError::Recipe(verify.stdout));
    }
    timings.insert("host_recipe".to_owned(), t.elapsed().as_secs_f64());
    progress.phase(&format!("{}: host recipe applied and verified", plan.name));

    let t = Instant::now();
    let values = CloudValues::from_local_conf(&booted.rendered.local_conf, plan, &run.id)?;
    cloud::build(plan, cloud_kind, &values, ssh, &run.dir, opts.templates.as_deref()).await?;
    apply_forwards(plan, &values, ssh).await?;
    timings.insert("cloud".to_owned(), t.elapsed().as_secs_f64());
    progress.phase(&format!("{}: {} cloud built (floating IP {}, instance {})", plan.name, cloud_kind.as_str(), values.floating_ip, values.fixed_ip));

    let t = Instant::now();
    checks::install_probe(ssh).await?;
    let mut results = Vec::new();
    for c in &plan.checks {
        if let Some(action) = c.before {
            let verb = match action {
                CloudAction::FipDisassociate => "fip-disassociate",
                CloudAction::FipAssociate => "fip-associate",
            };
            if cloud_kind == CloudKind::Replica {
                cloud::guest_step(ssh, verb, &format!("/usr/local/sbin/harness-replica {verb} 2>&1"), Duration::from_secs(60), &run.path(&format!("{verb}.log"))).await?;
            }
        }
        let r = checks::run_check(c, plan, &values, ssh, &run).await;
        progress.phase(&format!("{}: {} {}: {:?} ({})", plan.name, if r.passed { "ok  " } else { "FAIL" }, r.name, r.outcome, r.observed.detail.lines().next().unwrap_or("")));
        results.push(r);
    }
    timings.insert("checks".to_owned(), t.elapsed().as_secs_f64());

    let raw = ssh.exec(netplane::script("collect-state.sh"), Duration::from_secs(60)).await?;
    let _ = std::fs::write(run.path("state.txt"), &raw.stdout);
    let state = normalize_state(&raw.stdout, &run.id, &values);
    timings.insert("total".to_owned(), total.elapsed().as_secs_f64());
    let result = ScenarioResult {
        name: plan.name.clone(),
        cloud: cloud_kind.as_str().into(),
        image: plan.vm.image.clone(),
        accel: booted.accel.accel.as_str().into(),
        backend: booted.backend.into(),
        passed: results.iter().all(|r| r.passed),
        checks: results,
        timings,
        run_id: run.id.clone(),
        run_dir: run.dir.clone(),
        state,
    };
    let _ = std::fs::write(run.path("result.json"), serde_json::to_vec_pretty(&result).expect("serializable"));
    Ok(result)
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

//! The scenarios of one VM group once the VM is up, stage by stage, against
//! executors only (so that a recording fake can stand in for the guest and the
//! internet namespace): reset to the declared state, host recipe (apply, verify),
//! cloud build (once per VM), port forwards, checks, the guest's state.

use super::state::{normalize_state, snapshot_text};
use super::RunnerError;
use crate::checks::{self, CheckResult, Probes};
use crate::cloud::{guest_step, Cloud, Deployed, Site};
use crate::exec::{Cmd, Executor};
use crate::progress::Progress;
use crate::render::Renderer;
use crate::scenario::{Endpoint, Expect, FaultsSpec, Plan};
use crate::scripts::{self, script};
use crate::trace;
use crate::wait::Step;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the harness keeps its state scripts in the guest.
pub const COLLECT_STATE: &str = "/usr/local/share/devstack-harness/collect-state.sh";
/// The run directory's record of the scenario the VM is in and its cloud.
pub const IN_FORCE: &str = "in-force.json";
pub const COLLECT_DIAGNOSTICS: &str = "/usr/local/share/devstack-harness/collect-diagnostics.sh";

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
    pub file: PathBuf,
    pub run_id: String,
    /// Rendered files, console log, timings, step logs and the guest's `state/`.
    pub run_dir: PathBuf,
    /// How many times the run was made: more than 1 when the infrastructure failed
    /// before (`--retries`), which makes the result flaky.
    pub attempts: u32,
    /// Passed or failed its checks only after an infrastructure failure.
    pub flaky: bool,
    /// Booted cold, saved as a prepared state, or restored from one.
    pub start: super::StartInfo,
    /// What the cloud said about itself ([`Deployed::facts`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cloud_facts: BTreeMap<String, serde_json::Value>,
    /// The comparison with the stored snapshot, when `harness run` made one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<crate::snapshot::SnapshotOutcome>,
    /// The guest's addresses, routes, OVS bridges and ports and iptables rules,
    /// normalized so that two runs of one scenario compare equal.
    #[serde(skip)]
    pub state: String,
    /// What the snapshot replaces ([`Deployed::volatile_names`]).
    #[serde(skip)]
    pub volatile_names: Vec<(String, String)>,
}

/// What the scenarios of a group share once the VM is up.
pub struct Vm<'a> {
    pub guest: &'a dyn Executor,
    pub internet: &'a dyn Executor,
    /// The cloud edge's namespace on the host (the trace reads its counters).
    pub edge: &'a dyn Executor,
    /// The probe's path on the host, for checks from the internet namespace.
    pub internet_probe: PathBuf,
    pub trace: TraceAt,
    pub cloud: &'a dyn Cloud,
    pub renderer: &'a Renderer,
    /// The rendered local.conf the cloud builds from.
    pub local_conf: &'a str,
    pub run_id: &'a str,
    pub run_dir: &'a Path,
    pub progress: &'a Progress,
    pub accel: String,
    pub backend: String,
    /// Seconds the first scenario paid before its own stages: boot, network plane.
    pub boot_s: f64,
    pub netplane_s: f64,
}

/// What the trace stage needs besides the executors.
pub struct TraceAt {
    /// Trace every check, not only those that failed or expect no answer.
    pub all: bool,
    /// The counter script's path on the host (for the edge and internet namespaces).
    pub host_script: PathBuf,
    pub edge_tap: String,
    pub edge_veth: String,
    pub internet_veth: String,
}

impl Vm<'_> {
    pub(super) fn site<'s>(&'s self, plan: &'s Plan) -> Site<'s> {
        Site {
            guest: self.guest,
            plan,
            local_conf: self.local_conf,
            run_dir: self.run_dir,
            run_id: self.run_id,
            renderer: self.renderer,
            progress: self.progress,
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.run_dir.join(name)
    }
}

/// Put the state collectors in the guest (the checks install their probe).
pub async fn install_scripts(guest: &dyn Executor) -> Result<(), RunnerError> {
    guest.run(&Cmd::new(["mkdir", "-p", "/usr/local/share/devstack-harness"])).await?;
    guest.upload(script("collect-state.sh").as_bytes(), COLLECT_STATE, 0o644).await?;
    guest.upload(script("collect-diagnostics.sh").as_bytes(), COLLECT_DIAGNOSTICS, 0o644).await?;
    guest.upload(script("trace-counters.sh").as_bytes(), trace::GUEST_SCRIPT, 0o644).await?;
    Ok(())
}

/// The guest's DNAT rules for a scenario's `[[forward]]`s, each the argv of an
/// iptables rule after `-A` or `-D`.
fn forward_rules(plan: &Plan, d: &Deployed) -> Vec<Vec<String>> {
    plan.forwards
        .iter()
        .map(|f| {
            let to = checks::resolve(&f.to, Endpoint::Host, plan, d);
            [
                "PREROUTING",
                "-i",
                &plan.world.guest_nic,
                "-p",
                &f.protocol,
                "--dport",
                &f.public_port.to_string(),
                "-j",
                "DNAT",
                "--to-destination",
                &format!("{to}:{}", f.port),
            ]
            .map(String::from)
            .to_vec()
        })
        .collect()
}

fn iptables_nat(op: &str, rule: &[String]) -> Cmd {
    Cmd::new(["iptables", "-w", "-t", "nat", op]).args(rule.iter().cloned()).timeout(Duration::from_secs(30))
}

/// From a restored state whose recipe (the VM's recipe 0) is not `plan`'s: its
/// rules out, `plan`'s recipe in as recipe 1.
async fn switch_recipe(vm: &Vm<'_>, plan: &Plan) -> Result<(), RunnerError> {
    let log = vm.log(&format!("reset-{}.log", plan.name));
    let recipe = vm.renderer.host_recipe(plan)?;
    vm.guest.upload(recipe.as_bytes(), &scripts::host_recipe(1), 0o755).await?;
    guest_step(vm.guest, "reset to the scenario's host recipe", &Cmd::new([scripts::host_recipe(0), "revert-rules".into()]), &log).await?;
    host_recipe(vm, 1, plan).await
}

/// Back to the shared state after scenario `prev`, whose recipe was the guest's
/// recipe `i-1`: its rules and forwards out, its connections forgotten, the
/// floating IP associated.
async fn reset(vm: &Vm<'_>, i: usize, prev: &Plan, plan: &Plan, d: &Deployed) -> Result<(), RunnerError> {
    let log = vm.log(&format!("reset-{i}.log"));
    guest_step(vm.guest, "reset between scenarios", &Cmd::new([scripts::host_recipe(i - 1), "revert-rules".into()]), &log).await?;
    for rule in forward_rules(prev, d) {
        guest_step(vm.guest, "reset: remove a port forward", &iptables_nat("-D", &rule), &log).await?;
    }
    if prev.faults != FaultsSpec::default() {
        guest_step(vm.guest, "reset: revert the faults", &Cmd::new([scripts::FAULTS, "revert"]), &log).await?;
    }
    // No conntrack tool in the guest is no state to forget.
    vm.guest.run(&Cmd::new(["conntrack", "-F"])).await?;
    // Only when `prev` left it disassociated: through Neutron's API that costs
    // seconds under TCG.
    if left_fip_disassociated(prev) {
        vm.cloud.floating_ip(&vm.site(plan), crate::scenario::CloudAction::FipAssociate).await?;
    }
    Ok(())
}

/// The last floating-IP action of a scenario's checks was a disassociation.
fn left_fip_disassociated(plan: &Plan) -> bool {
    plan.checks.iter().filter_map(|c| c.before).next_back() == Some(crate::scenario::CloudAction::FipDisassociate)
}

/// The scenario's host recipe: apply, then verify (a failed verify ends the group).
async fn host_recipe(vm: &Vm<'_>, i: usize, plan: &Plan) -> Result<(), RunnerError> {
    let path = scripts::host_recipe(i);
    let log = vm.log(&format!("host-recipe-{}.log", plan.name));
    let applied = guest_step(vm.guest, "host recipe apply", &Cmd::new([path.as_str(), "apply"]), &log).await?;
    let verify = vm.guest.run(&Cmd::new([path.as_str(), "verify"])).await?;
    let _ = std::fs::write(&log, format!("{applied}{}", verify.text()));
    if verify.status != 0 {
        return Err(RunnerError::Recipe(verify.text()));
    }
    Ok(())
}

/// Reboot the guest as a host reboots (`before = "host_reboot"`): what DevStack
/// and the recipe set at run time is gone, OVS's database stays; the cloud starts
/// again what a host's services start at boot. The seconds it took.
async fn reboot(vm: &Vm<'_>, plan: &Plan) -> Result<f64, RunnerError> {
    let t = Instant::now();
    let boot_id = || Cmd::new(["cat", "/proc/sys/kernel/random/boot_id"]).timeout(Duration::from_secs(30));
    let before = vm.guest.run(&boot_id()).await?.stdout;
    vm.progress.phase(&format!("{}: rebooting the guest", plan.name));
    // The reboot cuts the connection under the command: its error is the expected end.
    let _ = vm.guest.run(&Cmd::new(["systemctl", "reboot"]).timeout(Duration::from_secs(20))).await;
    // Until a new boot answers (the old sshd may still take a connection for a while).
    let deadline = Instant::now() + REBOOT_DEADLINE;
    let before = &before;
    crate::wait::until("the guest to come back from its reboot (a new boot_id)", REBOOT_DEADLINE, Duration::from_secs(3), || async {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = vm.guest.reconnect(left).await {
            return Step::NotYet(format!("no SSH yet: {e}"));
        }
        match vm.guest.run(&boot_id()).await {
            Ok(o) if o.status == 0 && o.stdout != *before => Step::Done(()),
            Ok(o) if o.status == 0 => Step::NotYet("the old boot still answers".into()),
            Ok(o) => Step::NotYet(o.text()),
            Err(e) => Step::NotYet(e.to_string()),
        }
    })
    .await
    .map_err(|e| RunnerError::Reboot(format!("{e}; its console is in {}", vm.log("console.log").display())))?;
    // Boot done (its units started, the persisted recipe's among them), whatever state it ends in.
    let _ = vm.guest.run(&Cmd::new(["systemctl", "is-system-running", "--wait"]).timeout(Duration::from_secs(180))).await;
    vm.cloud.after_reboot(&vm.site(plan)).await?;
    vm.progress.phase(&format!("{}: the guest rebooted ({:.1} s)", plan.name, t.elapsed().as_secs_f64()));
    Ok(t.elapsed().as_secs_f64())
}

/// How long a guest may take to reboot under TCG (a cold boot to SSH is about a minute).
const REBOOT_DEADLINE: Duration = Duration::from_secs(300);

/// Switch on the scenario's faults, if it has any.
async fn faults(vm: &Vm<'_>, plan: &Plan) -> Result<(), RunnerError> {
    if plan.faults == FaultsSpec::default() {
        return Ok(());
    }
    vm.guest.upload(vm.renderer.faults(plan)?.as_bytes(), scripts::FAULTS, 0o755).await?;
    let log = vm.log(&format!("faults-{}.log", plan.name));
    guest_step(vm.guest, "switch the scenario's faults on", &Cmd::new([scripts::FAULTS, "apply"]), &log).await?;
    vm.progress.phase(&format!("{}: faults switched on", plan.name));
    Ok(())
}

async fn add_forwards(vm: &Vm<'_>, plan: &Plan, d: &Deployed) -> Result<(), RunnerError> {
    for rule in forward_rules(plan, d) {
        let out = vm.guest.run(&iptables_nat("-A", &rule)).await?;
        if out.status != 0 {
            return Err(RunnerError::Recipe(format!("port forward `{}`: {}", crate::exec::quote(&rule), out.stderr)));
        }
    }
    Ok(())
}

async fn run_checks(vm: &Vm<'_>, plan: &Plan, d: &Deployed, probes: &Probes<'_>) -> Result<Vec<CheckResult>, RunnerError> {
    let mut done: Vec<CheckResult> = Vec::new();
    let host_script = vm.trace.host_script.display().to_string();
    let at = trace::Places {
        guest: vm.guest,
        edge: vm.edge,
        internet: vm.internet,
        host_script: &host_script,
        edge_tap: vm.trace.edge_tap.clone(),
        edge_veth: vm.trace.edge_veth.clone(),
        internet_veth: vm.trace.internet_veth.clone(),
    };
    for c in &plan.checks {
        let slowest = done.iter().filter_map(|r| r.answered_s).fold(0.0, f64::max);
        let mut before_took_s = None;
        if let Some(action) = c.before {
            before_took_s = vm.cloud.floating_ip(&vm.site(plan), action).await?;
        }
        if c.host_reboot {
            before_took_s = Some(reboot(vm, plan).await?);
        }
        // A check that expects no answer is traced around its own probe; one that
        // fails unexpectedly, after it; a passing reachable check costs nothing
        // more unless asked.
        let watched = if vm.trace.all || c.expect == Expect::Unreachable { trace::before_probe(c, plan, d, &at).await } else { None };
        let mut r = checks::run_check(c, plan, d, probes, slowest).await;
        r.before_took_s = before_took_s;
        if let Some(before) = watched {
            r.trace = Some(trace::after_probe(c, plan, d, &at, before, &r.observed.detail).await);
        } else if !r.passed {
            r.trace = trace::trace(c, plan, d, probes, &at).await;
        }
        if let Some(died) = r.trace.as_ref().and_then(|t| t.died_at.as_ref()) {
            vm.progress.detail(&format!("{}: {}: {}", plan.name, r.name, died.line()));
        }
        vm.progress.phase(&format!(
            "{}: {} {}: {:?} ({})",
            plan.name,
            if r.passed { "ok  " } else { "FAIL" },
            r.name,
            r.outcome,
            r.observed.detail.lines().next().unwrap_or("")
        ));
        vm.progress.detail(&format!("{}: {}: observed {}", plan.name, r.name, r.observed.detail));
        done.push(r);
    }
    Ok(done)
}

/// The state a VM group starts its scenarios from: the first scenario's host
/// recipe applied and verified, the cloud built. What a prepared state saves.
pub struct Prepared {
    pub deployed: Deployed,
    pub host_recipe_s: f64,
    pub cloud_s: f64,
    /// The host recipe applied (as the VM's recipe 0): a restored state's was its
    /// group's first scenario's, which another scenario may differ from.
    pub recipe: String,
}

/// Apply the first scenario's host recipe and build the cloud.
pub async fn prepare(plan: &Plan, vm: &Vm<'_>) -> Result<Prepared, RunnerError> {
    let t = Instant::now();
    let recipe = vm.renderer.host_recipe(plan)?;
    vm.guest.upload(recipe.as_bytes(), &scripts::host_recipe(0), 0o755).await?;
    host_recipe(vm, 0, plan).await?;
    let host_recipe_s = t.elapsed().as_secs_f64();
    vm.progress.phase(&format!("{}: host recipe applied and verified", plan.name));
    vm.progress.detail(&format!(
        "{}: the recipe's output is in {}",
        plan.name,
        vm.log(&format!("host-recipe-{}.log", plan.name)).display()
    ));
    let t = Instant::now();
    let deployed = vm.cloud.build(&vm.site(plan)).await?;
    vm.progress.phase(&format!(
        "{}: {} cloud built (floating IP {}, instance {})",
        plan.name,
        vm.cloud.kind().as_str(),
        deployed.floating_ip,
        deployed.fixed_ip
    ));
    Ok(Prepared { deployed, host_recipe_s, cloud_s: t.elapsed().as_secs_f64(), recipe })
}

/// Run the scenarios of a group in its VM, each from exactly the state it
/// declares; the cloud is built once, for the first (or was: `prepared`).
pub async fn run_scenarios(plans: &[&Plan], vm: &Vm<'_>, mut prepared: Option<Prepared>) -> Result<Vec<ScenarioResult>, RunnerError> {
    let internet_probe = vm.internet_probe.display().to_string();
    let probes = Probes { guest: vm.guest, internet: vm.internet, internet_probe: &internet_probe };
    checks::install_probe(&probes).await?;
    vm.internet.upload(script("trace-counters.sh").as_bytes(), &vm.trace.host_script.display().to_string(), 0o644).await?;
    let first = plans[0];
    let mut deployed: Option<Deployed> = None;
    // Which of the guest's host recipe scripts is in force.
    let mut recipe_index = 0;
    let mut results = Vec::new();
    for (i, plan) in plans.iter().copied().enumerate() {
        let total = Instant::now();
        let mut timings = BTreeMap::new();
        if i == 0 {
            timings.insert("boot".to_owned(), vm.boot_s);
        }
        // Time spent before this loop (a group's preparation made by the caller).
        let mut before_s = 0.0;
        let (recipe_s, cloud_s) = match &deployed {
            None => {
                let mut p = match prepared.take() {
                    Some(p) => {
                        before_s = p.host_recipe_s + p.cloud_s;
                        p
                    }
                    None => prepare(plan, vm).await?,
                };
                if p.recipe != vm.renderer.host_recipe(plan)? {
                    // Restored from a state its group's first scenario built.
                    let t = Instant::now();
                    switch_recipe(vm, plan).await?;
                    vm.progress.phase(&format!("{}: host recipe applied and verified", plan.name));
                    recipe_index = 1;
                    p.host_recipe_s += t.elapsed().as_secs_f64();
                }
                deployed = Some(p.deployed);
                (p.host_recipe_s + vm.netplane_s, p.cloud_s)
            }
            Some(d) => {
                let t = Instant::now();
                let recipe = vm.renderer.host_recipe(plan)?;
                recipe_index += 1;
                vm.guest.upload(recipe.as_bytes(), &scripts::host_recipe(recipe_index), 0o755).await?;
                reset(vm, recipe_index, plans[i - 1], plan, d).await?;
                host_recipe(vm, recipe_index, plan).await?;
                vm.progress.phase(&format!("{}: host recipe applied and verified", plan.name));
                (t.elapsed().as_secs_f64(), 0.0)
            }
        };
        timings.insert("host_recipe".to_owned(), recipe_s);
        let t = Instant::now();
        let changed = vm.cloud.scenario(&vm.site(plan), deployed.as_mut().expect("prepared above")).await?;
        let cloud_s = cloud_s + changed.map_or(0.0, |_| t.elapsed().as_secs_f64());
        let d = deployed.as_ref().expect("prepared above");
        // What `harness diagnose` traces in a kept VM: the scenario it is in now.
        let source = std::fs::canonicalize(&plan.source).unwrap_or_else(|_| plan.source.clone());
        let in_force = serde_json::json!({ "scenario": source, "deployed": d });
        let _ = std::fs::write(vm.log(IN_FORCE), serde_json::to_vec_pretty(&in_force).expect("serializable"));
        let t = Instant::now();
        add_forwards(vm, plan, d).await?;
        faults(vm, plan).await?;
        timings.insert("cloud".to_owned(), cloud_s + t.elapsed().as_secs_f64());

        let t = Instant::now();
        let checks_done = run_checks(vm, plan, d, &probes).await?;
        timings.insert("checks".to_owned(), t.elapsed().as_secs_f64());

        let t = Instant::now();
        let raw = vm.guest.run(&Cmd::new(["bash", COLLECT_STATE])).await?;
        let _ = std::fs::write(vm.log(&format!("state-{}.txt", plan.name)), &raw.stdout);
        let state = normalize_state(&raw.stdout, vm.run_id, d);
        timings.insert("state".to_owned(), t.elapsed().as_secs_f64());
        timings.insert("total".to_owned(), total.elapsed().as_secs_f64() + before_s + if i == 0 { vm.boot_s + vm.netplane_s } else { 0.0 });
        let result = ScenarioResult {
            name: plan.name.clone(),
            cloud: vm.cloud.kind().as_str().into(),
            image: plan.vm.image.clone(),
            accel: vm.accel.clone(),
            backend: vm.backend.clone(),
            passed: checks_done.iter().all(|r| r.passed),
            checks: checks_done,
            shared_vm: (i > 0).then(|| first.name.clone()),
            timings,
            file: plan.source.clone(),
            run_id: vm.run_id.to_owned(),
            run_dir: vm.run_dir.to_owned(),
            attempts: 1,
            flaky: false,
            start: Default::default(),
            cloud_facts: d.facts.clone(),
            snapshot: None,
            state,
            volatile_names: d.volatile_names.clone(),
        };
        let _ = std::fs::write(vm.log(&format!("result-{}.json", plan.name)), serde_json::to_vec_pretty(&result).expect("serializable"));
        // What the snapshot of this scenario compares (snapshots/scenarios/NAME.snap).
        let _ = std::fs::write(vm.log(&format!("snapshot-{}.txt", plan.name)), snapshot_text(&result));
        results.push(result);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    //! The stages against recording fakes: the commands each sends, in order, for
    //! the shipped scenarios, and how each reacts to a failure.
    use super::*;
    use crate::exec::fake::Recorder;
    use crate::scenario::Expect;

    const RUN: &str = "abcd1234";
    const REACHABLE: &str = r#"{"outcome": "reachable", "detail": "seen_as 203.0.113.10"}"#;

    fn shipped() -> Vec<Plan> {
        let paths = crate::suite::toml_files(std::path::Path::new("../scenarios")).expect("scenarios");
        paths.iter().map(|p| crate::scenario::load(p).expect("shipped scenario")).collect()
    }

    struct World {
        guest: Recorder,
        internet: Recorder,
        edge: Recorder,
        renderer: Renderer,
        progress: Progress,
        dir: tempfile::TempDir,
    }

    impl World {
        fn new() -> World {
            let guest = Recorder::new("guest");
            guest.answer("harness-probe", 0, REACHABLE).answer("collect-state.sh", 0, "# addresses\nlo 127.0.0.1/8\n");
            let internet = Recorder::new("internet");
            internet.answer("probe.py", 0, REACHABLE);
            World {
                guest,
                internet,
                edge: Recorder::new("edge"),
                renderer: Renderer::new(None).expect("templates"),
                progress: Progress::new(true),
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        async fn run(&self, plans: &[&Plan]) -> Result<Vec<ScenarioResult>, RunnerError> {
            let local_conf = self.renderer.local_conf(plans[0]).expect("local.conf");
            let cloud = crate::cloud::for_kind(crate::scenario::CloudKind::Replica);
            let vm = Vm {
                guest: &self.guest,
                internet: &self.internet,
                edge: &self.edge,
                internet_probe: PathBuf::from("/run-dir/probe.py"),
                trace: TraceAt {
                    all: false,
                    host_script: PathBuf::from("/run-dir/trace-counters.sh"),
                    edge_tap: "dhabcd1234t0".into(),
                    edge_veth: "dhabcd1234e0".into(),
                    internet_veth: "dhabcd1234i0".into(),
                },
                cloud: &*cloud,
                renderer: &self.renderer,
                local_conf: &local_conf,
                run_id: RUN,
                run_dir: self.dir.path(),
                progress: &self.progress,
                accel: "tcg".into(),
                backend: "qemu".into(),
                boot_s: 1.0,
                netplane_s: 0.5,
            };
            run_scenarios(plans, &vm, None).await
        }
    }

    #[tokio::test]
    async fn shipped_scenarios_send_these_commands_in_this_order() {
        let plans = shipped();
        let groups = super::super::groups(&plans, |p| p.cloud);
        // Own VMs: each that reboots it, each with a local.conf of its own.
        let own = plans.iter().filter(|p| p.checks.iter().any(|c| c.host_reboot) || !p.devstack.values.is_empty()).count();
        assert_eq!(groups.len(), 1 + own, "the shipped scenarios share one VM, but each that reboots it or has its own local.conf");
        assert!(groups[1..].iter().all(|g| g.len() == 1));
        let w = World::new();
        let results = w.run(&groups[0]).await.expect("runs");
        assert_eq!(results.len(), plans.len() - own);
        // Every check saw what the fakes answered; the first scenario paid for the boot.
        assert!(results.iter().flat_map(|r| &r.checks).all(|c| c.outcome == Expect::Reachable), "{results:#?}");
        assert_eq!(results[0].timings["boot"], 1.0);
        assert!(results[1..].iter().all(|r| r.shared_vm.as_deref() == Some(results[0].name.as_str())));
        assert!(w.dir.path().join(format!("result-{}.json", plans[0].name)).exists());
        let transcript = format!("# guest\n{}\n\n# internet\n{}\n", w.guest.transcript().join("\n"), w.internet.transcript().join("\n"));
        insta::with_settings!({snapshot_path => "../../../snapshots/units", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!("runner-shipped-scenarios", transcript);
        });
    }

    #[tokio::test]
    async fn a_failed_verify_ends_the_group_before_the_cloud_is_built() {
        let plans = shipped();
        let w = World::new();
        w.guest.answer("harness-host-recipe-0 verify", 1, "FAIL: no MASQUERADE for 192.168.100.0/24\n");
        let err = w.run(&[&plans[0]]).await.expect_err("verify fails");
        assert!(matches!(&err, RunnerError::Recipe(text) if text.contains("FAIL: no MASQUERADE")), "{err}");
        let sent = w.guest.transcript();
        assert!(sent.last().is_some_and(|l| l.ends_with("harness-host-recipe-0 verify")), "{sent:#?}");
        assert!(!sent.iter().any(|l| l.contains("harness-replica")), "no cloud after a failed recipe: {sent:#?}");
        let log = std::fs::read_to_string(w.dir.path().join(format!("host-recipe-{}.log", plans[0].name))).expect("recipe log");
        assert!(log.contains("FAIL: no MASQUERADE"), "{log}");
    }

    #[tokio::test]
    async fn a_failed_cloud_build_names_its_step_and_log() {
        let plans = shipped();
        let w = World::new();
        w.guest.answer("harness-replica build", 2, "ovs-vsctl: unix:/var/run/openvswitch/db.sock: database connection failed\n");
        let err = w.run(&[&plans[0]]).await.expect_err("build fails");
        let text = err.to_string();
        assert!(text.contains("replica build failed in the guest (exit 2)") && text.contains("database connection failed"), "{text}");
        assert!(text.contains(&w.dir.path().join("cloud.log").display().to_string()), "{text}");
        assert!(!err.is_bad_input(), "a guest step is the infrastructure's");
    }

    #[tokio::test]
    async fn a_probe_that_hangs_or_says_nothing_is_unreachable_and_the_run_goes_on() {
        let plans = shipped();
        let egress = plans.iter().find(|p| p.name == "instance-egress").expect("instance-egress");
        let w = World::new();
        let guest = Recorder::new("guest");
        guest.time_out("harness-probe icmp").answer("harness-probe tcp", 0, "Traceback: boom\n");
        let w = World { guest, ..w };
        let r = w.run(&[egress]).await.expect("the run itself succeeds");
        let details: Vec<&str> = r[0].checks.iter().map(|c| c.observed.detail.as_str()).collect();
        assert!(r[0].checks.iter().all(|c| c.outcome == Expect::Unreachable), "{details:?}");
        assert!(details.contains(&"the probe itself timed out"), "{details:?}");
        assert!(details.iter().any(|d| d.starts_with("the probe printed no result: Traceback: boom")), "{details:?}");
        assert!(!r[0].passed);
    }
}

//! `harness run` as a library call: a [`Request`] in, a [`Summary`] out. Loading
//! and validating every scenario before anything boots, the machine's
//! prerequisites, VM groups and shards, retries of infrastructure failures, an
//! interruption that keeps what finished, and the comparison with snapshots.

use crate::boot::BootOptions;
use crate::error::Error;
use crate::image;
use crate::prereq::{self, Tool};
use crate::progress::Progress;
use crate::report::{InfraFailure, Summary};
use crate::runner::{self, Keep};
use crate::scenario::{self, CloudKind, Plan};
use crate::vm::BackendChoice;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Settings of the command line that win over each scenario's `[vm]`.
#[derive(Debug, Clone, Default)]
pub struct VmOverrides {
    pub image: Option<String>,
    pub memory_mib: Option<u32>,
    pub cpus: Option<u32>,
    pub disk_gib: Option<u32>,
    /// Every scenario builds from this local.conf (`--local-conf`).
    pub local_conf: Option<PathBuf>,
    /// The cloud to build instead of each scenario's (`--cloud`): its VM is fitted
    /// to what that cloud needs.
    pub cloud: Option<CloudKind>,
}

impl VmOverrides {
    pub fn apply(&self, plan: &mut Plan) {
        // The cloud's image and memory, unless the scenario or the command line
        // chose others.
        let needs = crate::cloud::for_kind(self.cloud.unwrap_or(plan.cloud)).needs();
        let default_vm = crate::scenario::VmSpec::default();
        if let Some(image) = needs.image.filter(|_| plan.vm.image == default_vm.image) {
            plan.vm.image = image.into();
        }
        plan.vm.memory_mib = plan.vm.memory_mib.max(needs.memory_mib);
        if let Some(i) = &self.image {
            plan.vm.image.clone_from(i);
        }
        if let Some(m) = self.memory_mib {
            plan.vm.memory_mib = m;
        }
        if let Some(c) = self.cpus {
            plan.vm.cpus = c;
        }
        if let Some(d) = self.disk_gib {
            plan.vm.disk_gib = d;
        }
    }
}

/// Shard `index` of `total` (1-based): whole VM groups, round robin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub total: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("expected I/N such as 1/3, found {s:?}"))?;
        let (index, total): (usize, usize) = (
            i.parse().map_err(|_| format!("expected a number, found {i:?}"))?,
            n.parse().map_err(|_| format!("expected a number, found {n:?}"))?,
        );
        if total == 0 || index == 0 || index > total {
            return Err(format!("expected 1 <= I <= N, found {index}/{total}"));
        }
        Ok(Shard { index, total })
    }
}

/// Which scenarios, and how to run them.
#[derive(Debug, Clone)]
pub struct Request {
    /// Scenario files; none means every `*.toml` of `scenarios/`.
    pub scenarios: Vec<PathBuf>,
    /// Which builds the cloud, instead of what each scenario says.
    pub cloud: Option<CloudKind>,
    pub overrides: VmOverrides,
    pub shard: Option<Shard>,
    /// Reruns of a group whose infrastructure failed.
    pub retries: u32,
    pub keep: Keep,
    /// Where the snapshots are (compared when the directory exists).
    pub snapshots: Option<PathBuf>,
    /// Under CI a scenario without a snapshot fails.
    pub ci: bool,
    /// Restore VM groups from prepared states, and save them (`--no-cache`: off).
    pub warm: bool,
    /// When the guest's diagnostics are collected into `state/`.
    pub diagnostics: runner::Diagnostics,
    /// How many VMs run at once (`--jobs`; None: [`default_jobs`]).
    pub jobs: Option<usize>,
    pub boot: BootOptions,
}

impl Request {
    /// VMs at a time, once [`run`] has settled it.
    fn jobs(&self) -> usize {
        self.jobs.unwrap_or(1)
    }
}

/// The scenario files (`*.toml`) of a directory, sorted.
pub fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(dir)?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    paths.sort();
    Ok(paths)
}

/// The scenario files named, or all of scenarios/.
pub fn scenario_paths(paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, Error> {
    if !paths.is_empty() {
        // A directory stands for its scenario files (`harness run scenarios/neutron`).
        let mut out = Vec::new();
        for p in paths {
            if p.is_dir() {
                out.extend(toml_files(&p).map_err(|e| Error::Input { path: p.clone(), message: e.to_string() })?);
            } else {
                out.push(p);
            }
        }
        return Ok(out);
    }
    let dir = Path::new("scenarios");
    toml_files(dir)
        .map_err(|e| Error::Input { path: dir.into(), message: format!("{e} (name scenario files, or run from the repository)") })
}

/// Every scenario named (or all of scenarios/), validated before anything boots,
/// with the command line's overrides applied.
pub fn load_plans(paths: Vec<PathBuf>, overrides: &VmOverrides) -> Result<Vec<Plan>, Error> {
    scenario_paths(paths)?.iter().map(|p| load_plan(Some(p), overrides)).collect()
}

/// One scenario (the default world when `path` is None), with the command line's
/// overrides applied.
pub fn load_plan(path: Option<&Path>, overrides: &VmOverrides) -> Result<Plan, Error> {
    let mut plan = match path {
        Some(p) => scenario::load(p)?,
        None => scenario::parse(Path::new("default.toml"), "")?,
    };
    overrides.apply(&mut plan);
    if let Some(conf) = &overrides.local_conf {
        plan =
            plan.with_local_conf(conf).map_err(|e| Error::Input { path: conf.clone(), message: format!("cannot read local.conf: {e}") })?;
    }
    Ok(plan)
}

pub fn cloud_of(cloud: Option<CloudKind>, plan: &Plan) -> CloudKind {
    cloud.unwrap_or(plan.cloud)
}

/// The VM groups to run (scenarios that share a VM stay together), this shard's only.
pub fn select(plans: &[Plan], cloud: Option<CloudKind>, shard: Option<Shard>) -> Vec<Vec<&Plan>> {
    let groups = runner::groups(plans, |p| cloud_of(cloud, p));
    match shard {
        Some(s) => groups.into_iter().enumerate().filter(|(k, _)| k % s.total == s.index - 1).map(|(_, g)| g).collect(),
        None => groups,
    }
}

/// Everything that can be known wrong before a VM boots: each plan's image recipe,
/// the templates, and the machine's tools for what `what` is about to do.
pub fn preflight(what: &str, boot: &BootOptions, plans: &[Plan], cloud: Option<CloudKind>) -> Result<(), Error> {
    preflight_with(what, boot, plans, cloud, true)
}

/// [`preflight`]; without `refuse_lint_errors` a local.conf with lint errors
/// runs too (`harness diff` shows what they break; its report holds them).
pub fn preflight_with(what: &str, boot: &BootOptions, plans: &[Plan], cloud: Option<CloudKind>, refuse_lint_errors: bool) -> Result<(), Error> {
    let recipes = image::recipes_dir(boot.images_dir.as_deref());
    let mut needed: Vec<Tool> = prereq::BOOT.to_vec();
    if boot.backend != BackendChoice::Libvirt {
        needed.extend_from_slice(prereq::QEMU);
    }
    for p in plans {
        let recipe = image::load_recipe(recipes.as_deref(), &p.vm.image)
            .map_err(|e| Error::Input { path: p.source.clone(), message: e.to_string() })?;
        if image::cached(&recipe, &image::cache_root()).is_none() && recipe.needs_debootstrap() {
            needed.extend_from_slice(prereq::DEBOOTSTRAP);
        }
        if crate::cloud::for_kind(cloud_of(cloud, p)).needs().uplink {
            needed.extend_from_slice(prereq::UPLINK);
        }
    }
    for p in plans.iter().filter(|p| cloud_of(cloud, p) != CloudKind::Neutron) {
        let what = if p.security_group_rules.is_some() {
            "[[security_group_rule]] needs the neutron cloud (it has no security groups)"
        } else if p.instance_host != 1 {
            "an [[instance]] on host 2 needs the neutron cloud (it has one host)"
        } else {
            continue;
        };
        return Err(Error::Input {
            path: p.source.clone(),
            message: format!(
                "{what}; this is the {} cloud: run it with --cloud neutron or set cloud = \"neutron\"",
                cloud_of(cloud, p).as_str()
            ),
        });
    }
    if refuse_lint_errors {
        let renderer = crate::render::Renderer::new(boot.templates.as_deref())?;
        lint_local_confs(&renderer, plans)?;
    }
    prereq::require(what, &needed)?;
    Ok(())
}


/// Every scenario's local.conf, as the cloud will read it, linted against its
/// world: an error stops the run before anything starts (exit 2).
pub fn lint_local_confs(renderer: &crate::render::Renderer, plans: &[Plan]) -> Result<(), Error> {
    let mut text = String::new();
    for p in plans {
        let conf_text = renderer.local_conf(p)?;
        let conf = crate::localconf::parse(&conf_text);
        let diags = crate::localconf::lint(&conf, &p.world);
        if diags.iter().any(|d| d.severity == crate::localconf::Severity::Error) {
            let name = match &p.user_local_conf {
                Some((path, _)) => path.display().to_string(),
                None => format!("{} (the local.conf rendered for it)", p.source.display()),
            };
            text += &crate::localconf::lint::format_text(&name, &conf, &diags);
        }
    }
    if text.is_empty() {
        Ok(())
    } else {
        Err(Error::Lint { diagnostics: text })
    }
}

/// How many VMs run at once by default: as many as the machine's cores and
/// available memory hold of the largest VM of `plans` (at least one). Under TCG a
/// vCPU is a busy host thread, so a VM wants a core per vCPU.
pub fn default_jobs(plans: &[Plan]) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpus = plans.iter().map(|p| p.vm.cpus as usize).max().unwrap_or(1).max(1);
    // QEMU's own memory beside the guest's.
    let mib = plans.iter().map(|p| p.vm.memory_mib as usize).max().unwrap_or(2048) + 512;
    let available_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("MemAvailable:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok()))
        .map_or(usize::MAX, |kib| kib / 1024);
    (cores / cpus).min(available_mib / mib).max(1)
}

/// Results and failures as the VMs finish, shared by the VMs that run at once.
type Done = std::sync::Mutex<Summary>;

/// Run the selected groups, `req.jobs` VMs at a time. `cancel` ends the run
/// (Ctrl-C): the VMs under way are torn down, what finished is kept, and the rest
/// is reported as not run. Results come in the order of `plans`.
pub async fn run(req: &Request, plans: &[Plan], progress: &Progress, cancel: impl Future<Output = ()>) -> Result<Summary, Error> {
    let started = std::time::Instant::now();
    let req = &Request { jobs: Some(req.jobs.unwrap_or_else(|| default_jobs(plans)).max(1)), ..req.clone() };
    let jobs = req.jobs();
    if jobs > 1 {
        progress.phase(&format!("{jobs} VMs at a time (--jobs)"));
    }
    let groups = select(plans, req.cloud, req.shard);
    let done: Done = Default::default();
    let slots = tokio::sync::Semaphore::new(jobs);
    let work = all(jobs > 1, groups.iter().map(|g| run_group(req, g, &slots, progress, &done)));
    let interrupted = tokio::select! {
        r = work => { r?; false }
        _ = cancel => true,
    };
    let mut summary = done.into_inner().unwrap_or_else(|e| e.into_inner());
    if interrupted {
        summary.interrupted = true;
        for p in groups.iter().flatten() {
            let seen = summary.scenarios.iter().any(|r| r.file == p.source && r.name == p.name)
                || summary.infrastructure_failures.iter().any(|f| f.file == p.source && f.scenario == p.name);
            if !seen {
                summary.infrastructure_failures.push(InfraFailure {
                    scenario: p.name.clone(),
                    file: p.source.clone(),
                    error: Error::Interrupted.to_string(),
                    attempts: 0,
                });
            }
        }
    }
    let order = |file: &Path, name: &str| plans.iter().position(|p| p.source == file && p.name == name).unwrap_or(usize::MAX);
    summary.scenarios.sort_by_key(|r| order(&r.file, &r.name));
    summary.infrastructure_failures.sort_by_key(|f| order(&f.file, &f.scenario));
    summary.seconds = started.elapsed().as_secs_f64();
    if let Some(dir) = req.snapshots.as_ref().filter(|d| d.is_dir()) {
        for r in &mut summary.scenarios {
            let text = runner::snapshot_text(r);
            let outcome = crate::snapshot::compare(dir, &r.name, &r.cloud, &r.file, &text, req.ci)
                .map_err(|source| Error::Io { path: dir.clone(), source })?;
            r.snapshot = Some(outcome);
        }
    }
    Ok(summary)
}

/// One VM group. Cold, its scenarios share one VM (each reset to the state it
/// declares). Warm, the first restores the group's prepared state (or builds and
/// saves it), and every other scenario gets a VM of its own restored from that
/// state: no scenario sees what another left.
async fn run_group(req: &Request, group: &[&Plan], slots: &tokio::sync::Semaphore, progress: &Progress, done: &Done) -> Result<(), Error> {
    let kind = cloud_of(req.cloud, group[0]);
    let inputs = if req.warm && crate::boot::warm_capable(group[0], &req.boot) {
        let renderer = crate::render::Renderer::new(req.boot.templates.as_deref())?;
        Some(runner::warm_inputs(group[0], kind, &renderer)?)
    } else {
        None
    };
    let Some(inputs) = inputs.as_ref().filter(|_| group.len() > 1) else {
        return run_vm(req, group, kind, inputs.as_ref(), slots, progress, done).await;
    };
    run_vm(req, &group[..1], kind, Some(inputs), slots, progress, done).await?;
    let rest = group[1..].iter().map(|p| run_vm(req, std::slice::from_ref(p), kind, Some(inputs), slots, progress, done));
    // libvirt restores a state only under the name it was saved with: one at a time.
    all(req.jobs() > 1 && req.boot.backend != BackendChoice::Libvirt, rest).await
}

/// Every one of `vms`, at once or one after the other; the first error ends all
/// (the others are dropped, which tears their VMs down).
async fn all<F: Future<Output = Result<(), Error>>>(at_once: bool, vms: impl IntoIterator<Item = F>) -> Result<(), Error> {
    if at_once {
        return futures_util::future::try_join_all(vms).await.map(|_| ());
    }
    for vm in vms {
        vm.await?;
    }
    Ok(())
}

/// One VM and its scenarios, retried when the infrastructure failed; holds one
/// of the `slots` while its VM runs.
async fn run_vm(
    req: &Request,
    plans: &[&Plan],
    kind: CloudKind,
    warm: Option<&serde_json::Value>,
    slots: &tokio::sync::Semaphore,
    progress: &Progress,
    done: &Done,
) -> Result<(), Error> {
    let _slot = slots.acquire().await.expect("the semaphore is never closed");
    // Lines of VMs that run at once say whose they are.
    let labelled;
    let progress = if req.jobs() > 1 {
        labelled = progress.labelled(&plans.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(","));
        &labelled
    } else {
        progress
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failed = |error: String| -> Vec<InfraFailure> {
            plans
                .iter()
                .map(|p| InfraFailure { scenario: p.name.clone(), file: p.source.clone(), error: error.clone(), attempts: attempt })
                .collect()
        };
        match runner::run_vm(plans, kind, &req.boot, progress, req.keep, req.diagnostics, warm).await {
            Ok(results) => {
                let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
                d.scenarios.extend(results.into_iter().map(|mut r| {
                    r.attempts = attempt;
                    r.flaky = attempt > 1;
                    r
                }));
                return Ok(());
            }
            // Bad input is the same on every try: the whole command ends, exit 2.
            Err(e) if e.is_bad_input() => return Err(e.into()),
            // Only an infrastructure failure is retried: a check that failed is an answer.
            Err(e) if attempt <= req.retries => {
                progress.phase(&format!("infrastructure failed (attempt {attempt} of {}): {e}; retrying", req.retries + 1));
            }
            Err(e) => {
                progress.phase(&format!("infrastructure failed: {e}"));
                done.lock().unwrap_or_else(|e| e.into_inner()).infrastructure_failures.extend(failed(e.to_string()));
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_keep_groups_whole() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, total: 3 }));
        for bad in ["0/2", "3/2", "1/0", "x/2", "12"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let paths = toml_files(Path::new("../scenarios")).expect("scenarios");
        let plans = load_plans(paths, &VmOverrides { memory_mib: Some(3000), ..Default::default() }).expect("shipped scenarios load");
        assert!(plans.iter().all(|p| p.vm.memory_mib == 3000), "overrides applied");
        let all = select(&plans, None, None);
        let one = select(&plans, None, Some(Shard { index: 1, total: 2 }));
        let two = select(&plans, None, Some(Shard { index: 2, total: 2 }));
        assert_eq!(one.len() + two.len(), all.len(), "every group in exactly one shard");
        assert_eq!(one.iter().chain(&two).map(Vec::len).sum::<usize>(), plans.len());
    }
}

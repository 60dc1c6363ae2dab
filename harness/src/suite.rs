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
    pub boot: BootOptions,
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
    let renderer = crate::render::Renderer::new(boot.templates.as_deref())?;
    lint_local_confs(&renderer, plans)?;
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

/// Run the selected groups. `cancel` ends the run (Ctrl-C): the group under way is
/// torn down, what finished is kept, and the rest is reported as not run.
pub async fn run(req: &Request, plans: &[Plan], progress: &Progress, cancel: impl Future<Output = ()>) -> Result<Summary, Error> {
    let started = std::time::Instant::now();
    let mut summary = Summary::default();
    tokio::pin!(cancel);
    // Scenarios that can share a VM do (each reset to the state it declares; the
    // result says so).
    for group in select(plans, req.cloud, req.shard) {
        let not_run = |error: String, attempts: u32| -> Vec<InfraFailure> {
            group
                .iter()
                .map(|p| InfraFailure { scenario: p.name.clone(), file: p.source.clone(), error: error.clone(), attempts })
                .collect()
        };
        if summary.interrupted {
            summary.infrastructure_failures.extend(not_run("not run: interrupted".into(), 0));
            continue;
        }
        let kind = cloud_of(req.cloud, group[0]);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = tokio::select! {
                r = runner::run_group(&group, kind, &req.boot, progress, req.keep, req.warm) => Some(r),
                _ = &mut cancel => None,
            };
            match r {
                None => {
                    summary.interrupted = true;
                    summary.infrastructure_failures.extend(not_run(Error::Interrupted.to_string(), attempt));
                    break;
                }
                Some(Ok(results)) => {
                    summary.scenarios.extend(results.into_iter().map(|mut r| {
                        r.attempts = attempt;
                        r.flaky = attempt > 1;
                        r
                    }));
                    break;
                }
                // Bad input is the same on every try: the whole command ends, exit 2.
                Some(Err(e)) if e.is_bad_input() => return Err(e.into()),
                // Only an infrastructure failure is retried: a check that failed is an answer.
                Some(Err(e)) if attempt <= req.retries => {
                    progress.phase(&format!("infrastructure failed (attempt {attempt} of {}): {e}; retrying", req.retries + 1));
                }
                Some(Err(e)) => {
                    progress.phase(&format!("infrastructure failed: {e}"));
                    summary.infrastructure_failures.extend(not_run(e.to_string(), attempt));
                    break;
                }
            }
        }
    }
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

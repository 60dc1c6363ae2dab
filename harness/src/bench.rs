//! `harness bench boot`: boot N times and report min, median and max of each
//! phase, timed from the start of each boot (image already cached). Figures are
//! printed, never asserted: this machine's speed drifts during a day.

use crate::boot::{self, BootError, BootOptions, TeardownGuard};
use crate::progress::Progress;
use crate::run::Run;
use crate::scenario::Plan;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Stat {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub runs: usize,
    pub accel: String,
    pub backend: String,
    pub phases: BTreeMap<String, Stat>,
}

impl BenchReport {
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} boots, {} backend, {}\n{:<18} {:>7} {:>7} {:>7}\n",
            self.runs, self.backend, self.accel, "phase (s)", "min", "median", "max"
        );
        let mut phases: Vec<_> = self.phases.iter().collect();
        phases.sort_by(|a, b| a.1.median.total_cmp(&b.1.median));
        for (name, st) in phases {
            s.push_str(&format!("{name:<18} {:>7.1} {:>7.1} {:>7.1}\n", st.min, st.median, st.max));
        }
        s
    }
}

fn stat(mut v: Vec<f64>) -> Stat {
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    Stat { min: v[0], median, max: v[v.len() - 1] }
}

pub async fn boot(plan: &Plan, opts: &BootOptions, runs: usize) -> Result<BenchReport, BootError> {
    let progress = Progress::new(false);
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let (mut accel, mut backend) = (String::new(), String::new());
    for i in 0..runs.max(1) {
        let mut run = Run::create(&format!("bench-{}", plan.name))?;
        let _guard = TeardownGuard { id: run.id.clone(), armed: true };
        progress.phase(&format!("boot {}/{} (run {})", i + 1, runs, run.id));
        let booted = tokio::select! {
            r = boot::boot(plan, opts, &boot::Warm::Off, &mut run, &progress) => r?,
            _ = tokio::signal::ctrl_c() => return Err(BootError::Interrupted),
        };
        accel = booted.accel.accel.as_str().into();
        backend = booted.backend.into();
        for (name, t) in &booted.timings.phases {
            samples.entry(name.clone()).or_default().push(*t);
        }
        // _guard tears the run down here.
    }
    Ok(BenchReport { runs: runs.max(1), accel, backend, phases: samples.into_iter().map(|(k, v)| (k, stat(v))).collect() })
}

/// `harness bench scenario`: a scenario's phases, cold (`--no-cache`: boot and
/// build) and warm (restored from its prepared state, saved by a first run that
/// is not counted), N runs each, with the wall time from the call to its end.
#[derive(Debug, Serialize)]
pub struct ScenarioBench {
    pub scenario: String,
    pub runs: usize,
    pub cold: BTreeMap<String, Stat>,
    pub warm: BTreeMap<String, Stat>,
    /// What the prepared state takes in the cache.
    pub state_bytes: u64,
}

impl ScenarioBench {
    pub fn text(&self) -> String {
        let mut s = format!("{}: {} runs each; prepared state {:.0} MB\n", self.scenario, self.runs, self.state_bytes as f64 / 1e6);
        s.push_str(&format!("{:<14} {:>7} {:>7} {:>7}   {:>7} {:>7} {:>7}\n", "phase (s)", "cold", "", "", "warm", "", ""));
        s.push_str(&format!("{:<14} {:>7} {:>7} {:>7}   {:>7} {:>7} {:>7}\n", "", "min", "median", "max", "min", "median", "max"));
        let names: std::collections::BTreeSet<&String> = self.cold.keys().chain(self.warm.keys()).collect();
        for n in names {
            let f = |m: &BTreeMap<String, Stat>| {
                m.get(n).map_or_else(
                    || format!("{:>7} {:>7} {:>7}", "-", "-", "-"),
                    |st| format!("{:>7.1} {:>7.1} {:>7.1}", st.min, st.median, st.max),
                )
            };
            s.push_str(&format!("{n:<14} {}   {}\n", f(&self.cold), f(&self.warm)));
        }
        s
    }
}

pub async fn scenario(plan: &Plan, opts: &BootOptions, runs: usize) -> Result<ScenarioBench, crate::runner::RunnerError> {
    use crate::runner::{run_group, Keep};
    let progress = Progress::new(false);
    let kind = plan.cloud;
    let runs = runs.max(1);
    async fn once(
        plan: &Plan,
        kind: crate::scenario::CloudKind,
        opts: &BootOptions,
        progress: &Progress,
        warm: bool,
    ) -> Result<(crate::runner::ScenarioResult, BTreeMap<String, f64>), crate::runner::RunnerError> {
        let t = std::time::Instant::now();
        let results = run_group(&[plan], kind, opts, progress, Keep::Never, warm).await?;
        let r = results.into_iter().next().expect("one scenario, one result");
        let mut timings = r.timings.clone();
        let wall = t.elapsed().as_secs_f64();
        // What the run spent after its result: diagnostics (on failure) and teardown.
        timings.insert("teardown".into(), (wall - timings.get("total").copied().unwrap_or(wall)).max(0.0));
        timings.insert("wall".into(), wall);
        Ok((r, timings))
    }
    let mut cold: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..runs {
        for (k, v) in once(plan, kind, opts, &progress, false).await?.1 {
            cold.entry(k).or_default().push(v);
        }
    }
    // The first warm-capable run saves (or restores an existing state): not counted.
    let (first, _) = once(plan, kind, opts, &progress, true).await?;
    let mut warm: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..runs {
        let (r, t) = once(plan, kind, opts, &progress, true).await?;
        progress.phase(&format!("warm run: {:?}", r.start));
        for (k, v) in t {
            warm.entry(k).or_default().push(v);
        }
    }
    let state_bytes =
        first.start.key.as_deref().and_then(|k| crate::prepared::list().into_iter().find(|e| e.meta.key == k)).map_or(0, |e| e.bytes());
    let stats = |m: BTreeMap<String, Vec<f64>>| m.into_iter().map(|(k, v)| (k, stat(v))).collect();
    Ok(ScenarioBench { scenario: plan.name.clone(), runs, cold: stats(cold), warm: stats(warm), state_bytes })
}

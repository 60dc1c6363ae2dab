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

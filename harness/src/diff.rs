//! `harness diff OLD NEW`: what a local.conf change does. The same scenarios run
//! once with each local.conf; the report holds the lint diagnostics added or
//! gone, each check whose outcome or death changed, and the lines of the guest's
//! normalized datapath state (addresses, routes, bridges, ports, rules) that
//! differ. A check that passed with OLD and fails with NEW is a regression: exit 1.

use crate::localconf::{self, Diagnostic, Severity};
use crate::progress::Progress;
use crate::report::{exit, Summary};
use crate::runner::ScenarioResult;
use crate::suite::{self, Request, VmOverrides};
use crate::world::World;
use crate::Error;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A local.conf as the diff's user named it: a file, or `REV:PATH` in the git
/// repository of the current directory (`main:devstack/local.conf`).
#[derive(Debug, Clone)]
pub struct Conf {
    pub label: String,
    pub text: String,
}

/// Read `spec`: a file when one is there, else `git show REV:PATH`.
pub fn read_conf(spec: &str) -> Result<Conf, Error> {
    let path = Path::new(spec);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        return Ok(Conf { label: spec.to_owned(), text });
    }
    let Some((rev, file)) = spec.split_once(':').filter(|(r, f)| !r.is_empty() && !f.is_empty()) else {
        return Err(Error::Input {
            path: path.into(),
            message: "no such file (a git revision's file is written REV:PATH, such as main:devstack/local.conf)".into(),
        });
    };
    let out = std::process::Command::new("git").args(["show", &format!("{rev}:{file}")]).output().map_err(|e| Error::Input {
        path: path.into(),
        message: format!("no such file, and git (to read it as REV:PATH) cannot run: {e}"),
    })?;
    if !out.status.success() {
        return Err(Error::Input {
            path: path.into(),
            message: format!(
                "neither a file nor a git revision's file: `git show {rev}:{file}` says {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(Conf { label: spec.to_owned(), text: String::from_utf8_lossy(&out.stdout).into_owned() })
}

/// One side of a check: its outcome and, where the trace ran, where it died.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Side {
    pub outcome: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub died_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckDiff {
    pub check: String,
    /// None: the check did not run on that side (its scenario's VM failed).
    pub old: Option<Side>,
    pub new: Option<Side>,
    /// Passed with OLD, fails with NEW.
    pub regression: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioDiff {
    pub scenario: String,
    /// Every check, changed or not (`changed` in each).
    pub checks: Vec<CheckDiff>,
    /// The normalized state's lines only OLD has (`-`) and only NEW has (`+`).
    pub state: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub old: String,
    pub new: String,
    /// Diagnostics only NEW has, and only OLD had, as `harness lint` words them.
    pub lint_added: Vec<String>,
    pub lint_gone: Vec<String>,
    pub scenarios: Vec<ScenarioDiff>,
    /// Scenarios whose infrastructure failed on a side: `OLD|NEW scenario: error`.
    pub not_run: Vec<String>,
}

/// A diagnostic without its line (lines move between two files).
fn diag_key(d: &Diagnostic) -> String {
    let sev = if d.severity == Severity::Error { "error" } else { "warning" };
    format!("{sev}[{}]: {}", d.rule, d.message)
}

/// Lint each local.conf against each world the scenarios run in.
pub fn lint_keys(text: &str, worlds: &[World]) -> BTreeSet<String> {
    let conf = localconf::parse(text);
    worlds.iter().flat_map(|w| localconf::lint(&conf, w)).map(|d| diag_key(&d)).collect()
}

fn side(r: &ScenarioResult, check: &str) -> Option<Side> {
    r.checks.iter().find(|c| c.name == check).map(|c| Side {
        outcome: format!("{:?}", c.outcome).to_lowercase(),
        passed: c.passed,
        died_at: c.trace.as_ref().and_then(|t| t.died_at.as_ref()).map(|d| d.line()),
    })
}

impl Report {
    pub fn compare(old: &Conf, new: &Conf, worlds: &[World], old_run: &Summary, new_run: &Summary) -> Report {
        let (lo, ln) = (lint_keys(&old.text, worlds), lint_keys(&new.text, worlds));
        let mut scenarios = Vec::new();
        let names: Vec<&str> = old_run.scenarios.iter().chain(&new_run.scenarios).map(|r| r.name.as_str()).collect();
        let mut seen = BTreeSet::new();
        for name in names.into_iter().filter(|n| seen.insert(*n)) {
            let (o, n) =
                (old_run.scenarios.iter().find(|r| r.name == name), new_run.scenarios.iter().find(|r| r.name == name));
            let mut checks = Vec::new();
            let mut check_names: Vec<&str> = o.iter().chain(n.iter()).flat_map(|r| r.checks.iter().map(|c| c.name.as_str())).collect();
            let mut dup = BTreeSet::new();
            check_names.retain(|c| dup.insert(*c));
            for c in check_names {
                let (os, ns) = (o.and_then(|r| side(r, c)), n.and_then(|r| side(r, c)));
                let regression = os.as_ref().is_some_and(|s| s.passed) && ns.as_ref().is_some_and(|s| !s.passed);
                checks.push(CheckDiff { check: c.to_owned(), old: os, new: ns, regression });
            }
            let state = match (o, n) {
                (Some(o), Some(n)) => state_diff(&o.state, &n.state),
                _ => Vec::new(),
            };
            scenarios.push(ScenarioDiff { scenario: name.to_owned(), checks, state });
        }
        let failed = |label: &str, s: &Summary| {
            s.infrastructure_failures.iter().map(|f| format!("{label} {}: {}", f.scenario, f.error)).collect::<Vec<_>>()
        };
        Report {
            old: old.label.clone(),
            new: new.label.clone(),
            lint_added: ln.difference(&lo).cloned().collect(),
            lint_gone: lo.difference(&ln).cloned().collect(),
            scenarios,
            not_run: [failed("OLD", old_run), failed("NEW", new_run)].concat(),
        }
    }

    pub fn regressions(&self) -> usize {
        self.scenarios.iter().flat_map(|s| &s.checks).filter(|c| c.regression).count()
    }

    /// 1 when a check that passed now fails, 3 when a side could not run a
    /// scenario (the comparison is incomplete), else 0.
    pub fn exit_code(&self) -> u8 {
        if self.regressions() > 0 {
            exit::MISMATCH
        } else if !self.not_run.is_empty() {
            exit::INFRA
        } else {
            exit::OK
        }
    }

    fn changed(c: &CheckDiff) -> bool {
        c.old != c.new
    }

    pub fn text(&self) -> String {
        let mut out = format!("harness diff\n  OLD {}\n  NEW {}\n\n", self.old, self.new);
        out += &format!("lint: {} added, {} gone\n", self.lint_added.len(), self.lint_gone.len());
        for d in &self.lint_added {
            out += &format!("  + {d}\n");
        }
        for d in &self.lint_gone {
            out += &format!("  - {d}\n");
        }
        for s in &self.scenarios {
            let changed: Vec<&CheckDiff> = s.checks.iter().filter(|c| Self::changed(c)).collect();
            out += &format!(
                "\n{}: {} of {} checks changed, {} state lines differ\n",
                s.scenario,
                changed.len(),
                s.checks.len(),
                s.state.len()
            );
            for c in changed {
                out += &format!("  {}{}: {} -> {}\n", if c.regression { "REGRESSION " } else { "" }, c.check, outcome(&c.old), outcome(&c.new));
                for (label, side) in [("OLD", &c.old), ("NEW", &c.new)] {
                    if let Some(d) = side.as_ref().and_then(|s| s.died_at.as_ref()) {
                        out += &format!("      {label} {d}\n");
                    }
                }
            }
            for l in s.state.iter().take(STATE_LINES) {
                out += &format!("    {l}\n");
            }
            if s.state.len() > STATE_LINES {
                out += &format!("    ... {} more (--format json has all)\n", s.state.len() - STATE_LINES);
            }
        }
        for n in &self.not_run {
            out += &format!("\nnot run: {n}\n");
        }
        out += &format!("\n{} regression(s)\n", self.regressions());
        out
    }

    /// A table for a pull request's job summary.
    pub fn markdown(&self) -> String {
        let mut out = format!("### harness diff: `{}` → `{}`\n\n", self.old, self.new);
        if self.lint_added.is_empty() && self.lint_gone.is_empty() {
            out += "Lint: no diagnostic added or gone.\n\n";
        } else {
            out += "| lint | diagnostic |\n|---|---|\n";
            for d in &self.lint_added {
                out += &format!("| added | {} |\n", cell(d));
            }
            for d in &self.lint_gone {
                out += &format!("| gone | {} |\n", cell(d));
            }
            out += "\n";
        }
        out += "| scenario | check | OLD | NEW | |\n|---|---|---|---|---|\n";
        for s in &self.scenarios {
            for c in &s.checks {
                let mark = if c.regression {
                    "❌ regression"
                } else if Self::changed(c) {
                    "changed"
                } else {
                    ""
                };
                out += &format!("| {} | {} | {} | {} | {mark} |\n", s.scenario, c.check, cell(&show(&c.old)), cell(&show(&c.new)));
            }
        }
        let state: usize = self.scenarios.iter().map(|s| s.state.len()).sum();
        out += &format!("\n{} regression(s); {state} line(s) of datapath state differ.\n", self.regressions());
        for s in self.scenarios.iter().filter(|s| !s.state.is_empty()) {
            out += &format!("\n<details><summary>{}: datapath state</summary>\n\n```diff\n", s.scenario);
            for l in s.state.iter().take(STATE_LINES) {
                out += &format!("{l}\n");
            }
            out += "```\n</details>\n";
        }
        out
    }
}

/// Lines of state shown per scenario in text and Markdown.
const STATE_LINES: usize = 40;

/// A side's outcome, without where it died.
fn outcome(s: &Option<Side>) -> String {
    match s {
        None => "not run".into(),
        Some(s) => format!("{} ({})", s.outcome, if s.passed { "pass" } else { "FAIL" }),
    }
}

/// A side's outcome and where it died, in one cell.
fn show(s: &Option<Side>) -> String {
    match s {
        None => "not run".into(),
        Some(s) => {
            let mut t = format!("{} ({})", s.outcome, if s.passed { "pass" } else { "FAIL" });
            if let Some(d) = &s.died_at {
                t += &format!(", {d}");
            }
            t
        }
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The lines only one side's state has, `-` for OLD and `+` for NEW, in order.
fn state_diff(old: &str, new: &str) -> Vec<String> {
    similar::TextDiff::from_lines(old, new)
        .iter_all_changes()
        .filter_map(|c| match c.tag() {
            similar::ChangeTag::Delete => Some(format!("-{}", c.value().trim_end())),
            similar::ChangeTag::Insert => Some(format!("+{}", c.value().trim_end())),
            similar::ChangeTag::Equal => None,
        })
        .collect()
}

/// Run `req`'s scenarios with OLD, then with NEW (snapshots are not compared:
/// the two runs are compared with each other), and report the difference.
/// `cancel` makes the future that ends a run (Ctrl-C).
pub async fn run<C, F>(old: &Conf, new: &Conf, req: &Request, progress: &Progress, cancel: C) -> Result<Report, Error>
where
    C: Fn() -> F,
    F: std::future::Future<Output = ()>,
{
    let work = tempfile::tempdir().map_err(|source| Error::Io { path: std::env::temp_dir(), source })?;
    let mut sides = Vec::new();
    let mut worlds = Vec::new();
    for (name, conf) in [("OLD", old), ("NEW", new)] {
        let path = write_conf(work.path(), &format!("{name}.local.conf"), conf)?;
        let req = Request {
            overrides: VmOverrides { local_conf: Some(path), ..req.overrides.clone() },
            snapshots: None,
            ..req.clone()
        };
        let plans = suite::load_plans(req.scenarios.clone(), &req.overrides)?;
        suite::preflight_with("harness diff", &req.boot, &plans, req.cloud, false)?;
        progress.phase(&format!("{name}: the scenarios with {}", conf.label));
        let summary = suite::run(&req, &plans, progress, cancel()).await?;
        if summary.interrupted {
            return Err(Error::Interrupted);
        }
        // The worlds are the scenarios', the same on both sides: each once.
        if worlds.is_empty() {
            let mut seen = std::collections::HashSet::new();
            worlds = plans.iter().map(|p| p.world.clone()).filter(|w| seen.insert(format!("{w:?}"))).collect();
        }
        sides.push(summary);
    }
    Ok(Report::compare(old, new, &worlds, &sides[0], &sides[1]))
}

/// Where a side's local.conf is written for its run (kept with the runs' files
/// only as long as the diff runs).
pub fn write_conf(dir: &Path, name: &str, conf: &Conf) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    std::fs::write(&path, &conf.text).map_err(|source| Error::Io { path: path.clone(), source })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_lines_that_differ() {
        let d = state_diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(d, vec!["-b", "+B", "+d"]);
    }

    #[test]
    fn a_conf_is_a_file_or_a_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("local.conf");
        std::fs::write(&f, "[[local|localrc]]\nHOST_IP=1.2.3.4\n").expect("write");
        assert!(read_conf(&f.display().to_string()).expect("file").text.contains("HOST_IP"));
        let e = read_conf("/nonexistent/local.conf").expect_err("missing");
        assert!(e.to_string().contains("REV:PATH"), "{e}");
        let e = read_conf("no-such-rev-xyz:local.conf").expect_err("bad revision");
        assert!(e.to_string().contains("git show no-such-rev-xyz:local.conf"), "{e}");
    }

    #[test]
    fn lint_added_and_gone_compare_without_lines() {
        let base = "[[local|localrc]]\nQ_AGENT=openvswitch\nFLOATING_RANGE=192.168.100.0/24\n";
        let moved = format!("# a comment moves every line\n{base}");
        let w = [World::default()];
        assert_eq!(lint_keys(base, &w), lint_keys(&moved, &w), "the same diagnostics on other lines are the same");
        let wrong = base.replace("192.168.100.0/24", "10.99.0.0/24");
        let added: Vec<_> = lint_keys(&wrong, &w).difference(&lint_keys(base, &w)).cloned().collect();
        assert!(added.iter().any(|d| d.starts_with("error[floating-range]")), "{added:?}");
    }
}

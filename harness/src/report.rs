//! Results for people and for CI: the text table, JSON, JUnit XML (quick-junit, the
//! writer nextest uses) and GitHub Actions annotations, and the exit code that
//! sums a run up.

use crate::runner::ScenarioResult;
use crate::snapshot::SnapshotOutcome;
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// Exit codes of `harness` (README, "Exit codes").
pub mod exit {
    /// Every check came out as its scenario expects.
    pub const OK: u8 = 0;
    /// A check did not come out as expected, or a snapshot differs (or a lint error).
    pub const MISMATCH: u8 = 1;
    /// Bad input: a scenario, a local.conf, the arguments.
    pub const BAD_INPUT: u8 = 2;
    /// The infrastructure failed: image, boot, SSH, stack.sh.
    pub const INFRA: u8 = 3;
}

/// Scenarios that never produced a result because the infrastructure failed.
#[derive(Debug, Clone, Serialize)]
pub struct InfraFailure {
    pub scenario: String,
    pub file: PathBuf,
    pub error: String,
    pub attempts: u32,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub scenarios: Vec<ScenarioResult>,
    pub infrastructure_failures: Vec<InfraFailure>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Ctrl-C or SIGTERM ended the run: the results are what finished before.
    pub interrupted: bool,
}

impl Summary {
    /// 3 when the infrastructure failed anywhere (the results are incomplete), else
    /// 1 when a check or a snapshot did not match, else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.infrastructure_failures.is_empty() {
            exit::INFRA
        } else if self.scenarios.iter().any(|r| !r.passed || r.snapshot.as_ref().is_some_and(|s| s.is_mismatch())) {
            exit::MISMATCH
        } else {
            exit::OK
        }
    }

    pub fn text(&self) -> String {
        self.text_with(false)
    }

    /// The text report; `verbose`: each traced check's hops with their evidence.
    pub fn text_with(&self, verbose: bool) -> String {
        let mut s = String::new();
        for r in &self.scenarios {
            let shared = r.shared_vm.as_ref().map(|v| format!(", in the VM of {v}")).unwrap_or_default();
            let flaky = if r.attempts > 1 { format!(", FLAKY: passed on attempt {}", r.attempts) } else { String::new() };
            let start = match (r.start.kind, &r.start.key) {
                ("restored", Some(k)) if r.shared_vm.is_none() => format!(", restored from prepared state {k}"),
                ("saved", Some(k)) if r.shared_vm.is_none() => format!(", saved as prepared state {k}"),
                _ => String::new(),
            };
            s.push_str(&format!(
                "{} ({} cloud, {}, {}{start}{shared}{flaky}): {}\n",
                r.name,
                r.cloud,
                r.image,
                r.accel,
                if r.passed { "passed" } else { "FAILED" }
            ));
            for c in &r.checks {
                let port = c.port.map(|p| format!(":{p}")).unwrap_or_default();
                let first = c.observed.detail.lines().next().unwrap_or("");
                s.push_str(&format!(
                    "  {} {:<58} {:>11} -> {:<13} {first}\n",
                    if c.passed { "ok  " } else { "FAIL" },
                    c.name,
                    format!("{:?}", c.expect).to_lowercase(),
                    format!("{:?}{port}", c.outcome).to_lowercase()
                ));
                if let Some(t) = &c.trace {
                    if let Some(d) = &t.died_at {
                        s.push_str(&format!("       {}\n", d.line()));
                    }
                    if verbose {
                        for h in &t.path {
                            s.push_str(&format!("         {} {}: {}\n", if h.saw { "saw" } else { "---" }, h.hop, h.evidence));
                        }
                    }
                }
            }
            match &r.snapshot {
                Some(SnapshotOutcome::Matched { file }) => s.push_str(&format!("  snapshot matches {}\n", file.display())),
                Some(SnapshotOutcome::New { pending }) => {
                    s.push_str(&format!("  no snapshot yet: {} written (cargo insta review accepts it)\n", pending.display()))
                }
                Some(SnapshotOutcome::Missing { file, pending }) => s.push_str(&format!(
                    "  NO SNAPSHOT {} (CI fails without one): record it by running this scenario outside CI, then `cargo insta review` (or accept {} by renaming it)\n",
                    file.display(),
                    pending.display()
                )),
                Some(SnapshotOutcome::Mismatch { file, pending, diff }) => s.push_str(&format!(
                    "  SNAPSHOT DIFFERS from {} ({} written; cargo insta review):\n{}",
                    file.display(),
                    pending.display(),
                    diff.lines().map(|l| format!("    {l}\n")).collect::<String>()
                )),
                None => {}
            }
            let t: Vec<String> = r.timings.iter().map(|(k, v)| format!("{k} {v:.1}s")).collect();
            s.push_str(&format!("  timings: {}; run directory {}\n", t.join(", "), r.run_dir.display()));
        }
        for f in &self.infrastructure_failures {
            s.push_str(&format!(
                "{} ({}): INFRASTRUCTURE FAILED after {} attempt(s): {}\n",
                f.scenario,
                f.file.display(),
                f.attempts,
                f.error
            ));
        }
        s.push_str(&self.one_line());
        s.push('\n');
        s
    }

    /// Markdown for a CI job's summary page (`--summary`, `$GITHUB_STEP_SUMMARY`):
    /// the table of checks, and for each check that did not come out as expected,
    /// what was expected, what was observed and where the run's logs are.
    pub fn markdown(&self) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut s = format!("### devstack-harness\n\n{}\n\n", self.one_line());
        s.push_str("| | scenario | check | expected | observed | detail |\n|---|---|---|---|---|---|\n");
        for r in &self.scenarios {
            for c in &r.checks {
                let port = c.port.map(|p| format!(":{p}")).unwrap_or_default();
                s.push_str(&format!(
                    "| {} | {} ({}) | {} | {:?} | {:?}{port} | {} |\n",
                    if c.passed { "✅" } else { "❌" },
                    cell(&r.name),
                    r.cloud,
                    cell(&c.name),
                    c.expect,
                    c.outcome,
                    cell(c.observed.detail.lines().next().unwrap_or(""))
                ));
            }
        }
        for f in &self.infrastructure_failures {
            s.push_str(&format!(
                "| ⚠️ | {} | infrastructure | - | - | {} |\n",
                cell(&f.scenario),
                cell(f.error.lines().next().unwrap_or(""))
            ));
        }
        let failed: Vec<_> = self.scenarios.iter().flat_map(|r| r.checks.iter().filter(|c| !c.passed).map(move |c| (r, c))).collect();
        if !failed.is_empty() || !self.infrastructure_failures.is_empty() {
            s.push_str("\n#### What went wrong\n\n");
        }
        for (r, c) in failed {
            let seen = match (&c.expected_seen_as, &c.observed.seen_as) {
                (Some(want), Some(got)) if want != got => format!("; the responder saw {got}, not {want}"),
                _ => String::new(),
            };
            s.push_str(&format!(
                "- **{}: {}** ({}:{}): expected {:?} {:?} from {:?} to {}{}, observed {:?}{seen}. Run directory `{}` (`state/` holds the guest's addresses, routes, iptables and conntrack).\n",
                r.name,
                c.name,
                r.file.display(),
                c.line,
                c.kind,
                c.expect,
                c.from,
                c.to,
                c.port.map(|p| format!(":{p}")).unwrap_or_default(),
                c.outcome,
                r.run_dir.display()
            ));
        }
        for f in &self.infrastructure_failures {
            s.push_str(&format!(
                "- **{}** ({}): the infrastructure failed after {} attempt(s):\n\n```\n{}\n```\n",
                f.scenario,
                f.file.display(),
                f.attempts,
                f.error
            ));
        }
        s
    }

    /// `4 scenarios: 3 passed, 1 failed, 0 snapshot differences, 0 infrastructure failures, 0 flaky; 176.4 s (exit 1)`
    pub fn one_line(&self) -> String {
        let failed = self.scenarios.iter().filter(|r| !r.passed).count();
        let differ = self.scenarios.iter().filter(|r| r.snapshot.as_ref().is_some_and(|s| s.is_mismatch())).count();
        let flaky = self.scenarios.iter().filter(|r| r.flaky).count();
        format!(
            "{} scenarios: {} passed, {failed} failed, {differ} snapshot differences, {} infrastructure failures, {flaky} flaky; {:.1} s (exit {})",
            self.scenarios.len() + self.infrastructure_failures.len(),
            self.scenarios.len() - failed,
            self.infrastructure_failures.len(),
            self.seconds,
            self.exit_code()
        )
    }

    /// JUnit XML: a test suite per scenario, a test case per check; the failure
    /// text holds the observation and where the logs are.
    pub fn junit(&self) -> String {
        let mut report = Report::new("devstack-harness");
        for r in &self.scenarios {
            let mut suite = TestSuite::new(r.name.as_str());
            suite.set_time(Duration::from_secs_f64(r.timings.get("total").copied().unwrap_or(0.0)));
            for (k, v) in [
                ("cloud", r.cloud.clone()),
                ("image", r.image.clone()),
                ("accel", r.accel.clone()),
                ("backend", r.backend.clone()),
                ("run_dir", r.run_dir.display().to_string()),
                ("attempts", r.attempts.to_string()),
            ] {
                suite.add_property(Property::new(k, v));
            }
            for c in &r.checks {
                let status = if c.passed {
                    TestCaseStatus::success()
                } else {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(check_message(c));
                    s.set_type("check");
                    s.set_description(format!(
                        "{}\nobserved: {}\nrun directory: {}\nconsole: {}\nguest state: {}",
                        check_message(c),
                        c.observed.detail,
                        r.run_dir.display(),
                        r.run_dir.join("console.log").display(),
                        r.run_dir.join("state").display(),
                    ));
                    s
                };
                let mut case = TestCase::new(c.name.as_str(), status);
                case.set_classname(format!("{}.{}", r.name, r.cloud));
                case.set_system_out(format!("{:?} from {:?} to {}: {}", c.kind, c.from, c.to, c.observed.detail));
                suite.add_test_case(case);
            }
            if let Some(snap) = &r.snapshot {
                let status = match snap {
                    SnapshotOutcome::Mismatch { file, pending, diff } => {
                        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        s.set_message(format!("the result differs from {}", file.display()));
                        s.set_type("snapshot");
                        s.set_description(format!("{diff}\npending snapshot: {} (cargo insta review)", pending.display()));
                        s
                    }
                    SnapshotOutcome::Missing { file, pending } => {
                        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        s.set_message(format!("no snapshot {} (CI needs one)", file.display()));
                        s.set_type("snapshot");
                        s.set_description(format!("record it outside CI and run cargo insta review; pending: {}", pending.display()));
                        s
                    }
                    _ => TestCaseStatus::success(),
                };
                let mut case = TestCase::new("snapshot", status);
                case.set_classname(format!("{}.{}", r.name, r.cloud));
                suite.add_test_case(case);
            }
            report.add_test_suite(suite);
        }
        for f in &self.infrastructure_failures {
            let mut suite = TestSuite::new(f.scenario.as_str());
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(format!("the infrastructure failed after {} attempt(s)", f.attempts));
            s.set_type("infrastructure");
            s.set_description(f.error.clone());
            let mut case = TestCase::new("infrastructure", s);
            case.set_classname(f.scenario.as_str());
            suite.add_test_case(case);
            report.add_test_suite(suite);
        }
        report.to_string().unwrap_or_else(|e| format!("<!-- cannot serialize: {e} -->"))
    }

    /// GitHub Actions workflow commands for failed checks and infrastructure failures.
    pub fn annotations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.scenarios {
            for c in r.checks.iter().filter(|c| !c.passed) {
                out.push(annotation(
                    &r.file.display().to_string(),
                    c.line,
                    None,
                    &format!("{}: {}", r.name, c.name),
                    &format!("{}; observed: {}; run directory {}", check_message(c), c.observed.detail, r.run_dir.display()),
                ));
            }
        }
        for f in &self.infrastructure_failures {
            out.push(annotation(&f.file.display().to_string(), 1, None, &format!("{}: infrastructure", f.scenario), &f.error));
        }
        out
    }
}

fn check_message(c: &crate::checks::CheckResult) -> String {
    let port = c.port.map(|p| format!(":{p}")).unwrap_or_default();
    let mut m =
        format!("expected {:?}, observed {:?} ({:?} from {:?} to {}{port})", c.expect, c.outcome, c.kind, c.from, c.to).to_lowercase();
    if let Some(want) = &c.expected_seen_as {
        m.push_str(&format!(", expected to be seen as {want}, seen as {}", c.observed.seen_as.as_deref().unwrap_or("nothing")));
    }
    if let Some(d) = c.trace.as_ref().and_then(|t| t.died_at.as_ref()) {
        m.push_str(&format!("; {}", d.line()));
    }
    m
}

/// True when running inside GitHub Actions.
pub fn in_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// `::error file=F,line=L,col=C,title=T::MESSAGE`, escaped as the runner expects.
pub fn annotation(file: &str, line: usize, col: Option<usize>, title: &str, message: &str) -> String {
    let data = |s: &str| s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A");
    let prop = |s: &str| data(s).replace(':', "%3A").replace(',', "%2C");
    let col = col.map(|c| format!(",col={c}")).unwrap_or_default();
    format!("::error file={},line={line}{col},title={}::{}", prop(file), prop(title), data(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_escape_what_the_runner_reads() {
        assert_eq!(
            annotation("scenarios/a,b.toml", 7, Some(3), "x: y", "50% done\nnext"),
            "::error file=scenarios/a%2Cb.toml,line=7,col=3,title=x%3A y::50%25 done%0Anext"
        );
    }

    #[test]
    fn markdown_has_the_table_and_says_what_went_wrong() {
        use crate::checks::{CheckResult, Observed};
        use crate::scenario::{CheckKind, Endpoint, Expect};
        let check = |name: &str, outcome: Expect, seen: Option<&str>| CheckResult {
            name: name.into(),
            kind: CheckKind::Tcp,
            from: Endpoint::Instance,
            to: "198.51.100.20".into(),
            port: Some(80),
            expect: Expect::Reachable,
            outcome,
            passed: outcome == Expect::Reachable && seen == Some("203.0.113.10"),
            expected_seen_as: Some("203.0.113.10".into()),
            observed: Observed { seen_as: seen.map(Into::into), detail: "seen_as x | y\nmore".into() },
            waited_s: 10.0,
            answered_s: None,
            before_took_s: None,
            trace: None,
            line: 12,
        };
        let r = ScenarioResult {
            name: "egress".into(),
            cloud: "replica".into(),
            image: "debian-12".into(),
            accel: "tcg".into(),
            backend: "qemu".into(),
            passed: false,
            checks: vec![
                check("ok one", Expect::Reachable, Some("203.0.113.10")),
                check("masqueraded", Expect::Reachable, Some("192.168.100.101")),
            ],
            shared_vm: None,
            timings: Default::default(),
            file: "scenarios/egress.toml".into(),
            run_id: "r".into(),
            run_dir: "/runs/r".into(),
            attempts: 1,
            flaky: false,
            start: Default::default(),
            cloud_facts: Default::default(),
            snapshot: None,
            state: String::new(),
            volatile_names: vec![],
        };
        let summary = Summary {
            scenarios: vec![r],
            infrastructure_failures: vec![InfraFailure {
                scenario: "other".into(),
                file: "o.toml".into(),
                error: "SSH never up".into(),
                attempts: 2,
            }],
            seconds: 1.0,
            interrupted: false,
        };
        let md = summary.markdown();
        assert!(md.contains("| ✅ | egress (replica) | ok one | Reachable | Reachable:80 | seen_as x \\| y |"), "{md}");
        assert!(md.contains("| ⚠️ | other | infrastructure |"), "{md}");
        assert!(
            md.contains("- **egress: masqueraded** (scenarios/egress.toml:12): expected Tcp Reachable from Instance to 198.51.100.20:80, observed Reachable; the responder saw 192.168.100.101, not 203.0.113.10. Run directory `/runs/r`"),
            "{md}"
        );
        assert!(md.contains("the infrastructure failed after 2 attempt(s)"), "{md}");
    }
}

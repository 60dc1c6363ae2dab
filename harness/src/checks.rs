//! Checks stage: each declared check run from where it says (the internet
//! namespace on the host, the guest's root namespace, or the instance), with the
//! same probe script everywhere, compared with what the scenario expects.

use crate::cloud::Deployed;
use crate::exec::{Cmd, ExecError, Executor};
use crate::scenario::{Check, CheckKind, Endpoint, Expect, Plan, Target};
use crate::scripts::{script, GUEST_PROBE};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Observed {
    /// The source address the responder reported, when it reported one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_as: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckResult {
    pub name: String,
    pub kind: CheckKind,
    pub from: Endpoint,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub expect: Expect,
    pub outcome: Expect,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_seen_as: Option<String>,
    pub observed: Observed,
    /// How long the probe was to wait for an answer ([`wait_s`]).
    pub waited_s: f64,
    /// Seconds from the probe's start to the answer, when one came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_s: Option<f64>,
    /// Seconds the cloud action before the check (`before`) took to take effect,
    /// where the cloud applies it asynchronously (neutron).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_took_s: Option<f64>,
    /// Where the packet went and died (the trace stage): for a check that failed
    /// or expects no answer, or every check with `--trace`.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Trace>,
    /// The line of the check in its scenario file.
    #[serde(skip)]
    pub line: usize,
}

/// One hop of a traced path: whether its counters moved while the probe ran again.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hop {
    pub hop: String,
    pub saw: bool,
    pub evidence: String,
}

/// The hop that saw the packet last, and why it went no further.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DiedAt {
    pub hop: String,
    pub reason: String,
}

/// A check's packet followed hop by hop (the trace stage, `trace.rs`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Trace {
    /// The request's hops, then (when the request arrived) the reply's, marked `(reply)`.
    pub path: Vec<Hop>,
    /// None: every hop saw the packet both ways.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub died_at: Option<DiedAt>,
    /// What the probe sent for the trace saw (it may differ from the check's own
    /// outcome in a world that changed in between; the check's outcome stands).
    pub trace_probe: String,
}

impl DiedAt {
    pub fn line(&self) -> String {
        format!("died at {}: {}", self.hop, self.reason)
    }
}

/// How long a check expected reachable waits for an answer unless it says.
pub const REACHABLE_WAIT_S: f64 = 10.0;
/// How long a check expected unreachable waits unless it says: the harness's
/// world is hermetic and its round trips take milliseconds (under TCG here, the
/// slowest answers of the shipped scenarios come within 0.1 s), so 3 s is many
/// round trips and two of TCP's SYN retransmissions...
pub const UNREACHABLE_WAIT_S: f64 = 3.0;
/// ...but never less than this many times the slowest answer a reachable check of
/// the same VM got before it: in a slow world the wait grows with it (up to
/// [`REACHABLE_WAIT_S`]), so that a late answer is not read as "unreachable".
pub const SLOW_ANSWER_FACTOR: f64 = 10.0;

/// How long the probe of `c` waits, `slowest_answer_s` the slowest answer (probe
/// start to reply) of the reachable checks run before it in the same VM.
pub fn wait_s(c: &Check, slowest_answer_s: f64) -> f64 {
    match (c.timeout_s, c.expect) {
        (Some(t), _) => t,
        (None, Expect::Reachable) => REACHABLE_WAIT_S,
        (None, Expect::Unreachable) => (SLOW_ANSWER_FACTOR * slowest_answer_s).clamp(UNREACHABLE_WAIT_S, REACHABLE_WAIT_S),
    }
}

/// The address a target names, seen from `from`.
pub fn resolve(t: &Target, from: Endpoint, plan: &Plan, v: &Deployed) -> Ipv4Addr {
    match t {
        Target::FloatingIp => v.floating_ip,
        Target::PublicIp => plan.world.public_ip,
        Target::Responder => plan.world.internet_responder,
        Target::Gateway => match from {
            Endpoint::Instance => v.network_gateway,
            Endpoint::Host => plan.world.guest_gateway,
            Endpoint::Internet => plan.world.internet_edge.addr(),
        },
        Target::Address(a) => *a,
    }
}

/// Where the checks run: the guest, and the internet namespace on the host with
/// the probe's path there.
pub struct Probes<'a> {
    pub guest: &'a dyn Executor,
    pub internet: &'a dyn Executor,
    pub internet_probe: &'a str,
}

/// Put the probe in the guest (checks from the host and the instance run it) and
/// on the host (checks from the internet run it in their namespace).
pub async fn install_probe(p: &Probes<'_>) -> Result<(), ExecError> {
    p.guest.upload(script("probe.py").as_bytes(), GUEST_PROBE, 0o755).await?;
    p.internet.upload(script("probe.py").as_bytes(), p.internet_probe, 0o755).await
}

fn probe_args(c: &Check, addr: Ipv4Addr, source: Option<Ipv4Addr>, wait_s: f64) -> Vec<String> {
    let kind = match c.kind {
        CheckKind::Icmp => "icmp",
        CheckKind::Tcp => "tcp",
        CheckKind::Udp => "udp",
        CheckKind::Http => "http",
    };
    let mut a = vec![kind.to_owned(), addr.to_string()];
    if let Some(p) = c.port {
        a.push(p.to_string());
    }
    a.push(format!("{wait_s}"));
    if let (Some(s), true) = (source, c.port.is_some()) {
        a.push(s.to_string());
    }
    if c.kind == CheckKind::Icmp && (c.size.is_some() || c.dont_fragment) {
        a.push(c.size.unwrap_or(56).to_string());
        a.push(if c.dont_fragment { "df" } else { "fragment" }.into());
    }
    a
}

#[derive(serde::Deserialize)]
struct ProbeLine {
    outcome: String,
    detail: String,
    #[serde(default)]
    elapsed: Option<f64>,
}

/// The outcome, its detail, and when the answer came.
fn parse_probe(text: &str) -> (Expect, String, Option<f64>) {
    match text.lines().rev().find_map(|l| serde_json::from_str::<ProbeLine>(l).ok()) {
        Some(p) if p.outcome == "reachable" => (Expect::Reachable, p.detail, p.elapsed),
        Some(p) => (Expect::Unreachable, p.detail, None),
        None => (Expect::Unreachable, format!("the probe printed no result: {}", text.trim()), None),
    }
}

/// Send `c`'s probe once, waiting `wait` seconds for an answer: the outcome, its
/// detail and when the answer came. A probe that cannot run is "unreachable",
/// its detail says why.
pub async fn probe_once(c: &Check, plan: &Plan, v: &Deployed, p: &Probes<'_>, wait: f64) -> (Expect, String, Option<f64>) {
    let addr = resolve(&c.to, c.from, plan, v);
    let budget = Duration::from_secs_f64(wait + 30.0);
    let (exec, argv): (&dyn Executor, Vec<String>) = match c.from {
        Endpoint::Internet => (p.internet, vec!["/usr/bin/python3".into(), p.internet_probe.into()]),
        Endpoint::Host => (p.guest, vec![GUEST_PROBE.into()]),
        Endpoint::Instance => (p.guest, v.instance_probe.clone()),
    };
    let source = (c.from == Endpoint::Internet).then_some(plan.world.internet_client);
    let cmd = Cmd::new(argv).args(probe_args(c, addr, source, wait)).timeout(budget);
    match exec.run(&cmd).await {
        Ok(o) => parse_probe(&o.text()),
        Err(e) if e.is_timeout() => (Expect::Unreachable, "the probe itself timed out".into(), None),
        Err(e) => (Expect::Unreachable, format!("cannot run the probe: {e}"), None),
    }
}

/// Run one check from where it says and compare it with what it expects.
/// `slowest_answer_s`: see [`wait_s`].
pub async fn run_check(c: &Check, plan: &Plan, v: &Deployed, p: &Probes<'_>, slowest_answer_s: f64) -> CheckResult {
    let addr = resolve(&c.to, c.from, plan, v);
    let wait = wait_s(c, slowest_answer_s);
    let (outcome, detail, answered_s) = probe_once(c, plan, v, p, wait).await;
    let seen_as = detail.lines().find_map(|l| l.trim().strip_prefix("seen_as ")).map(str::to_owned);
    let expected_seen_as = c.seen_as.as_ref().map(|t| resolve(t, c.from, plan, v).to_string());
    let seen_ok = match (&expected_seen_as, outcome) {
        (Some(want), Expect::Reachable) => seen_as.as_deref() == Some(want.as_str()),
        _ => true,
    };
    CheckResult {
        name: c.name.clone(),
        kind: c.kind,
        from: c.from,
        to: addr.to_string(),
        port: c.port,
        expect: c.expect,
        outcome,
        passed: outcome == c.expect && seen_ok,
        expected_seen_as,
        observed: Observed { seen_as, detail },
        waited_s: wait,
        answered_s,
        before_took_s: None,
        trace: None,
        line: c.line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::Recorder;

    fn plan() -> Plan {
        crate::scenario::load(std::path::Path::new("../scenarios/floating-ip-ingress.toml")).expect("scenario")
    }

    fn deployed() -> Deployed {
        Deployed {
            floating_ip: "192.168.100.102".parse().expect("ip"),
            fixed_ip: "10.0.0.5".parse().expect("ip"),
            network_gateway: "10.0.0.1".parse().expect("ip"),
            router_gw_ip: "192.168.100.101".parse().expect("ip"),
            instance_probe: vec!["in-instance".into(), "--".into()],
            volatile_names: vec![],
            facts: Default::default(),
        }
    }

    fn check(from: Endpoint, to: Target, kind: CheckKind, port: Option<u16>, seen_as: Option<Target>) -> Check {
        Check {
            name: "c".into(),
            kind,
            from,
            to,
            port,
            expect: Expect::Reachable,
            seen_as,
            timeout_s: Some(3.0),
            size: None,
            dont_fragment: false,
            host_reboot: false,
            before: None,
            line: 7,
        }
    }

    #[tokio::test]
    async fn each_endpoint_runs_the_probe_where_it_is_with_its_arguments() {
        let (guest, internet) = (Recorder::new("guest"), Recorder::new("internet"));
        internet.answer("probe.py tcp", 0, r#"{"outcome": "reachable", "detail": "seen_as 192.168.100.1"}"#);
        let p = Probes { guest: &guest, internet: &internet, internet_probe: "/runs/x/probe.py" };
        let (plan, d) = (plan(), deployed());
        let from_internet = check(Endpoint::Internet, Target::FloatingIp, CheckKind::Tcp, Some(22), Some(Target::PublicIp));
        let r = run_check(&from_internet, &plan, &d, &p, 0.0).await;
        assert_eq!(
            internet.transcript(),
            vec![format!("run /usr/bin/python3 /runs/x/probe.py tcp 192.168.100.102 22 3 {}", plan.world.internet_client)]
        );
        // Reachable, but seen as another address than the one expected: a failure.
        assert_eq!(r.outcome, Expect::Reachable);
        assert_eq!(r.expected_seen_as.as_deref(), Some(plan.world.public_ip.to_string().as_str()));
        assert!(!r.passed, "{r:?}");
        assert_eq!(r.line, 7);

        run_check(&check(Endpoint::Instance, Target::Gateway, CheckKind::Icmp, None, None), &plan, &d, &p, 0.0).await;
        run_check(&check(Endpoint::Host, Target::Gateway, CheckKind::Icmp, None, None), &plan, &d, &p, 0.0).await;
        assert_eq!(
            guest.transcript(),
            vec!["run in-instance -- icmp 10.0.0.1 3".to_owned(), format!("run {GUEST_PROBE} icmp {} 3", plan.world.guest_gateway),]
        );
    }

    #[test]
    fn an_unreachable_check_waits_3_s_unless_the_world_answers_slowly() {
        let mut c = check(Endpoint::Host, Target::Gateway, CheckKind::Icmp, None, None);
        c.timeout_s = None;
        assert_eq!(wait_s(&c, 0.05), REACHABLE_WAIT_S, "a reachable check keeps its 10 s");
        c.expect = Expect::Unreachable;
        assert_eq!(wait_s(&c, 0.0), UNREACHABLE_WAIT_S, "no answer seen yet");
        assert_eq!(wait_s(&c, 0.1), UNREACHABLE_WAIT_S, "a fast world");
        assert_eq!(wait_s(&c, 0.6), 6.0, "an answer after 0.6 s: ten times that");
        assert_eq!(wait_s(&c, 4.0), REACHABLE_WAIT_S, "never more than a reachable check's wait");
        c.timeout_s = Some(1.5);
        assert_eq!(wait_s(&c, 4.0), 1.5, "what the scenario says wins");
    }

    #[test]
    fn the_probe_s_answer_time_is_read_when_it_gives_one() {
        let (o, d, t) = parse_probe("noise\n{\"outcome\": \"reachable\", \"detail\": \"x\", \"elapsed\": 0.25}\n");
        assert_eq!((o, d.as_str(), t), (Expect::Reachable, "x", Some(0.25)));
        let (o, _, t) = parse_probe("{\"outcome\": \"unreachable\", \"detail\": \"y\", \"elapsed\": 3.0}");
        assert_eq!((o, t), (Expect::Unreachable, None), "no answer, no answer time");
    }
}

//! The devstack cloud: the real stack.sh, driven by devstack.sh (rendered per
//! scenario): DNS through the edge's uplink, a preflight that the sources can be
//! reached, prepare (mirrors, the stack user, the clone, local.conf), stack.sh
//! streamed with a progress line per phase, then one instance with a floating IP
//! made with the openstack CLI. Needs the internet: the `.github/` workflow.

use super::{guest_step, script_fip, volatile_names, Cloud, CloudError, Deployed, Needs, Site};
use crate::exec::{Cmd, Executor};
use crate::progress::Progress;
use crate::render::Renderer;
use crate::scenario::{CloudAction, CloudKind, Plan};
use async_trait::async_trait;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

pub const SCRIPT: &str = "/usr/local/sbin/harness-devstack";
const INSTANCE_PROBE_SH: &str = "/usr/local/share/devstack-harness/probe.sh";

/// What the devstack script's template sees besides the plan.
#[derive(Debug, Serialize)]
struct DevstackValues {
    /// The name of the keypair, security group and server.
    name: String,
    /// Ingress ports the security group opens (ICMP is always open).
    tcp_ports: Vec<u16>,
    udp_ports: Vec<u16>,
}

pub fn render_devstack(plan: &Plan, run_id: &str, renderer: &Renderer) -> Result<String, CloudError> {
    use crate::scenario::{CheckKind, Target};
    let mut tcp = vec![22];
    let mut udp = vec![];
    // Ports of checks that end at the instance: through its floating IP, or forwarded to it.
    let ports = plan.checks.iter().filter(|c| c.to == Target::FloatingIp).map(|c| (c.kind, c.port));
    let fwd = plan
        .forwards
        .iter()
        .filter(|f| f.to == Target::FloatingIp)
        .map(|f| (if f.protocol == "udp" { CheckKind::Udp } else { CheckKind::Tcp }, Some(f.port)));
    for (kind, port) in ports.chain(fwd) {
        match (kind, port) {
            (CheckKind::Udp, Some(p)) => udp.push(p),
            (_, Some(p)) => tcp.push(p),
            _ => {}
        }
    }
    tcp.sort_unstable();
    tcp.dedup();
    udp.sort_unstable();
    udp.dedup();
    let v = DevstackValues { name: format!("harness-{run_id}"), tcp_ports: tcp, udp_ports: udp };
    renderer.render_extra(crate::render::DEVSTACK, plan, &v).map_err(|e| CloudError::Template("devstack.sh".into(), e.to_string()))
}

/// A progress line from stack.sh's output: the text of an `echo_summary` call,
/// as its xtrace shows it (`+./stack.sh:main:755  echo_summary 'Configuring Neutron'`,
/// with or without outfilter's timestamp in front).
pub fn stack_phase(line: &str) -> Option<String> {
    let l = line.split_once(" | ").filter(|(ts, _)| ts.starts_with("20")).map_or(line, |(_, rest)| rest);
    let l = l.trim_start();
    if !l.starts_with('+') {
        return None;
    }
    let (_, text) = l.split_once(" echo_summary ")?;
    let text = text.trim().trim_matches(|c| c == '\'' || c == '"').trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Lines of text from streamed chunks.
#[derive(Default)]
struct Lines {
    partial: String,
}

impl Lines {
    fn push(&mut self, chunk: &str) -> Vec<String> {
        self.partial.push_str(chunk);
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            out.push(self.partial[..i].trim_end_matches('\r').to_owned());
            self.partial.drain(..=i);
        }
        out
    }
}

/// Run stack.sh in the guest, streaming its log to `log` and a progress line per phase.
async fn run_stack(plan: &Plan, guest: &dyn Executor, log: &Path, progress: &Progress) -> Result<(), CloudError> {
    use std::io::Write;
    let mut file = std::fs::File::create(log).map_err(|source| CloudError::Io { path: log.display().to_string(), source })?;
    let minutes = plan.devstack.stack_timeout_min;
    // stdout and stderr interleaved as stack.sh writes them: one shell, on purpose.
    let cmd = Cmd::new(["sh", "-c", &format!("exec {SCRIPT} stack 2>&1")]).timeout(Duration::from_secs(u64::from(minutes) * 60));
    let mut lines = Lines::default();
    let mut phase = String::from("starting");
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let started = std::time::Instant::now();
    let result = guest
        .run_streaming(&cmd, &mut |chunk| {
            let _ = file.write_all(chunk.as_bytes());
            for line in lines.push(chunk) {
                if let Some(p) = stack_phase(&line) {
                    progress.phase(&format!("stack.sh: {p} ({:.0} s)", started.elapsed().as_secs_f64()));
                    phase = p.clone();
                }
                progress.message(&line);
                tail.push_back(line);
                if tail.len() > 25 {
                    tail.pop_front();
                }
            }
        })
        .await;
    let log_s = log.display().to_string();
    match result {
        Ok(out) if out.status == 0 => Ok(()),
        Ok(out) => Err(CloudError::Stack {
            phase,
            status: out.status,
            tail: tail.iter().skip(tail.len().saturating_sub(20)).cloned().collect::<Vec<_>>().join("\n"),
            log: log_s,
        }),
        Err(e) if e.is_timeout() => Err(CloudError::StackTimeout { minutes, phase, log: log_s }),
        Err(e) => Err(e.into()),
    }
}

/// What `harness-devstack instance` prints: Neutron's actual names and addresses.
#[derive(Debug, serde::Deserialize)]
struct InstanceLine {
    router_id: String,
    floating_ip: Ipv4Addr,
    fixed_ip: Ipv4Addr,
    network_gateway: Ipv4Addr,
    router_gw_ip: Ipv4Addr,
    gw_port_id: String,
    int_port_id: String,
    vm_port_id: String,
}

pub struct Devstack;

#[async_trait]
impl Cloud for Devstack {
    fn kind(&self) -> CloudKind {
        CloudKind::Devstack
    }

    fn needs(&self) -> Needs {
        Needs { uplink: true, ..Needs::default() }
    }

    async fn build(&self, site: &Site<'_>) -> Result<Deployed, CloudError> {
        let (guest, plan, progress) = (site.guest, site.plan, site.progress);
        let script = render_devstack(plan, site.run_id, site.renderer)?;
        site.keep_rendered("devstack.sh", &script)?;
        guest.run(&Cmd::new(["mkdir", "-p", "/usr/local/share/devstack-harness"])).await?;
        guest.upload(script.as_bytes(), SCRIPT, 0o755).await?;
        guest.upload(crate::scripts::script("probe.sh").as_bytes(), INSTANCE_PROBE_SH, 0o644).await?;
        guest_step(guest, "DNS through the uplink", &Cmd::new([SCRIPT, "dns"]), &site.log("devstack-dns.log")).await?;
        let pre = guest.run(&Cmd::new([SCRIPT, "preflight"])).await?;
        if pre.status != 0 {
            return Err(CloudError::NoInternet(plan.devstack.git_base.clone()));
        }
        progress.phase(&format!("devstack: cloning DevStack {} ({})", plan.devstack.branch, plan.devstack.git_base));
        let prepare = Cmd::new([SCRIPT, "prepare"]).timeout(Duration::from_secs(1800));
        guest_step(guest, "devstack prepare", &prepare, &site.log("devstack-prepare.log")).await?;
        progress.phase("devstack: stack.sh (a line per phase; the whole log is stack.sh.log in the run directory)");
        run_stack(plan, guest, &site.log("stack.sh.log"), progress).await?;
        progress.phase("devstack: keypair, security group, server, floating IP");
        let log = site.log("devstack-instance.log");
        let out = guest_step(guest, "devstack instance", &Cmd::new([SCRIPT, "instance"]).timeout(Duration::from_secs(1800)), &log).await?;
        let line: InstanceLine =
            out.lines().rev().find_map(|l| serde_json::from_str(l).ok()).ok_or_else(|| CloudError::Instance(log.display().to_string()))?;
        Ok(Deployed {
            floating_ip: line.floating_ip,
            fixed_ip: line.fixed_ip,
            network_gateway: line.network_gateway,
            router_gw_ip: line.router_gw_ip,
            instance_probe: vec![SCRIPT.into(), "probe".into()],
            volatile_names: volatile_names(&line.router_id, &line.gw_port_id, &line.int_port_id, &line.vm_port_id),
            facts: Default::default(),
        })
    }

    async fn floating_ip(&self, site: &Site<'_>, action: CloudAction) -> Result<Option<f64>, CloudError> {
        script_fip(site, SCRIPT, action).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_phase_reads_echo_summary_from_the_trace() {
        let traced = "2026-11-28 10:01:02.345 | +./stack.sh:main:1076                   echo_summary 'Configuring Neutron'";
        assert_eq!(stack_phase(traced).as_deref(), Some("Configuring Neutron"));
        assert_eq!(
            stack_phase("+./stack.sh:main:755  echo_summary \"Installing package prerequisites\"").as_deref(),
            Some("Installing package prerequisites")
        );
        // The echo itself, and other trace lines, are not phases.
        assert_eq!(stack_phase("2026-11-28 10:01:02.346 | Configuring Neutron"), None);
        assert_eq!(stack_phase("+functions-common:git_clone:600  git clone https://opendev.org/openstack/nova.git"), None);
        assert_eq!(stack_phase("+./stack.sh:main:1  echo_summary ''"), None);
    }

    #[test]
    fn lines_are_split_across_chunks() {
        let mut l = Lines::default();
        assert!(l.push("abc").is_empty());
        assert_eq!(l.push("def\r\ngh\ni"), vec!["abcdef".to_owned(), "gh".to_owned()]);
        assert_eq!(l.push("\n"), vec!["i".to_owned()]);
    }
}

#[cfg(test)]
mod driver_tests {
    use super::*;
    use crate::exec::fake::Recorder;

    struct Fixture {
        plan: Plan,
        renderer: Renderer,
        progress: Progress,
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                plan: crate::scenario::load(Path::new("../scenarios/instance-egress.toml")).expect("scenario"),
                renderer: Renderer::new(None).expect("templates"),
                progress: Progress::new(true),
                dir: tempfile::tempdir().expect("tempdir"),
            }
        }

        fn site<'a>(&'a self, guest: &'a Recorder) -> Site<'a> {
            Site {
                guest,
                plan: &self.plan,
                local_conf: "",
                run_dir: self.dir.path(),
                run_id: "abcd1234",
                renderer: &self.renderer,
                progress: &self.progress,
            }
        }
    }

    #[tokio::test]
    async fn builds_in_order_and_takes_neutrons_addresses() {
        let f = Fixture::new();
        let guest = Recorder::new("guest");
        guest
            .answer("stack 2>&1", 0, "+./stack.sh:main:1076  echo_summary 'Configuring Neutron'\nok\n")
            .answer(
                "harness-devstack instance",
                0,
                r#"{"router_id": "r-1", "floating_ip": "192.168.100.150", "fixed_ip": "10.0.0.23", "network_gateway": "10.0.0.1", "router_gw_ip": "192.168.100.149", "gw_port_id": "g", "int_port_id": "i", "vm_port_id": "v"}"#,
            );
        let d = Devstack.build(&f.site(&guest)).await.expect("build");
        assert_eq!((d.floating_ip.to_string(), d.fixed_ip.to_string()), ("192.168.100.150".into(), "10.0.0.23".into()));
        assert_eq!(d.instance_probe, [SCRIPT, "probe"]);
        assert_eq!(
            guest.transcript(),
            [
                "run mkdir -p /usr/local/share/devstack-harness".to_owned(),
                format!("upload {SCRIPT} (mode 755)"),
                format!("upload {INSTANCE_PROBE_SH} (mode 644)"),
                format!("run {SCRIPT} dns"),
                format!("run {SCRIPT} preflight"),
                format!("run {SCRIPT} prepare"),
                format!("run sh -c 'exec {SCRIPT} stack 2>&1'"),
                format!("run {SCRIPT} instance"),
            ]
        );
        let log = std::fs::read_to_string(f.dir.path().join("stack.sh.log")).expect("stack.sh.log");
        assert!(log.contains("Configuring Neutron"), "{log}");
    }

    #[tokio::test]
    async fn without_its_sources_it_stops_at_the_preflight() {
        let f = Fixture::new();
        let guest = Recorder::new("guest");
        guest.answer("harness-devstack preflight", 69, "");
        let e = Devstack.build(&f.site(&guest)).await.expect_err("no internet");
        assert!(matches!(e, CloudError::NoInternet(ref base) if *base == f.plan.devstack.git_base), "{e}");
        assert!(guest.transcript().last().is_some_and(|l| l.ends_with("preflight")));
    }

    #[tokio::test]
    async fn a_failed_stack_names_its_phase_and_a_hung_one_its_timeout() {
        let f = Fixture::new();
        let guest = Recorder::new("guest");
        guest.answer("stack 2>&1", 1, "+./stack.sh:main:1 echo_summary 'Installing package prerequisites'\nE: Unable to locate package\n");
        match Devstack.build(&f.site(&guest)).await {
            Err(CloudError::Stack { phase, status, tail, .. }) => {
                assert_eq!((phase.as_str(), status), ("Installing package prerequisites", 1));
                assert!(tail.contains("E: Unable to locate package"), "{tail}");
            }
            other => panic!("expected a stack.sh failure, got {other:?}"),
        }
        let guest = Recorder::new("guest");
        guest.time_out("stack 2>&1");
        let e = Devstack.build(&f.site(&guest)).await.expect_err("hangs");
        assert!(matches!(e, CloudError::StackTimeout { minutes, .. } if minutes == f.plan.devstack.stack_timeout_min), "{e}");
    }
}

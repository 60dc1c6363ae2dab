//! Cloud stage: builds the cloud inside the guest, from the scenario's rendered
//! local.conf. `replica` builds Neutron's ML2/OVS + L3 datapath for one router,
//! one tenant network and one instance with real OVS and iptables (runs here);
//! `devstack` runs the real stack.sh (needs the internet: the `.github/` workflow).

use crate::localconf::{self, effective::Effective};
use crate::progress::Progress;
use crate::scenario::{CloudKind, Plan};
use crate::ssh::{Ssh, SshError};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("local.conf: {name} is {value:?}; the replica needs {expected} (run `harness lint` on the rendered local.conf)")]
    Value { name: String, value: String, expected: String },
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("template {0}: {1}")]
    Template(String, String),
    #[error("{step} failed in the guest (exit {status}): {output}\n  the whole output is in {log}")]
    Step { step: String, status: i32, output: String, log: String },
    #[error("the devstack cloud needs the guest to reach {0}/openstack/devstack.git, and it cannot from here (set [devstack] git_base to a mirror it can reach, or run it where it can: the .github/ devstack workflow)")]
    NoInternet(String),
    #[error("stack.sh failed (exit {status}) in the phase \"{phase}\":\n{tail}\n  the whole log is in {log}")]
    Stack { phase: String, status: i32, tail: String, log: String },
    #[error("stack.sh did not finish within {minutes} min (phase \"{phase}\"); the log so far is in {log}")]
    StackTimeout { minutes: u32, phase: String, log: String },
    #[error("the instance step printed no result line; its output is in {0}")]
    Instance(String),
}

/// What the replica takes from local.conf (DevStack's effective values) and the
/// names and addresses Neutron would pick.
#[derive(Debug, Clone, Serialize)]
pub struct CloudValues {
    pub public_interface: String,
    pub ovs_physical_bridge: String,
    pub physical_network: String,
    pub floating_prefix: u8,
    pub public_gateway: Ipv4Addr,
    /// The router's gateway address: the first of the allocation pool.
    pub router_gw_ip: Ipv4Addr,
    /// The instance's floating IP: the next one.
    pub floating_ip: Ipv4Addr,
    pub fixed_ip: Ipv4Addr,
    pub network_gateway: Ipv4Addr,
    pub fixed_prefix: u8,
    pub mtu: u16,
    pub router_id: String,
    pub gw_port_id: String,
    pub int_port_id: String,
    pub vm_port_id: String,
    pub instance_ns: String,
    /// Who builds this cloud.
    pub kind: CloudKind,
}

pub const REPLICA_SCRIPT: &str = "/usr/local/sbin/harness-replica";
pub const DEVSTACK_SCRIPT: &str = "/usr/local/sbin/harness-devstack";
const INSTANCE_PROBE_SH: &str = "/usr/local/share/devstack-harness/probe.sh";

fn value(eff: &Effective, name: &str) -> Result<String, CloudError> {
    eff.get(name).filter(|v| !v.is_empty()).map(str::to_owned).ok_or_else(|| CloudError::Value {
        name: name.into(),
        value: String::new(),
        expected: "a value".into(),
    })
}

fn parsed<T: std::str::FromStr>(eff: &Effective, name: &str, expected: &str) -> Result<T, CloudError> {
    let v = value(eff, name)?;
    v.parse().map_err(|_| CloudError::Value { name: name.into(), value: v, expected: expected.into() })
}

impl CloudValues {
    /// The values of `kind`'s cloud as local.conf predicts them. The devstack
    /// cloud replaces the addresses and ids with what Neutron allocated, once built.
    pub fn from_local_conf(text: &str, plan: &Plan, run_id: &str, kind: CloudKind) -> Result<CloudValues, CloudError> {
        let eff = Effective::evaluate(&localconf::parse(text));
        let floating: Ipv4Net = parsed(&eff, "FLOATING_RANGE", "a CIDR")?;
        let fixed: Ipv4Net = parsed(&eff, "FIXED_RANGE", "a CIDR")?;
        let pool = value(&eff, "Q_FLOATING_ALLOCATION_POOL").unwrap_or_default();
        let pool_start = pool
            .split(',')
            .find_map(|p| p.strip_prefix("start="))
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(floating.network()) + 2));
        let network_gateway: Ipv4Addr = parsed(&eff, "NETWORK_GATEWAY", "an IPv4 address")?;
        let mappings = value(&eff, "OVS_BRIDGE_MAPPINGS")?;
        let (physnet, _) = mappings.split(',').next().and_then(|m| m.split_once(':')).ok_or_else(|| CloudError::Value {
            name: "OVS_BRIDGE_MAPPINGS".into(),
            value: mappings.clone(),
            expected: "physnet:bridge".into(),
        })?;
        // Neutron names ports after the first 11 characters of their UUIDs; these
        // are derived from the run id so that each run's names are its own.
        let id = |tag: &str| format!("{tag}{run_id}")[..11].to_owned();
        Ok(CloudValues {
            public_interface: value(&eff, "PUBLIC_INTERFACE")?,
            ovs_physical_bridge: value(&eff, "OVS_PHYSICAL_BRIDGE")?,
            physical_network: physnet.into(),
            floating_prefix: floating.prefix_len(),
            public_gateway: parsed(&eff, "PUBLIC_NETWORK_GATEWAY", "an IPv4 address")?,
            router_gw_ip: pool_start,
            floating_ip: Ipv4Addr::from(u32::from(pool_start) + 1),
            fixed_ip: Ipv4Addr::from(u32::from(network_gateway) + 4),
            network_gateway,
            fixed_prefix: fixed.prefix_len(),
            mtu: plan.world.tenant_mtu,
            router_id: format!("{run_id}-0000-4000-8000-000000000001"),
            gw_port_id: id("0a1b2"),
            int_port_id: id("0c3d4"),
            vm_port_id: id("0e5f6"),
            instance_ns: format!("instance-{run_id}"),
            kind,
        })
    }

    /// The script in the guest that builds this cloud and (dis)associates its floating IP.
    pub fn script(&self) -> &'static str {
        match self.kind {
            CloudKind::Replica => REPLICA_SCRIPT,
            CloudKind::Devstack => DEVSTACK_SCRIPT,
        }
    }

    /// The command (in the guest) that runs the probe inside the instance.
    pub fn instance_probe(&self) -> String {
        match self.kind {
            CloudKind::Replica => format!("ip netns exec {} {}", self.instance_ns, crate::checks::GUEST_PROBE),
            CloudKind::Devstack => format!("{DEVSTACK_SCRIPT} probe"),
        }
    }
}

pub fn render_replica(plan: &Plan, values: &CloudValues, templates: Option<&std::path::Path>) -> Result<String, CloudError> {
    crate::render::Renderer::new(templates)
        .and_then(|r| r.render_extra(crate::render::REPLICA, plan, values))
        .map_err(|e| CloudError::Template("replica.sh".into(), e.to_string()))
}

/// Run a script step in the guest; its output goes to `log` in the run directory.
pub async fn guest_step(ssh: &Ssh, step: &str, command: &str, timeout: Duration, log: &std::path::Path) -> Result<String, CloudError> {
    let out = ssh.exec(command, timeout).await?;
    let text = format!("{}{}", out.stdout, out.stderr);
    let _ = std::fs::write(log, &text);
    if out.status != 0 {
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(CloudError::Step { step: step.into(), status: out.status, output: tail.join("\n"), log: log.display().to_string() });
    }
    Ok(text)
}

/// What the devstack script's template sees besides the plan.
#[derive(Debug, Serialize)]
struct DevstackValues {
    /// The name of the keypair, security group and server.
    name: String,
    /// Ingress ports the security group opens (ICMP is always open).
    tcp_ports: Vec<u16>,
    udp_ports: Vec<u16>,
}

pub fn render_devstack(plan: &Plan, run_id: &str, templates: Option<&std::path::Path>) -> Result<String, CloudError> {
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
    crate::render::Renderer::new(templates)
        .and_then(|r| r.render_extra(crate::render::DEVSTACK, plan, &v))
        .map_err(|e| CloudError::Template("devstack.sh".into(), e.to_string()))
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
async fn run_stack(plan: &Plan, ssh: &Ssh, log: &std::path::Path, progress: &Progress) -> Result<(), CloudError> {
    use std::io::Write;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut file =
        std::fs::File::create(log).map_err(|e| CloudError::Template("stack.sh log".into(), format!("{}: {e}", log.display())))?;
    let minutes = plan.devstack.stack_timeout_min;
    let command = format!("{DEVSTACK_SCRIPT} stack 2>&1");
    let fut = ssh.exec_streaming(&command, Duration::from_secs(u64::from(minutes) * 60), move |chunk| {
        let _ = file.write_all(chunk.as_bytes());
        let _ = tx.send(chunk.to_owned());
    });
    tokio::pin!(fut);
    let mut lines = Lines::default();
    let mut phase = String::from("starting");
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let started = std::time::Instant::now();
    let result = loop {
        tokio::select! {
            r = &mut fut => break r,
            Some(chunk) = rx.recv() => {
                for line in lines.push(&chunk) {
                    if let Some(p) = stack_phase(&line) {
                        progress.phase(&format!("stack.sh: {p} ({:.0} s)", started.elapsed().as_secs_f64()));
                        phase = p;
                    }
                    progress.message(&line);
                    tail.push_back(line);
                    if tail.len() > 25 {
                        tail.pop_front();
                    }
                }
            }
        }
    };
    while let Ok(chunk) = rx.try_recv() {
        tail.extend(lines.push(&chunk));
    }
    let log_s = log.display().to_string();
    match result {
        Ok(out) if out.status == 0 => Ok(()),
        Ok(out) => Err(CloudError::Stack {
            phase,
            status: out.status,
            tail: tail.iter().skip(tail.len().saturating_sub(20)).cloned().collect::<Vec<_>>().join("\n"),
            log: log_s,
        }),
        Err(SshError::Timeout { .. }) => Err(CloudError::StackTimeout { minutes, phase, log: log_s }),
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

/// Where a cloud is built: the guest's SSH session and the run's directory and id.
pub struct Site<'a> {
    pub ssh: &'a Ssh,
    pub run_dir: &'a std::path::Path,
    pub run_id: &'a str,
    pub templates: Option<&'a std::path::Path>,
    pub progress: &'a Progress,
}

/// Build the real DevStack cloud in the guest: preflight, prepare, stack.sh, instance.
async fn build_devstack(plan: &Plan, values: &mut CloudValues, site: &Site<'_>) -> Result<(), CloudError> {
    let Site { ssh, run_dir, run_id, templates, progress } = *site;
    let script = render_devstack(plan, run_id, templates)?;
    let _ = std::fs::write(run_dir.join("rendered/devstack.sh"), &script);
    ssh.exec("mkdir -p /usr/local/share/devstack-harness", Duration::from_secs(30)).await?;
    ssh.upload(script.into_bytes(), DEVSTACK_SCRIPT, 0o755).await?;
    ssh.upload(crate::netplane::script("probe.sh").as_bytes().to_vec(), INSTANCE_PROBE_SH, 0o644).await?;
    let dns = format!(
        "if command -v resolvectl >/dev/null; then resolvectl dns {nic} {gw}; else echo 'nameserver {gw}' >/etc/resolv.conf; fi",
        nic = plan.world.guest_nic,
        gw = plan.world.guest_gateway
    );
    guest_step(ssh, "DNS through the uplink", &format!("({dns}) 2>&1"), Duration::from_secs(30), &run_dir.join("devstack-dns.log")).await?;
    let pre = ssh.exec(&format!("{DEVSTACK_SCRIPT} preflight 2>&1"), Duration::from_secs(60)).await?;
    if pre.status != 0 {
        return Err(CloudError::NoInternet(plan.devstack.git_base.clone()));
    }
    progress.phase(&format!("devstack: cloning DevStack {} ({})", plan.devstack.branch, plan.devstack.git_base));
    guest_step(
        ssh,
        "devstack prepare",
        &format!("{DEVSTACK_SCRIPT} prepare 2>&1"),
        Duration::from_secs(1800),
        &run_dir.join("devstack-prepare.log"),
    )
    .await?;
    progress.phase("devstack: stack.sh (a line per phase; the whole log is stack.sh.log in the run directory)");
    run_stack(plan, ssh, &run_dir.join("stack.sh.log"), progress).await?;
    progress.phase("devstack: keypair, security group, server, floating IP");
    let log = run_dir.join("devstack-instance.log");
    let out = guest_step(ssh, "devstack instance", &format!("{DEVSTACK_SCRIPT} instance"), Duration::from_secs(1800), &log).await?;
    let line: InstanceLine =
        out.lines().rev().find_map(|l| serde_json::from_str(l).ok()).ok_or_else(|| CloudError::Instance(log.display().to_string()))?;
    values.router_id = line.router_id;
    values.floating_ip = line.floating_ip;
    values.fixed_ip = line.fixed_ip;
    values.network_gateway = line.network_gateway;
    values.router_gw_ip = line.router_gw_ip;
    values.gw_port_id = line.gw_port_id;
    values.int_port_id = line.int_port_id;
    values.vm_port_id = line.vm_port_id;
    Ok(())
}

/// Build the scenario's cloud in the guest. The devstack cloud updates `values`
/// with what Neutron allocated.
pub async fn build(plan: &Plan, kind: CloudKind, values: &mut CloudValues, site: &Site<'_>) -> Result<(), CloudError> {
    let Site { ssh, run_dir, templates, .. } = *site;
    match kind {
        CloudKind::Replica => {
            let script = render_replica(plan, values, templates)?;
            let _ = std::fs::write(run_dir.join("rendered/replica.sh"), &script);
            ssh.upload(script.into_bytes(), REPLICA_SCRIPT, 0o755).await?;
            guest_step(ssh, "replica build", &format!("{REPLICA_SCRIPT} build 2>&1"), Duration::from_secs(300), &run_dir.join("cloud.log"))
                .await?;
            Ok(())
        }
        CloudKind::Devstack => build_devstack(plan, values, site).await,
    }
}

/// Disassociate or associate the instance's floating IP, the way the cloud does it.
pub async fn floating_ip(ssh: &Ssh, values: &CloudValues, verb: &str, log: &std::path::Path) -> Result<(), CloudError> {
    guest_step(ssh, verb, &format!("{} {verb} 2>&1", values.script()), Duration::from_secs(120), log).await.map(|_| ())
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

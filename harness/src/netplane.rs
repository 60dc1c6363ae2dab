//! The network plane on the host, all inside the run's own namespaces
//! (docs/design.md, "The world"): the cloud edge (the guest's gateway and the 1:1
//! NAT between the public IP and the guest's private address) and the internet
//! (client and responder). Nothing is added to the host's own namespace: the veth
//! between edge and internet is created directly inside them.

use crate::exec::{Cmd, ExecError, Executor, HostNetns};
use crate::run::{self, Run, RunError};
use crate::scenario::{CheckKind, Plan, Target};
use crate::scripts::script;
use crate::wait::{self, Step};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum NetplaneError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("{what} failed ({place}): `{command}` exited {status}: {stderr}")]
    Step { what: String, place: String, command: String, status: i32, stderr: String },
    #[error("{what}: {source}; see {log}")]
    NotReady { what: String, source: wait::WaitError, log: String },
}

pub const EDGE_GATEWAY_MAC: &str = "52:54:00:ed:9e:01";

/// The cloud edge's end of the veth to the internet.
pub fn edge_veth(id: &str) -> String {
    format!("dh{id}e0")
}
/// The internet's end of the veth to the cloud edge.
pub fn inet_veth(id: &str) -> String {
    format!("dh{id}i0")
}
fn uplink_if(id: &str) -> String {
    format!("dh{id}u0")
}

/// Run `argv` where `at` is; a non-zero exit is an error that names the step.
pub async fn step(at: &dyn Executor, what: &str, argv: &[&str]) -> Result<(), NetplaneError> {
    let cmd = Cmd::new(argv.iter().copied()).timeout(Duration::from_secs(30));
    let out = at.run(&cmd).await?;
    if out.status != 0 {
        return Err(NetplaneError::Step {
            what: what.into(),
            place: at.place(),
            command: cmd.shell_line(),
            status: out.status,
            stderr: out.stderr.trim().into(),
        });
    }
    Ok(())
}

/// The edge namespace's side of the guest's data NIC: the tap QEMU opened, moved
/// into the edge with the guest's gateway address. Called right after the VM started.
pub async fn attach_tap(plan: &Plan, run: &Run) -> Result<(), NetplaneError> {
    let host = HostNetns { netns: None };
    let (edge_ns, tap) = (run::edge_netns(&run.id), run::data_tap(&run.id));
    step(&host, "tap into the edge", &["ip", "link", "set", &tap, "netns", &edge_ns]).await?;
    let edge = HostNetns::new(&edge_ns);
    let gw = format!("{}/{}", plan.world.guest_gateway, plan.world.guest_address.prefix_len());
    step(&edge, "edge lo up", &["ip", "link", "set", "lo", "up"]).await?;
    // A fixed MAC for the guest's gateway: a VM restored from a saved state still
    // has it in its neighbour table (each run's tap is in its own namespace).
    step(&edge, "edge gateway MAC", &["ip", "link", "set", &tap, "address", EDGE_GATEWAY_MAC]).await?;
    step(&edge, "edge gateway address", &["ip", "addr", "add", &gw, "dev", &tap]).await?;
    step(&edge, "edge tap up", &["ip", "link", "set", &tap, "up"]).await
}

/// The guest's tap back from the cloud edge into the host namespace (where
/// libvirt looks for it when it restores the VM); [`attach_tap`] moves it again.
pub async fn detach_tap(run: &Run) -> Result<(), NetplaneError> {
    let (edge_ns, tap) = (run::edge_netns(&run.id), run::data_tap(&run.id));
    // Namespace 1: PID 1's, the host's.
    step(&HostNetns::new(&edge_ns), "tap out of the edge", &["ip", "link", "set", &tap, "netns", "1"]).await
}

/// Wire the internet namespace to the edge and put the edge's NAT in place.
/// Called after the boot made the edge namespace and moved the guest's tap into it.
/// The responder answers on the ports of every scenario in `plans` (they share the VM).
pub async fn build(plan: &Plan, plans: &[&Plan], run: &mut Run) -> Result<(), NetplaneError> {
    let w = &plan.world;
    let (edge_ns, inet_ns) = (run::edge_netns(&run.id), run::internet_netns(&run.id));
    run.add_netns(&inet_ns)?;
    let (ev, iv) = (edge_veth(&run.id), inet_veth(&run.id));
    run.record.taps.extend([ev.clone(), iv.clone()]);
    run.save()?;
    let host = HostNetns { netns: None };
    step(
        &host,
        "veth between edge and internet",
        &["ip", "link", "add", &ev, "netns", &edge_ns, "type", "veth", "peer", "name", &iv, "netns", &inet_ns],
    )
    .await?;
    let (edge, inet) = (HostNetns::new(&edge_ns), HostNetns::new(&inet_ns));
    let edge_addr = w.internet_edge.to_string();
    let prefix = w.internet_edge.prefix_len();
    step(&edge, "edge address", &["ip", "addr", "add", &edge_addr, "dev", &ev]).await?;
    step(&edge, "edge veth up", &["ip", "link", "set", &ev, "up"]).await?;
    step(&edge, "edge forwarding", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).await?;
    let (public, private) = (w.public_ip.to_string(), w.guest_address.addr().to_string());
    // The cloud's 1:1 NAT, as the provider's edge does it for an instance with a public IP.
    step(
        &edge,
        "edge DNAT",
        &["iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", &public, "-j", "DNAT", "--to-destination", &private],
    )
    .await?;
    step(&edge, "edge SNAT", &["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", &private, "-j", "SNAT", "--to-source", &public])
        .await?;

    step(&inet, "internet lo up", &["ip", "link", "set", "lo", "up"]).await?;
    for a in [w.internet_client, w.internet_responder] {
        step(&inet, "internet address", &["ip", "addr", "add", &format!("{a}/{prefix}"), "dev", &iv]).await?;
    }
    step(&inet, "internet veth up", &["ip", "link", "set", &iv, "up"]).await?;
    step(&inet, "internet default route", &["ip", "route", "add", "default", "via", &w.internet_edge.addr().to_string()]).await?;
    start_responder(plan, plans, run).await
}

/// Ports the responder must answer on: those of the checks that go to it.
fn responder_ports(plans: &[&Plan]) -> (Vec<u16>, Vec<u16>) {
    let mut tcp = vec![];
    let mut udp = vec![];
    let checks = plans.iter().flat_map(|p| p.checks.iter().map(move |c| (p, c)));
    for (_, c) in checks.filter(|(p, c)| c.to == Target::Responder || c.to == Target::Address(p.world.internet_responder)) {
        match (c.kind, c.port) {
            (CheckKind::Udp, Some(p)) => udp.push(p),
            (CheckKind::Tcp | CheckKind::Http, Some(p)) => tcp.push(p),
            _ => {}
        }
    }
    tcp.sort_unstable();
    tcp.dedup();
    udp.sort_unstable();
    udp.dedup();
    (tcp, udp)
}

/// Start a helper process on the host for the run's lifetime (recorded, so that
/// teardown and gc end it), its output in `log`.
fn spawn_helper(run: &mut Run, what: &str, argv: &[String], log: &std::path::Path) -> Result<(), NetplaneError> {
    let io = |source| RunError::Io { path: log.into(), source };
    let file = std::fs::File::create(log).map_err(io)?;
    let child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().map_err(io)?)
        .stderr(file)
        .spawn()
        .map_err(|e| RunError::Command { what: what.into(), detail: format!("{e}") })?;
    run.record.helpers.push(child.id() as i32);
    run.save()?;
    Ok(())
}

async fn start_responder(plan: &Plan, plans: &[&Plan], run: &mut Run) -> Result<(), NetplaneError> {
    let path = run.path("responder.py");
    std::fs::write(&path, script("responder.py")).map_err(|source| RunError::Io { path: path.clone(), source })?;
    let (tcp, udp) = responder_ports(plans);
    let join = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let log = run.path("responder.log");
    let mut argv: Vec<String> = ["ip", "netns", "exec", &run::internet_netns(&run.id), "/usr/bin/python3"].map(String::from).to_vec();
    argv.extend([path.display().to_string(), plan.world.internet_responder.to_string()]);
    argv.extend(["--tcp".into(), join(&tcp), "--udp".into(), join(&udp)]);
    spawn_helper(run, "start the responder", &argv, &log)?;
    // Wait for "ready" so that the first check does not race the listeners.
    wait::until("the responder to print \"ready\"", Duration::from_secs(5), Duration::from_millis(20), || async {
        match std::fs::read_to_string(&log) {
            Ok(s) if s.contains("ready") => Step::Done(()),
            Ok(s) => Step::NotYet(format!("{:?}", s.trim())),
            Err(e) => Step::NotYet(e.to_string()),
        }
    })
    .await
    .map_err(|source| NetplaneError::NotReady { what: "responder".into(), source, log: log.display().to_string() })
}

/// QEMU-style user-mode networking's address for the uplink's DNS (slirp4netns).
pub const UPLINK_DNS: &str = "10.0.2.3";

/// Give the cloud edge a way out for the devstack cloud, which must fetch DevStack's
/// sources: slirp4netns in the edge namespace (user-mode networking, so nothing
/// changes in the host's own namespace), guest traffic to it masqueraded inside the
/// edge, and DNS asked of the guest's gateway forwarded to slirp's resolver. Never
/// used by the replica: there the guest reaches nothing but harness namespaces.
/// `host_loopback` lets the edge reach the host's 127.0.0.1 as 10.0.2.2 (tests only).
pub async fn uplink(plan: &Plan, run: &mut Run, host_loopback: bool) -> Result<(), NetplaneError> {
    let edge_ns = run::edge_netns(&run.id);
    let ifname = uplink_if(&run.id);
    let log = run.path("slirp4netns.log");
    let mut argv: Vec<String> = ["slirp4netns", "--configure", "--mtu=65520", "--netns-type=path"].map(String::from).to_vec();
    if !host_loopback {
        argv.push("--disable-host-loopback".into());
    }
    argv.extend([format!("/run/netns/{edge_ns}"), ifname.clone()]);
    spawn_helper(run, "slirp4netns (apt-get install slirp4netns)", &argv, &log)?;
    let edge = HostNetns::new(&edge_ns);
    // Ready when its interface has its address in the edge namespace.
    let show = Cmd::new(["ip", "-4", "-o", "addr", "show", "dev", &ifname]).timeout(Duration::from_secs(5));
    wait::until(&format!("an address on {ifname} in {edge_ns}"), Duration::from_secs(5), Duration::from_millis(20), || async {
        match edge.run(&show).await {
            Ok(o) if o.stdout.contains("inet ") => Step::Done(()),
            Ok(o) => Step::NotYet(o.text().trim().to_owned()),
            Err(e) => Step::NotYet(e.to_string()),
        }
    })
    .await
    .map_err(|source| NetplaneError::NotReady { what: "slirp4netns".into(), source, log: log.display().to_string() })?;
    // Before the 1:1 SNAT, which would otherwise claim this traffic too.
    step(&edge, "uplink MASQUERADE", &["iptables", "-w", "-t", "nat", "-I", "POSTROUTING", "1", "-o", &ifname, "-j", "MASQUERADE"]).await?;
    let gw = plan.world.guest_gateway.to_string();
    for proto in ["udp", "tcp"] {
        step(
            &edge,
            "uplink DNS",
            &[
                "iptables",
                "-w",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-d",
                &gw,
                "-p",
                proto,
                "--dport",
                "53",
                "-j",
                "DNAT",
                "--to-destination",
                UPLINK_DNS,
            ],
        )
        .await?;
    }
    Ok(())
}

//! The network plane on the host, all inside the run's own namespaces (DESIGN.md,
//! "The world"): the cloud edge (the guest's gateway and the 1:1 NAT between the
//! public IP and the guest's private address) and the internet (client and
//! responder). Nothing is added to the host's own namespace: the veth between
//! edge and internet is created directly inside them.

use crate::run::{self, Run, RunError};
use crate::scenario::{CheckKind, Plan, Target};
use include_dir::{include_dir, Dir};
use std::path::PathBuf;
use std::process::Command;

pub static SCRIPTS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/scripts");

pub fn script(name: &str) -> &'static str {
    SCRIPTS.get_file(name).and_then(|f| f.contents_utf8()).expect("embedded script")
}

fn edge_veth(id: &str) -> String {
    format!("dh{id}e0")
}
fn inet_veth(id: &str) -> String {
    format!("dh{id}i0")
}

fn ipt(ns: &str, what: &str, args: &[&str]) -> Result<(), RunError> {
    let mut full = vec!["iptables", "-w"];
    full.extend_from_slice(args);
    run::in_netns(ns, what, &full)
}

/// Wire the internet namespace to the edge and put the edge's NAT in place.
/// Called after the boot made the edge namespace and moved the guest's tap into it.
/// The responder answers on the ports of every scenario in `plans` (they share the VM).
pub fn build(plan: &Plan, plans: &[&Plan], run: &mut Run) -> Result<(), RunError> {
    let w = &plan.world;
    let edge = run::edge_netns(&run.id);
    let inet = run::internet_netns(&run.id);
    run.add_netns(&inet)?;
    let (ev, iv) = (edge_veth(&run.id), inet_veth(&run.id));
    run.record.taps.extend([ev.clone(), iv.clone()]);
    run.save()?;
    let out = Command::new("ip")
        .args(["link", "add", &ev, "netns", &edge, "type", "veth", "peer", "name", &iv, "netns", &inet])
        .output()
        .map_err(|e| RunError::Command { what: "ip link add veth".into(), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(RunError::Command { what: "ip link add veth".into(), detail: String::from_utf8_lossy(&out.stderr).trim().into() });
    }
    let edge_addr = w.internet_edge.to_string();
    let prefix = w.internet_edge.prefix_len();
    run::in_netns(&edge, "edge address", &["ip", "addr", "add", &edge_addr, "dev", &ev])?;
    run::in_netns(&edge, "edge veth up", &["ip", "link", "set", &ev, "up"])?;
    run::in_netns(&edge, "edge forwarding", &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    let (public, private) = (w.public_ip.to_string(), w.guest_address.addr().to_string());
    // The cloud's 1:1 NAT, as the provider's edge does it for an instance with a public IP.
    ipt(&edge, "edge DNAT", &["-t", "nat", "-A", "PREROUTING", "-d", &public, "-j", "DNAT", "--to-destination", &private])?;
    ipt(&edge, "edge SNAT", &["-t", "nat", "-A", "POSTROUTING", "-s", &private, "-j", "SNAT", "--to-source", &public])?;

    run::in_netns(&inet, "internet lo up", &["ip", "link", "set", "lo", "up"])?;
    for a in [w.internet_client, w.internet_responder] {
        run::in_netns(&inet, "internet address", &["ip", "addr", "add", &format!("{a}/{prefix}"), "dev", &iv])?;
    }
    run::in_netns(&inet, "internet veth up", &["ip", "link", "set", &iv, "up"])?;
    run::in_netns(&inet, "internet default route", &["ip", "route", "add", "default", "via", &w.internet_edge.addr().to_string()])?;
    start_responder(plan, plans, run)
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

fn start_responder(plan: &Plan, plans: &[&Plan], run: &mut Run) -> Result<(), RunError> {
    let path: PathBuf = run.path("responder.py");
    std::fs::write(&path, script("responder.py")).map_err(|source| RunError::Io { path: path.clone(), source })?;
    let (tcp, udp) = responder_ports(plans);
    let join = |v: &[u16]| v.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let log =
        std::fs::File::create(run.path("responder.log")).map_err(|source| RunError::Io { path: run.path("responder.log"), source })?;
    let child = Command::new("ip")
        .args(["netns", "exec", &run::internet_netns(&run.id), "/usr/bin/python3"])
        .arg(&path)
        .arg(plan.world.internet_responder.to_string())
        .args(["--tcp", &join(&tcp), "--udp", &join(&udp)])
        .stdout(log.try_clone().map_err(|source| RunError::Io { path: run.path("responder.log"), source })?)
        .stderr(log)
        .spawn()
        .map_err(|e| RunError::Command { what: "start the responder".into(), detail: e.to_string() })?;
    run.record.helpers.push(child.id() as i32);
    run.save()?;
    // Wait for "ready" so that the first check does not race the listeners.
    for _ in 0..100 {
        if std::fs::read_to_string(run.path("responder.log")).is_ok_and(|s| s.contains("ready")) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Err(RunError::Command { what: "responder".into(), detail: format!("not ready after 5 s; see {}", run.path("responder.log").display()) })
}

fn uplink_if(id: &str) -> String {
    format!("dh{id}u0")
}

/// QEMU-style user-mode networking's address for the uplink's DNS (slirp4netns).
pub const UPLINK_DNS: &str = "10.0.2.3";

/// Give the cloud edge a way out for the devstack cloud, which must fetch DevStack's
/// sources: slirp4netns in the edge namespace (user-mode networking, so nothing
/// changes in the host's own namespace), guest traffic to it masqueraded inside the
/// edge, and DNS asked of the guest's gateway forwarded to slirp's resolver. Never
/// used by the replica: there the guest reaches nothing but harness namespaces.
/// `host_loopback` lets the edge reach the host's 127.0.0.1 as 10.0.2.2 (tests only).
pub fn uplink(plan: &Plan, run: &mut Run, host_loopback: bool) -> Result<(), RunError> {
    let edge = run::edge_netns(&run.id);
    let ifname = uplink_if(&run.id);
    let log = run.path("slirp4netns.log");
    let file = std::fs::File::create(&log).map_err(|source| RunError::Io { path: log.clone(), source })?;
    let mut cmd = Command::new("slirp4netns");
    cmd.args(["--configure", "--mtu=65520", "--netns-type=path"]);
    if !host_loopback {
        cmd.arg("--disable-host-loopback");
    }
    let child = cmd
        .arg(format!("/run/netns/{edge}"))
        .arg(&ifname)
        .stdout(file.try_clone().map_err(|source| RunError::Io { path: log.clone(), source })?)
        .stderr(file)
        .spawn()
        .map_err(|e| RunError::Command { what: "slirp4netns".into(), detail: format!("{e} (apt-get install slirp4netns)") })?;
    run.record.helpers.push(child.id() as i32);
    run.save()?;
    // Ready when its interface has its address in the edge namespace.
    let ready = (0..100).any(|_| {
        let up = Command::new("ip")
            .args(["netns", "exec", &edge, "ip", "-4", "-o", "addr", "show", "dev", &ifname])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("inet "));
        if !up {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        up
    });
    if !ready {
        return Err(RunError::Command {
            what: "slirp4netns".into(),
            detail: format!("no address on {ifname} in {edge} after 5 s; see {}", log.display()),
        });
    }
    // Before the 1:1 SNAT, which would otherwise claim this traffic too.
    ipt(&edge, "uplink MASQUERADE", &["-t", "nat", "-I", "POSTROUTING", "1", "-o", &ifname, "-j", "MASQUERADE"])?;
    let gw = plan.world.guest_gateway.to_string();
    for proto in ["udp", "tcp"] {
        ipt(
            &edge,
            "uplink DNS",
            &["-t", "nat", "-A", "PREROUTING", "-d", &gw, "-p", proto, "--dport", "53", "-j", "DNAT", "--to-destination", UPLINK_DNS],
        )?;
    }
    Ok(())
}

//! Trace stage: where a check's packet died (docs/design.md, "Where a packet
//! died"). The harness reads every interface's and every netfilter chain's
//! counters along the check's path, sends the probe again, reads them again, and
//! walks the path in order: the first hop whose counters did not move follows the
//! hop where the packet died. Why it died there comes from what that hop's
//! namespace says (a chain's policy and rules, `ip_forward`, `rp_filter`, a link's
//! state and MTU, `ip route get`), never from which fault a scenario switched on.
//! Reading counters changes nothing; the second probe is the only traffic added.

use crate::checks::{self, DiedAt, Hop, Probes, Trace};
use crate::cloud::Deployed;
use crate::exec::{Cmd, Executor};
use crate::scenario::{Check, Endpoint, Plan, Target};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The counter script in the guest.
pub const GUEST_SCRIPT: &str = "/usr/local/share/devstack-harness/trace-counters.sh";

/// Where the counters are read: the guest (every namespace), the cloud edge and
/// the internet namespaces on the host (the script's path on the host).
pub struct Places<'a> {
    pub guest: &'a dyn Executor,
    pub edge: &'a dyn Executor,
    pub internet: &'a dyn Executor,
    pub host_script: &'a str,
    /// The guest's tap as the edge sees it, the edge's and the internet's veth.
    pub edge_tap: String,
    pub edge_veth: String,
    pub internet_veth: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ns {
    Instance,
    Router,
    Host,
    Edge,
    Internet,
}

impl Ns {
    fn label(self) -> &'static str {
        match self {
            Ns::Instance => "the instance",
            Ns::Router => "the router",
            Ns::Host => "the host",
            Ns::Edge => "the cloud edge",
            Ns::Internet => "the internet",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Dev {
    Named(String),
    /// The first device whose name starts so (the router's qr-/qg- ports).
    Prefix(&'static str),
    /// The namespace's device besides lo (the instance's port).
    NotLo,
    /// The host's uplink: the device that holds the guest's address, else the
    /// guest NIC named here. With `PUBLIC_INTERFACE` naming the NIC, DevStack moves
    /// the address to br-ex and makes the NIC a port of it, and the host's
    /// packets to and from the cloud are routed through br-ex.
    Uplink {
        addr: String,
        nic: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Probe {
    /// `rx`: the packets this device handed to its namespace; else those it sent.
    Iface {
        dev: Dev,
        rx: bool,
    },
    Chain {
        table: &'static str,
        chain: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct HopSpec {
    name: String,
    ns: Ns,
    probe: Probe,
}

/// The zones of the world in order from the instance out to the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Zone {
    Instance,
    Router,
    Host,
    Edge,
    Internet,
}

fn zone_of_source(e: Endpoint) -> Zone {
    match e {
        Endpoint::Instance => Zone::Instance,
        Endpoint::Host => Zone::Host,
        Endpoint::Internet => Zone::Internet,
    }
}

/// Where a check's packet is going.
fn zone_of_target(c: &Check, addr: Ipv4Addr, plan: &Plan, d: &Deployed) -> Zone {
    let w = &plan.world;
    match &c.to {
        Target::FloatingIp => Zone::Instance,
        Target::Responder => Zone::Internet,
        Target::Gateway => match c.from {
            Endpoint::Instance => Zone::Router,
            _ => Zone::Edge,
        },
        Target::PublicIp if c.from == Endpoint::Internet && plan.forwards.iter().any(|f| Some(f.public_port) == c.port) => Zone::Instance,
        Target::PublicIp => Zone::Host,
        Target::Address(_) if addr == d.fixed_ip || addr == d.floating_ip || w.fixed_range.contains(&addr) => Zone::Instance,
        Target::Address(_) if addr == d.router_gw_ip || addr == d.network_gateway => Zone::Router,
        Target::Address(_) if addr == w.guest_gateway => Zone::Edge,
        Target::Address(_) if addr == w.public_ip || addr == w.guest_address.addr() || w.provider_address.addr() == addr => Zone::Host,
        Target::Address(_) => Zone::Internet,
    }
}

fn iface(name: &str, ns: Ns, dev: Dev, rx: bool) -> HopSpec {
    HopSpec { name: name.into(), ns, probe: Probe::Iface { dev, rx } }
}

fn chain(name: &str, ns: Ns, table: &'static str, chain: &'static str) -> HopSpec {
    HopSpec { name: name.into(), ns, probe: Probe::Chain { table, chain } }
}

/// A zone's hops for a packet going out (towards the internet) or in; `part`
/// says whether the packet starts there, ends there, or passes through.
fn zone_hops(z: Zone, out: bool, part: Part, plan: &Plan, at: &Places) -> Vec<HopSpec> {
    let w = &plan.world;
    let br = format!("host {}", w.ovs_bridge);
    let nic = format!("host {}", w.guest_nic);
    let h = match z {
        Zone::Instance => vec![iface("instance", Ns::Instance, Dev::NotLo, !out)],
        Zone::Router => vec![
            iface("router qr-", Ns::Router, Dev::Prefix("qr-"), out),
            chain("router NAT", Ns::Router, "nat", if out { "POSTROUTING" } else { "PREROUTING" }),
            iface("router qg-", Ns::Router, Dev::Prefix("qg-"), !out),
        ],
        Zone::Host => {
            let (nat, dev_in, dev_out) = if out { ("POSTROUTING", &br, &nic) } else { ("PREROUTING", &nic, &br) };
            let uplink = Dev::Uplink { addr: w.guest_address.addr().to_string(), nic: w.guest_nic.clone() };
            let bridge = Dev::Named(w.ovs_bridge.clone());
            let (d_in, d_out) = if out { (bridge, uplink) } else { (uplink, bridge) };
            let hop_in = iface(dev_in, Ns::Host, d_in, true);
            let hop_out = iface(dev_out, Ns::Host, d_out, false);
            match part {
                // The host as an end: the interface towards the other end only.
                Part::Start => vec![hop_out],
                Part::End => vec![hop_in],
                // Forwarded: DNAT (in) before FORWARD, MASQUERADE (out) after it.
                Part::Through if out => vec![
                    hop_in,
                    chain("host FORWARD", Ns::Host, "filter", "FORWARD"),
                    chain(&format!("host {nat}"), Ns::Host, "nat", nat),
                    hop_out,
                ],
                Part::Through => vec![
                    hop_in,
                    chain(&format!("host {nat}"), Ns::Host, "nat", nat),
                    chain("host FORWARD", Ns::Host, "filter", "FORWARD"),
                    hop_out,
                ],
            }
        }
        Zone::Edge => vec![
            iface("cloud edge", Ns::Edge, Dev::Named(at.edge_tap.clone()), out),
            iface("cloud edge", Ns::Edge, Dev::Named(at.edge_veth.clone()), !out),
        ],
        Zone::Internet => vec![iface("internet", Ns::Internet, Dev::Named(at.internet_veth.clone()), out)],
    };
    // Listed going out; going in, met the other way round (the host's are in order).
    let mut h: Vec<HopSpec> = if out || z == Zone::Host { h } else { h.into_iter().rev().collect() };
    // A packet that ends in the router or the edge meets only its first hop there.
    if part == Part::End && matches!(z, Zone::Router | Zone::Edge) {
        h.truncate(1);
    }
    h
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Start,
    Through,
    End,
}

/// The request's hops from the check's source to its target.
fn request_path(c: &Check, addr: Ipv4Addr, plan: &Plan, d: &Deployed, at: &Places) -> Vec<HopSpec> {
    let (from, to) = (zone_of_source(c.from), zone_of_target(c, addr, plan, d));
    if from == to {
        return vec![];
    }
    let out = from < to;
    let zones = [Zone::Instance, Zone::Router, Zone::Host, Zone::Edge, Zone::Internet];
    let (lo, hi) = if out { (from, to) } else { (to, from) };
    let mut within: Vec<Zone> = zones.into_iter().filter(|z| *z >= lo && *z <= hi).collect();
    if !out {
        within.reverse();
    }
    within
        .iter()
        .flat_map(|&z| {
            let part = if z == from {
                Part::Start
            } else if z == to {
                Part::End
            } else {
                Part::Through
            };
            zone_hops(z, out, part, plan, at)
        })
        .collect()
}

/// The reply's hops: the request's backwards, each interface counted the other
/// way, without the nat chains (conntrack translates replies without them).
fn reply_path(request: &[HopSpec]) -> Vec<HopSpec> {
    request
        .iter()
        .rev()
        .filter(|s| !matches!(s.probe, Probe::Chain { table: "nat", .. }))
        .map(|s| HopSpec {
            name: s.name.clone(),
            ns: s.ns,
            probe: match &s.probe {
                Probe::Iface { dev, rx } => Probe::Iface { dev: dev.clone(), rx: !rx },
                p => p.clone(),
            },
        })
        .collect()
}

/// One reading of every counter, by namespace.
#[derive(Debug, Default, Clone)]
struct Counters {
    ns: BTreeMap<Ns, NsCounters>,
}

#[derive(Debug, Default, Clone)]
struct NsCounters {
    name: String,
    /// dev -> (rx, tx, operstate, mtu)
    ifs: BTreeMap<String, (u64, u64, String, u32)>,
    sysctls: BTreeMap<String, String>,
    /// (table, chain) -> (policy, packets)
    policies: BTreeMap<(String, String), (String, u64)>,
    /// (table, chain, rule) with its packets; rules repeat rarely, so a list.
    rules: Vec<(String, String, String, u64)>,
    ct: Vec<String>,
    /// `ip -4 neigh` lines: "ADDR dev DEV lladdr MAC STATE".
    neigh: Vec<String>,
    /// (dev, address) of every address the namespace has.
    addrs: Vec<(String, String)>,
}

/// Read the script's output; `role` names the namespace a section belongs to.
fn parse(text: &str, role: &dyn Fn(&str) -> Option<Ns>, into: &mut Counters) {
    let mut cur: Option<Ns> = None;
    for line in text.lines() {
        let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
        if head == "ns" {
            cur = role(rest);
            if let Some(n) = cur {
                into.ns.entry(n).or_default().name = rest.to_owned();
            }
            continue;
        }
        let Some(n) = cur.and_then(|n| into.ns.get_mut(&n)) else { continue };
        // A rule's text is the rest of its line.
        let f: Vec<&str> = rest.splitn(if head == "rule" { 4 } else { 5 }, ' ').collect();
        match (head, f.as_slice()) {
            ("if", [dev, rx, tx, state, mtu]) => {
                n.ifs.insert((*dev).into(), (rx.parse().unwrap_or(0), tx.parse().unwrap_or(0), (*state).into(), mtu.parse().unwrap_or(0)));
            }
            ("sysctl", [k, v, ..]) => {
                n.sysctls.insert((*k).into(), (*v).into());
            }
            ("policy", [table, chain, policy, pkts, ..]) => {
                n.policies.insert(((*table).into(), (*chain).into()), ((*policy).into(), pkts.parse().unwrap_or(0)));
            }
            ("rule", [table, chain, pkts, rule]) => {
                n.rules.push(((*table).into(), (*chain).into(), (*rule).into(), pkts.parse().unwrap_or(0)))
            }
            ("ct", _) => n.ct.push(rest.to_owned()),
            ("neigh", _) => n.neigh.push(rest.to_owned()),
            ("addr", [dev, a, ..]) => n.addrs.push(((*dev).into(), a.split('/').next().unwrap_or(a).into())),
            _ => {}
        }
    }
}

impl NsCounters {
    fn dev(&self, d: &Dev) -> Option<String> {
        match d {
            Dev::Named(n) => self.ifs.contains_key(n).then(|| n.clone()),
            Dev::Prefix(p) => self.ifs.keys().find(|k| k.starts_with(p)).cloned(),
            // The one with an address: loading ip_gre (GRE tunnels) gives every new
            // namespace gre0, gretap0 and erspan0 as well.
            Dev::NotLo => {
                self.addrs.iter().find(|(d, _)| d != "lo").map(|(d, _)| d.clone()).or_else(|| self.ifs.keys().find(|k| *k != "lo").cloned())
            }
            Dev::Uplink { addr, nic } => self
                .addrs
                .iter()
                .find(|(_, a)| a == addr)
                .map(|(d, _)| d.clone())
                .or_else(|| self.ifs.contains_key(nic).then(|| nic.clone())),
        }
    }
}

/// The hops of `specs` that exist: a chain of a table its namespace does not
/// have is not on the way (no nat table: nothing translates there).
fn present(specs: Vec<HopSpec>, after: &Counters) -> Vec<HopSpec> {
    specs
        .into_iter()
        .filter(|s| match &s.probe {
            Probe::Chain { table, chain } => {
                after.ns.get(&s.ns).is_some_and(|n| n.policies.contains_key(&((*table).to_owned(), (*chain).to_owned())))
            }
            Probe::Iface { .. } => true,
        })
        .collect()
}

/// What each hop saw between two readings. A chain whose rules did not count the
/// packet saw it all the same when a later interface did (nf_tables keeps no
/// counter for a chain's policy, and a chain without rules counts nothing).
fn judge(specs: &[HopSpec], before: &Counters, after: &Counters, reply: bool) -> Vec<Hop> {
    let mut hops = judge_each(specs, before, after, reply);
    for i in 0..hops.len() {
        let later = specs.iter().zip(&hops).skip(i + 1).any(|(s, h)| h.saw && matches!(s.probe, Probe::Iface { .. }));
        if !hops[i].saw && later && matches!(specs[i].probe, Probe::Chain { .. }) {
            hops[i].saw = true;
            hops[i].evidence.push_str(" (a later hop saw it)");
        }
    }
    hops
}

/// The packets the trace's counting rule of `dev` counted ([`watch`]): those
/// it received (`rx`) or sent, of the request or of the reply.
fn watched(n: &NsCounters, dev: &str, rx: bool, reply: bool) -> Option<u64> {
    let (chain, dir) = if rx { ("harness-trace-in", format!("-i {dev} ")) } else { ("harness-trace-out", format!("-o {dev} ")) };
    let tag = if reply { "--comment rep" } else { "--comment req" };
    n.rules.iter().find(|(t, c, rule, _)| t == "mangle" && c == chain && rule.contains(&dir) && rule.ends_with(tag)).map(|r| r.3)
}

fn judge_each(specs: &[HopSpec], before: &Counters, after: &Counters, reply: bool) -> Vec<Hop> {
    specs
        .iter()
        .map(|s| {
            let name = if reply { format!("{} (reply)", s.name) } else { s.name.clone() };
            let (Some(b), Some(a)) = (before.ns.get(&s.ns), after.ns.get(&s.ns)) else {
                return Hop { hop: name, saw: false, evidence: format!("{} was not found", s.ns.label()) };
            };
            match &s.probe {
                Probe::Iface { dev, rx } => {
                    let Some(dev) = a.dev(dev) else {
                        return Hop { hop: name, saw: false, evidence: format!("no such device in {} ({})", s.ns.label(), a.name) };
                    };
                    let (_, _, state, mtu) = a.ifs.get(&dev).cloned().unwrap_or_default();
                    let what = if reply { "reply" } else { "request" };
                    let way = if *rx { "in" } else { "out" };
                    match (watched(b, &dev, *rx, reply), watched(a, &dev, *rx, reply)) {
                        (Some(was), Some(now)) => {
                            let moved = now.saturating_sub(was);
                            Hop {
                                hop: name,
                                saw: moved > 0,
                                evidence: format!("{dev} in {}: {moved} {what} packets {way} ({state}, mtu {mtu})", where_(a)),
                            }
                        }
                        _ => Hop {
                            hop: name,
                            saw: false,
                            evidence: format!(
                                "{dev} in {}: not counted (no counting rule: the device came after the trace began?)",
                                where_(a)
                            ),
                        },
                    }
                }
                Probe::Chain { table, chain } => {
                    let moved: Vec<String> = a
                        .rules
                        .iter()
                        .filter(|(t, c, ..)| t == table && c == chain)
                        .filter_map(|(t, c, rule, n)| {
                            let was = b.rules.iter().find(|(bt, bc, br, _)| bt == t && bc == c && br == rule).map_or(0, |r| r.3);
                            (*n > was).then(|| format!("`{rule}` +{}", n - was))
                        })
                        .collect();
                    let key = ((*table).to_owned(), (*chain).to_owned());
                    let (policy, pa) = a.policies.get(&key).cloned().unwrap_or_default();
                    let pb = b.policies.get(&key).map_or(0, |p| p.1);
                    let fell = pa.saturating_sub(pb);
                    let mut ev = format!("{table} {chain} in {}: ", where_(a));
                    if moved.is_empty() {
                        ev.push_str("no rule counted it");
                    } else {
                        ev.push_str(&moved.join(", "));
                    }
                    ev.push_str(&format!("; policy {policy} +{fell}"));
                    // A chain's counters do not tell a reply from its request: on the
                    // way back only the interfaces around it say (see `judge`).
                    Hop { hop: name, saw: !reply && (!moved.is_empty() || fell > 0), evidence: ev }
                }
            }
        })
        .collect()
}

fn where_(n: &NsCounters) -> String {
    if n.name.is_empty() {
        "the root namespace".into()
    } else {
        n.name.clone()
    }
}

/// conntrack's newest entry in `n` for a flow to `addr` (before or after a DNAT):
/// (original source, original destination, reply source, reply destination). A
/// flow that never completed comes first: a traced probe's did not, while an
/// earlier check's to the same address (the host's own, say) may have.
fn ct_flow(n: &NsCounters, addr: Ipv4Addr) -> Option<[Ipv4Addr; 4]> {
    let a = addr.to_string();
    let flow = |l: &String| {
        let v: Vec<Ipv4Addr> = l
            .split_whitespace()
            .filter_map(|f| f.strip_prefix("src=").or_else(|| f.strip_prefix("dst=")))
            .filter_map(|x| x.parse().ok())
            .collect();
        let q: [Ipv4Addr; 4] = v.get(..4)?.try_into().ok()?;
        (q[1].to_string() == a || q[2].to_string() == a).then_some(q)
    };
    let unassured = n.ct.iter().rev().filter(|l| !l.contains("[ASSURED]")).find_map(flow);
    unassured.or_else(|| n.ct.iter().rev().find_map(flow))
}

/// `ip route get` in a namespace: where the kernel would send `dst`.
async fn route_get(ns: Ns, n: &NsCounters, dst: Ipv4Addr, at: &Places<'_>) -> String {
    let mut argv: Vec<String> = vec![];
    let exec: &dyn Executor = match ns {
        Ns::Edge => at.edge,
        Ns::Internet => at.internet,
        _ => {
            if !n.name.is_empty() {
                argv.extend(["ip", "netns", "exec", &n.name].map(String::from));
            }
            at.guest
        }
    };
    argv.extend(["ip", "-4", "-o", "route", "get", &dst.to_string()].map(String::from));
    match exec.run(&Cmd::new(argv).timeout(Duration::from_secs(10))).await {
        Ok(o) => o.text().split_whitespace().collect::<Vec<_>>().join(" "),
        Err(e) => format!("cannot ask: {e}"),
    }
}

/// Whether a MASQUERADE or SNAT rule of the host's nat POSTROUTING counted packets.
fn translated_on_the_host(after: &Counters) -> bool {
    after.ns.get(&Ns::Host).is_some_and(|n| {
        n.rules
            .iter()
            .any(|(t, c, rule, p)| t == "nat" && c == "POSTROUTING" && *p > 0 && (rule.contains("MASQUERADE") || rule.contains("SNAT")))
    })
}

fn route_dev(route: &str) -> Option<&str> {
    let w: Vec<&str> = route.split_whitespace().collect();
    w.windows(2).find(|p| p[0] == "dev").map(|p| p[1])
}

/// Why the packet went no further than `last` (the hop that saw it last; `came_in`
/// the last interface that did), with `next` the hop that did not see it. Facts
/// first, in the order the kernel meets them; what explains nothing falls through
/// to a sentence that says so.
#[allow(clippy::too_many_arguments)]
async fn reason(
    c: &Check,
    addr: Ipv4Addr,
    src: Option<Ipv4Addr>,
    last: &HopSpec,
    came_in: &HopSpec,
    next: Option<&HopSpec>,
    reply: bool,
    after: &Counters,
    at: &Places<'_>,
) -> String {
    let Some(n) = after.ns.get(&last.ns) else { return format!("{} was not found", last.ns.label()) };
    let flow = ct_flow(n, addr);
    // Where the packet was going in this namespace: past a DNAT for a request,
    // back to the request's source for a reply.
    let dst = match (reply, flow) {
        (false, Some(q)) => q[2],
        (false, None) => addr,
        (true, Some(q)) => q[0],
        (true, None) => return format!("{} sent the reply no further (conntrack has no entry for {addr} there)", last.ns.label()),
    };
    if let Some(HopSpec { probe: Probe::Iface { dev, .. }, ns, .. }) = next {
        if let Some(m) = after.ns.get(ns) {
            if let Some(dev) = m.dev(dev) {
                let (_, _, state, mtu) = &m.ifs[&dev];
                if state == "down" {
                    return format!("{dev} is down");
                }
                if let (Some(size), true) = (c.size, c.dont_fragment) {
                    let bytes = u32::from(size) + 28;
                    if bytes > *mtu {
                        // The sender's own MTU let it out: nothing told it the way is narrower.
                        let sender = match &came_in.probe {
                            Probe::Iface { dev: d, .. } => n.dev(d).and_then(|d| n.ifs.get(&d).map(|i| (d, i.3))),
                            Probe::Chain { .. } => None,
                        };
                        return match sender {
                            Some((d, m)) if m >= bytes && *ns != last.ns => format!(
                                "{bytes} bytes with Don't Fragment do not fit {dev}'s MTU {mtu}; {d} sent them at MTU {m}, and a switch drops what is too big without an ICMP error"
                            ),
                            _ => format!("{bytes} bytes with Don't Fragment do not fit {dev}'s MTU {mtu}"),
                        };
                    }
                }
            }
        }
    }
    // The host forwards between its interfaces only with ip_forward.
    let forwarding = next.is_some_and(|s| s.ns == last.ns) && last.ns != Ns::Instance;
    if forwarding && n.sysctls.get("ip_forward").map(String::as_str) == Some("0") {
        return format!("net.ipv4.ip_forward = 0 in {}: it does not forward", last.ns.label());
    }
    let route = route_get(last.ns, n, dst, at).await;
    if route.contains("unreachable") || route.contains("RTNETLINK") || route.is_empty() {
        let mut r = format!("no route to {dst} in {} (`ip route get {dst}`: {route})", last.ns.label());
        if reply && last.ns > Ns::Host && !translated_on_the_host(after) {
            r.push_str(&format!("; the request left the host still from {dst}: no rule of its nat POSTROUTING translated it (no MASQUERADE for that source)"));
        }
        return r;
    }
    if let (Some(HopSpec { probe: Probe::Iface { dev, .. }, ns, .. }), Some(via)) = (next, route_dev(&route)) {
        if let Some(want) = after.ns.get(ns).and_then(|m| m.dev(dev)) {
            if *ns == last.ns && via != want && via != "lo" {
                return format!("the route to {dst} leaves through {via}, not {want} (`ip route get {dst}`: {route})");
            }
        }
    }
    // Strict reverse-path filtering drops what arrives where the way back does not lead.
    // A request dropped there never confirmed a conntrack entry: its source is the check's.
    let from = match (flow, reply) {
        (Some(q), true) => Some(q[2]),
        (Some(q), false) => Some(q[0]),
        (None, false) => src,
        (None, true) => None,
    };
    if let (Probe::Iface { dev, rx: true }, Some(src), true) = (&came_in.probe, from, came_in.ns == last.ns) {
        if let Some(dev) = n.dev(dev) {
            let rp = |k: &str| n.sysctls.get(&format!("rp_filter.{k}")).and_then(|v| v.parse::<u8>().ok()).unwrap_or(0);
            if rp("all").max(rp(&dev)) == 1 {
                let back = route_get(last.ns, n, src, at).await;
                if route_dev(&back).is_some_and(|b| b != dev) {
                    return format!("rp_filter = 1 (strict) on {dev} and the way back to {src} leaves through another device (`ip route get {src}`: {back})");
                }
            }
        }
    }
    // Between the router's ports, the instance's and br-ex only Open vSwitch's flows decide.
    let ovs = |h: &HopSpec| matches!(h.ns, Ns::Instance | Ns::Router) || h.name.ends_with(&format!(" {}", "br-ex"));
    match next {
        Some(s) if ovs(last) && ovs(s) && last.ns != s.ns => {
            let own = match (flow, &last.probe, &s.probe, after.ns.get(&s.ns)) {
                (Some(q), Probe::Iface { dev: a, .. }, Probe::Iface { dev: b, .. }, Some(m)) => match (n.dev(a), m.dev(b)) {
                    (Some(a), Some(b)) => ovs_trace(c, q, reply, (n, &a), (m, &b), at).await,
                    _ => None,
                },
                _ => None,
            };
            format!(
                "{} sent it, {} did not receive it: between them only Open vSwitch's flows decide (the security group's firewall, a port's VLAN tag; `ovs-ofctl dump-flows br-int` in state/){}",
                last.name,
                s.name,
                own.map(|t| format!("; {t}")).unwrap_or_default()
            )
        }
        Some(s) => format!("{} saw it, {} did not, and nothing the harness reads there explains it (route: {route})", last.name, s.name),
        None => format!("{} received it and sent nothing back", last.name),
    }
}

/// Open vSwitch's own trace (`ofproto/trace`) of the packet from the port `from`
/// (a namespace's device, an OVS port) to the one `to` sent it towards, with the
/// addresses conntrack gives: the last OpenFlow table it reached and what the
/// datapath would do. None when a piece is missing (not an OVS port, no address).
async fn ovs_trace(
    c: &Check,
    q: [Ipv4Addr; 4],
    reply: bool,
    from: (&NsCounters, &str),
    to: (&NsCounters, &str),
    at: &Places<'_>,
) -> Option<String> {
    let run = |argv: Vec<String>| async move {
        let o = at.guest.run(&Cmd::new(argv).timeout(Duration::from_secs(30))).await.ok()?;
        Some(o.text().trim().to_owned()).filter(|t| !t.is_empty())
    };
    let mac = |(n, dev): (&NsCounters, &str)| {
        let mut argv: Vec<String> = vec![];
        if !n.name.is_empty() {
            argv.extend(["ip", "netns", "exec", &n.name].map(String::from));
        }
        argv.extend(["cat".to_owned(), format!("/sys/class/net/{dev}/address")]);
        run(argv)
    };
    let bridge = run(["ovs-vsctl", "port-to-br", from.1].map(String::from).to_vec()).await?;
    let (src_mac, dst_mac) = (mac(from).await?, mac(to).await?);
    // The packet as it is on that link: past the router's DNAT for a request,
    // from the answering end for a reply.
    let (src, dst) = if reply { (q[2], q[3]) } else { (q[0], q[2]) };
    let l4 = match (c.kind, c.port, reply) {
        (crate::scenario::CheckKind::Icmp, ..) => format!("icmp,icmp_type={}", if reply { 0 } else { 8 }),
        (k, Some(p), false) => format!("{},tp_dst={p}", if k == crate::scenario::CheckKind::Udp { "udp" } else { "tcp" }),
        (k, Some(p), true) => format!("{},tp_src={p}", if k == crate::scenario::CheckKind::Udp { "udp" } else { "tcp" }),
        (_, None, _) => return None,
    };
    let flow = format!("in_port={},{l4},dl_src={src_mac},dl_dst={dst_mac},nw_src={src},nw_dst={dst}", from.1);
    let ct = if reply { "trk,est" } else { "trk,new" };
    let argv = ["ovs-appctl", "ofproto/trace", &bridge, &flow, "--ct-next", ct].map(String::from).to_vec();
    let text = run(argv).await?;
    let (table, actions) = ofproto_trace_end(&text)?;
    let verdict = if actions == "drop" { "drops it".to_owned() } else { format!("does `{actions}`") };
    Some(format!(
        "Open vSwitch's own trace (`ovs-appctl ofproto/trace {bridge}` from {}, conntrack state {ct}) ends in table {table}{}, where the datapath {verdict}",
        from.1,
        firewall_table(table).map(|n| format!(" ({n})")).unwrap_or_default()
    ))
}

/// The last OpenFlow table an `ofproto/trace` reached (" 93. priority 0, cookie ..."
/// marks each) and its last "Datapath actions" (after every recirculation).
fn ofproto_trace_end(text: &str) -> Option<(u8, &str)> {
    let table = text.lines().filter_map(|l| l.trim_start().split_once(". ").and_then(|(t, _)| t.parse::<u8>().ok())).next_back()?;
    let actions = text.lines().rev().find_map(|l| l.strip_prefix("Datapath actions: "))?;
    Some((table, actions))
}

/// The tables of Neutron's OVS firewall driver on br-int (neutron-lib's ovs_constants).
fn firewall_table(t: u8) -> Option<&'static str> {
    Some(match t {
        71 => "the firewall's egress base table",
        72 => "the firewall's egress rules",
        73 => "the firewall's accept-or-ingress table",
        81 => "the firewall's ingress base table",
        82 => "the firewall's ingress rules",
        91 | 94 => "the firewall's accepted egress traffic",
        92 => "the firewall's accepted ingress traffic",
        93 => "the firewall's dropped traffic: no security-group rule accepted it",
        _ => return None,
    })
}

/// Where on `specs` (judged as `hops`) the packet died, None when every hop saw it.
/// After the last interface that saw it, a filter chain that dropped it (a DROP
/// or REJECT rule counted it, or its policy is not ACCEPT and no rule let it
/// through) is where it died; else the last hop that saw it, for the reason
/// its namespace gives ([`reason`]).
#[allow(clippy::too_many_arguments)]
async fn died(
    c: &Check,
    addr: Ipv4Addr,
    src: Option<Ipv4Addr>,
    specs: &[HopSpec],
    hops: &[Hop],
    reply: bool,
    after: &Counters,
    at: &Places<'_>,
) -> Option<DiedAt> {
    let is_iface = |i: usize| matches!(specs[i].probe, Probe::Iface { .. });
    let next = (0..specs.len()).find(|&i| is_iface(i) && !hops[i].saw)?;
    let Some(last_iface) = (0..next).rev().find(|&i| is_iface(i)) else {
        let route = match after.ns.get(&specs[0].ns) {
            Some(n) => route_get(specs[0].ns, n, addr, at).await,
            None => String::new(),
        };
        // Too big to leave with Don't Fragment: the kernel refuses it at the source.
        if let (Some(size), true, Probe::Iface { dev, .. }) = (c.size, c.dont_fragment, &specs[0].probe) {
            if let Some((d, (_, _, _, mtu))) =
                after.ns.get(&specs[0].ns).and_then(|n| n.dev(dev).and_then(|d| n.ifs.get(&d).map(|i| (d, i.clone()))))
            {
                if u32::from(size) + 28 > mtu {
                    let bytes = u32::from(size) + 28;
                    return Some(DiedAt {
                        hop: hops[0].hop.clone(),
                        reason: format!("it was never sent: {bytes} bytes with Don't Fragment do not fit {d}'s MTU {mtu}"),
                    });
                }
            }
        }
        return Some(DiedAt { hop: hops[0].hop.clone(), reason: format!("it was never sent (`ip route get {addr}` there: {route})") });
    };
    for i in last_iface + 1..next {
        if let Some(r) = dropped_by_chain(&specs[i], after) {
            return Some(DiedAt { hop: hops[i].hop.clone(), reason: r });
        }
    }
    // A namespace on the way whose next hop does not answer ARP sends only ARP
    // requests, which the interfaces count: its way out is where the packets died.
    if !reply {
        if let Some(d) = unanswered_neighbour(addr, specs, hops, next, after, at).await {
            return Some(d);
        }
    }
    let last = (last_iface..next).rev().find(|&i| hops[i].saw).unwrap_or(last_iface);
    let r = reason(c, addr, src, &specs[last], &specs[last_iface], Some(&specs[next]), reply, after, at).await;
    Some(DiedAt { hop: hops[last].hop.clone(), reason: r })
}

/// The first namespace before hop `next` whose route to `addr` goes through a
/// gateway that its neighbour table has as FAILED or INCOMPLETE (no ARP answer).
async fn unanswered_neighbour(
    addr: Ipv4Addr,
    specs: &[HopSpec],
    hops: &[Hop],
    next: usize,
    after: &Counters,
    at: &Places<'_>,
) -> Option<DiedAt> {
    let mut asked = vec![];
    for i in 0..next {
        let ns = specs[i].ns;
        if asked.contains(&ns) {
            continue;
        }
        asked.push(ns);
        let n = after.ns.get(&ns)?;
        let dst = ct_flow(n, addr).map_or(addr, |q| q[2]);
        let route = route_get(ns, n, dst, at).await;
        let w: Vec<&str> = route.split_whitespace().collect();
        let (Some(gw), Some(dev)) = (w.windows(2).find(|p| p[0] == "via").map(|p| p[1]), route_dev(&route)) else { continue };
        let failed = n.neigh.iter().find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&gw) && f.get(2) == Some(&dev) && f.last().is_some_and(|s| *s == "FAILED" || *s == "INCOMPLETE")
        });
        if failed.is_some() {
            // Who should have answered: a device of the world that has the address.
            let owner = after.ns.iter().find_map(|(_, m)| m.addrs.iter().find(|(_, a)| a == gw).map(|(dev, _)| (m, dev)));
            let whose = match owner {
                Some((m, dev)) if m.ifs.get(dev).is_some_and(|i| i.2 == "down") => {
                    format!(": it is {dev}'s address in {}, and {dev} is down", where_(m))
                }
                Some((m, dev)) => format!(": it is {dev}'s address in {}", where_(m)),
                None => ": no device of the host, the router or the edge has that address".to_owned(),
            };
            // The hop of that namespace the packets leave through.
            let out = (0..specs.len()).rev().find(|&j| specs[j].ns == ns && matches!(specs[j].probe, Probe::Iface { .. })).unwrap_or(i);
            return Some(DiedAt {
                hop: hops[out.min(hops.len() - 1)].hop.clone(),
                // Not the entry's state: FAILED or INCOMPLETE depends on when it is read.
                reason: format!("the gateway {gw} does not answer ARP on {dev}{whose} (`ip route get {dst}`: {route})"),
            });
        }
    }
    None
}

/// A filter chain that dropped what reached it: a DROP or REJECT rule of its
/// own counted packets, or its policy drops and none of its ACCEPT rules counted.
fn dropped_by_chain(s: &HopSpec, after: &Counters) -> Option<String> {
    let Probe::Chain { table: "filter", chain } = &s.probe else { return None };
    let n = after.ns.get(&s.ns)?;
    let rules: Vec<_> = n.rules.iter().filter(|(t, ch, ..)| t == "filter" && ch == chain).collect();
    if let Some((.., rule, _)) = rules.iter().find(|(.., rule, p)| *p > 0 && (rule.contains("-j DROP") || rule.contains("-j REJECT"))) {
        return Some(format!("rule `{rule}` dropped it"));
    }
    let (policy, _) = n.policies.get(&("filter".to_owned(), (*chain).to_owned()))?;
    (policy != "ACCEPT").then(|| {
        let accepts: Vec<String> = rules.iter().filter(|(.., r, _)| r.contains("-j ACCEPT")).map(|(.., r, _)| format!("`{r}`")).collect();
        if accepts.is_empty() {
            format!("policy {policy}, no rule matched (the chain has no ACCEPT rule)")
        } else {
            format!("policy {policy}, no rule matched (not {})", accepts.join(", "))
        }
    })
}

/// The namespace the instance is (the clouds whose instance is a namespace in the guest).
pub fn instance_netns(d: &Deployed) -> Option<&str> {
    match d.instance_probe.as_slice() {
        [ip, netns, exec, ns, ..] if ip == "ip" && netns == "netns" && exec == "exec" => Some(ns),
        _ => None,
    }
}

/// The ports a check's packets go to on their way: its own, and the port a
/// `[[forward]]` from it leads to.
fn ports(c: &Check, plan: &Plan) -> String {
    let mut p: Vec<u16> = c.port.into_iter().collect();
    p.extend(plan.forwards.iter().filter(|f| Some(f.public_port) == c.port).map(|f| f.port));
    p.dedup();
    p.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

/// Put the counting rules for `c`'s packets in every namespace and read the
/// counters (`watch`), or read them and take the rules out (`unwatch`): see
/// scripts/trace-counters.sh. One command in the guest, one per host namespace.
async fn watch(at: &Places<'_>, verb: &str, c: &Check, plan: &Plan, instance_ns: &str) -> Counters {
    let proto = match c.kind {
        crate::scenario::CheckKind::Icmp => "icmp",
        crate::scenario::CheckKind::Udp => "udp",
        _ => "tcp",
    };
    let ports = ports(c, plan);
    let args = |script: &str, scope: &[&str]| -> Vec<String> {
        let mut v = vec!["bash".to_owned(), script.to_owned(), verb.to_owned()];
        v.extend(scope.iter().map(|s| (*s).to_owned()));
        if verb == "watch" {
            v.extend([proto.to_owned(), if ports.is_empty() { "-".to_owned() } else { ports.clone() }]);
        }
        v
    };
    let guest_role = |name: &str| -> Option<Ns> {
        if name.is_empty() {
            Some(Ns::Host)
        } else if name.starts_with("qrouter-") {
            Some(Ns::Router)
        } else if name == instance_ns {
            Some(Ns::Instance)
        } else {
            None
        }
    };
    let cmd = |argv: Vec<String>| Cmd::new(argv).timeout(Duration::from_secs(60));
    let mut c = Counters::default();
    if let Ok(o) = at.guest.run(&cmd(args(GUEST_SCRIPT, &["all"]))).await {
        parse(&o.stdout, &guest_role, &mut c);
    }
    for (exec, ns, label) in [(at.edge, Ns::Edge, "edge"), (at.internet, Ns::Internet, "internet")] {
        if let Ok(o) = exec.run(&cmd(args(at.host_script, &["self", label]))).await {
            parse(&o.stdout, &|_| Some(ns), &mut c);
        }
    }
    c
}

/// The counters read before a probe ([`before_probe`]).
pub struct Before(Counters);

/// Read the counters before `c`'s probe is sent. None where the instance is not
/// a namespace of the guest (the devstack cloud's is a VM: its hops cannot be read).
pub async fn before_probe(c: &Check, plan: &Plan, d: &Deployed, at: &Places<'_>) -> Option<Before> {
    let ns = instance_netns(d)?;
    Some(Before(watch(at, "watch", c, plan, ns).await))
}

/// Read the counters again after the probe and name the hop where its packets
/// died; `probe_said` is what the probe printed.
pub async fn after_probe(c: &Check, plan: &Plan, d: &Deployed, at: &Places<'_>, before: Before, probe_said: &str) -> Trace {
    let before = before.0;
    let addr = checks::resolve(&c.to, c.from, plan, d);
    // Where the request comes from, as the first namespace it reaches sees it.
    let src = (c.from == Endpoint::Internet).then_some(plan.world.internet_client);
    let after = watch(at, "unwatch", c, plan, instance_netns(d).unwrap_or_default()).await;
    let request = present(request_path(c, addr, plan, d, at), &after);
    let mut path = judge(&request, &before, &after, false);
    let mut died_at = died(c, addr, src, &request, &path, false, &after, at).await;
    if died_at.is_none() && !request.is_empty() {
        // The request arrived: the reply's way back.
        let back = reply_path(&request);
        let seen = judge(&back, &before, &after, true);
        died_at = match seen.first() {
            Some(h) if !h.saw => {
                let last = request.len() - 1;
                let r = reason(c, addr, src, &request[last], &request[last], None, false, &after, at).await;
                Some(DiedAt { hop: path[last].hop.clone(), reason: r })
            }
            _ => died(c, addr, src, &back, &seen, true, &after, at).await,
        };
        path.extend(seen);
    }
    Trace { path, died_at, trace_probe: probe_said.lines().next().unwrap_or("").to_owned() }
}

/// Trace `c`'s packet after the fact: send its probe again between two readings
/// of the counters (a check that failed, `harness diagnose`). None: see [`before_probe`].
pub async fn trace(c: &Check, plan: &Plan, d: &Deployed, probes: &Probes<'_>, at: &Places<'_>) -> Option<Trace> {
    let before = before_probe(c, plan, d, at).await?;
    // The same probe, waiting no longer than an unreachable check does.
    let wait = checks::wait_s(c, 0.0).min(checks::UNREACHABLE_WAIT_S);
    let (outcome, detail, _) = checks::probe_once(c, plan, d, probes, wait).await;
    Some(after_probe(c, plan, d, at, before, &format!("sent again: {outcome:?}: {detail}")).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{CheckKind, Expect};

    #[test]
    fn ofproto_trace_ends_where_its_last_table_and_actions_are() {
        let text = "Flow: tcp,in_port=5,nw_dst=10.0.0.5,tp_dst=22\n\nbridge(\"br-int\")\n----------------\n 0. priority 0, cookie 0x1\n    goto_table:60\n60. in_port=5, priority 100\n    ct(table=82,zone=NXM_NX_REG6[0..15])\n\nFinal flow: unchanged\nDatapath actions: ct(zone=1),recirc(0x1)\n\n===============================================================================\nrecirc(0x1) - resume conntrack with ct_state=trk|new\n===============================================================================\n\n82. ct_state=+trk, priority 0\n    resubmit(,93)\n93. priority 0, cookie 0x1\n    drop\n\nFinal flow: unchanged\nDatapath actions: drop\n";
        assert_eq!(ofproto_trace_end(text), Some((93, "drop")));
        assert_eq!(firewall_table(93).map(|n| n.contains("no security-group rule accepted it")), Some(true));
        assert_eq!(ofproto_trace_end("Datapath actions: drop\n"), None, "no table reached: nothing to say");
    }

    fn plan() -> Plan {
        crate::scenario::load(std::path::Path::new("../scenarios/floating-ip-ingress.toml")).expect("scenario")
    }

    fn deployed() -> Deployed {
        Deployed {
            floating_ip: "192.168.100.102".parse().expect("ip"),
            fixed_ip: "10.0.0.5".parse().expect("ip"),
            network_gateway: "10.0.0.1".parse().expect("ip"),
            router_gw_ip: "192.168.100.101".parse().expect("ip"),
            instance_probe: vec!["ip".into(), "netns".into(), "exec".into(), "instance-x".into(), "probe".into()],
            volatile_names: vec![],
            facts: Default::default(),
        }
    }

    fn check(from: Endpoint, to: Target) -> Check {
        Check {
            name: "c".into(),
            kind: CheckKind::Tcp,
            from,
            to,
            port: Some(80),
            expect: Expect::Reachable,
            seen_as: None,
            timeout_s: None,
            size: None,
            dont_fragment: false,
            host_reboot: false,
            before: None,
            line: 1,
        }
    }

    fn names(c: &Check) -> Vec<String> {
        let (plan, d) = (plan(), deployed());
        let fake = crate::exec::fake::Recorder::new("x");
        let at = Places {
            guest: &fake,
            edge: &fake,
            internet: &fake,
            host_script: "s",
            edge_tap: "tap".into(),
            edge_veth: "ev".into(),
            internet_veth: "iv".into(),
        };
        let addr = checks::resolve(&c.to, c.from, &plan, &d);
        request_path(c, addr, &plan, &d, &at).into_iter().map(|h| h.name).collect()
    }

    #[test]
    fn egress_passes_router_host_and_edge_in_order() {
        assert_eq!(
            names(&check(Endpoint::Instance, Target::Responder)),
            [
                "instance",
                "router qr-",
                "router NAT",
                "router qg-",
                "host br-ex",
                "host FORWARD",
                "host POSTROUTING",
                "host eth0",
                "cloud edge",
                "cloud edge",
                "internet"
            ]
        );
    }

    #[test]
    fn ingress_through_a_forward_passes_prerouting_first_and_the_router_last() {
        let p = plan();
        let port = p.forwards.first().map(|f| f.public_port);
        let mut c = check(Endpoint::Internet, Target::PublicIp);
        c.port = port;
        let n = names(&c);
        if port.is_some() {
            assert_eq!(n.first().map(String::as_str), Some("internet"));
            assert_eq!(n.last().map(String::as_str), Some("instance"));
            let i = |h: &str| n.iter().position(|x| x == h).unwrap_or_else(|| panic!("{h} in {n:?}"));
            assert!(i("host PREROUTING") < i("host FORWARD") && i("host FORWARD") < i("host br-ex"), "{n:?}");
        }
        assert_eq!(names(&check(Endpoint::Host, Target::FloatingIp)), ["host br-ex", "router qg-", "router NAT", "router qr-", "instance"]);
        assert_eq!(names(&check(Endpoint::Instance, Target::Gateway)), ["instance", "router qr-"]);
    }

    #[test]
    fn the_reply_goes_back_without_nat_chains_counting_the_other_way() {
        let at_names =
            |v: &[HopSpec]| v.iter().map(|h| (h.name.clone(), matches!(h.probe, Probe::Iface { rx: true, .. }))).collect::<Vec<_>>();
        let req = vec![
            iface("a", Ns::Instance, Dev::NotLo, false),
            chain("n", Ns::Router, "nat", "POSTROUTING"),
            iface("b", Ns::Router, Dev::Prefix("qr-"), true),
        ];
        assert_eq!(at_names(&reply_path(&req)), [("b".to_owned(), false), ("a".to_owned(), true)]);
    }

    #[test]
    fn counters_are_read_per_namespace_and_compared() {
        let role = |n: &str| if n.is_empty() { Some(Ns::Host) } else { None };
        let text = "ns \nif br-ex 10 5 up 1500\nsysctl ip_forward 1\npolicy filter FORWARD DROP 0\n\
                    rule filter FORWARD 2 -A FORWARD -s 10.0.0.0/8 -j ACCEPT\n\
                    rule mangle harness-trace-in 4 -A harness-trace-in -i br-ex -p icmp --icmp-type echo-request -m comment --comment req\n\
                    rule mangle harness-trace-in 0 -A harness-trace-in -i br-ex -p icmp --icmp-type echo-reply -m comment --comment rep\n\
                    ns qdhcp-1\nif x 1 1 up 1\n";
        let mut b = Counters::default();
        parse(text, &role, &mut b);
        let mut a = Counters::default();
        // Three echo requests in, frames besides (an ARP: the interface's own count), no reply.
        parse(&text.replace("br-ex 10 5", "br-ex 14 5").replace("harness-trace-in 4 ", "harness-trace-in 7 "), &role, &mut a);
        let hops = [iface("host br-ex", Ns::Host, Dev::Named("br-ex".into()), true), chain("host FORWARD", Ns::Host, "filter", "FORWARD")];
        let seen = judge(&hops, &b, &a, false);
        assert!(seen[0].saw && seen[0].evidence.contains("3 request packets in"), "{seen:?}");
        assert!(!seen[1].saw && seen[1].evidence.contains("no rule counted it"), "{seen:?}");
        let back = judge(&hops[..1], &b, &a, true);
        assert!(!back[0].saw && back[0].evidence.contains("0 reply packets"), "{back:?}");
        assert_eq!(a.ns.len(), 1, "a namespace without a role is not read");
        // A FORWARD that drops by policy, after the last interface that saw it.
        assert_eq!(
            dropped_by_chain(&hops[1], &a).as_deref(),
            Some("policy DROP, no rule matched (not `-A FORWARD -s 10.0.0.0/8 -j ACCEPT`)")
        );
    }
}

//! Scenario stage: a TOML file in, a validated [`Plan`] out. Every later stage
//! reads the plan and nothing else, so every address is parsed and every
//! relation between them checked here, once.

pub mod model;
mod span;

use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use model::*;
use span::{Locator, PathSeg};

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{path}: cannot read scenario: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{col}: {message}")]
    Invalid { path: PathBuf, line: usize, col: usize, message: String },
}

impl ScenarioError {
    pub fn path(&self) -> &Path {
        match self {
            ScenarioError::Read { path, .. } | ScenarioError::Invalid { path, .. } => path,
        }
    }
}

pub use crate::world::World;

impl Default for World {
    fn default() -> Self {
        let file = ScenarioFile {
            name: None,
            description: String::new(),
            cloud: CloudKind::Replica,
            guest: Default::default(),
            provider: Default::default(),
            tenant: Default::default(),
            internet: Default::default(),
            host_recipe: Default::default(),
            faults: Default::default(),
            devstack: Default::default(),
            vm: Default::default(),
            forwards: vec![],
            checks: vec![],
            security_group_rules: vec![],
            instances: vec![],
        };
        let mut v = Validator::default();
        let world = v.world(&file);
        assert!(v.problems.is_empty(), "the built-in world is invalid: {:?}", v.problems);
        world.expect("the built-in world is valid")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostRecipe {
    pub lo_public_ip: bool,
    pub bridge: bool,
    pub ip_forward: bool,
    pub forward: bool,
    pub masquerade: bool,
    pub source_range: Ipv4Net,
    pub persist: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Icmp,
    Tcp,
    Udp,
    Http,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Internet,
    Host,
    Instance,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Reachable,
    Unreachable,
}

/// Where a check goes: a name the world resolves, or a literal address.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    FloatingIp,
    PublicIp,
    Responder,
    Gateway,
    Address(Ipv4Addr),
}

impl Target {
    const NAMES: &'static [&'static str] = &["floating_ip", "public_ip", "responder", "gateway"];

    fn parse(s: &str) -> Option<Target> {
        Some(match s {
            "floating_ip" => Target::FloatingIp,
            "public_ip" => Target::PublicIp,
            "responder" => Target::Responder,
            "gateway" => Target::Gateway,
            other => Target::Address(other.parse().ok()?),
        })
    }
}

/// A cloud action a check can ask for first (Tempest's basic ops do this).
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CloudAction {
    FipDisassociate,
    FipAssociate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub before: Option<CloudAction>,
    /// `before = "host_reboot"`: the guest reboots before this check.
    pub host_reboot: bool,
    pub name: String,
    pub kind: CheckKind,
    pub from: Endpoint,
    pub to: Target,
    pub port: Option<u16>,
    pub expect: Expect,
    pub seen_as: Option<Target>,
    /// How long the probe waits; None: the default for what it expects
    /// (`checks::wait_s`).
    pub timeout_s: Option<f64>,
    /// ICMP payload bytes and Don't Fragment (icmp checks only).
    pub size: Option<u16>,
    pub dont_fragment: bool,
    /// The line of its `[[check]]` in the scenario file (for annotations).
    pub line: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Forward {
    pub public_port: u16,
    pub to: Target,
    pub port: u16,
    pub protocol: String,
}

/// A validated scenario: the input of every later stage.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    pub description: String,
    #[serde(skip)]
    pub source: PathBuf,
    pub cloud: CloudKind,
    pub world: World,
    pub host_recipe: HostRecipe,
    pub faults: FaultsSpec,
    pub devstack: DevstackSpec,
    /// The user's own local.conf, read at load time, with its path.
    #[serde(skip)]
    pub user_local_conf: Option<(PathBuf, String)>,
    pub vm: VmSpec,
    pub forwards: Vec<Forward>,
    pub checks: Vec<Check>,
    /// The instance's security-group rules as declared; None: the default
    /// ([`Plan::security_group`]).
    pub security_group_rules: Option<Vec<SecurityGroupRule>>,
    /// The host the instance runs on: 1, or 2 for the second host (neutron).
    pub instance_host: u8,
}

/// A validated security-group rule (Neutron's fields; None is "any").
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SecurityGroupRule {
    pub direction: &'static str,
    pub protocol: Option<&'static str>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<String>,
}

impl Plan {
    /// The instance's rules: the declared ones, else egress open and ingress ICMP,
    /// SSH and every port a check or a forward reaches the instance on from
    /// outside (what Tempest's scenario tests open).
    pub fn security_group(&self) -> Vec<SecurityGroupRule> {
        if let Some(r) = &self.security_group_rules {
            return r.clone();
        }
        let any = Some("0.0.0.0/0".to_owned());
        let ingress = |protocol: &'static str, port: Option<u16>| SecurityGroupRule {
            direction: "ingress",
            protocol: Some(protocol),
            port_range_min: port,
            port_range_max: port,
            remote_ip_prefix: any.clone(),
        };
        let mut rules = vec![
            SecurityGroupRule { direction: "egress", protocol: None, port_range_min: None, port_range_max: None, remote_ip_prefix: None },
            ingress("icmp", None),
            ingress("tcp", Some(22)),
        ];
        let to_instance = self.checks.iter().filter(|c| c.from != Endpoint::Instance && c.to == Target::FloatingIp);
        let ports = to_instance
            .filter_map(|c| match c.kind {
                CheckKind::Tcp | CheckKind::Http => Some(("tcp", c.port)),
                CheckKind::Udp => Some(("udp", c.port)),
                CheckKind::Icmp => None,
            })
            .chain(
                self.forwards
                    .iter()
                    .filter(|f| f.to == Target::FloatingIp)
                    .map(|f| (if f.protocol == "udp" { "udp" } else { "tcp" }, Some(f.port))),
            );
        for (proto, port) in ports {
            let r = ingress(proto, port);
            if !rules.contains(&r) {
                rules.push(r);
            }
        }
        rules
    }
}

/// The JSON Schema of scenario files (`harness schema scenario`), generated from
/// the model; editors that read TOML with a schema (taplo's `#:schema` directive)
/// complete and check scenario files with it.
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(model::ScenarioFile)).expect("a schema is JSON");
    schema["title"] = "devstack-harness scenario".into();
    schema["description"] = "A scenario of devstack-harness: docs/scenario.md describes every key.".into();
    schema
}

impl Plan {
    /// The `HOST_IP` the rendered local.conf sets.
    pub fn host_ip(&self) -> Ipv4Addr {
        match self.devstack.host_ip.as_str() {
            "private" => self.world.guest_address.addr(),
            "public" => self.world.public_ip,
            other => other.parse().unwrap_or(self.world.public_ip),
        }
    }
}

/// Load and validate a scenario file.
pub fn load(path: &Path) -> Result<Plan, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.into(), source })?;
    parse(path, &text)
}

/// Validate scenario text; `path` names it in errors and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Plan, ScenarioError> {
    let locator = Locator::new(text);
    let invalid = |offset: Option<usize>, message: String| {
        let (line, col) = locator.line_col(offset.unwrap_or(0));
        ScenarioError::Invalid { path: path.into(), line, col, message }
    };
    let file: ScenarioFile = toml::from_str(text).map_err(|e| invalid(e.span().map(|s| s.start), e.message().to_owned()))?;

    let mut v = Validator::default();
    let plan = v.plan(path, &file);
    if let Some((at, message)) = v.problems.into_iter().next() {
        let (offset, message) = match locator.offset_of(&at) {
            Some(off) => (Some(off), message),
            None => (locator.nearest_offset(&at), format!("{message} (this is the default of `{}`)", span::display(&at))),
        };
        return Err(invalid(offset, message));
    }
    let mut plan = plan.expect("no problems means a plan");
    for (i, c) in plan.checks.iter_mut().enumerate() {
        c.line = locator.offset_of(&[PathSeg::key("check"), PathSeg::Index(i)]).map_or(1, |o| locator.line_col(o).0);
    }
    // Reading the user's local.conf belongs to loading: a missing file is bad input.
    if let Some(rel) = &plan.devstack.local_conf {
        let full = path.parent().unwrap_or(Path::new(".")).join(rel);
        return match std::fs::read_to_string(&full) {
            Ok(text) => Ok(Plan { user_local_conf: Some((full, text)), ..plan }),
            Err(e) => Err(invalid(
                locator.offset_of(&[PathSeg::key("devstack"), PathSeg::key("local_conf")]),
                format!("cannot read local.conf {}: {e}", full.display()),
            )),
        };
    }
    Ok(plan)
}

impl Plan {
    /// Build from this local.conf instead of what the scenario says (`--local-conf`):
    /// the file is used as is, in place of the rendered template and its
    /// `[devstack] values`/`extra`, or of the scenario's own `local_conf`.
    pub fn with_local_conf(self, path: &Path) -> Result<Plan, std::io::Error> {
        let text = std::fs::read_to_string(path)?;
        Ok(Plan { user_local_conf: Some((path.to_owned(), text)), ..self })
    }
}

/// Collects problems as (key path, message); the first one is reported.
#[derive(Default)]
struct Validator {
    problems: Vec<(Vec<PathSeg>, String)>,
}

fn p(parts: &[&str]) -> Vec<PathSeg> {
    parts.iter().map(|s| PathSeg::key(s)).collect()
}

impl Validator {
    fn fail(&mut self, at: Vec<PathSeg>, msg: impl Into<String>) {
        self.problems.push((at, msg.into()));
    }

    fn addr(&mut self, at: &[&str], s: &str) -> Option<Ipv4Addr> {
        match s.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.fail(p(at), format!("expected an IPv4 address such as 192.0.2.1, found {s:?}"));
                None
            }
        }
    }

    /// An address with prefix (`192.168.100.1/24`) when `host` is true, else a
    /// network (`192.168.100.0/24`, no host bits set).
    fn net(&mut self, at: &[&str], s: &str, host: bool) -> Option<Ipv4Net> {
        match s.parse::<Ipv4Net>() {
            Ok(n) if !host && n.trunc() != n => {
                self.fail(p(at), format!("expected a network with no host bits set, found {s:?} (did you mean {}?)", n.trunc()));
                None
            }
            Ok(n) => Some(n),
            Err(_) if host => {
                self.fail(p(at), format!("expected an address with prefix length such as 192.168.0.10/24, found {s:?}"));
                None
            }
            Err(_) => {
                self.fail(p(at), format!("expected a CIDR such as 192.168.100.0/24, found {s:?}"));
                None
            }
        }
    }

    fn name(&mut self, at: &[&str], s: &str, max: usize) {
        let ok = !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            self.fail(p(at), format!("expected a name of 1 to {max} letters, digits, '-', '_' or '.', found {s:?}"));
        }
    }

    fn world(&mut self, f: &ScenarioFile) -> Option<World> {
        let g = &f.guest;
        let pr = &f.provider;
        let t = &f.tenant;
        let i = &f.internet;
        let public_ip = self.addr(&["guest", "public_ip"], &g.public_ip);
        self.name(&["guest", "nic"], &g.nic, 15);
        self.name(&["guest", "hostname"], &g.hostname, 63);
        let guest_address = self.net(&["guest", "address"], &g.address, true);
        let guest_gateway = self.addr(&["guest", "gateway"], &g.gateway);
        self.name(&["provider", "bridge"], &pr.bridge, 15);
        self.name(&["provider", "ovs_bridge"], &pr.ovs_bridge, 15);
        self.name(&["provider", "physical_network"], &pr.physical_network, 64);
        let provider_address = self.net(&["provider", "address"], &pr.address, true);
        let floating_range = self.net(&["provider", "floating_range"], &pr.floating_range, false);
        let public_gateway = self.addr(&["provider", "gateway"], &pr.gateway);
        let pool_start = self.addr(&["provider", "pool_start"], &pr.pool_start);
        let pool_end = self.addr(&["provider", "pool_end"], &pr.pool_end);
        let fixed_range = self.net(&["tenant", "fixed_range"], &t.fixed_range, false);
        let fixed_gateway = self.addr(&["tenant", "gateway"], &t.gateway);
        let internet_edge = self.net(&["internet", "edge"], &i.edge, true);
        let internet_client = self.addr(&["internet", "client"], &i.client);
        let internet_responder = self.addr(&["internet", "responder"], &i.responder);
        if !["vxlan", "gre", "vlan", "flat", "local"].contains(&t.network_type.as_str()) {
            self.fail(
                p(&["tenant", "network_type"]),
                format!("expected one of vxlan, gre, vlan, flat, local (what the openvswitch agent serves), found {:?}", t.network_type),
            );
        }
        if !(576..=9000).contains(&t.mtu) {
            self.fail(p(&["tenant", "mtu"]), format!("expected an MTU between 576 and 9000, found {}", t.mtu));
        }
        if pr.bridge == pr.ovs_bridge {
            self.fail(
                p(&["provider", "ovs_bridge"]),
                format!(
                    "expected the OVS bridge to differ from the Linux bridge {:?}: DevStack adds the Linux bridge to it as a port",
                    pr.bridge
                ),
            );
        }

        let w = World {
            public_ip: public_ip?,
            guest_nic: g.nic.clone(),
            guest_address: guest_address?,
            guest_gateway: guest_gateway?,
            hostname: g.hostname.clone(),
            provider_bridge: pr.bridge.clone(),
            provider_bridge_made: f.host_recipe.bridge,
            recipe_ip_forward: f.host_recipe.ip_forward,
            provider_address: provider_address?,
            floating_range: floating_range?,
            public_gateway: public_gateway?,
            pool_start: pool_start?,
            pool_end: pool_end?,
            ovs_bridge: pr.ovs_bridge.clone(),
            physical_network: pr.physical_network.clone(),
            fixed_range: fixed_range?,
            fixed_gateway: fixed_gateway?,
            tenant_network_type: t.network_type.clone(),
            tenant_mtu: t.mtu,
            internet_edge: internet_edge?,
            internet_client: internet_client?,
            internet_responder: internet_responder?,
        };
        self.relations(&w);
        Some(w)
    }

    /// The relations docs/design.md's world depends on.
    fn relations(&mut self, w: &World) {
        let provider_subnet = w.provider_address.trunc();
        let private_subnet = w.guest_address.trunc();
        if w.floating_range != provider_subnet {
            self.fail(
                p(&["provider", "floating_range"]),
                format!("expected the floating range to be the provider bridge's subnet {provider_subnet}, found {}", w.floating_range),
            );
        }
        if w.public_gateway != w.provider_address.addr() {
            self.fail(
                p(&["provider", "gateway"]),
                format!(
                    "expected the public gateway to be the provider bridge's address {}, found {}",
                    w.provider_address.addr(),
                    w.public_gateway
                ),
            );
        }
        for (key, a) in [("pool_start", w.pool_start), ("pool_end", w.pool_end)] {
            if !w.floating_range.contains(&a) || a == w.floating_range.network() || a == w.floating_range.broadcast() {
                self.fail(
                    p(&["provider", key]),
                    format!(
                        "expected an address inside the floating range {} (not its network or broadcast address), found {a}",
                        w.floating_range
                    ),
                );
            }
        }
        if w.pool_start > w.pool_end {
            self.fail(
                p(&["provider", "pool_end"]),
                format!("expected the pool end to be at or after its start {}, found {}", w.pool_start, w.pool_end),
            );
        }
        if (w.pool_start..=w.pool_end).contains(&w.public_gateway) {
            self.fail(
                p(&["provider", "pool_start"]),
                format!("expected the allocation pool {}-{} to leave out the gateway {}", w.pool_start, w.pool_end, w.public_gateway),
            );
        }
        if !private_subnet.contains(&w.guest_gateway) || w.guest_gateway == w.guest_address.addr() {
            self.fail(
                p(&["guest", "gateway"]),
                format!(
                    "expected a gateway inside the guest's subnet {private_subnet} other than the guest's own address, found {}",
                    w.guest_gateway
                ),
            );
        }
        for (name, net) in [("provider", provider_subnet), ("guest private", private_subnet)] {
            if overlaps(w.fixed_range, net) {
                self.fail(
                    p(&["tenant", "fixed_range"]),
                    format!("expected the fixed range to be disjoint from the {name} subnet {net}, found {} overlapping it", w.fixed_range),
                );
            }
        }
        if overlaps(provider_subnet, private_subnet) {
            self.fail(
                p(&["provider", "address"]),
                format!(
                    "expected the provider subnet to be disjoint from the guest's private subnet {private_subnet}, found {provider_subnet}"
                ),
            );
        }
        if !w.fixed_range.contains(&w.fixed_gateway) || w.fixed_gateway == w.fixed_range.network() {
            self.fail(
                p(&["tenant", "gateway"]),
                format!("expected a gateway inside the fixed range {}, found {}", w.fixed_range, w.fixed_gateway),
            );
        }
        for (name, net) in [
            ("provider", provider_subnet),
            ("guest private", private_subnet),
            ("fixed", w.fixed_range),
            ("internet", w.internet_edge.trunc()),
        ] {
            if net.contains(&w.public_ip) {
                self.fail(
                    p(&["guest", "public_ip"]),
                    format!("expected the public IP to lie outside the {name} subnet {net}, found {}", w.public_ip),
                );
            }
        }
        let inet = w.internet_edge.trunc();
        for (name, net) in [("provider", provider_subnet), ("guest private", private_subnet), ("fixed", w.fixed_range)] {
            if overlaps(inet, net) {
                self.fail(
                    p(&["internet", "edge"]),
                    format!("expected the internet subnet to be disjoint from the {name} subnet {net}, found {inet}"),
                );
            }
        }
        for (key, a) in [("client", w.internet_client), ("responder", w.internet_responder)] {
            if !inet.contains(&a) || a == w.internet_edge.addr() {
                self.fail(
                    p(&["internet", key]),
                    format!("expected an address in the internet subnet {inet} other than the edge {}, found {a}", w.internet_edge.addr()),
                );
            }
        }
        if w.internet_client == w.internet_responder {
            self.fail(p(&["internet", "responder"]), format!("expected the responder to differ from the client {}", w.internet_client));
        }
    }

    fn target(&mut self, at: Vec<PathSeg>, s: &str) -> Option<Target> {
        let t = Target::parse(s);
        if t.is_none() {
            self.fail(at, format!("expected an IPv4 address or one of {}, found {s:?}", Target::NAMES.join(", ")));
        }
        t
    }

    fn check(&mut self, idx: usize, c: &CheckSpec) -> Option<Check> {
        let at = |key: &str| vec![PathSeg::key("check"), PathSeg::Index(idx), PathSeg::key(key)];
        let kind = match c.kind.as_str() {
            "icmp" => Some(CheckKind::Icmp),
            "tcp" => Some(CheckKind::Tcp),
            "udp" => Some(CheckKind::Udp),
            "http" => Some(CheckKind::Http),
            other => {
                self.fail(at("kind"), format!("expected one of icmp, tcp, udp, http, found {other:?}"));
                None
            }
        };
        let from = match c.from.as_str() {
            "internet" => Some(Endpoint::Internet),
            "host" => Some(Endpoint::Host),
            "instance" => Some(Endpoint::Instance),
            other => {
                self.fail(at("from"), format!("expected one of internet, host, instance, found {other:?}"));
                None
            }
        };
        let expect = match c.expect.as_str() {
            "reachable" => Some(Expect::Reachable),
            "unreachable" => Some(Expect::Unreachable),
            other => {
                self.fail(at("expect"), format!("expected reachable or unreachable, found {other:?}"));
                None
            }
        };
        let to = self.target(at("to"), &c.to);
        let seen_as = c.seen_as.as_deref().and_then(|s| self.target(at("seen_as"), s));
        let kind = kind?;
        match (kind, c.port) {
            (CheckKind::Icmp, Some(_)) => self.fail(at("port"), "expected no port for an icmp check"),
            (CheckKind::Icmp, None) => {}
            (_, None) => self.fail(at("kind"), format!("expected a `port` for a {} check", c.kind)),
            (_, Some(0)) => self.fail(at("port"), "expected a port from 1 to 65535, found 0"),
            _ => {}
        }
        if c.seen_as.is_some() && to != Some(Target::Responder) {
            self.fail(at("seen_as"), "expected `seen_as` only on a check to the responder, which reports the source address it saw");
        }
        if c.seen_as.is_some() && kind == CheckKind::Icmp {
            self.fail(at("seen_as"), "expected `seen_as` on a tcp, udp or http check: ICMP carries no report");
        }
        let before = match c.before.as_deref() {
            None | Some("host_reboot") => None,
            Some("fip_disassociate") => Some(CloudAction::FipDisassociate),
            Some("fip_associate") => Some(CloudAction::FipAssociate),
            Some(other) => {
                self.fail(at("before"), format!("expected fip_disassociate, fip_associate or host_reboot, found {other:?}"));
                None
            }
        };
        let host_reboot = c.before.as_deref() == Some("host_reboot");
        if (c.size.is_some() || c.dont_fragment) && kind != CheckKind::Icmp {
            self.fail(
                at(if c.size.is_some() { "size" } else { "dont_fragment" }),
                "expected `size` and `dont_fragment` only on an icmp check",
            );
        }
        if c.size.is_some_and(|s| s > 65507) {
            self.fail(at("size"), format!("expected an ICMP payload of at most 65507 bytes, found {}", c.size.unwrap_or(0)));
        }
        let timeout_s = c.timeout_s;
        if let Some(t) = timeout_s.filter(|t| !(*t > 0.0 && *t <= 600.0)) {
            self.fail(at("timeout_s"), format!("expected a timeout between 0 and 600 seconds, found {t}"));
        }
        let (from, to, expect) = (from?, to?, expect?);
        let name = c.name.clone().unwrap_or_else(|| {
            let port = c.port.map(|p| format!(":{p}")).unwrap_or_default();
            format!("{} {} -> {}{port}", c.kind, c.from, c.to)
        });
        Some(Check {
            before,
            host_reboot,
            name,
            kind,
            from,
            to,
            port: c.port,
            expect,
            seen_as,
            timeout_s,
            size: c.size,
            dont_fragment: c.dont_fragment,
            line: 0,
        })
    }

    fn plan(&mut self, path: &Path, f: &ScenarioFile) -> Option<Plan> {
        let world = self.world(f);
        let name = f.name.clone().unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        self.name(&["name"], &name, 64);
        let hr = &f.host_recipe;
        let source_range = match (&hr.source_range, &world) {
            (Some(s), _) => self.net(&["host_recipe", "source_range"], s, false),
            (None, Some(w)) => Some(w.floating_range),
            (None, None) => None,
        };
        let host_ip = f.devstack.host_ip.as_str();
        if host_ip.parse::<Ipv4Addr>().is_err() && !["public", "private"].contains(&host_ip) {
            self.fail(p(&["devstack", "host_ip"]), format!("expected public, private or an IPv4 address, found {host_ip:?}"));
        }
        for key in f.devstack.values.keys() {
            if crate::localconf::parse::split_assignment(&format!("{key}=")).is_none_or(|(_, append, _)| append) {
                self.fail(p(&["devstack", "values"]), format!("expected shell variable names as keys, found {key:?}"));
            }
        }
        if f.devstack.local_conf.is_some() && (!f.devstack.values.is_empty() || !f.devstack.extra.is_empty()) {
            self.fail(
                p(&["devstack", "local_conf"]),
                "expected either `local_conf` (your own file, used as is) or `values`/`extra` (added to the template), not both",
            );
        }
        let d = &f.devstack;
        for (key, url) in
            [("git_base", Some(&d.git_base)), ("pip_index_url", d.pip_index_url.as_ref()), ("apt_mirror", d.apt_mirror.as_ref())]
        {
            // These go into a shell script in the guest: a URL and nothing a shell would read.
            let ok = |u: &str| {
                (u.starts_with("http://") || u.starts_with("https://") || u.starts_with("file://"))
                    && u.chars().all(|c| c.is_ascii_alphanumeric() || "-._~:/?#[]@!&+,;=%".contains(c))
            };
            if let Some(u) = url.filter(|u| !ok(u)) {
                self.fail(p(&["devstack", key]), format!("expected an http(s):// or file:// URL without quotes or spaces, found {u:?}"));
            }
        }
        if d.branch.is_empty() || !d.branch.chars().all(|c| c.is_ascii_alphanumeric() || "-._/".contains(c)) {
            self.fail(p(&["devstack", "branch"]), format!("expected a git branch name, found {:?}", d.branch));
        }
        for (key, v) in [("instance_image", &d.instance_image), ("instance_user", &d.instance_user)] {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) {
                self.fail(p(&["devstack", key]), format!("expected a name of letters, digits, '-', '.', '_', found {v:?}"));
            }
        }
        if d.stack_timeout_min == 0 {
            self.fail(p(&["devstack", "stack_timeout_min"]), "expected a number of minutes above 0");
        }
        if f.vm.memory_mib < 256 {
            self.fail(p(&["vm", "memory_mib"]), format!("expected at least 256 MiB, found {}", f.vm.memory_mib));
        }
        if f.vm.cpus == 0 || f.vm.cpus > 64 {
            self.fail(p(&["vm", "cpus"]), format!("expected 1 to 64 CPUs, found {}", f.vm.cpus));
        }
        self.name(&["vm", "image"], &f.vm.image, 64);
        let mut forwards = Vec::new();
        for (idx, fw) in f.forwards.iter().enumerate() {
            let at = |key: &str| vec![PathSeg::key("forward"), PathSeg::Index(idx), PathSeg::key(key)];
            if !["tcp", "udp"].contains(&fw.protocol.as_str()) {
                self.fail(at("protocol"), format!("expected tcp or udp, found {:?}", fw.protocol));
            }
            if fw.public_port == 0 || fw.port == 0 {
                self.fail(at("port"), "expected ports from 1 to 65535");
            }
            if let Some(to) = self.target(at("to"), &fw.to) {
                forwards.push(Forward { public_port: fw.public_port, to, port: fw.port, protocol: fw.protocol.clone() });
            }
        }
        let checks: Vec<Check> = f.checks.iter().enumerate().filter_map(|(i, c)| self.check(i, c)).collect();
        for (i, c) in checks.iter().enumerate() {
            if checks[..i].iter().any(|o| o.name == c.name) {
                self.fail(
                    vec![PathSeg::key("check"), PathSeg::Index(i)],
                    format!("expected check names to be unique, found {:?} twice", c.name),
                );
            }
        }
        let mut instance_host = 1;
        match f.instances.as_slice() {
            [] => {}
            [one] if (1..=2).contains(&one.host) => instance_host = one.host,
            [_] => self.fail(vec![PathSeg::key("instance"), PathSeg::Index(0), PathSeg::key("host")], "expected host 1 or 2"),
            _ => self.fail(
                vec![PathSeg::key("instance"), PathSeg::Index(1)],
                "expected one [[instance]]: the harness builds one instance per scenario",
            ),
        }
        if let Some(mtu) = f.faults.instance_mtu {
            if !(576..=9000).contains(&mtu) {
                self.fail(
                    vec![PathSeg::key("faults"), PathSeg::key("instance_mtu")],
                    format!("expected an MTU between 576 and 9000, found {mtu}"),
                );
            }
        }
        let security_group_rules = if f.security_group_rules.is_empty() {
            None
        } else {
            Some(f.security_group_rules.iter().enumerate().filter_map(|(i, r)| self.security_group_rule(i, r)).collect())
        };
        let world = world?;
        Some(Plan {
            name,
            description: f.description.clone(),
            source: path.into(),
            cloud: f.cloud,
            host_recipe: HostRecipe {
                lo_public_ip: hr.lo_public_ip,
                bridge: hr.bridge,
                ip_forward: hr.ip_forward,
                forward: hr.forward,
                masquerade: hr.masquerade,
                source_range: source_range?,
                persist: hr.persist,
            },
            faults: f.faults.clone(),
            world,
            devstack: f.devstack.clone(),
            user_local_conf: None,
            vm: f.vm.clone(),
            forwards,
            checks,
            security_group_rules,
            instance_host,
        })
    }

    fn security_group_rule(&mut self, idx: usize, r: &model::SecurityGroupRuleSpec) -> Option<SecurityGroupRule> {
        let at = |key: &str| vec![PathSeg::key("security_group_rule"), PathSeg::Index(idx), PathSeg::key(key)];
        let direction = match r.direction.as_str() {
            "ingress" => "ingress",
            "egress" => "egress",
            other => {
                self.fail(at("direction"), format!("expected ingress or egress, found {other:?}"));
                return None;
            }
        };
        let protocol = match r.protocol.as_deref() {
            None => None,
            Some("icmp") => Some("icmp"),
            Some("tcp") => Some("tcp"),
            Some("udp") => Some("udp"),
            Some(other) => {
                self.fail(at("protocol"), format!("expected icmp, tcp or udp (or no protocol: any), found {other:?}"));
                return None;
            }
        };
        let (min, max) = match (r.port, r.port_range_min, r.port_range_max) {
            (Some(p), None, None) => (Some(p), Some(p)),
            (None, min, max) => (min.or(max), max.or(min)),
            _ => {
                self.fail(at("port"), "expected either `port` or `port_range_min`/`port_range_max`, not both");
                return None;
            }
        };
        if min.is_some() && !matches!(protocol, Some("tcp" | "udp")) {
            self.fail(at("port"), "expected ports only with protocol tcp or udp");
            return None;
        }
        if let (Some(a), Some(b)) = (min, max) {
            if a == 0 || a > b {
                self.fail(at("port_range_min"), format!("expected 1 <= port_range_min <= port_range_max, found {a}..{b}"));
                return None;
            }
        }
        let remote_ip_prefix = match &r.remote_ip_prefix {
            Some(p) => match p.parse::<Ipv4Net>() {
                Ok(n) => Some(n.to_string()),
                Err(_) => {
                    self.fail(at("remote_ip_prefix"), format!("expected an IPv4 CIDR such as 0.0.0.0/0, found {p:?}"));
                    return None;
                }
            },
            None => None,
        };
        Some(SecurityGroupRule { direction, protocol, port_range_min: min, port_range_max: max, remote_ip_prefix })
    }
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

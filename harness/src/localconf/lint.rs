//! What DevStack would do with a local.conf, checked against the world a
//! scenario runs in. Each rule has a stable id (used in JSON, in text output and
//! in tests) and reports the line a person has to change.

use super::effective::{Effective, Origin};
use super::parse::LocalConf;
use crate::world::World;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diagnostic {
    pub rule: &'static str,
    pub severity: Severity,
    pub line: usize,
    pub message: String,
    pub hint: String,
}

/// Variables DevStack (or a plugin commonly used with it) reads. Only used to
/// suggest a spelling; a name not listed and not close to one is left alone.
const KNOWN_VARS: &[&str] = &[
    "ADMIN_PASSWORD",
    "DATABASE_PASSWORD",
    "RABBIT_PASSWORD",
    "SERVICE_PASSWORD",
    "SERVICE_TOKEN",
    "HOST_IP",
    "HOST_IPV6",
    "HOST_IP_IFACE",
    "SERVICE_HOST",
    "MYSQL_HOST",
    "RABBIT_HOST",
    "GLANCE_HOSTPORT",
    "DEST",
    "DATA_DIR",
    "LOGFILE",
    "LOGDIR",
    "LOG_COLOR",
    "LOGDAYS",
    "VERBOSE",
    "ENABLE_DEBUG_LOG_LEVEL",
    "RECLONE",
    "OFFLINE",
    "GIT_BASE",
    "GIT_DEPTH",
    "PIP_UPGRADE",
    "ENABLED_SERVICES",
    "Q_PLUGIN",
    "Q_AGENT",
    "Q_ML2_PLUGIN_MECHANISM_DRIVERS",
    "Q_ML2_TENANT_NETWORK_TYPE",
    "Q_ML2_PLUGIN_TYPE_DRIVERS",
    "Q_ML2_PLUGIN_EXT_DRIVERS",
    "Q_USE_SECGROUP",
    "Q_USE_PROVIDERNET_FOR_PUBLIC",
    "Q_FLOATING_ALLOCATION_POOL",
    "Q_L3_ENABLED",
    "Q_DVR_MODE",
    "Q_ROUTER_NAME",
    "Q_USE_PUBLIC_VETH",
    "Q_L3_ROUTER_PER_TENANT",
    "Q_SERVICE_PLUGIN_CLASSES",
    "Q_ML2_PLUGIN_VXLAN_TYPE_OPTIONS",
    "Q_ML2_PLUGIN_GRE_TYPE_OPTIONS",
    "Q_ML2_PLUGIN_VLAN_TYPE_OPTIONS",
    "Q_ML2_PLUGIN_FLAT_TYPE_OPTIONS",
    "Q_ML2_PLUGIN_GENEVE_TYPE_OPTIONS",
    "Q_USE_ROOTWRAP",
    "Q_HOST",
    "Q_META_DATA_IP",
    "PUBLIC_INTERFACE",
    "PUBLIC_BRIDGE",
    "PUBLIC_NETWORK_NAME",
    "PUBLIC_NETWORK_GATEWAY",
    "PUBLIC_PHYSICAL_NETWORK",
    "PUBLIC_SUBNET_NAME",
    "PRIVATE_NETWORK_NAME",
    "PRIVATE_SUBNET_NAME",
    "OVS_PHYSICAL_BRIDGE",
    "OVS_BRIDGE_MAPPINGS",
    "OVS_BRIDGE",
    "OVS_DATAPATH_TYPE",
    "OVS_TUNNEL_BRIDGE",
    "OVS_ENABLE_TUNNELING",
    "PHYSICAL_NETWORK",
    "PROVIDER_NETWORK_TYPE",
    "PROVIDER_SUBNET_NAME",
    "SEGMENTATION_ID",
    "ALLOCATION_POOL",
    "FLOATING_RANGE",
    "FIXED_RANGE",
    "FIXED_NETWORK_SIZE",
    "NETWORK_GATEWAY",
    "IPV4_ADDRS_SAFE_TO_USE",
    "IPV6_ADDRS_SAFE_TO_USE",
    "FIXED_RANGE_V6",
    "IP_VERSION",
    "IPV6_RA_MODE",
    "IPV6_ADDRESS_MODE",
    "IPV6_PUBLIC_RANGE",
    "IPV6_PUBLIC_NETWORK_GATEWAY",
    "IPV6_ROUTER_GW_IP",
    "IPV6_PRIVATE_NETWORK_GATEWAY",
    "TUNNEL_IP_VERSION",
    "TUNNEL_ENDPOINT_IP",
    "ENABLE_TENANT_TUNNELS",
    "TENANT_TUNNEL_RANGES",
    "ENABLE_TENANT_VLANS",
    "TENANT_VLAN_RANGE",
    "ML2_VLAN_RANGES",
    "NEUTRON_CREATE_INITIAL_NETWORKS",
    "NEUTRON_PORT_SECURITY",
    "LIBVIRT_TYPE",
    "VIRT_DRIVER",
    "IMAGE_URLS",
    "DOWNLOAD_DEFAULT_IMAGES",
    "DEFAULT_IMAGE_NAME",
    "INSTANCES_PATH",
    "REGION_NAME",
    "SWIFT_HASH",
    "SWIFT_REPLICAS",
    "STACK_USER",
    "USE_SCREEN",
    "USE_SYSTEMD",
    "PIP_USE_MIRRORS",
    "USE_GET_PIP",
    "MULTI_HOST",
    "DATABASE_TYPE",
    "DATABASE_USER",
    "MYSQL_PASSWORD",
    "API_WORKERS",
    "SERVICE_TIMEOUT",
    "ERROR_ON_CLONE",
    "INSTALL_TEMPEST",
    "FORCE",
    "GLOBAL_VENV",
    "USE_VENV",
    "VOLUME_BACKING_FILE_SIZE",
    "OVN_BRIDGE_MAPPINGS",
    "SCREEN_LOGDIR",
    "ENABLE_VERBOSE_LOG_LEVEL",
    "NOVA_BRANCH",
    "NEUTRON_BRANCH",
    "GLANCE_BRANCH",
    "KEYSTONE_BRANCH",
    "CINDER_BRANCH",
    "HORIZON_BRANCH",
    "REQUIREMENTS_BRANCH",
    "TEMPEST_BRANCH",
    "NEUTRON_REPO",
    "NOVA_REPO",
    "KEYSTONE_SERVICE_HOST",
    "SERVICE_PROTOCOL",
    "PUBLIC_NETWORK_GATEWAY",
    "Q_ML2_PLUGIN",
    "NOVA_VNC_ENABLED",
    "USE_PYTHON3",
];

/// Services that mean OVN is still on.
const OVN_SERVICES: &[&str] = &["ovn-controller", "ovn-northd", "q-ovn-metadata-agent", "q-ovn-agent"];

/// The ML2/OVS agents the world needs, with their newer `neutron-*` names.
const OVS_AGENTS: &[(&str, &str, &str)] = &[
    ("q-agt", "neutron-agent", "the Open vSwitch agent wires instances to br-int"),
    ("q-l3", "neutron-l3", "the L3 agent builds the router, its NAT and floating IPs"),
    ("q-dhcp", "neutron-dhcp", "the DHCP agent gives the instance its fixed address"),
];

struct Linter<'a> {
    conf: &'a LocalConf,
    eff: Effective,
    files: super::neutron_files::NeutronFiles,
    world: &'a World,
    out: Vec<Diagnostic>,
    /// Line used for values that come from DevStack's defaults.
    default_line: usize,
}

pub fn lint(conf: &LocalConf, world: &World) -> Vec<Diagnostic> {
    let default_line = conf.headers.iter().find(|h| h.group == "local" && h.file == "localrc").map(|h| h.line).unwrap_or(1);
    let eff = super::plan::effective(conf, world);
    // The four files as DevStack leaves them, post-config merged: several rules judge them.
    let files = super::neutron_files::build(conf, &eff);
    let mut l = Linter { conf, eff, files, world, out: Vec::new(), default_line };
    l.mangled_lines();
    if conf.files.iter().any(|f| f.group == "local" && f.file == "localrc") {
        l.addresses();
        l.bridges();
        l.services();
        l.host_ip();
        l.host_recipe();
        l.devstack_reads();
        l.spelling();
    } else if !conf.headers.iter().any(|h| h.group == "local" && h.file.trim_end_matches('\r') == "localrc") {
        l.push(
            "no-localrc",
            Severity::Error,
            1,
            "no [[local|localrc]] section: DevStack runs with every default, which does not match this world".into(),
            "start the file with [[local|localrc]] and the settings of `harness render`'s local.conf".into(),
        );
    }
    l.out.sort_by_key(|d| (d.line, d.rule));
    l.out
}

impl Linter<'_> {
    fn push(&mut self, rule: &'static str, severity: Severity, line: usize, message: String, hint: String) {
        self.out.push(Diagnostic { rule, severity, line, message, hint });
    }

    /// The line to point at for a variable: where it is set, else the localrc header.
    fn line_of(&self, name: &str) -> usize {
        self.eff.value(name).and_then(|v| v.origin.line()).unwrap_or(self.default_line)
    }

    /// "X is v" or "X is v (DevStack's default)".
    fn describe(&self, name: &str) -> String {
        match self.eff.value(name) {
            Some(v) if v.origin == Origin::Default => format!("{name} is {:?} (DevStack's default, the file does not set it)", v.value),
            Some(super::effective::Value { value, origin: Origin::Derived { from, line } }) => {
                format!("{name} is {value:?} (DevStack's default, made from {from} on line {line})")
            }
            Some(v) => format!("{name} is {:?}", v.value),
            None => format!("{name} is unset"),
        }
    }

    fn mangled_lines(&mut self) {
        if let Some(i) = self.conf.source_lines.iter().position(|l| l.ends_with('\r')) {
            self.push("crlf", Severity::Error, i + 1, "line ends with CRLF: DevStack keeps the '\\r', so `[[local|localrc]]` names the file \"localrc\\r\" and is ignored, and values end in '\\r'".into(), "convert the file to Unix line endings (dos2unix local.conf)".into());
        }
        let headers = self.conf.headers.clone();
        for h in &headers {
            if let Some(tail) = &h.dropped_tail {
                if !tail.starts_with('#') {
                    self.push(
                        "header-space",
                        Severity::Error,
                        h.line,
                        format!("DevStack reads only up to the first blank of a header: the file is {:?} and {tail:?} is dropped", h.file),
                        "remove the blank from the path (DevStack cannot write to a path with a space)".into(),
                    );
                }
            }
            if h.file.is_empty() {
                self.push(
                    "header-empty-file",
                    Severity::Warning,
                    h.line,
                    "this header names no file (nothing after '|' before the first blank): DevStack ignores it and its body".into(),
                    "write the header as [[group|file]]".into(),
                );
            }
        }
        let files = self.conf.files.clone();
        for f in files.iter().filter(|f| !(f.group == "local" && f.file == "localrc")) {
            let mut in_section = false;
            for (line, &no) in f.lines.iter().zip(&f.line_numbers) {
                if line.starts_with('[') {
                    in_section = true;
                    continue;
                }
                let body = line.trim_end_matches('\r');
                if body.is_empty() || body.starts_with(' ') || body.starts_with('\t') || body.trim_start().starts_with('#') {
                    if (body.starts_with(' ') || body.starts_with('\t')) && body.contains('=') && !body.trim_start().starts_with('#') {
                        self.push(
                            "indented-option",
                            Severity::Warning,
                            no,
                            format!(
                                "indented line {:?}: DevStack skips lines that start with a blank, so this option is not set",
                                body.trim()
                            ),
                            "remove the leading blanks".into(),
                        );
                    }
                    continue;
                }
                if !body.contains('=') {
                    self.push(
                        "key-without-equals",
                        Severity::Error,
                        no,
                        format!("{body:?} has no '=': DevStack takes the whole line as the value of an empty key and drops it"),
                        "write it as key = value".into(),
                    );
                } else if !in_section {
                    self.push(
                        "option-outside-section",
                        Severity::Warning,
                        no,
                        format!("{body:?} comes before any [section]: DevStack drops it"),
                        "put a [DEFAULT] (or the right section) header above it".into(),
                    );
                }
            }
        }
        let cmds = self.conf.localrc.commands.clone();
        for c in &cmds {
            let looks_like_var = c.name.chars().all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_');
            if looks_like_var {
                let what = if c.args.first().is_some_and(|a| a.starts_with('=')) { "spaces around '='" } else { "no '='" };
                self.push(
                    "key-without-equals",
                    Severity::Error,
                    c.line,
                    format!(
                        "`{}` has {what}: bash runs it as a command named {} and the variable stays unset",
                        self.conf.source_lines[c.line - 1].trim(),
                        c.name
                    ),
                    format!("write it as {}=value with no spaces", c.name),
                );
            }
        }
    }

    fn cidr(&mut self, name: &str) -> Option<Ipv4Net> {
        let v = self.eff.get(name)?.to_owned();
        match v.parse::<Ipv4Net>() {
            Ok(n) => Some(n),
            Err(_) => {
                let line = self.line_of(name);
                self.push(
                    "malformed-address",
                    Severity::Error,
                    line,
                    format!("{name} is {v:?}, which is not a CIDR"),
                    format!("write it as a network such as {}", self.world.floating_range),
                );
                None
            }
        }
    }

    fn addr(&mut self, name: &str) -> Option<Ipv4Addr> {
        // Empty is unset: DevStack then leaves the choice to Neutron.
        let v = self.eff.get(name).filter(|v| !v.is_empty())?.to_owned();
        match v.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                let line = self.line_of(name);
                self.push(
                    "malformed-address",
                    Severity::Error,
                    line,
                    format!("{name} is {v:?}, which is not an IPv4 address"),
                    "write a dotted-quad address such as 192.0.2.1".into(),
                );
                None
            }
        }
    }

    fn addresses(&mut self) {
        let w = self.world;
        let provider = w.provider_address.trunc();
        let floating = self.cidr("FLOATING_RANGE");
        let fixed = self.cidr("FIXED_RANGE");
        let _ = self.addr("PUBLIC_NETWORK_GATEWAY");
        let _ = self.addr("NETWORK_GATEWAY");
        // The networks as DevStack and Neutron make them: the gateway Neutron picks
        // when none is given, the private subnet from the subnet pool.
        let networks = super::networks::predict(&self.eff);
        let private = match &networks {
            super::networks::Outcome::Created(n) => Some(n.private_subnet.clone()),
            _ => None,
        };
        // The public subnet's gateway: the one given, else Neutron's (the range's first).
        let gateway = self
            .eff
            .get("PUBLIC_NETWORK_GATEWAY")
            .and_then(|g| g.trim_matches('"').parse::<Ipv4Addr>().ok())
            .or_else(|| floating.map(super::networks::default_gateway));
        self.initial_networks(&networks);
        for name in ["SERVICE_HOST", "HOST_IP"] {
            if self.eff.get(name).is_some_and(|v| !v.is_empty() && !v.contains('$')) {
                let _ = self.addr(name);
            }
        }
        if let Some(f) = floating {
            if f.trunc() != provider {
                let line = self.line_of("FLOATING_RANGE");
                self.push(
                    "floating-range",
                    Severity::Error,
                    line,
                    format!(
                        "{}, but the provider bridge {} is on {provider}: floating IPs would not be reachable on it",
                        self.describe("FLOATING_RANGE"),
                        w.provider_bridge
                    ),
                    format!("set FLOATING_RANGE={provider}"),
                );
            }
        }
        if let Some(g) = gateway {
            if g != w.provider_address.addr() {
                let line = self.line_of("PUBLIC_NETWORK_GATEWAY");
                self.push(
                    "public-gateway",
                    Severity::Error,
                    line,
                    format!(
                        "{}, but the provider bridge {} has {}: the router's default route would point at nothing",
                        if self.eff.get("PUBLIC_NETWORK_GATEWAY").is_some_and(|v| !v.is_empty()) {
                            self.describe("PUBLIC_NETWORK_GATEWAY")
                        } else {
                            format!("PUBLIC_NETWORK_GATEWAY is unset, so Neutron makes the public subnet's gateway {g} (FLOATING_RANGE's first address)")
                        },
                        w.provider_bridge,
                        w.provider_address.addr()
                    ),
                    format!("set PUBLIC_NETWORK_GATEWAY={}", w.provider_address.addr()),
                );
            }
        }
        self.pool(floating, gateway);
        let _ = fixed;
        if let Some(p) = private {
            let x = p.cidr;
            // What decided the subnet: the pool's prefix (IPV4_ADDRS_SAFE_TO_USE,
            // SUBNETPOOL_PREFIX_V4, NETWORK_GATEWAY) or FIXED_RANGE without a pool.
            let (var, what) = match &p.subnet_pool {
                Some(pool) => {
                    let var = ["NETWORK_GATEWAY", "SUBNETPOOL_PREFIX_V4", "IPV4_ADDRS_SAFE_TO_USE"]
                        .into_iter()
                        .find(|v| self.eff.value(v).is_some_and(|x| x.origin.line().is_some() && !x.value.is_empty()))
                        .unwrap_or("IPV4_ADDRS_SAFE_TO_USE");
                    let made = match self.eff.value(var).map(|v| &v.origin) {
                        Some(Origin::Derived { line, from }) => format!("made from {from} on line {line}"),
                        Some(o) => o.line().map_or("DevStack's default".into(), |l| format!("{var} on line {l}")),
                        None => "DevStack's default".into(),
                    };
                    (var, format!("the private subnet {x} (the subnet pool {pool}'s first block, {made}; DevStack does not use FIXED_RANGE for it)"))
                }
                None => ("FIXED_RANGE", format!("the private subnet {x} ({})", self.describe("FIXED_RANGE"))),
            };
            let checks = [
                ("floating range", floating.map(|f| f.trunc())),
                ("guest's private subnet", Some(w.guest_address.trunc())),
                ("provider subnet", Some(provider)),
            ];
            for (net_what, net) in checks {
                if let Some(n) = net {
                    if x.contains(&n.network()) || n.contains(&x.network()) {
                        let line = self.line_of(var);
                        self.push(
                            "fixed-range",
                            Severity::Error,
                            line,
                            format!("{what} overlaps the {net_what} {n}: the router cannot tell tenant traffic from it"),
                            format!("set {var} to a range apart from {n}"),
                        );
                    }
                }
            }
            if x.contains(&w.public_ip) {
                let line = self.line_of(var);
                self.push(
                    "fixed-range",
                    Severity::Error,
                    line,
                    format!("{what} holds the public IP {}", w.public_ip),
                    format!("set {var} to a range apart from {}", w.public_ip),
                );
            }
        }
        let ipv = self.eff.get("IP_VERSION").unwrap_or("").to_owned();
        if !ipv.starts_with('4') {
            let line = self.line_of("IP_VERSION");
            self.push(
                "unsupported-variable",
                Severity::Error,
                line,
                format!(
                    "{}: DevStack then builds no IPv4 subnet, and this cloud builds IPv6 networks not yet",
                    self.describe("IP_VERSION")
                ),
                "set IP_VERSION=4 (or 4+6: the IPv4 half is built)".into(),
            );
        } else if ipv != "4" {
            let line = self.line_of("IP_VERSION");
            self.push(
                "ip-version",
                Severity::Warning,
                line,
                format!("{}: DevStack will also build IPv6 subnets this world has no route for", self.describe("IP_VERSION")),
                "set IP_VERSION=4".into(),
            );
        }
    }

    /// What `create_neutron_initial_network` would do: Neutron's refusal kills
    /// stack.sh; no networks leave the scenario's checks nothing to run on.
    fn initial_networks(&mut self, networks: &super::networks::Outcome) {
        use super::networks::Outcome;
        match networks {
            Outcome::Created(_) => {}
            // The public subnet's own refusals have their rules (public-gateway, allocation-pool).
            Outcome::Refused(r) if matches!(r.variable, "Q_FLOATING_ALLOCATION_POOL" | "PUBLIC_NETWORK_GATEWAY" | "FLOATING_RANGE") => {}
            Outcome::Refused(r) => {
                let line = self.line_of(r.variable);
                let (var, reason) = (r.variable, r.reason.clone());
                self.push(
                    "network-refused",
                    Severity::Error,
                    line,
                    format!("{}: Neutron refuses DevStack's initial network and stack.sh dies: {reason}", self.describe(var)),
                    format!("change {var}: with the default subnet pool, NETWORK_GATEWAY must lie in IPV4_ADDRS_SAFE_TO_USE (or leave it unset)"),
                );
            }
            Outcome::Unsupported { variable, why } => {
                let line = self.line_of(variable);
                let msg = format!("{}: {why}; this cloud builds DevStack's private network and router only", self.describe(variable));
                self.push("unsupported-variable", Severity::Error, line, msg, format!("remove {variable}"));
            }
            Outcome::NotCreated { why } => {
                let line = self.line_of("NEUTRON_CREATE_INITIAL_NETWORKS");
                self.push(
                    "no-initial-networks",
                    Severity::Error,
                    line,
                    format!("DevStack makes no initial networks ({why}): the scenario's instance and floating IP have no network to use, and scenarios cannot name networks of their own yet"),
                    "set NEUTRON_CREATE_INITIAL_NETWORKS=True and enable q-svc".into(),
                );
            }
        }
    }

    /// Variables DevStack reads that this cloud does not build, set away from
    /// DevStack's default; post-config the cloud does not apply; option names
    /// translated for the image's Neutron.
    fn devstack_reads(&mut self) {
        let unsupported: &[(&str, &str, &str)] = &[
            ("Q_USE_PUBLIC_VETH", "False", "DevStack then plugs the router's gateway through a veth pair instead of br-ex"),
            ("TUNNEL_IP_VERSION", "4", "IPv6 tunnel endpoints are not built"),
            ("OVS_DATAPATH_TYPE", "system", "the userspace (netdev) datapath needs DPDK, which the guest has not"),
        ];
        for (var, default, why) in unsupported {
            if let Some(v) = self.eff.value(var).filter(|v| v.origin.line().is_some() && v.value != *default) {
                let (line, value) = (v.origin.line().unwrap_or(self.default_line), v.value.clone());
                self.push(
                    "unsupported-variable",
                    Severity::Error,
                    line,
                    format!("{var} is {value:?}: {why}; this cloud does not build that"),
                    format!("remove {var} (DevStack's default is {default:?})"),
                );
            }
        }
        // Shell the harness cannot evaluate: DevStack's bash runs it on the host
        // (a command substitution) or stops reading localrc there (a bare < or >).
        let raw: Vec<(String, String, usize)> =
            self.conf.localrc.assignments.iter().map(|a| (a.name.clone(), a.value.clone(), a.line)).collect();
        for (name, value, line) in raw {
            let unquoted = !value.starts_with('"') && !value.starts_with('\'');
            if value.contains("$(") || value.contains('`') || (unquoted && (value.contains('<') || value.contains('>'))) {
                let what = if value.contains("$(") || value.contains('`') {
                    "a command substitution: DevStack's bash runs it on the host, and what it prints there is unknown here"
                } else {
                    "a bare < or >: a shell syntax error, and DevStack's `source` of localrc stops at this line"
                };
                self.push(
                    "shell-syntax",
                    Severity::Error,
                    line,
                    format!("{name}={value}: {what}"),
                    format!("write the value {name} should have"),
                );
            }
        }
        if self.eff.service_enabled("q-placement") || self.eff.service_enabled("neutron-placement") {
            let l = self.eff.service_line("q-placement").or(self.eff.service_line("neutron-placement")).unwrap_or(self.default_line);
            self.push(
                "unsupported-variable",
                Severity::Error,
                l,
                "q-placement: Neutron's placement service plugin reports to Placement through Keystone, which this cloud does not run"
                    .into(),
                "disable_service q-placement".into(),
            );
        }
        if self.eff.get("Q_DVR_MODE") == Some("dvr") {
            let line = self.line_of("Q_DVR_MODE");
            self.push(
                "unsupported-variable",
                Severity::Error,
                line,
                "Q_DVR_MODE is \"dvr\" on the only node: no L3 agent runs in dvr_snat mode, so no node does the router's SNAT".into(),
                "set Q_DVR_MODE=dvr_snat (or legacy)".into(),
            );
        }
        if !self.eff.service_enabled("q-svc") && !self.eff.service_enabled("neutron-api") && self.eff.get("Q_AGENT") == Some("openvswitch") {
            let l = self.eff.disabled_line("q-svc").or(self.eff.disabled_line("neutron-api")).unwrap_or(self.default_line);
            self.push(
                "node-role",
                Severity::Error,
                l,
                "q-svc is not enabled: this is a compute node's local.conf, and the cloud is one node running neutron-server".into(),
                "use the controller's local.conf (enable_service q-svc)".into(),
            );
        }
        let files = self.files.clone();
        for (file, line) in files.ignored.clone() {
            self.push(
                "post-config-ignored",
                Severity::Warning,
                line,
                format!("post-config for {file}: DevStack would merge it, but the neutron cloud writes only Neutron's four files (neutron.conf, ml2_conf.ini, l3_agent.ini, dhcp_agent.ini), so it is not applied"),
                "nothing to do if the section is for a service this cloud does not run".into(),
            );
        }
        for t in files.translated.clone() {
            self.push(
                "option-translated",
                Severity::Warning,
                t.line,
                format!("[{}] {} is master's name: Neutron up to 26 (2025.1, which this cloud runs) reads only {}, so the neutron cloud writes it as {} (DevStack would write {} and Neutron would ignore it)", t.section, t.from, t.to, t.to, t.from),
                format!("write {}", t.to),
            );
        }
        for m in files.overridden.clone() {
            self.push(
                "post-config-overridden",
                Severity::Warning,
                m.line,
                format!("[{}] {} in post-config loses: DevStack sets it again after the merge (configure_neutron_after_post_config) from Q_SERVICE_PLUGIN_CLASSES", m.section, m.key),
                "set Q_SERVICE_PLUGIN_CLASSES instead".into(),
            );
        }
        // A tenant network type the OVS agent's tunnel_types cannot carry.
        let ml2 = super::neutron_files::ML2_CONF;
        let tenant = files.get(ml2, "ml2", "tenant_network_types").unwrap_or("").to_owned();
        let tunnels = files.get(ml2, "agent", "tunnel_types").unwrap_or("").to_owned();
        for t in tenant.split(',').map(str::trim).filter(|t| *t == "vxlan" || *t == "gre") {
            if !tunnels.split(',').any(|x| x.trim() == t) && self.eff.service_enabled("q-agt") {
                let line =
                    files.merged_line(ml2, "ml2", "tenant_network_types").unwrap_or_else(|| self.line_of("Q_ML2_TENANT_NETWORK_TYPE"));
                self.push(
                    "tunnel-types",
                    Severity::Error,
                    line,
                    format!("the tenant network type is {t}, but the OVS agent's tunnel_types is {tunnels:?}: the agent cannot carry {t} tunnels"),
                    format!("add {t} to [agent] tunnel_types (or set Q_ML2_TENANT_NETWORK_TYPE={t})"),
                );
            }
        }
    }

    fn pool(&mut self, floating: Option<Ipv4Net>, gateway: Option<Ipv4Addr>) {
        let Some(raw) = self.eff.get("Q_FLOATING_ALLOCATION_POOL").map(str::to_owned) else { return };
        if raw.is_empty() {
            return;
        }
        let line = self.line_of("Q_FLOATING_ALLOCATION_POOL");
        let Some((s, e)) = super::networks::parse_pool(&raw) else {
            self.push(
                "malformed-address",
                Severity::Error,
                line,
                format!("Q_FLOATING_ALLOCATION_POOL is {raw:?}; expected start=ADDRESS,end=ADDRESS"),
                format!("set Q_FLOATING_ALLOCATION_POOL=start={},end={}", self.world.pool_start, self.world.pool_end),
            );
            return;
        };
        let hint = format!("set Q_FLOATING_ALLOCATION_POOL=start={},end={}", self.world.pool_start, self.world.pool_end);
        if s > e {
            self.push(
                "allocation-pool",
                Severity::Error,
                line,
                format!("the allocation pool {s}-{e} is empty: its start is after its end"),
                hint.clone(),
            );
        }
        if let Some(f) = floating {
            for a in [s, e] {
                if !f.contains(&a) {
                    self.push(
                        "allocation-pool",
                        Severity::Error,
                        line,
                        format!("the allocation pool address {a} lies outside FLOATING_RANGE {f}"),
                        hint.clone(),
                    );
                }
            }
        }
        if let Some(g) = gateway {
            if (s..=e).contains(&g) {
                self.push(
                    "allocation-pool",
                    Severity::Error,
                    line,
                    format!("the allocation pool {s}-{e} holds the gateway {g}: Neutron refuses the subnet"),
                    hint,
                );
            }
        }
    }

    fn bridges(&mut self) {
        let w = self.world;
        let phys = self.eff.get("OVS_PHYSICAL_BRIDGE").unwrap_or("").to_owned();
        let public = self.eff.get("PUBLIC_BRIDGE").unwrap_or("").to_owned();
        let physnet = self.eff.get("PUBLIC_PHYSICAL_NETWORK").unwrap_or("").to_owned();
        if phys.is_empty() {
            let line = self.line_of("OVS_PHYSICAL_BRIDGE");
            self.push(
                "bridge-mappings",
                Severity::Error,
                line,
                "OVS_PHYSICAL_BRIDGE is unset: DevStack neither adds PUBLIC_INTERFACE to an OVS bridge nor moves its address".into(),
                format!("set OVS_PHYSICAL_BRIDGE={}", w.ovs_bridge),
            );
        } else if phys != public {
            let line = self.line_of("PUBLIC_BRIDGE").max(self.line_of("OVS_PHYSICAL_BRIDGE"));
            self.push(
                "bridge-mappings",
                Severity::Error,
                line,
                format!(
                    "OVS_PHYSICAL_BRIDGE is {phys:?} but {}: the L3 agent's external bridge and the bridge holding the uplink differ",
                    self.describe("PUBLIC_BRIDGE")
                ),
                format!("set both to {}", w.ovs_bridge),
            );
        }
        let mappings = self.eff.get("OVS_BRIDGE_MAPPINGS").unwrap_or("").to_owned();
        let line = self.line_of("OVS_BRIDGE_MAPPINGS");
        let mapped = mappings.split(',').filter_map(|m| m.split_once(':')).find(|(net, _)| *net == physnet).map(|(_, br)| br.to_owned());
        match mapped {
            None => self.push("bridge-mappings", Severity::Error, line, format!("OVS_BRIDGE_MAPPINGS is {mappings:?}, with no mapping for the public physical network {physnet:?}: the agent cannot wire the external network"), format!("set OVS_BRIDGE_MAPPINGS={physnet}:{}", if phys.is_empty() { &w.ovs_bridge } else { &phys })),
            Some(br) if !phys.is_empty() && br != phys => self.push("bridge-mappings", Severity::Error, line, format!("OVS_BRIDGE_MAPPINGS maps {physnet:?} to {br:?} but OVS_PHYSICAL_BRIDGE is {phys:?}"), format!("set OVS_BRIDGE_MAPPINGS={physnet}:{phys}")),
            _ => {}
        }
        // Both other modes build (DevStack runs them), so they are warnings that
        // say what DevStack does to this host instead.
        let br = if phys.is_empty() { w.ovs_bridge.clone() } else { phys };
        let hint = if w.provider_bridge_made {
            format!("set PUBLIC_INTERFACE={} to bridge the provider network into {br}", w.provider_bridge)
        } else {
            format!("leave PUBLIC_INTERFACE unset: {br} then holds the public gateway {}", w.public_gateway)
        };
        let outside = format!(
            "the provider bridge {} stays outside {br}, so the host's way to the floating range {} (through {0}) does not reach the router",
            w.provider_bridge, w.floating_range
        );
        let pi = self.eff.get("PUBLIC_INTERFACE").map(str::to_owned);
        let line = self.line_of("PUBLIC_INTERFACE");
        match pi {
            // DevStack's all-in-one: no Linux bridge, br-ex is the provider network.
            None if !w.provider_bridge_made => {}
            Some(pi) if pi == w.provider_bridge && w.provider_bridge_made => {}
            Some(pi) if pi == w.guest_nic => {
                let what = format!(
                    "PUBLIC_INTERFACE is {pi:?}, the host's own NIC: DevStack moves its address {} and the default route to {br} and adds {pi} to {br}; {}",
                    w.guest_address,
                    if w.provider_bridge_made { outside } else { format!("the floating IPs are then on the cloud's network behind {pi}") }
                );
                self.push("public-interface", Severity::Warning, line, what, hint);
            }
            Some(pi) => {
                let what = format!("PUBLIC_INTERFACE is {pi:?}, which this host does not have: DevStack moves no address and adds a missing port to {br}{}",
                    if w.provider_bridge_made { format!("; {outside}") } else { String::new() });
                self.push("public-interface", Severity::Warning, line, what, hint);
            }
            None => self.push(
                "public-interface",
                Severity::Warning,
                self.default_line,
                format!("PUBLIC_INTERFACE is unset: DevStack adds no interface to {br} and masquerades the floating range on the default-route device; {outside}"),
                hint,
            ),
        }
    }

    fn services(&mut self) {
        // Where DevStack master (what most users run) builds something else than
        // 2025.1, which the neutron cloud predicts (tests/devstack_oracle.rs reports them).
        if self.eff.get("Q_AGENT") == Some("ovn") && self.eff.service_enabled("ovn-controller") {
            let line = self.line_of("Q_AGENT");
            self.push(
                "devstack-release",
                Severity::Warning,
                line,
                "ML2/OVN under DevStack master differs from 2025.1, which this cloud predicts: master enables the OVN agent (q-ovn-agent, ovn_agent.ini with the metadata extension) where 2025.1 runs q-ovn-metadata-agent, and adds br-ex without the OpenFlow13/15 protocols".into(),
                "expect the metadata service from neutron-ovn-agent under DevStack master".into(),
            );
        }
        for (service, line, disabled) in self.eff.refused_enables.clone() {
            self.push(
                "services",
                Severity::Warning,
                line,
                format!("enable_service {service} has no effect: line {disabled} disabled it, and DevStack never enables a disabled service again (\"Attempt to enable_service {service} when it has been disabled\")"),
                format!("remove `disable_service {service}` from line {disabled}"),
            );
        }
        let agent = self.eff.get("Q_AGENT").unwrap_or("").to_owned();
        let line = self.line_of("Q_AGENT");
        if agent != "openvswitch" {
            self.push(
                "agent",
                Severity::Error,
                line,
                format!("{}: this world is ML2/OVS with the q-agt, q-l3 and q-dhcp agents", self.describe("Q_AGENT")),
                "set Q_AGENT=openvswitch".into(),
            );
            return;
        }
        // Judged on ml2_conf.ini as DevStack leaves it: a [[post-config]] section
        // merged over Q_ML2_PLUGIN_MECHANISM_DRIVERS decides.
        let files = self.files.clone();
        let ml2 = super::neutron_files::ML2_CONF;
        let mech = files.get(ml2, "ml2", "mechanism_drivers").unwrap_or("").to_owned();
        if !mech.split(',').any(|m| m.trim() == "openvswitch") {
            let (l, what) = match files.merged_line(ml2, "ml2", "mechanism_drivers") {
                Some(l) => (l, format!("[ml2] mechanism_drivers is {mech:?} in the [[post-config]] section for {ml2}")),
                None => (self.line_of("Q_ML2_PLUGIN_MECHANISM_DRIVERS"), self.describe("Q_ML2_PLUGIN_MECHANISM_DRIVERS")),
            };
            self.push(
                "mechanism-driver",
                Severity::Error,
                l,
                format!("{what} with Q_AGENT=openvswitch: neutron-server will not bind ports for the OVS agent"),
                "set Q_ML2_PLUGIN_MECHANISM_DRIVERS=openvswitch (or mechanism_drivers in the post-config section)".into(),
            );
        }
        // Also judged on ml2_conf.ini: `project_network_types` (or its old name) in
        // a post-config section wins.
        let post = ["project_network_types", "tenant_network_types"].into_iter().find_map(|k| Some((k, files.merged_line(ml2, "ml2", k)?)));
        let (net_type, l, what) = match post {
            Some((k, l)) => {
                let v = files.get(ml2, "ml2", k).unwrap_or("").to_owned();
                let what = format!("[ml2] {k} is {v:?} in the [[post-config]] section for {ml2}");
                (v, l, what)
            }
            None => (
                self.eff.get("Q_ML2_TENANT_NETWORK_TYPE").unwrap_or("").to_owned(),
                self.line_of("Q_ML2_TENANT_NETWORK_TYPE"),
                self.describe("Q_ML2_TENANT_NETWORK_TYPE"),
            ),
        };
        if !net_type.split(',').all(|t| ["vxlan", "gre", "vlan", "flat", "local"].contains(&t.trim())) {
            self.push(
                "tenant-network-type",
                Severity::Error,
                l,
                format!("{what}, which the Open vSwitch agent cannot serve"),
                format!("set Q_ML2_TENANT_NETWORK_TYPE={}", self.world.tenant_network_type),
            );
        }
        for (old, new, why) in OVS_AGENTS {
            if !self.eff.service_enabled(old) && !self.eff.service_enabled(new) {
                let l = self.eff.disabled_line(old).or(self.eff.disabled_line(new)).unwrap_or(self.default_line);
                self.push(
                    "services",
                    Severity::Error,
                    l,
                    format!("{old} is not enabled with Q_AGENT=openvswitch: {why}"),
                    format!("add `enable_service {old}`"),
                );
            }
        }
        for s in OVN_SERVICES {
            if self.eff.service_enabled(s) {
                let l = self.eff.service_line(s).unwrap_or(self.default_line);
                self.push(
                    "services",
                    Severity::Warning,
                    l,
                    format!("OVN service {s} is still enabled with Q_AGENT=openvswitch (stackrc enables it by default); DevStack starts OVN only for Q_AGENT=ovn, so it does nothing"),
                    format!("add `disable_service {s}` to say so"),
                );
            }
        }
    }

    /// What a scenario's host recipe sets that DevStack's host steps set again.
    fn host_recipe(&mut self) {
        if !self.world.recipe_ip_forward {
            self.push(
                "host-recipe",
                Severity::Warning,
                self.default_line,
                "the scenario's host recipe leaves net.ipv4.ip_forward off (ip_forward = false), but stack.sh sets it to 1 before the cloud is built (and so do the clouds here, which run DevStack's host steps), so it is on when the checks run".into(),
                "to check a host without forwarding, set `[faults] ip_forward_off = true` (what a reboot leaves: DevStack bug 885274)".into(),
            );
        }
    }

    fn host_ip(&mut self) {
        let w = self.world;
        let private = w.guest_address.addr();
        match self.eff.get("HOST_IP").map(str::to_owned) {
            None => self.push("host-ip", Severity::Warning, self.default_line, format!("HOST_IP is unset: DevStack takes the default-route interface's address ({private}) and never finds the public IP on lo"), format!("set HOST_IP={}", w.public_ip)),
            Some(v) => {
                if let Ok(a) = v.parse::<Ipv4Addr>() {
                    if a != w.public_ip && a != private {
                        let line = self.line_of("HOST_IP");
                        self.push("host-ip", Severity::Error, line, format!("HOST_IP is {a}, neither the public IP {} nor the guest's private address {private}: services would bind to an address the host does not have", w.public_ip), format!("set HOST_IP={}", w.public_ip));
                    }
                }
            }
        }
    }

    fn spelling(&mut self) {
        let names: Vec<(String, usize)> = self.conf.localrc.assignments.iter().map(|a| (a.name.clone(), a.line)).collect();
        for (name, line) in names {
            if KNOWN_VARS.contains(&name.as_str()) || !name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                continue;
            }
            let best = KNOWN_VARS.iter().map(|k| (strsim::damerau_levenshtein(&name, k), *k)).min();
            if let Some((dist, known)) = best {
                if dist > 0 && dist <= 2.max(name.len() / 8) {
                    self.push(
                        "unknown-variable",
                        Severity::Warning,
                        line,
                        format!("DevStack does not read {name}; did you mean {known}?"),
                        format!("rename it to {known}"),
                    );
                }
            }
        }
    }
}

/// Compiler-style text: `local.conf:26: error[floating-range]: ...`, the line, the hint.
pub fn format_text(file: &str, conf: &LocalConf, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!("{file}:{}: {sev}[{}]: {}\n", d.line, d.rule, d.message));
        if let Some(src) = conf.source_lines.get(d.line.wrapping_sub(1)) {
            out.push_str(&format!("{:>5} | {}\n", d.line, src.trim_end_matches('\r')));
        }
        out.push_str(&format!("      = hint: {}\n", d.hint));
    }
    let errors = diags.iter().filter(|d| d.severity == Severity::Error).count();
    out.push_str(&format!("{file}: {errors} error(s), {} warning(s)\n", diags.len() - errors));
    out
}

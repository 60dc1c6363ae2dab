//! The values DevStack ends up with: the localrc section evaluated in order
//! (with `$VAR` and `${VAR:-default}` references), then DevStack's own defaults
//! for whatever the file left unset, `HOST_IP` found as stackrc's
//! `get_default_host_ip` finds it on the host. The defaults are those of the
//! DevStack the neutron cloud predicts (stable/2025.1, for the image's Neutron 26:
//! stackrc, lib/neutron, lib/neutron_plugins/{ml2,services/l3,ovs_base});
//! the DevStack-oracle test holds them against that tree.

use super::parse::LocalConf;
use std::collections::HashMap;

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Set on this local.conf line.
    Line(usize),
    /// DevStack's default, made from a variable the file set (`FIXED_RANGE` from
    /// `IPV4_ADDRS_SAFE_TO_USE`): that line decided the value.
    Derived { line: usize, from: String },
    /// DevStack's default.
    Default,
    /// Found on the host at run time (`HOST_IP`), the ranges it skipped decided by
    /// the inner origin.
    Detected(Box<Origin>),
}

impl Origin {
    /// The local.conf line that decided the value, if one did.
    pub fn line(&self) -> Option<usize> {
        match self {
            Origin::Line(l) | Origin::Derived { line: l, .. } => Some(*l),
            Origin::Default => None,
            Origin::Detected(inner) => inner.line(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Value {
    pub value: String,
    pub origin: Origin,
}

/// The services stackrc enables before localrc runs `enable_service` /
/// `disable_service` (DevStack master: OVN is the default Neutron backend).
const DEFAULT_SERVICES: &[&str] = &[
    "key",
    "n-api",
    "n-cpu",
    "n-cond",
    "n-sch",
    "n-novnc",
    "n-api-meta",
    "placement-api",
    "placement-client",
    "g-api",
    "c-sch",
    "c-api",
    "c-vol",
    "ovn-controller",
    "ovn-northd",
    "ovs-vswitchd",
    "ovsdb-server",
    "q-svc",
    "q-ovn-metadata-agent",
    "horizon",
    "rabbit",
    "tempest",
    "mysql",
    "etcd3",
    "dstat",
];

/// `NAME=${NAME:-default}` lines DevStack runs after localrc, in DevStack's order.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("IP_VERSION", "4+6"),
    ("Q_AGENT", "ovn"),
    ("Q_ML2_PLUGIN_MECHANISM_DRIVERS", "ovn"),
    ("Q_ML2_TENANT_NETWORK_TYPE", "geneve"),
    ("FLOATING_RANGE", "172.24.4.0/24"),
    ("IPV4_ADDRS_SAFE_TO_USE", "10.0.0.0/22"),
    ("FIXED_RANGE", "$IPV4_ADDRS_SAFE_TO_USE"),
    // lib/neutron_plugins/services/l3: both left to Neutron (the range's first
    // address) when unset.
    ("NETWORK_GATEWAY", ""),
    ("PUBLIC_NETWORK_GATEWAY", ""),
    ("USE_SUBNETPOOL", "True"),
    ("SUBNETPOOL_NAME_V4", "${SUBNETPOOL_NAME:-shared-default-subnetpool-v4}"),
    ("SUBNETPOOL_PREFIX_V4", "$IPV4_ADDRS_SAFE_TO_USE"),
    ("SUBNETPOOL_SIZE_V4", "26"),
    ("NEUTRON_CREATE_INITIAL_NETWORKS", "True"),
    ("PRIVATE_NETWORK_NAME", "private"),
    ("PUBLIC_NETWORK_NAME", "public"),
    ("PRIVATE_SUBNET_NAME", "private-subnet"),
    ("PUBLIC_SUBNET_NAME", "public-subnet"),
    ("Q_ROUTER_NAME", "router1"),
    ("Q_USE_PROVIDER_NETWORKING", "False"),
    ("Q_USE_PUBLIC_VETH", "False"),
    ("PUBLIC_BRIDGE_MTU", "1500"),
    ("PUBLIC_BRIDGE", "br-ex"),
    ("PUBLIC_PHYSICAL_NETWORK", "public"),
    // lib/neutron_plugins/services/l3 (it was "False" here before: wrong).
    ("Q_USE_PROVIDERNET_FOR_PUBLIC", "True"),
    ("Q_ASSIGN_GATEWAY_TO_PUBLIC_BRIDGE", "True"),
    ("OVS_BRIDGE", "br-int"),
    // lib/neutron, stackrc: what the neutron cloud's configuration is made from.
    ("PHYSICAL_NETWORK", "public"),
    ("OVS_PHYSICAL_BRIDGE", "br-ex"),
    ("ENABLE_TENANT_TUNNELS", "True"),
    ("OVS_ENABLE_TUNNELING", "$ENABLE_TENANT_TUNNELS"),
    ("TENANT_TUNNEL_RANGES", "1:1000"),
    ("ENABLE_TENANT_VLANS", "False"),
    ("Q_DVR_MODE", "legacy"),
    ("Q_USE_SECGROUP", "True"),
    ("NEUTRON_PORT_SECURITY", "True"),
    ("TUNNEL_IP_VERSION", "4"),
    ("TUNNEL_ENDPOINT_IP", "$HOST_IP"),
    ("OVS_DATAPATH_TYPE", "system"),
    ("Q_OVS_USE_VETH", "False"),
    ("ENABLE_ISOLATED_METADATA", "False"),
    ("ENABLE_METADATA_NETWORK", "False"),
    // stackrc (IPv4 service addresses), lib/neutron: what ML2/OVN's connections
    // and bridge mappings are made from.
    ("SERVICE_HOST", "$HOST_IP"),
    ("SERVICE_LOCAL_HOST", "127.0.0.1"),
    ("SERVICE_LISTEN_ADDRESS", "0.0.0.0"),
    ("OVN_BRIDGE_MAPPINGS", "$PHYSICAL_NETWORK:$PUBLIC_BRIDGE"),
];

/// lib/neutron_plugins/ovn_agent's `${NAME:-default}` lines, sourced by
/// lib/neutron_plugins/ml2 before its own when `Q_AGENT=ovn` (DevStack's default).
pub const OVN_DEFAULTS: &[(&str, &str)] = &[
    ("OVN_NEUTRON_SYNC_MODE", "log"),
    ("OVN_L3_SCHEDULER", "leastloaded"),
    ("OVN_GENEVE_OVERHEAD", "38"),
    ("OVN_AGENT_EXTENSIONS", ""),
    ("Q_ML2_PLUGIN_TYPE_DRIVERS", "local,flat,vlan,geneve"),
    ("Q_ML2_PLUGIN_GENEVE_TYPE_OPTIONS", "vni_ranges=1:65536"),
    ("Q_ML2_PLUGIN_EXT_DRIVERS", "port_security,qos"),
];

/// What stackrc's `get_default_host_ip` reads on the host: the IPv4 addresses of
/// the interface the default route goes through (`HOST_IP_IFACE` aside), in order.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    pub default_route_addrs: Vec<std::net::Ipv4Addr>,
}

/// The localrc section's effect.
#[derive(Debug, Clone, Default)]
pub struct Effective {
    vars: HashMap<String, Value>,
    /// Enabled services and the line that last changed each (None: default).
    services: Vec<(String, Option<usize>)>,
    /// Lines of `disable_service` per service, to point at (DevStack's
    /// `DISABLED_SERVICES`).
    disabled_at: HashMap<String, usize>,
    /// `enable_service` of a service disabled before: DevStack warns and keeps it
    /// disabled. (service, the enable's line, the disable's line).
    pub refused_enables: Vec<(String, usize, usize)>,
}

impl Effective {
    /// The values with nothing known of the host: an unset `HOST_IP` stays empty.
    pub fn evaluate(conf: &LocalConf) -> Effective {
        Self::evaluate_on(conf, None)
    }

    /// The values on a host: an unset `HOST_IP` (or `dhcp`) is what
    /// `get_default_host_ip` finds there.
    pub fn evaluate_on(conf: &LocalConf, host: Option<&HostView>) -> Effective {
        let mut eff = Effective { services: DEFAULT_SERVICES.iter().map(|s| (s.to_string(), None)).collect(), ..Default::default() };
        let rc = &conf.localrc;
        // Assignments and commands interleave; bash runs them in line order.
        let mut a = rc.assignments.iter().peekable();
        let mut c = rc.commands.iter().peekable();
        loop {
            let take_assignment = match (a.peek(), c.peek()) {
                (Some(x), Some(y)) => x.line < y.line,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_assignment {
                let asg = a.next().expect("peeked");
                let mut value = eff.expand(&asg.value);
                if asg.append {
                    value = format!("{}{value}", eff.get(&asg.name).unwrap_or(""));
                }
                if asg.name == "ENABLED_SERVICES" {
                    // `ENABLED_SERVICES+=,x` adds to the services enabled so far
                    // (stackrc's and enable_service's), `=` replaces them.
                    let added = eff.expand(&asg.value);
                    if !asg.append {
                        eff.services.clear();
                    }
                    for s in added.split(',').filter(|s| !s.is_empty()) {
                        if !eff.services.iter().any(|(n, _)| n == s) {
                            eff.services.push((s.to_owned(), Some(asg.line)));
                        }
                    }
                }
                eff.vars.insert(asg.name.clone(), Value { value, origin: Origin::Line(asg.line) });
            } else {
                let cmd = c.next().expect("peeked");
                let args: Vec<String> = cmd
                    .args
                    .iter()
                    .map(|x| eff.expand(x))
                    .flat_map(|x| x.split([',', ' ']).map(str::to_owned).collect::<Vec<_>>())
                    .filter(|s| !s.is_empty())
                    .collect();
                match cmd.name.as_str() {
                    "enable_service" => {
                        for s in args {
                            // functions-common: "Attempt to enable_service X when it has been disabled".
                            if let Some(&at) = eff.disabled_at.get(&s) {
                                eff.refused_enables.push((s, cmd.line, at));
                                continue;
                            }
                            if !eff.services.iter().any(|(n, _)| *n == s) {
                                eff.services.push((s, Some(cmd.line)));
                            }
                        }
                    }
                    "disable_service" => {
                        for s in args {
                            eff.services.retain(|(n, _)| *n != s);
                            eff.disabled_at.insert(s, cmd.line);
                        }
                    }
                    "disable_all_services" => eff.services.clear(),
                    _ => {}
                }
            }
        }
        for (name, default) in DEFAULTS {
            if *name == "TUNNEL_ENDPOINT_IP" {
                eff.detect_host_ip(host);
            }
            eff.default(name, default);
            if *name == "Q_AGENT" && eff.get("Q_AGENT") == Some("ovn") {
                for (name, default) in OVN_DEFAULTS {
                    eff.default(name, default);
                }
            }
        }
        // lib/neutron_plugins/openvswitch_agent: mappings from PHYSICAL_NETWORK when unset.
        if eff.get("OVS_BRIDGE_MAPPINGS").is_none_or(str::is_empty) {
            if let (Some(pn), Some(br)) = (eff.get("PHYSICAL_NETWORK"), eff.get("OVS_PHYSICAL_BRIDGE")) {
                if !pn.is_empty() && !br.is_empty() {
                    let value = format!("{pn}:{br}");
                    let origin = eff.deciding_origin(&["PHYSICAL_NETWORK".to_owned(), "OVS_PHYSICAL_BRIDGE".to_owned()]);
                    eff.vars.insert("OVS_BRIDGE_MAPPINGS".into(), Value { value, origin });
                }
            }
        }
        eff
    }

    /// `NAME=${NAME:-default}`.
    fn default(&mut self, name: &str, default: &str) {
        if self.get(name).is_none_or(str::is_empty) {
            let value = self.expand(default);
            let origin = self.deciding_origin(&references(default));
            self.vars.insert(name.to_owned(), Value { value, origin });
        }
    }

    /// stackrc: `HOST_IP=$(get_default_host_ip "$FIXED_RANGE" "$FLOATING_RANGE" ...)`:
    /// the first address of the default-route interface in neither range.
    fn detect_host_ip(&mut self, host: Option<&HostView>) {
        let set = self.get("HOST_IP").unwrap_or("");
        let Some(host) = host.filter(|_| set.is_empty() || set == "dhcp") else { return };
        let range = |n: &str| self.get(n).and_then(|v| v.trim_matches('"').parse::<ipnet::Ipv4Net>().ok());
        let (fixed, floating) = (range("FIXED_RANGE"), range("FLOATING_RANGE"));
        let found =
            host.default_route_addrs.iter().find(|a| !fixed.is_some_and(|n| n.contains(*a)) && !floating.is_some_and(|n| n.contains(*a)));
        let value = found.map(|a| a.to_string()).unwrap_or_default();
        let origin = self.deciding_origin(&["FIXED_RANGE".to_owned(), "FLOATING_RANGE".to_owned()]);
        self.vars.insert("HOST_IP".into(), Value { value, origin: Origin::Detected(Box::new(origin)) });
    }

    /// The origin of a default made from `names`: derived from the last line of the
    /// file that set one of them, else plain DevStack's default.
    fn deciding_origin(&self, names: &[String]) -> Origin {
        names
            .iter()
            .filter_map(|n| self.vars.get(n).and_then(|v| v.origin.line()).map(|l| (l, n)))
            .max_by_key(|(l, _)| *l)
            .map_or(Origin::Default, |(line, from)| Origin::Derived { line, from: from.clone() })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.value.as_str())
    }

    pub fn value(&self, name: &str) -> Option<&Value> {
        self.vars.get(name)
    }

    pub fn service_enabled(&self, name: &str) -> bool {
        self.services.iter().any(|(n, _)| n == name)
    }

    /// The line that enabled a service, if the file did.
    pub fn service_line(&self, name: &str) -> Option<usize> {
        self.services.iter().find(|(n, _)| n == name).and_then(|(_, l)| *l)
    }

    pub fn disabled_line(&self, name: &str) -> Option<usize> {
        self.disabled_at.get(name).copied()
    }

    /// Parameter expansion for the forms local.conf files use: `$V`, `${V}`,
    /// `${V:-w}`, `${V-w}`, `${V:=w}`, `${V:+w}`. Anything else is kept as written.
    pub fn expand(&self, s: &str) -> String {
        expand_with(s, &|name| self.get(name).map(str::to_owned), 0)
    }
}

/// The variables a value refers to (`$V`, `${V...}`).
fn references(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        rest = &rest[pos + 1..];
        let r = rest.strip_prefix('{').unwrap_or(rest);
        let name: String = r.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

pub(crate) fn expand_with(s: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> String {
    if depth > 8 {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(inner) = after.strip_prefix('{') {
            // Find the matching brace (defaults may nest `${...}`).
            let mut level = 1;
            let mut end = None;
            for (i, ch) in inner.char_indices() {
                match ch {
                    '{' => level += 1,
                    '}' => {
                        level -= 1;
                        if level == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                out.push_str(&rest[pos..]);
                return out;
            };
            let body = &inner[..end];
            let name_len = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(body.len());
            let (name, op) = body.split_at(name_len);
            let val = lookup(name);
            let expanded = if op.is_empty() {
                val.unwrap_or_default()
            } else if let Some(w) = op.strip_prefix(":-").or_else(|| op.strip_prefix(":=")) {
                match val {
                    Some(v) if !v.is_empty() => v,
                    _ => expand_with(w, lookup, depth + 1),
                }
            } else if let Some(w) = op.strip_prefix('-').or_else(|| op.strip_prefix('=')) {
                val.unwrap_or_else(|| expand_with(w, lookup, depth + 1))
            } else if let Some(w) = op.strip_prefix(":+") {
                match val {
                    Some(v) if !v.is_empty() => expand_with(w, lookup, depth + 1),
                    _ => String::new(),
                }
            } else {
                format!("${{{body}}}")
            };
            out.push_str(&expanded);
            rest = &inner[end + 1..];
        } else {
            let name_len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if name_len == 0 {
                out.push('$');
            } else {
                out.push_str(&lookup(&after[..name_len]).unwrap_or_default());
            }
            rest = &after[name_len..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(s: &str) -> String {
        let m: HashMap<&str, &str> = [("A", "1"), ("E", "")].into_iter().collect();
        expand_with(s, &|n| m.get(n).map(|v| v.to_string()), 0)
    }

    #[test]
    fn expansion_forms() {
        assert_eq!(env("$A/${A}"), "1/1");
        assert_eq!(env("${B:-x$A}"), "x1");
        assert_eq!(env("${E:-d}"), "d");
        assert_eq!(env("${E-d}"), "");
        assert_eq!(env("${A:+set}${B:+set}"), "set");
        assert_eq!(env("cost $"), "cost $");
        assert_eq!(env("${unterminated"), "${unterminated");
    }
}

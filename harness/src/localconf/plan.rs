//! What the neutron cloud will build from a local.conf, before anything boots:
//! the four Neutron files (post-config merged, each value with what decided it),
//! the variables DevStack's host steps run with, and the initial networks. The
//! facade behind `harness localconf neutron`, and the form the DevStack-oracle
//! test (tests/devstack_oracle.rs) holds against DevStack's own code.

use super::effective::{Effective, HostView, Origin};
use super::networks::{self, Outcome};
use super::neutron_files::{self, NeutronFiles};
use super::parse::LocalConf;
use crate::world::World;
use serde::Serialize;

/// The DevStack whose behaviour the neutron cloud reproduces: the branch that
/// matches the image's Neutron.
pub const PREDICTS: &str = "DevStack stable/2025.1 (Neutron 26, Debian 13's python3-neutron)";

#[derive(Debug, Clone, Serialize)]
pub struct NeutronPlan {
    pub predicts: &'static str,
    pub files: Vec<FileView>,
    pub host_steps: HostSteps,
    pub initial_networks: Outcome,
    /// Post-config sections for files the neutron cloud does not write (nova.conf, ...).
    pub ignored_post_config: Vec<Ignored>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    pub path: String,
    pub options: Vec<OptionView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OptionView {
    pub section: String,
    pub key: String,
    pub value: String,
    /// `local.conf line N (post-config)`, `local.conf line N (VAR)`, or DevStack's default.
    pub decided_by: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ignored {
    pub file: String,
    pub line: usize,
}

/// The variables `templates/devstack-host-steps.sh` runs with: DevStack's own
/// names, with the values DevStack would have.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HostSteps {
    pub vars: Vec<(String, String)>,
}

impl HostSteps {
    /// `NAME=value` lines for the shell, each value quoted.
    pub fn shell(&self) -> String {
        self.vars.iter().map(|(k, v)| format!("{k}={}\n", shell_quote(v))).collect()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:,=+@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What `get_default_host_ip` sees in a world: the guest NIC carries the default route.
pub fn host_view(world: &World) -> HostView {
    HostView { default_route_addrs: vec![world.guest_address.addr()] }
}

/// The effective values of a local.conf in a world.
pub fn effective(conf: &LocalConf, world: &World) -> Effective {
    Effective::evaluate_on(conf, Some(&host_view(world)))
}

/// The variables DevStack's host steps read (lib/neutron_plugins/ovs_base,
/// openvswitch_agent, services/l3).
pub fn host_steps(eff: &Effective, networks: &Outcome) -> HostSteps {
    let mut vars: Vec<(String, String)> = [
        "OVS_BRIDGE",
        "PUBLIC_BRIDGE",
        "OVS_PHYSICAL_BRIDGE",
        "PHYSICAL_NETWORK",
        "PUBLIC_INTERFACE",
        "PUBLIC_BRIDGE_MTU",
        "OVS_DATAPATH_TYPE",
        "Q_USE_SECGROUP",
        "FLOATING_RANGE",
        "Q_USE_PROVIDERNET_FOR_PUBLIC",
        "Q_ASSIGN_GATEWAY_TO_PUBLIC_BRIDGE",
        "Q_USE_PROVIDER_NETWORKING",
        "NEUTRON_CREATE_INITIAL_NETWORKS",
        "OVN_BRIDGE_MAPPINGS",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), eff.get(n).unwrap_or("").to_owned()))
    .collect();
    let on = |s: &[&str]| s.iter().any(|x| eff.service_enabled(x));
    let py = neutron_files::py_bool;
    vars.push(("RUN_OVS_AGENT".into(), py(on(&["q-agt", "neutron-agent"])).into()));
    vars.push(("RUN_L3_AGENT".into(), py(on(&["q-l3", "neutron-l3"])).into()));
    // ML2/OVN's chassis (lib/neutron_plugins/ovn_agent).
    let ovn = eff.get("Q_AGENT") == Some("ovn");
    let create_public = neutron_files::trueorfalse(eff, "OVN_L3_CREATE_PUBLIC_NETWORK", true);
    // stack.sh: `is_service_enabled ovn-controller` (start_ovn_services: `Q_AGENT == ovn`).
    vars.push(("RUN_OVN".into(), py(ovn && eff.service_enabled("ovn-controller")).into()));
    vars.push(("OVSDB_SERVER_LOCAL_HOST".into(), eff.get("SERVICE_LOCAL_HOST").unwrap_or("").to_owned()));
    vars.push(("OVN_SB_REMOTE".into(), neutron_files::ovn_remotes(eff).0));
    vars.push(("TUNNEL_IP".into(), eff.get("TUNNEL_ENDPOINT_IP").unwrap_or("").to_owned()));
    vars.push(("ENABLE_CHASSIS_AS_GW".into(), py(neutron_files::trueorfalse(eff, "ENABLE_CHASSIS_AS_GW", true)).into()));
    vars.push(("OVN_L3_CREATE_PUBLIC_NETWORK".into(), py(create_public).into()));
    // _neutron_configure_router_v4's condition for the public bridge's gateway.
    let router_steps = on(&["q-l3", "neutron-l3"]) || (ovn && create_public && on(&["q-svc", "neutron-api"]));
    vars.push(("ROUTER_GATEWAY_STEPS".into(), py(router_steps).into()));
    // The public subnet's gateway as Neutron made it (`ext_gw_ip` in DevStack).
    let (gw, len) = match networks {
        Outcome::Created(n) => (n.public_subnet.gateway.to_string(), n.public_subnet.cidr.prefix_len().to_string()),
        _ => (String::new(), String::new()),
    };
    // create_neutron_initial_network runs the router's host steps only when it runs.
    vars.push(("INITIAL_NETWORKS".into(), if matches!(networks, Outcome::Created(_)) { "True" } else { "False" }.into()));
    vars.push(("EXT_GW_IP".into(), gw));
    vars.push(("CIDR_LEN".into(), len));
    HostSteps { vars }
}

fn origin_text(eff: &Effective, var: &str) -> String {
    match eff.value(var).map(|v| &v.origin) {
        Some(Origin::Line(l)) => format!("local.conf line {l} ({var})"),
        Some(Origin::Derived { line, from }) => match eff.value(from).map(|v| &v.origin) {
            Some(Origin::Detected(_)) => format!("{from} found on the host (get_default_host_ip; ranges from line {line}), through {var}"),
            _ => format!("local.conf line {line} ({from}, through {var})"),
        },
        Some(Origin::Detected(inner)) => match inner.line() {
            Some(l) => format!("{var} found on the host (get_default_host_ip; ranges from line {l})"),
            None => format!("{var} found on the host (get_default_host_ip)"),
        },
        Some(Origin::Default) | None => format!("DevStack's default ({var})"),
    }
}

/// The plan for a local.conf in a world.
pub fn neutron(conf: &LocalConf, world: &World) -> NeutronPlan {
    let eff = effective(conf, world);
    let files = neutron_files::build(conf, &eff);
    let initial_networks = networks::predict(&eff);
    NeutronPlan {
        predicts: PREDICTS,
        files: views(&files, &eff),
        host_steps: host_steps(&eff, &initial_networks),
        initial_networks,
        ignored_post_config: files.ignored.iter().map(|(f, l)| Ignored { file: f.clone(), line: *l }).collect(),
    }
}

fn views(files: &NeutronFiles, eff: &Effective) -> Vec<FileView> {
    files
        .files
        .iter()
        .map(|f| {
            let mut options = Vec::new();
            for (section, props) in f.ini.iter() {
                let section = section.unwrap_or("DEFAULT");
                for (key, value) in props.iter() {
                    let decided_by = match files.merged_line(f.path, section, key) {
                        Some(l) => format!("local.conf line {l} (post-config)"),
                        None => match files.decided_by(f.path, section, key) {
                            Some("") => "DevStack's fixed value".into(),
                            Some(var) => origin_text(eff, var),
                            None => "the neutron cloud's base (templates/neutron/neutron.conf)".into(),
                        },
                    };
                    options.push(OptionView { section: section.to_owned(), key: key.to_owned(), value: value.to_owned(), decided_by });
                }
            }
            FileView { path: f.path.to_owned(), options }
        })
        .collect()
}

impl NeutronPlan {
    /// For people: each file's options with what decided them, the host-step
    /// variables, the initial networks.
    pub fn text(&self) -> String {
        let mut out = format!("predicts: {}\n", self.predicts);
        for f in &self.files {
            out += &format!("\n{}\n", f.path);
            let mut section = "";
            for o in &f.options {
                if o.section != section {
                    section = &o.section;
                    out += &format!("  [{section}]\n");
                }
                out += &format!("    {} = {}    # {}\n", o.key, o.value, o.decided_by);
            }
        }
        out += "\nhost steps (templates/devstack-host-steps.sh) run with:\n";
        for (k, v) in &self.host_steps.vars {
            out += &format!("  {k}={v}\n");
        }
        out += "\ninitial networks:\n";
        match &self.initial_networks {
            Outcome::Created(n) => {
                if let Some(p) = &n.subnet_pool {
                    out += &format!("  subnet pool {} {} (/{} per subnet)\n", p.name, p.prefix, p.default_prefixlen);
                }
                for (net, s) in [(&n.private_network, &n.private_subnet), (&n.public_network.name, &n.public_subnet)] {
                    let pools: Vec<String> = s.allocation_pools.iter().map(|(a, b)| format!("{a}-{b}")).collect();
                    out += &format!("  network {net}: subnet {} {} gateway {} pool {}\n", s.name, s.cidr, s.gateway, pools.join(","));
                }
                let p = &n.public_network;
                out += &format!(
                    "  {} is external: type {}, physnet {}\n  router {} between them\n",
                    p.name,
                    p.network_type.as_deref().unwrap_or("(the tenant type)"),
                    p.physical_network.as_deref().unwrap_or("-"),
                    n.router
                );
            }
            Outcome::NotCreated { why } => out += &format!("  none: {why}\n"),
            Outcome::Refused(r) => out += &format!("  stack.sh dies: Neutron refuses {}: {}\n", r.variable, r.reason),
            Outcome::Unsupported { variable, why } => out += &format!("  not built by this cloud ({variable}): {why}\n"),
        }
        for i in &self.ignored_post_config {
            out += &format!("\nline {}: post-config for {}: not a file the neutron cloud writes; not applied\n", i.line, i.file);
        }
        out
    }
}

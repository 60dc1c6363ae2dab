//! The Neutron configuration files DevStack writes for ML2/OVS, made from a
//! local.conf: the harness's base (templates/neutron/neutron.conf: no Keystone, the
//! image's database and RabbitMQ), then DevStack's own `iniset`s from the effective
//! values (lib/neutron, lib/neutron_plugins/{ml2,openvswitch_agent,ovs_base,services/l3}),
//! then every `[[post-config|FILE]]` section for these files merged over them as
//! DevStack's `merge_config_file` does. The linter judges this result, so a
//! post-config section that sets `mechanism_drivers` counts.

use super::effective::Effective;
use super::parse::LocalConf;
use ini::Ini;

const BASE_NEUTRON_CONF: &str = include_str!("../../templates/neutron/neutron.conf");

pub const NEUTRON_CONF: &str = "/etc/neutron/neutron.conf";
pub const ML2_CONF: &str = "/etc/neutron/plugins/ml2/ml2_conf.ini";
pub const L3_CONF: &str = "/etc/neutron/l3_agent.ini";
pub const DHCP_CONF: &str = "/etc/neutron/dhcp_agent.ini";
/// ML2/OVN's metadata agent (lib/neutron_plugins/ovn_agent's `OVN_META_CONF`),
/// written only where that agent runs.
pub const OVN_META_CONF: &str = "/etc/neutron/neutron_ovn_metadata_agent.ini";

/// DevStack's variables that name these files in post-config headers.
const FILE_VARS: &[(&str, &str)] = &[
    ("NEUTRON_CONF", NEUTRON_CONF),
    ("Q_PLUGIN_CONF_FILE", "etc/neutron/plugins/ml2/ml2_conf.ini"),
    ("Q_L3_CONF_FILE", L3_CONF),
    ("Q_DHCP_CONF_FILE", DHCP_CONF),
    ("NEUTRON_CORE_PLUGIN_CONF", ML2_CONF),
    ("NEUTRON_CONF_DIR", "/etc/neutron"),
    ("OVN_META_CONF", OVN_META_CONF),
];

/// One generated file.
#[derive(Debug, Clone)]
pub struct ConfFile {
    pub path: &'static str,
    pub ini: Ini,
}

impl ConfFile {
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.ini.get_from(Some(section), key)
    }

    /// The file's text as written into the guest.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        self.ini.write_to(&mut out).expect("writing to memory");
        format!("# Written by devstack-harness from the scenario's local.conf, as DevStack would.\n{}", String::from_utf8_lossy(&out))
    }
}

/// A post-config option merged into a file (for the report and the linter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub file: &'static str,
    pub section: String,
    pub key: String,
    pub value: String,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct NeutronFiles {
    pub files: Vec<ConfFile>,
    pub merged: Vec<Merged>,
    /// Post-config sections for files this cloud does not write (nova.conf, ...),
    /// with their lines: DevStack would apply them, the neutron cloud has no use.
    pub ignored: Vec<(String, usize)>,
    /// Post-config option names translated for the image's Neutron.
    pub translated: Vec<Translated>,
    /// Post-config options DevStack writes over after the merge (`service_plugins`).
    pub overridden: Vec<Merged>,
    decided: Vec<(&'static str, String, String, &'static str)>,
}

/// A post-config option written under the name the image's Neutron reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub line: usize,
    pub section: String,
    pub from: &'static str,
    pub to: &'static str,
}

impl NeutronFiles {
    pub fn file(&self, path: &str) -> &ConfFile {
        self.files.iter().find(|f| f.path == path).expect("one of the files written")
    }

    pub fn get(&self, path: &str, section: &str, key: &str) -> Option<&str> {
        self.file(path).get(section, key)
    }

    /// The DevStack variable that decided a value DevStack wrote ("" for a value
    /// DevStack fixes); None for the neutron cloud's base.
    pub fn decided_by(&self, path: &str, section: &str, key: &str) -> Option<&'static str> {
        self.decided.iter().find(|(p, s, k, _)| *p == path && s == section && k == key).map(|(_, _, _, v)| *v)
    }

    /// The line of the post-config option that set a value last, if one did.
    pub fn merged_line(&self, path: &str, section: &str, key: &str) -> Option<usize> {
        self.merged.iter().rev().find(|m| m.file == path && m.section == section && m.key == key).map(|m| m.line)
    }
}

/// A post-config header's file name, as DevStack's shell would expand it.
pub fn resolve_file(eff: &Effective, name: &str) -> String {
    let expanded = super::effective::expand_with(
        name,
        &|v| FILE_VARS.iter().find(|(n, _)| *n == v).map(|(_, p)| (*p).to_owned()).or_else(|| eff.get(v).map(str::to_owned)),
        0,
    );
    let mut path = expanded.replace("//", "/");
    while path.contains("//") {
        path = path.replace("//", "/");
    }
    path
}

/// The four files as DevStack's `iniset`s leave them, with the variable that
/// decided each value (for `harness localconf neutron`).
struct Writer {
    files: Vec<ConfFile>,
    decided: Vec<(&'static str, String, String, &'static str)>,
}

impl Writer {
    /// `iniset FILE SECTION KEY VALUE`, the value decided by DevStack's `var`
    /// ("" for a value DevStack fixes).
    fn set(&mut self, path: &'static str, section: &str, key: &str, value: &str, var: &'static str) {
        let file = self.files.iter_mut().find(|f| f.path == path).expect("one of the files written");
        file.ini.with_section(Some(section)).set(key, value);
        self.decided.retain(|(p, s, k, _)| !(*p == path && s == section && k == key));
        self.decided.push((path, section.to_owned(), key.to_owned(), var));
    }

    /// `inicomment FILE SECTION KEY`: the key no longer set.
    fn comment(&mut self, path: &'static str, section: &str, key: &str) {
        let file = self.files.iter_mut().find(|f| f.path == path).expect("one of the files written");
        if let Some(props) = file.ini.section_mut(Some(section)) {
            props.remove_all(key).for_each(drop);
        }
        self.decided.retain(|(p, s, k, _)| !(*p == path && s == section && k == key));
    }

    /// lib/neutron_plugins/ml2's `populate_ml2_config FILE SECTION "key=value"`:
    /// nothing for an empty option; the first `=` splits key from value, and the
    /// value's first word is what iniset gets (the shell splits the rest away).
    fn populate(&mut self, path: &'static str, section: &str, opt: &str, var: &'static str) {
        let opt = opt.trim();
        if opt.is_empty() {
            return;
        }
        let (key, value) = opt.split_once('=').unwrap_or((opt, ""));
        let value = value.split_whitespace().next().unwrap_or("");
        self.set(path, section, key, value, var);
    }
}

/// lib/neutron_plugins/ovn_agent's `OVN_PROTO`, `OVN_SB_REMOTE` and `OVN_NB_REMOTE`.
pub fn ovn_remotes(eff: &Effective) -> (String, String) {
    let proto = if eff.service_enabled("tls-proxy") { "ssl" } else { "tcp" };
    let host = eff.get("SERVICE_HOST").unwrap_or("");
    let remote = |name: &str, port: u16| eff.get(name).filter(|s| !s.is_empty()).map_or_else(|| format!("{proto}:{host}:{port}"), str::to_owned);
    (remote("OVN_SB_REMOTE", 6642), remote("OVN_NB_REMOTE", 6641))
}

/// Where the OVN metadata agent runs: `configure_ovn`'s condition.
pub fn ovn_metadata_agent(eff: &Effective) -> bool {
    ["q-ovn-metadata-agent", "neutron-ovn-metadata-agent"].iter().any(|s| eff.service_enabled(s)) && eff.service_enabled("ovn-controller")
}

/// configure_ovn (the metadata agent's file) and configure_ovn_plugin (the ML2
/// driver's connections, Geneve's header, the metadata switch), in that order.
fn configure_ovn(w: &mut Writer, eff: &Effective, rr: &str, rr_daemon: &str, rootwrap_daemon: bool, debug: &str) {
    let v = |name: &str| eff.get(name).unwrap_or("").to_owned();
    let on = |services: &[&str]| services.iter().any(|s| eff.service_enabled(s));
    let (sb, nb) = ovn_remotes(eff);
    if ovn_metadata_agent(eff) {
        w.files.push(ConfFile { path: OVN_META_CONF, ini: Ini::new() });
        w.set(OVN_META_CONF, "agent", "root_helper", rr, "");
        if rootwrap_daemon {
            w.set(OVN_META_CONF, "agent", "root_helper_daemon", rr_daemon, "Q_USE_ROOTWRAP_DAEMON");
        }
        w.set(OVN_META_CONF, "DEFAULT", "debug", debug, "ENABLE_DEBUG_LOG_LEVEL");
        let meta_host = eff.get("OVN_META_DATA_HOST").filter(|s| !s.is_empty()).unwrap_or(eff.get("SERVICE_HOST").unwrap_or(""));
        w.set(OVN_META_CONF, "DEFAULT", "nova_metadata_host", meta_host, "OVN_META_DATA_HOST");
        w.set(OVN_META_CONF, "ovs", "ovsdb_connection", &format!("tcp:{}:6640", v("SERVICE_LOCAL_HOST")), "SERVICE_LOCAL_HOST");
        w.set(OVN_META_CONF, "ovn", "ovn_sb_connection", &sb, "OVN_SB_REMOTE");
    }
    if on(&["q-svc", "neutron-api"]) {
        w.populate(ML2_CONF, "ml2_type_geneve", &format!("max_header_size={}", v("OVN_GENEVE_OVERHEAD")), "OVN_GENEVE_OVERHEAD");
        w.populate(ML2_CONF, "ovn", &format!("ovn_nb_connection={nb}"), "OVN_NB_REMOTE");
        w.populate(ML2_CONF, "ovn", &format!("ovn_sb_connection={sb}"), "OVN_SB_REMOTE");
        w.populate(ML2_CONF, "ovn", &format!("neutron_sync_mode={}", v("OVN_NEUTRON_SYNC_MODE")), "OVN_NEUTRON_SYNC_MODE");
        w.populate(ML2_CONF, "ovn", &format!("ovn_l3_scheduler={}", v("OVN_L3_SCHEDULER")), "OVN_L3_SCHEDULER");
        w.populate(ML2_CONF, "securitygroup", &format!("enable_security_group={}", v("Q_USE_SECGROUP")), "Q_USE_SECGROUP");
        w.comment(ML2_CONF, "securitygroup", "firewall_driver");
        let metadata = ovn_metadata_agent(eff)
            || (on(&["q-ovn-agent", "neutron-ovn-agent"]) && v("OVN_AGENT_EXTENSIONS").contains("metadata"));
        w.populate(ML2_CONF, "ovn", &format!("ovn_metadata_enabled={}", py_bool(metadata)), "ENABLED_SERVICES");
        if on(&["q-dns", "neutron-dns"]) {
            w.set(NEUTRON_CONF, "DEFAULT", "dns_domain", "openstackgate.local", "ENABLED_SERVICES");
            let servers = eff.get("OVN_DNS_SERVERS").filter(|s| !s.is_empty()).unwrap_or("8.8.8.8");
            w.populate(ML2_CONF, "ovn", &format!("dns_servers={servers}"), "OVN_DNS_SERVERS");
        }
        let igmp = py_bool(trueorfalse(eff, "OVN_IGMP_SNOOPING_ENABLE", false));
        w.set(NEUTRON_CONF, "ovs", "igmp_snooping_enable", igmp, "OVN_IGMP_SNOOPING_ENABLE");
    }
    let dhcp = py_bool(on(&["q-dhcp", "neutron-dhcp"]));
    w.set(NEUTRON_CONF, "DEFAULT", "dhcp_agent_notification", dhcp, "ENABLED_SERVICES");
}

/// DevStack's `trueorfalse DEFAULT VAR`.
pub fn trueorfalse(eff: &Effective, name: &str, default: bool) -> bool {
    match eff.get(name).unwrap_or("").to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => true,
        "0" | "no" | "false" | "off" => false,
        _ => default,
    }
}

pub fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// A `Q_ML2_PLUGIN_*_TYPE_OPTIONS` value: the file's, else DevStack's default.
fn type_options(eff: &Effective, name: &str, default: String) -> String {
    eff.get(name).filter(|s| !s.is_empty()).map_or(default, str::to_owned)
}

/// A post-config option name newer than the image's Neutron, and the name
/// Neutron 21 reads (the harness translates; the linter says so).
pub const TRANSLATED_OPTIONS: &[(&str, &str, &str)] = &[("ml2", "project_network_types", "tenant_network_types")];

pub fn build(conf: &LocalConf, eff: &Effective) -> NeutronFiles {
    let v = |name: &str| eff.get(name).unwrap_or("").to_owned();
    let on = |services: &[&str]| services.iter().any(|s| eff.service_enabled(s));
    let rr = "sudo /usr/bin/neutron-rootwrap /etc/neutron/rootwrap.conf";
    let rr_daemon = "sudo /usr/bin/neutron-rootwrap-daemon /etc/neutron/rootwrap.conf";
    let debug = py_bool(trueorfalse(eff, "ENABLE_DEBUG_LOG_LEVEL", true));
    let rootwrap_daemon = trueorfalse(eff, "Q_USE_ROOTWRAP_DAEMON", true);
    let mut w = Writer {
        files: vec![
            ConfFile {
                path: NEUTRON_CONF,
                ini: Ini::load_from_str(BASE_NEUTRON_CONF).expect("templates/neutron/neutron.conf is valid INI"),
            },
            ConfFile { path: ML2_CONF, ini: Ini::new() },
            ConfFile { path: L3_CONF, ini: Ini::new() },
            ConfFile { path: DHCP_CONF, ini: Ini::new() },
        ],
        decided: vec![],
    };
    // The order is 2025.1's configure_neutron (lib/neutron): the agents' files,
    // then the server's; a later iniset of the same key wins, as it does there.
    // neutron_plugin_configure_common: the L3 plugin joins Q_SERVICE_PLUGIN_CLASSES.
    let mut service_plugins: Vec<String> = v("Q_SERVICE_PLUGIN_CLASSES").split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let ovn = v("Q_AGENT") == "ovn";
    // `${ML2_L3_PLUGIN-...}`: OVN's router plugin where ovn_agent was sourced first.
    let l3_plugin = eff.get("ML2_L3_PLUGIN").unwrap_or(if ovn { "ovn-router" } else { "router" }).to_owned();
    if !l3_plugin.is_empty() && !service_plugins.contains(&l3_plugin) {
        service_plugins.push(l3_plugin);
    }
    // configure_neutron's advanced services, in its order.
    for (services, plugin) in
        [(&["q-trunk", "neutron-trunk"][..], "trunk"), (&["q-qos", "neutron-qos"][..], "qos"), (&["neutron-segments"][..], "segments")]
    {
        if on(services) && !service_plugins.iter().any(|p| p == plugin) {
            service_plugins.push(plugin.into());
        }
    }
    let service_plugins = service_plugins.join(",");

    let tenant_type = v("Q_ML2_TENANT_NETWORK_TYPE");
    let tunnels = v("ENABLE_TENANT_TUNNELS") == "True";

    // _configure_neutron_plugin_agent, neutron_plugin_configure_plugin_agent
    // (lib/neutron_plugins/openvswitch_agent, ovs_base).
    if on(&["q-agt", "neutron-agent"]) {
        w.set(ML2_CONF, "agent", "root_helper", rr, "");
        if rootwrap_daemon {
            w.set(ML2_CONF, "agent", "root_helper_daemon", rr_daemon, "Q_USE_ROOTWRAP_DAEMON");
        }
        w.set(NEUTRON_CONF, "DEFAULT", "debug", debug, "ENABLE_DEBUG_LOG_LEVEL");
        let fw = if v("Q_USE_SECGROUP") == "True" { "openvswitch" } else { "noop" };
        w.set(ML2_CONF, "securitygroup", "firewall_driver", fw, "Q_USE_SECGROUP");
        if v("OVS_ENABLE_TUNNELING") == "True" {
            w.set(ML2_CONF, "ovs", "local_ip", &v("TUNNEL_ENDPOINT_IP"), "TUNNEL_ENDPOINT_IP");
            w.set(ML2_CONF, "ovs", "tunnel_bridge", "br-tun", "");
        }
        let mappings = v("OVS_BRIDGE_MAPPINGS");
        if !mappings.is_empty() {
            w.set(ML2_CONF, "ovs", "bridge_mappings", &mappings, "OVS_BRIDGE_MAPPINGS");
        }
        // Q_TUNNEL_TYPES (lib/neutron_plugins/ml2): the tenant type when it is a
        // tunnel, else gre with ENABLE_TENANT_TUNNELS, else the file's own.
        let tunnel_types = if tenant_type == "gre" || tenant_type == "vxlan" {
            tenant_type.clone()
        } else if tunnels {
            "gre".into()
        } else {
            v("Q_TUNNEL_TYPES")
        };
        w.set(ML2_CONF, "agent", "tunnel_types", &tunnel_types, "Q_ML2_TENANT_NETWORK_TYPE");
        w.set(ML2_CONF, "ovs", "datapath_type", &v("OVS_DATAPATH_TYPE"), "OVS_DATAPATH_TYPE");
    }

    // _configure_neutron_dhcp_agent, _configure_neutron_l3_agent, with
    // _neutron_setup_interface_driver.
    // The L3 agent's rootwrap goes to [AGENT] (_configure_neutron_l3_agent's own
    // iniset), the DHCP agent's to [agent] (configure_root_helper_options); oslo
    // reads either.
    let agent_common = |w: &mut Writer, path: &'static str| {
        w.set(path, "DEFAULT", "debug", debug, "ENABLE_DEBUG_LOG_LEVEL");
        w.set(path, "AGENT", "root_helper", rr, "");
        if rootwrap_daemon {
            w.set(path, "AGENT", "root_helper_daemon", rr_daemon, "Q_USE_ROOTWRAP_DAEMON");
        }
    };
    let interface_driver = |w: &mut Writer, path: &'static str| {
        w.set(path, "DEFAULT", "ovs_use_veth", &v("Q_OVS_USE_VETH"), "Q_OVS_USE_VETH");
        w.set(path, "DEFAULT", "interface_driver", "openvswitch", "Q_AGENT");
    };
    if on(&["q-dhcp", "neutron-dhcp"]) {
        w.set(DHCP_CONF, "DEFAULT", "debug", debug, "ENABLE_DEBUG_LOG_LEVEL");
        w.set(DHCP_CONF, "DEFAULT", "dnsmasq_local_resolv", "True", "");
        w.set(DHCP_CONF, "agent", "root_helper", rr, "");
        if rootwrap_daemon {
            w.set(DHCP_CONF, "agent", "root_helper_daemon", rr_daemon, "Q_USE_ROOTWRAP_DAEMON");
        }
        if !on(&["q-l3", "neutron-l3"]) && v("ENABLE_ISOLATED_METADATA") == "True" {
            w.set(DHCP_CONF, "DEFAULT", "enable_isolated_metadata", "True", "ENABLE_ISOLATED_METADATA");
            w.set(DHCP_CONF, "DEFAULT", "enable_metadata_network", &v("ENABLE_METADATA_NETWORK"), "ENABLE_METADATA_NETWORK");
        }
        interface_driver(&mut w, DHCP_CONF);
    }
    if on(&["q-l3", "neutron-l3"]) {
        agent_common(&mut w, L3_CONF);
        interface_driver(&mut w, L3_CONF);
    }
    // _configure_dvr.
    if v("Q_DVR_MODE") != "legacy" {
        w.set(NEUTRON_CONF, "DEFAULT", "router_distributed", "True", "Q_DVR_MODE");
        w.set(L3_CONF, "DEFAULT", "agent_mode", &v("Q_DVR_MODE"), "Q_DVR_MODE");
    }
    if ovn {
        configure_ovn(&mut w, eff, rr, rr_daemon, rootwrap_daemon, debug);
    }
    // Last, _configure_neutron_service with neutron_plugin_configure_service (ml2).
    if on(&["q-agt", "neutron-agent", "q-svc", "neutron-api"]) {
        w.set(NEUTRON_CONF, "DEFAULT", "core_plugin", "ml2", "");
        w.set(NEUTRON_CONF, "DEFAULT", "debug", debug, "ENABLE_DEBUG_LOG_LEVEL");
        let (mut gre_opts, mut srv_extra) =
            (type_options(eff, "Q_ML2_PLUGIN_GRE_TYPE_OPTIONS", format!("tunnel_id_ranges={}", v("TENANT_TUNNEL_RANGES"))), String::new());
        if tenant_type != "local" {
            srv_extra = format!("tenant_network_types={tenant_type}");
        } else if tunnels {
            srv_extra = "tenant_network_types=gre".into();
            gre_opts = format!("tunnel_id_ranges={}", v("TENANT_TUNNEL_RANGES"));
        } else if v("ENABLE_TENANT_VLANS") == "True" {
            srv_extra = "tenant_network_types=vlan".into();
        }
        let mut vlan_opts = v("Q_ML2_PLUGIN_VLAN_TYPE_OPTIONS");
        if vlan_opts.is_empty() {
            let mut ranges = v("ML2_VLAN_RANGES");
            if ranges.is_empty() && !v("PHYSICAL_NETWORK").is_empty() {
                ranges = v("PHYSICAL_NETWORK");
                if !v("TENANT_VLAN_RANGE").is_empty() {
                    ranges = format!("{ranges}:{}", v("TENANT_VLAN_RANGE"));
                }
            }
            if !ranges.is_empty() {
                vlan_opts = format!("network_vlan_ranges={ranges}");
            }
        }
        let mut flat_opts = v("Q_ML2_PLUGIN_FLAT_TYPE_OPTIONS");
        let (phys, public_phys) = (v("PHYSICAL_NETWORK"), v("PUBLIC_PHYSICAL_NETWORK"));
        if flat_opts.is_empty() && (!phys.is_empty() || !public_phys.is_empty()) {
            flat_opts = "flat_networks=".into();
            if !phys.is_empty() {
                flat_opts += &format!("{phys},");
            }
            if !public_phys.is_empty() && phys != public_phys {
                flat_opts += &format!("{public_phys},");
            }
        }
        // 2025.1 writes the server's switch itself (Zed wrote a placeholder
        // firewall_driver); the value as the file gives it, as `${Q_USE_SECGROUP:-True}`.
        w.populate(ML2_CONF, "securitygroup", &format!("enable_security_group={}", v("Q_USE_SECGROUP")), "Q_USE_SECGROUP");
        w.populate(
            ML2_CONF,
            "ml2",
            &format!("mechanism_drivers={}", v("Q_ML2_PLUGIN_MECHANISM_DRIVERS")),
            "Q_ML2_PLUGIN_MECHANISM_DRIVERS",
        );
        w.populate(ML2_CONF, "ml2", &format!("overlay_ip_version={}", v("TUNNEL_IP_VERSION")), "TUNNEL_IP_VERSION");
        if !v("Q_ML2_PLUGIN_TYPE_DRIVERS").is_empty() {
            w.populate(ML2_CONF, "ml2", &format!("type_drivers={}", v("Q_ML2_PLUGIN_TYPE_DRIVERS")), "Q_ML2_PLUGIN_TYPE_DRIVERS");
        }
        // `${Q_ML2_PLUGIN_EXT_DRIVERS-port_security}`: only an unset value takes the default.
        let mut ext = match eff.value("Q_ML2_PLUGIN_EXT_DRIVERS") {
            Some(x) => x.value.clone(),
            None if v("NEUTRON_PORT_SECURITY") == "True" => "port_security".into(),
            None => String::new(),
        };
        // configure_qos (neutron_ml2_extension_driver_add) runs before the server's
        // files are written in 2025.1, so the driver reaches the file (in Zed it did not).
        if on(&["q-qos", "neutron-qos"]) && !format!(",{ext},").contains(",qos,") {
            ext = if ext.is_empty() { "qos".into() } else { format!("{ext},qos") };
        }
        w.populate(ML2_CONF, "ml2", &format!("extension_drivers={ext}"), "Q_ML2_PLUGIN_EXT_DRIVERS");
        w.populate(ML2_CONF, "ml2", &srv_extra, "Q_ML2_TENANT_NETWORK_TYPE");
        w.populate(ML2_CONF, "ml2_type_gre", &gre_opts, "Q_ML2_PLUGIN_GRE_TYPE_OPTIONS");
        let vni = format!("vni_ranges={}", v("TENANT_TUNNEL_RANGES"));
        w.populate(
            ML2_CONF,
            "ml2_type_vxlan",
            &type_options(eff, "Q_ML2_PLUGIN_VXLAN_TYPE_OPTIONS", vni.clone()),
            "Q_ML2_PLUGIN_VXLAN_TYPE_OPTIONS",
        );
        w.populate(ML2_CONF, "ml2_type_flat", &flat_opts, "PHYSICAL_NETWORK");
        w.populate(ML2_CONF, "ml2_type_vlan", &vlan_opts, "ML2_VLAN_RANGES");
        w.populate(
            ML2_CONF,
            "ml2_type_geneve",
            &type_options(eff, "Q_ML2_PLUGIN_GENEVE_TYPE_OPTIONS", vni),
            "Q_ML2_PLUGIN_GENEVE_TYPE_OPTIONS",
        );
        if v("Q_DVR_MODE") != "legacy" {
            for (k, val) in
                [("l2_population", "True"), ("tunnel_types", "vxlan"), ("enable_distributed_routing", "True"), ("arp_responder", "True")]
            {
                w.set(ML2_CONF, "agent", k, val, "Q_DVR_MODE");
            }
        }
    }

    w.set(NEUTRON_CONF, "DEFAULT", "rpc_state_report_workers", "0", "");
    let Writer { mut files, decided } = w;

    // merge_config_group post-config: each option in the file's section, values
    // expanded by the shell; a key given more than once becomes a multi-valued one.
    let (mut merged, mut ignored, mut translated, mut overridden) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for meta in conf.files.iter().filter(|f| f.group == "post-config") {
        let path = resolve_file(eff, &meta.file);
        let Some(file) = files.iter_mut().find(|f| f.path == path) else {
            ignored.push((meta.file.clone(), meta.line));
            continue;
        };
        for opt in &meta.options {
            let values: Vec<String> = opt.values.iter().map(|x| eff.expand(x)).collect();
            let key = match TRANSLATED_OPTIONS.iter().find(|(s, from, _)| *s == opt.section && *from == opt.key) {
                Some((_, from, to)) => {
                    translated.push(Translated { line: opt.line, section: opt.section.clone(), from, to });
                    (*to).to_owned()
                }
                None => opt.key.clone(),
            };
            let mut section = file.ini.with_section(Some(opt.section.as_str()));
            section.delete(&key.as_str());
            for value in &values {
                section.add(key.as_str(), value.as_str());
            }
            merged.push(Merged { file: file.path, section: opt.section.clone(), key, value: values.join("\n"), line: opt.line });
        }
    }
    // configure_neutron_after_post_config: service_plugins is written after the
    // merge, so a post-config value for it loses.
    if on(&["q-svc", "neutron-api"]) && !service_plugins.is_empty() {
        let file = files.iter_mut().find(|f| f.path == NEUTRON_CONF).expect("neutron.conf");
        file.ini.with_section(Some("DEFAULT")).set("service_plugins", service_plugins.as_str());
        if let Some(m) = merged.iter().find(|m| m.file == NEUTRON_CONF && m.section == "DEFAULT" && m.key == "service_plugins") {
            overridden.push(m.clone());
        }
        merged.retain(|m| !(m.file == NEUTRON_CONF && m.section == "DEFAULT" && m.key == "service_plugins"));
    }
    let mut decided = decided;
    decided.push((NEUTRON_CONF, "DEFAULT".into(), "service_plugins".into(), "Q_SERVICE_PLUGIN_CLASSES"));
    NeutronFiles { files, merged, ignored, translated, overridden, decided }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localconf::parse::parse;

    fn files(text: &str) -> NeutronFiles {
        let conf = parse(text);
        build(&conf, &Effective::evaluate(&conf))
    }

    #[test]
    fn devstack_values_land_where_devstack_writes_them() {
        let f = files("[[local|localrc]]\nenable_service q-agt q-l3 q-dhcp\nHOST_IP=192.168.0.10\nQ_AGENT=openvswitch\nQ_ML2_PLUGIN_MECHANISM_DRIVERS=openvswitch\nQ_ML2_TENANT_NETWORK_TYPE=vxlan\nOVS_BRIDGE_MAPPINGS=public:br-ex\n");
        assert_eq!(f.get(ML2_CONF, "ml2", "mechanism_drivers"), Some("openvswitch"));
        assert_eq!(f.get(ML2_CONF, "ml2", "tenant_network_types"), Some("vxlan"));
        assert_eq!(f.get(ML2_CONF, "ml2_type_vxlan", "vni_ranges"), Some("1:1000"));
        assert_eq!(f.get(ML2_CONF, "ovs", "bridge_mappings"), Some("public:br-ex"));
        assert_eq!(f.get(ML2_CONF, "ovs", "local_ip"), Some("192.168.0.10"));
        assert_eq!(f.get(ML2_CONF, "agent", "tunnel_types"), Some("vxlan"));
        assert_eq!(f.get(ML2_CONF, "securitygroup", "firewall_driver"), Some("openvswitch"));
        assert_eq!(f.get(ML2_CONF, "ml2_type_flat", "flat_networks"), Some("public,"));
        assert_eq!(f.get(NEUTRON_CONF, "DEFAULT", "auth_strategy"), Some("noauth"));
        assert_eq!(f.get(NEUTRON_CONF, "DEFAULT", "service_plugins"), Some("router"));
        assert_eq!(f.get(L3_CONF, "DEFAULT", "interface_driver"), Some("openvswitch"));
        // TUNNEL_ENDPOINT_IP wins over HOST_IP, as in stackrc.
        let f = files("[[local|localrc]]\nenable_service q-agt\nHOST_IP=192.168.0.10\nTUNNEL_ENDPOINT_IP=10.1.0.5\n");
        assert_eq!(f.get(ML2_CONF, "ovs", "local_ip"), Some("10.1.0.5"));
        assert!(f.file(ML2_CONF).text().starts_with("# Written by devstack-harness"));
    }

    #[test]
    fn post_config_is_merged_over_devstack_values() {
        let sample = std::fs::read_to_string("tests/data/localconf-corpus/neutron__devstack__ml2-ovs-local.conf.sample").expect("corpus");
        let f = files(&sample);
        // DevStack writes "ovn" from Q_ML2_PLUGIN_MECHANISM_DRIVERS's default, then
        // the post-config section replaces it.
        assert_eq!(f.get(ML2_CONF, "ml2", "mechanism_drivers"), Some("openvswitch,l2population"));
        assert_eq!(f.get(ML2_CONF, "agent", "tunnel_types"), Some("vxlan,gre"));
        assert_eq!(f.get(NEUTRON_CONF, "DEFAULT", "debug"), Some("True"));
        assert!(f.merged_line(ML2_CONF, "ml2", "mechanism_drivers").is_some());
        // Values are expanded as the shell would; repeated keys become multi-valued.
        let f = files("[[local|localrc]]\nHOST_IP=10.0.0.9\n[[post-config|$Q_L3_CONF_FILE]]\n[DEFAULT]\nfoo = $HOST_IP\n[[post-config|$NOVA_CONF]]\n[DEFAULT]\nx = 1\n");
        assert_eq!(f.get(L3_CONF, "DEFAULT", "foo"), Some("10.0.0.9"));
        assert_eq!(f.ignored.len(), 1, "{:?}", f.ignored);
    }
}

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

/// DevStack's variables that name these files in post-config headers.
const FILE_VARS: &[(&str, &str)] = &[
    ("NEUTRON_CONF", NEUTRON_CONF),
    ("Q_PLUGIN_CONF_FILE", "etc/neutron/plugins/ml2/ml2_conf.ini"),
    ("Q_L3_CONF_FILE", L3_CONF),
    ("Q_DHCP_CONF_FILE", DHCP_CONF),
    ("NEUTRON_CORE_PLUGIN_CONF", ML2_CONF),
    ("NEUTRON_CONF_DIR", "/etc/neutron"),
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
}

impl NeutronFiles {
    pub fn file(&self, path: &str) -> &ConfFile {
        self.files.iter().find(|f| f.path == path).expect("one of the four files")
    }

    pub fn get(&self, path: &str, section: &str, key: &str) -> Option<&str> {
        self.file(path).get(section, key)
    }

    /// The line of the post-config option that set a value last, if one did.
    pub fn merged_line(&self, path: &str, section: &str, key: &str) -> Option<usize> {
        self.merged.iter().rev().find(|m| m.file == path && m.section == section && m.key == key).map(|m| m.line)
    }
}

/// `iniset FILE SECTION KEY VALUE`.
fn iniset(ini: &mut Ini, section: &str, key: &str, value: &str) {
    ini.with_section(Some(section)).set(key, value);
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

pub fn build(conf: &LocalConf, eff: &Effective) -> NeutronFiles {
    let v = |name: &str| eff.get(name).unwrap_or("").to_owned();
    let rr = "sudo /usr/bin/neutron-rootwrap /etc/neutron/rootwrap.conf";
    let rr_daemon = "sudo /usr/bin/neutron-rootwrap-daemon /etc/neutron/rootwrap.conf";

    // _configure_neutron_common, _configure_neutron_service, configure_neutron.
    let mut neutron = Ini::load_from_str(BASE_NEUTRON_CONF).expect("templates/neutron/neutron.conf is valid INI");
    iniset(&mut neutron, "DEFAULT", "core_plugin", "ml2");
    let l3_plugin = eff.get("ML2_L3_PLUGIN").unwrap_or("router").to_owned();
    let mut service_plugins = vec![];
    if !l3_plugin.is_empty() {
        service_plugins.push(l3_plugin);
    }
    if let Some(extra) = eff.get("Q_SERVICE_PLUGIN_CLASSES").filter(|s| !s.is_empty()) {
        service_plugins.extend(extra.split(',').map(str::to_owned));
    }
    iniset(&mut neutron, "DEFAULT", "service_plugins", &service_plugins.join(","));
    iniset(&mut neutron, "DEFAULT", "debug", if v("ENABLE_DEBUG_LOG_LEVEL") == "False" { "False" } else { "True" });
    iniset(&mut neutron, "DEFAULT", "rpc_state_report_workers", "0");
    iniset(&mut neutron, "agent", "root_helper", rr);
    iniset(&mut neutron, "agent", "root_helper_daemon", rr_daemon);

    // neutron_plugin_configure_service (lib/neutron_plugins/ml2).
    let mut ml2 = Ini::new();
    let tenant_type = v("Q_ML2_TENANT_NETWORK_TYPE");
    iniset(&mut ml2, "securitygroup", "enable_security_group", &v("Q_USE_SECGROUP"));
    let mut mech = v("Q_ML2_PLUGIN_MECHANISM_DRIVERS");
    if v("Q_DVR_MODE") != "legacy" {
        mech = "openvswitch,l2population".into();
    }
    iniset(&mut ml2, "ml2", "mechanism_drivers", &mech);
    iniset(&mut ml2, "ml2", "overlay_ip_version", "4");
    if let Some(t) = eff.get("Q_ML2_PLUGIN_TYPE_DRIVERS").filter(|s| !s.is_empty()) {
        iniset(&mut ml2, "ml2", "type_drivers", t);
    }
    let ext = if v("NEUTRON_PORT_SECURITY") == "True" {
        eff.get("Q_ML2_PLUGIN_EXT_DRIVERS").unwrap_or("port_security").to_owned()
    } else {
        v("Q_ML2_PLUGIN_EXT_DRIVERS")
    };
    iniset(&mut ml2, "ml2", "extension_drivers", &ext);
    // DevStack's Zed branch, which matches the image's Neutron 21: the option is
    // `tenant_network_types` there (master writes `project_network_types`, which
    // Neutron 21 does not know and would silently ignore, leaving "local").
    if tenant_type != "local" {
        iniset(&mut ml2, "ml2", "tenant_network_types", &tenant_type);
    } else if v("ENABLE_TENANT_TUNNELS") == "True" {
        iniset(&mut ml2, "ml2", "tenant_network_types", "gre");
    }
    let ranges = v("TENANT_TUNNEL_RANGES");
    iniset(&mut ml2, "ml2_type_gre", "tunnel_id_ranges", &ranges);
    iniset(&mut ml2, "ml2_type_vxlan", "vni_ranges", &ranges);
    let (phys, public_phys) = (v("PHYSICAL_NETWORK"), v("PUBLIC_PHYSICAL_NETWORK"));
    let mut flat = String::new();
    if !phys.is_empty() {
        flat += &format!("{phys},");
    }
    if !public_phys.is_empty() && phys != public_phys {
        flat += &format!("{public_phys},");
    }
    if !flat.is_empty() {
        iniset(&mut ml2, "ml2_type_flat", "flat_networks", &flat);
    }
    if !phys.is_empty() {
        iniset(&mut ml2, "ml2_type_vlan", "network_vlan_ranges", &phys);
    }
    iniset(&mut ml2, "ml2_type_geneve", "vni_ranges", &ranges);
    if v("Q_DVR_MODE") != "legacy" {
        iniset(&mut ml2, "agent", "l2_population", "True");
        iniset(&mut ml2, "agent", "tunnel_types", "vxlan");
        iniset(&mut ml2, "agent", "enable_distributed_routing", "True");
        iniset(&mut ml2, "agent", "arp_responder", "True");
    }

    // _configure_neutron_plugin_agent, neutron_plugin_configure_plugin_agent
    // (lib/neutron_plugins/openvswitch_agent, ovs_base).
    iniset(&mut ml2, "agent", "root_helper", rr);
    iniset(&mut ml2, "agent", "root_helper_daemon", rr_daemon);
    iniset(&mut ml2, "securitygroup", "firewall_driver", if v("Q_USE_SECGROUP") == "True" { "openvswitch" } else { "noop" });
    let tunnel_types = if tenant_type == "gre" || tenant_type == "vxlan" {
        tenant_type.clone()
    } else if v("ENABLE_TENANT_TUNNELS") == "True" {
        "gre".into()
    } else {
        String::new()
    };
    if v("ENABLE_TENANT_TUNNELS") == "True" {
        iniset(&mut ml2, "ovs", "local_ip", &v("TUNNEL_ENDPOINT_IP"));
        iniset(&mut ml2, "ovs", "tunnel_bridge", "br-tun");
    }
    let mappings = v("OVS_BRIDGE_MAPPINGS");
    if !mappings.is_empty() {
        iniset(&mut ml2, "ovs", "bridge_mappings", &mappings);
    }
    iniset(&mut ml2, "agent", "tunnel_types", &tunnel_types);
    iniset(&mut ml2, "ovs", "datapath_type", &v("OVS_DATAPATH_TYPE"));

    // _configure_neutron_l3_agent, _configure_neutron_dhcp_agent.
    let agent = |extra: &[(&str, &str, &str)]| {
        let mut ini = Ini::new();
        iniset(&mut ini, "DEFAULT", "debug", if v("ENABLE_DEBUG_LOG_LEVEL") == "False" { "False" } else { "True" });
        iniset(&mut ini, "AGENT", "root_helper", rr);
        iniset(&mut ini, "AGENT", "root_helper_daemon", rr_daemon);
        iniset(&mut ini, "DEFAULT", "interface_driver", "openvswitch");
        for (s, k, val) in extra {
            iniset(&mut ini, s, k, val);
        }
        ini
    };
    let l3 = agent(&[]);
    let dhcp = agent(&[("DEFAULT", "dnsmasq_local_resolv", "True")]);

    let mut files = vec![
        ConfFile { path: NEUTRON_CONF, ini: neutron },
        ConfFile { path: ML2_CONF, ini: ml2 },
        ConfFile { path: L3_CONF, ini: l3 },
        ConfFile { path: DHCP_CONF, ini: dhcp },
    ];

    // merge_config_group post-config: each option in the file's section, values
    // expanded by the shell; a key given more than once becomes a multi-valued one.
    let mut merged = Vec::new();
    let mut ignored = Vec::new();
    for meta in conf.files.iter().filter(|f| f.group == "post-config") {
        let path = resolve_file(eff, &meta.file);
        let Some(file) = files.iter_mut().find(|f| f.path == path) else {
            ignored.push((meta.file.clone(), meta.line));
            continue;
        };
        for opt in &meta.options {
            let values: Vec<String> = opt.values.iter().map(|x| eff.expand(x)).collect();
            let mut section = file.ini.with_section(Some(opt.section.as_str()));
            section.delete(&opt.key.as_str());
            for value in &values {
                section.add(opt.key.as_str(), value.as_str());
            }
            merged.push(Merged {
                file: file.path,
                section: opt.section.clone(),
                key: opt.key.clone(),
                value: values.join("\n"),
                line: opt.line,
            });
        }
    }
    NeutronFiles { files, merged, ignored }
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
        let f = files("[[local|localrc]]\nHOST_IP=192.168.0.10\nQ_AGENT=openvswitch\nQ_ML2_PLUGIN_MECHANISM_DRIVERS=openvswitch\nQ_ML2_TENANT_NETWORK_TYPE=vxlan\nOVS_BRIDGE_MAPPINGS=public:br-ex\n");
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
        let f = files("[[local|localrc]]\nHOST_IP=192.168.0.10\nTUNNEL_ENDPOINT_IP=10.1.0.5\n");
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

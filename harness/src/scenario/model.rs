//! The scenario file as written (TOML, serde). Every default is the world of
//! docs/design.md; a scenario changes only what it is about. Unknown keys are errors.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Raw addresses stay strings here so that a bad one is reported by the
/// validator with its file, line and column, not as a generic serde error.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Defaults to the file's stem.
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    /// Which cloud builder runs (`replica` or `devstack`).
    #[serde(default)]
    pub cloud: CloudKind,
    #[serde(default)]
    pub guest: GuestSpec,
    #[serde(default)]
    pub provider: ProviderSpec,
    #[serde(default)]
    pub tenant: TenantSpec,
    #[serde(default)]
    pub internet: InternetSpec,
    #[serde(default)]
    pub host_recipe: HostRecipeSpec,
    /// What goes wrong with the host after the cloud is built (docs/repro.md).
    #[serde(default)]
    pub faults: FaultsSpec,
    #[serde(default)]
    pub devstack: DevstackSpec,
    #[serde(default)]
    pub vm: VmSpec,
    #[serde(default, rename = "forward")]
    pub forwards: Vec<ForwardSpec>,
    #[serde(default, rename = "check")]
    pub checks: Vec<CheckSpec>,
    /// The instance's security group (neutron cloud). None declared: egress open,
    /// ingress ICMP, SSH and each port the checks probe from outside, as Tempest's
    /// scenario tests have it.
    #[serde(default, rename = "security_group_rule")]
    pub security_group_rules: Vec<SecurityGroupRuleSpec>,
    /// Where the instance runs (neutron cloud); one instance, on the first host,
    /// when absent.
    #[serde(default, rename = "instance")]
    pub instances: Vec<InstanceSpec>,
}

/// The scenario's instance and the host it runs on.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// 1: the host with the server and the L3 and DHCP agents; 2: a second host in
    /// the same guest (its own OVS agent, bridges and VXLAN endpoint), reached
    /// through a VXLAN tunnel, as in Neutron's fullstack tests.
    #[serde(default = "first_host")]
    pub host: u8,
}

fn first_host() -> u8 {
    1
}

/// One rule of the instance's security group, in Neutron's terms.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupRuleSpec {
    #[serde(default = "default_direction")]
    #[schemars(extend("enum" = ["ingress", "egress"]))]
    pub direction: String,
    /// Any protocol when absent.
    #[schemars(extend("enum" = ["icmp", "tcp", "udp"]))]
    pub protocol: Option<String>,
    /// One port (tcp or udp); or `port_range_min` and `port_range_max`.
    pub port: Option<u16>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    /// A CIDR; any address when absent.
    pub remote_ip_prefix: Option<String>,
}

fn default_direction() -> String {
    "ingress".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CloudKind {
    #[default]
    Replica,
    Devstack,
    /// Neutron's own server and agents (Debian's packages), configured from the
    /// local.conf as DevStack would.
    Neutron,
}

impl CloudKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CloudKind::Replica => "replica",
            CloudKind::Devstack => "devstack",
            CloudKind::Neutron => "neutron",
        }
    }
}

/// The cloud instance: its private NIC and the public IP the cloud maps to it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GuestSpec {
    pub public_ip: String,
    pub nic: String,
    /// Address with prefix, e.g. `192.168.0.10/24`.
    pub address: String,
    pub gateway: String,
    pub hostname: String,
}

impl Default for GuestSpec {
    fn default() -> Self {
        GuestSpec {
            public_ip: "203.0.113.10".into(),
            nic: "eth0".into(),
            address: "192.168.0.10/24".into(),
            gateway: "192.168.0.1".into(),
            hostname: "devstack".into(),
        }
    }
}

/// The provider network: the Linux bridge and the floating range on it.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderSpec {
    pub bridge: String,
    /// The bridge's address with prefix, e.g. `192.168.100.1/24`.
    pub address: String,
    pub floating_range: String,
    /// `PUBLIC_NETWORK_GATEWAY`.
    pub gateway: String,
    pub pool_start: String,
    pub pool_end: String,
    /// `OVS_PHYSICAL_BRIDGE` / `PUBLIC_BRIDGE`.
    pub ovs_bridge: String,
    /// The physical network name in `OVS_BRIDGE_MAPPINGS`.
    pub physical_network: String,
}

impl Default for ProviderSpec {
    fn default() -> Self {
        ProviderSpec {
            bridge: "mybr0".into(),
            address: "192.168.100.1/24".into(),
            floating_range: "192.168.100.0/24".into(),
            gateway: "192.168.100.1".into(),
            pool_start: "192.168.100.100".into(),
            pool_end: "192.168.100.200".into(),
            ovs_bridge: "br-ex".into(),
            physical_network: "public".into(),
        }
    }
}

/// The tenant (private) network the instance lives on.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSpec {
    pub fixed_range: String,
    /// `NETWORK_GATEWAY`: the router's `qr-` address.
    pub gateway: String,
    pub network_type: String,
    pub mtu: u16,
}

impl Default for TenantSpec {
    fn default() -> Self {
        TenantSpec { fixed_range: "10.0.0.0/24".into(), gateway: "10.0.0.1".into(), network_type: "vxlan".into(), mtu: 1450 }
    }
}

/// The harness-owned "internet": a client, a responder and the cloud edge.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct InternetSpec {
    /// The internet side of the cloud edge, with prefix.
    pub edge: String,
    pub client: String,
    pub responder: String,
}

impl Default for InternetSpec {
    fn default() -> Self {
        InternetSpec { edge: "198.51.100.1/24".into(), client: "198.51.100.10".into(), responder: "198.51.100.20".into() }
    }
}

/// The host network recipe. Each part can be switched off (or changed) to
/// reproduce a broken host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HostRecipeSpec {
    /// Put the public IP on `lo` as a /32.
    pub lo_public_ip: bool,
    /// Create the provider bridge and give it its address.
    pub bridge: bool,
    /// `net.ipv4.ip_forward=1`.
    pub ip_forward: bool,
    /// FORWARD accept for the provider range (both directions).
    pub forward: bool,
    /// nat POSTROUTING MASQUERADE of the provider range.
    pub masquerade: bool,
    /// Source range of the FORWARD and MASQUERADE rules; defaults to the floating range.
    pub source_range: Option<String>,
    /// Persist the recipe the way a distribution does, so that it survives a
    /// reboot: net.ipv4.ip_forward in /etc/sysctl.d, and a systemd unit that
    /// applies the recipe at boot (addresses, the bridge, the iptables rules).
    pub persist: bool,
}

impl Default for HostRecipeSpec {
    fn default() -> Self {
        HostRecipeSpec {
            lo_public_ip: true,
            bridge: true,
            ip_forward: true,
            forward: true,
            masquerade: true,
            source_range: None,
            persist: false,
        }
    }
}

/// Faults reported from DevStack hosts in cloud VMs, each switched on after the
/// recipe was applied and the cloud built (so that a restored cloud gets them
/// in seconds), as they happen on a host that worked: something installed
/// beside DevStack, a reboot that lost what stack.sh set at run time, a second
/// NIC. All off by default; docs/repro.md names the report behind each.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct FaultsSpec {
    /// `iptables -P FORWARD DROP`, as Docker installed beside DevStack sets it.
    pub forward_policy_drop: bool,
    /// `net.ipv4.ip_forward=0`: what stack.sh set at run time and nothing
    /// persisted is gone after a reboot (DevStack bug 885274).
    pub ip_forward_off: bool,
    /// The OVS provider bridge (br-ex) without the address DevStack moved onto it
    /// at run time, as after a reboot (its port persists in OVS's database).
    pub ovs_bridge_no_address: bool,
    /// The OVS provider bridge (br-ex) down, as after a reboot.
    pub ovs_bridge_down: bool,
    /// The default route through the management NIC (a NAT interface that leads
    /// nowhere here) instead of the data NIC.
    pub default_route_via_mgmt: bool,
    /// Strict reverse-path filtering on the host (`net.ipv4.conf.all.rp_filter=1`,
    /// as RHEL-like images ship it): a packet that arrives on a NIC the way back
    /// to its source does not leave through is dropped before FORWARD.
    pub rp_filter_strict: bool,
    /// The instance's interface at this MTU instead of the one its network has
    /// (1450 on VXLAN), as an image that ignores DHCP's MTU option runs it:
    /// packets bigger than the network's MTU are lost without an error.
    pub instance_mtu: Option<u16>,
}

/// How the DevStack `local.conf` is made.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DevstackSpec {
    pub git_base: String,
    pub branch: String,
    pub admin_password: String,
    /// `HOST_IP`: `public` (the public IP, as on the NHN Cloud host), `private`
    /// (the guest's private address) or an address.
    pub host_ip: String,
    /// Extra `NAME=value` lines for the localrc section, after the template's.
    pub values: BTreeMap<String, String>,
    /// Raw text appended to the rendered local.conf.
    pub extra: String,
    /// The user's own local.conf (relative to the scenario file) used instead of the template.
    pub local_conf: Option<String>,
    /// For air-gapped sites: a pip index (written to /etc/pip.conf in the guest).
    pub pip_index_url: Option<String>,
    /// For air-gapped sites: an apt mirror replacing the guest image's archive URLs.
    pub apt_mirror: Option<String>,
    /// How long stack.sh may take, in minutes.
    pub stack_timeout_min: u32,
    /// The image the instance boots from: the first Glance image whose name starts so.
    pub instance_image: String,
    /// The instance's login user (CirrOS: cirros).
    pub instance_user: String,
}

impl Default for DevstackSpec {
    fn default() -> Self {
        DevstackSpec {
            git_base: "https://opendev.org".into(),
            branch: "master".into(),
            admin_password: "secret".into(),
            host_ip: "public".into(),
            values: BTreeMap::new(),
            extra: String::new(),
            local_conf: None,
            pip_index_url: None,
            apt_mirror: None,
            stack_timeout_min: 90,
            instance_image: "cirros".into(),
            instance_user: "cirros".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct VmSpec {
    pub image: String,
    pub memory_mib: u32,
    pub cpus: u32,
    pub disk_gib: u32,
}

impl Default for VmSpec {
    fn default() -> Self {
        VmSpec { image: "debian-12".into(), memory_mib: 2048, cpus: 2, disk_gib: 8 }
    }
}

/// A port the cloud edge forwards from the public IP, e.g. public 2222 -> floating IP 22.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardSpec {
    /// The port on the public IP.
    pub public_port: u16,
    /// `floating_ip` or an address in the guest.
    pub to: String,
    pub port: u16,
    #[serde(default = "default_proto")]
    #[schemars(extend("enum" = ["tcp", "udp"]))]
    pub protocol: String,
}

fn default_proto() -> String {
    "tcp".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Defaults to a description made from kind, from and to.
    pub name: Option<String>,
    #[schemars(extend("enum" = ["icmp", "tcp", "udp", "http"]))]
    pub kind: String,
    /// Where the probe runs.
    #[schemars(extend("enum" = ["internet", "host", "instance"]))]
    pub from: String,
    /// `floating_ip`, `public_ip`, `responder`, `gateway`, or an IPv4 address.
    pub to: String,
    /// Required for tcp, udp and http.
    pub port: Option<u16>,
    #[serde(default = "default_expect")]
    #[schemars(extend("enum" = ["reachable", "unreachable"]))]
    pub expect: String,
    /// The source address the responder must report (a target name or an address).
    pub seen_as: Option<String>,
    /// Seconds the probe may take (default 10).
    pub timeout_s: Option<f64>,
    /// ICMP payload bytes (`ping -s`); 56 when absent.
    pub size: Option<u16>,
    /// Set Don't Fragment (`ping -M do`): a packet larger than the path's MTU is
    /// not fragmented but lost, so `size` tests the MTU.
    #[serde(default)]
    pub dont_fragment: bool,
    /// An action taken just before the check: `fip_disassociate` or `fip_associate`
    /// (through the cloud), or `host_reboot` (the guest reboots: what DevStack and
    /// the recipe set at run time is gone, unless `[host_recipe] persist`).
    #[schemars(extend("enum" = ["fip_disassociate", "fip_associate", "host_reboot"]))]
    pub before: Option<String>,
}

fn default_expect() -> String {
    "reachable".into()
}

//! The neutron cloud: Neutron's own server and ML2/OVS, L3 and DHCP agents
//! (Debian 13's packages, Neutron 26, image `debian-13-neutron`; `--image
//! debian-12-neutron` runs Neutron 21), configured from the scenario's local.conf
//! as DevStack writes it ([`crate::localconf::neutron_files`]), run as DevStack
//! runs them, and driven through Neutron's API (no Keystone:
//! `auth_strategy = noauth`). The instance is a fake machine as in Neutron's
//! fullstack tests: a port bound to this host's OVS agent, an OVS internal port
//! moved into a namespace, addressed by the real dnsmasq through DHCP.

use super::{guest_step, Cloud, CloudError, CloudValues, Deployed, Needs, Site};
use crate::exec::Cmd;
use crate::localconf::{self, neutron_files};
use crate::scenario::{CloudAction, CloudKind};
use crate::scripts::{script, GUEST_PROBE};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::time::Duration;

pub const SCRIPT: &str = "/usr/local/sbin/harness-neutron";
const API: &str = "/usr/local/sbin/harness-neutron-api";
const UDHCPC_SCRIPT: &str = "/usr/local/sbin/harness-udhcpc-script";
const SPEC: &str = "/run/harness-neutron-networks.json";
const RULES: &str = "/run/harness-neutron-rules.json";
/// Under TCG the services take minutes to import and register (docs/design.md).
const AGENTS_TIMEOUT: Duration = Duration::from_secs(1800);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct Neutron {
    /// Restored from a prepared state, and the agents not yet seen alive again.
    agents_unconfirmed: std::sync::atomic::AtomicBool,
}

const HOST2_CONF: &str = "/etc/neutron/plugins/ml2/ml2_conf-host2.ini";

/// The second host (templates/neutron/ml2_conf-host2.ini): its agent's name and
/// VXLAN endpoint, another address of the guest than the first host's.
#[derive(Serialize)]
struct Host2 {
    host: String,
    local_ip: Ipv4Addr,
}

impl Host2 {
    fn of(site: &Site<'_>, files: &neutron_files::NeutronFiles) -> Result<Option<Host2>, CloudError> {
        if site.plan.instance_host != 2 {
            return Ok(None);
        }
        // The guest's private address, or its public IP (on lo) when the first
        // host's endpoint is the private one (HOST_IP found on the default-route NIC).
        let first = files.get(neutron_files::ML2_CONF, "ovs", "local_ip").unwrap_or("").to_owned();
        let w = &site.plan.world;
        let local_ip =
            [w.guest_address.addr(), w.public_ip].into_iter().find(|a| a.to_string() != first).ok_or_else(|| CloudError::Value {
                name: "TUNNEL_ENDPOINT_IP".into(),
                value: first.clone(),
                expected: "an address of the guest that leaves another for the second host's VXLAN endpoint".into(),
            })?;
        Ok(Some(Host2 { host: format!("{}-2", site.plan.world.hostname), local_ip }))
    }
}

/// `create_neutron_initial_network`'s inputs (lib/neutron_plugins/services/l3).
#[derive(Serialize)]
struct NetworkSpec<'a> {
    networks: &'a localconf::networks::InitialNetworks,
    /// What DevStack passes as `--gateway` (nothing when the variable is unset:
    /// Neutron then picks).
    network_gateway: Option<String>,
    public_network_gateway: Option<String>,
    /// `--allocation-pool`, when Q_FLOATING_ALLOCATION_POOL is set.
    floating_pool: Option<(Ipv4Addr, Ipv4Addr)>,
}

#[derive(Deserialize)]
struct Networks {
    private_cidr: ipnet::Ipv4Net,
    private_gateway: Ipv4Addr,
    public_gateway: Ipv4Addr,
    router_id: String,
    router_gw_ip: Ipv4Addr,
    private_network_id: String,
    public_network_id: String,
    gw_port_id: String,
    int_port_id: String,
}

#[derive(Deserialize)]
struct Port {
    port_id: String,
    mac: String,
}

/// What the instance's DHCP client got from Neutron's dnsmasq.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub router: Ipv4Addr,
    pub mtu: u16,
    pub server: Ipv4Addr,
    pub lease_s: u64,
}

#[derive(Deserialize)]
struct FloatingIp {
    floating_ip: Ipv4Addr,
}

/// The instance's name in Neutron and its namespace in the guest.
fn instance_name(run_id: &str) -> String {
    format!("instance-{run_id}")
}

/// Run a guest step whose last line is a JSON object, and read that object.
async fn json_step<T: for<'de> Deserialize<'de>>(site: &Site<'_>, step: &str, argv: &[&str], timeout: Duration) -> Result<T, CloudError> {
    let log = site.log(&format!("{}.log", step.replace(' ', "-")));
    let out = guest_step(site.guest, step, &Cmd::new(argv.iter().copied()).timeout(timeout), &log).await?;
    let line = out.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or("");
    serde_json::from_str(line).map_err(|e| CloudError::Step {
        step: step.into(),
        status: 0,
        output: format!("expected a JSON line, saw {line:?}: {e}"),
        log: log.display().to_string(),
    })
}

impl Neutron {
    /// After a restore, before the first change through the API: wait until the
    /// API sees the agents alive again, so that the change reaches them.
    async fn agents_alive(&self, site: &Site<'_>) -> Result<(), CloudError> {
        if self.agents_unconfirmed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let _: serde_json::Value =
                json_step(site, "neutron agents after restore", &[API, "wait-agents", "300"], Duration::from_secs(360)).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Cloud for Neutron {
    fn kind(&self) -> CloudKind {
        CloudKind::Neutron
    }

    fn needs(&self) -> Needs {
        Needs { uplink: false, image: Some("debian-13-neutron"), memory_mib: 4096 }
    }

    /// MariaDB, RabbitMQ (2-3 min under TCG) and Open vSwitch do not depend on the
    /// local.conf: started at once, in the background.
    async fn start_early(&self, guest: &dyn crate::exec::Executor) -> Result<(), CloudError> {
        let cmd =
            Cmd::new(["systemctl", "start", "--no-block", "mariadb.service", "rabbitmq-server.service", "openvswitch-switch.service"]);
        guest.run(&cmd.timeout(Duration::from_secs(60))).await?;
        Ok(())
    }

    async fn build(&self, site: &Site<'_>) -> Result<Deployed, CloudError> {
        let conf = localconf::parse(site.local_conf);
        let eff = localconf::plan::effective(&conf, &site.plan.world);
        let v = CloudValues::from_local_conf(site.local_conf, site.plan, site.run_id)?;

        // Configuration, as DevStack would leave it.
        let files = neutron_files::build(&conf, &eff);
        for f in &files.files {
            let text = f.text();
            let name = f.path.rsplit('/').next().unwrap_or(f.path);
            site.keep_rendered(name, &text)?;
            site.guest.upload(text.as_bytes(), f.path, 0o644).await?;
        }
        let text = site
            .renderer
            .render_extra(crate::render::NEUTRON, site.plan, &v)
            .map_err(|e| CloudError::Template("neutron.sh".into(), e.to_string()))?;
        site.keep_rendered("neutron.sh", &text)?;
        site.guest.upload(text.as_bytes(), SCRIPT, 0o755).await?;
        site.guest.upload(script("neutron-api.py").as_bytes(), API, 0o755).await?;
        site.guest.upload(script("udhcpc-script.sh").as_bytes(), UDHCPC_SCRIPT, 0o755).await?;

        // DevStack's host steps and the services.
        site.progress.message("neutron: host steps, then neutron-server and the OVS, L3 and DHCP agents");
        guest_step(
            site.guest,
            "neutron services",
            &Cmd::new([SCRIPT, "services"]).timeout(Duration::from_secs(300)),
            &site.log("cloud.log"),
        )
        .await?;
        // The second host, when the scenario's instance runs there.
        let host2 = Host2::of(site, &files)?;
        if let Some(h) = &host2 {
            let text = site
                .renderer
                .render_extra(crate::render::NEUTRON_HOST2, site.plan, h)
                .map_err(|e| CloudError::Template("ml2_conf-host2.ini".into(), e.to_string()))?;
            site.keep_rendered("ml2_conf-host2.ini", &text)?;
            site.guest.upload(text.as_bytes(), HOST2_CONF, 0o644).await?;
            let cmd = Cmd::new([SCRIPT, "second-host"]).timeout(Duration::from_secs(120));
            guest_step(site.guest, "neutron second host", &cmd, &site.log("second-host.log")).await?;
        }
        let ovs_agents = if host2.is_some() { "2" } else { "1" };
        site.progress.message("neutron: waiting for the API and the agents (minutes under TCG)");
        let agents: serde_json::Value = json_step(
            site,
            "neutron agents",
            &[API, "wait-agents", &AGENTS_TIMEOUT.as_secs().to_string(), ovs_agents],
            AGENTS_TIMEOUT + Duration::from_secs(60),
        )
        .await?;
        site.progress.message(&format!("neutron: agents alive {agents}"));

        // create_neutron_initial_network, with DevStack's arguments; Neutron
        // does the arithmetic, and it must agree with the prediction.
        let given = |var: &str| eff.get(var).map(|s| s.trim_matches('"')).filter(|s| !s.is_empty()).map(str::to_owned);
        let spec = NetworkSpec {
            networks: &v.networks,
            network_gateway: given("NETWORK_GATEWAY"),
            public_network_gateway: given("PUBLIC_NETWORK_GATEWAY"),
            floating_pool: given("Q_FLOATING_ALLOCATION_POOL").and_then(|p| localconf::networks::parse_pool(&p)),
        };
        site.guest.upload(&serde_json::to_vec(&spec).expect("serializable"), SPEC, 0o644).await?;
        site.progress.message("neutron: subnet pool, networks, subnets and the router through the API");
        let nets: Networks = json_step(site, "neutron networks", &[API, "initial-networks", SPEC], CHANGE_TIMEOUT).await?;
        let predicted = &v.networks;
        for (what, expected, seen) in [
            ("the private subnet", predicted.private_subnet.cidr.to_string(), nets.private_cidr.to_string()),
            ("the private subnet's gateway", predicted.private_subnet.gateway.to_string(), nets.private_gateway.to_string()),
            ("the public subnet's gateway", predicted.public_subnet.gateway.to_string(), nets.public_gateway.to_string()),
        ] {
            if expected != seen {
                let log = site.log("neutron-networks.log").display().to_string();
                return Err(CloudError::Prediction { what: what.into(), expected, seen, log });
            }
        }
        guest_step(
            site.guest,
            "assign gateway",
            &Cmd::new([SCRIPT, "assign-gateway"]).timeout(Duration::from_secs(60)),
            &site.log("assign-gateway.log"),
        )
        .await?;

        // The instance: a bound port, plugged and addressed by DHCP.
        let instance = instance_name(site.run_id);
        let rules = site.plan.security_group();
        site.guest.upload(&serde_json::to_vec(&rules).expect("serializable"), RULES, 0o644).await?;
        let (host, bridge) = match &host2 {
            Some(h) => (h.host.clone(), "br-int-2"),
            None => (site.plan.world.hostname.clone(), "br-int"),
        };
        let port: Port =
            json_step(site, "neutron port", &[API, "instance", &instance, &nets.private_network_id, RULES, &host], CHANGE_TIMEOUT).await?;
        site.progress
            .message(&format!("neutron: plugging the instance into {bridge} on {host}; waiting for the agents to make its port ACTIVE"));
        let _: serde_json::Value =
            json_step(site, "instance plug", &[SCRIPT, "plug", &port.port_id, &port.mac, &instance, bridge], CHANGE_TIMEOUT).await?;
        let _: serde_json::Value = json_step(
            site,
            "port active",
            &[API, "wait-port", &port.port_id, "ACTIVE", &CHANGE_TIMEOUT.as_secs().to_string()],
            CHANGE_TIMEOUT + Duration::from_secs(30),
        )
        .await?;
        site.progress.message("neutron: DHCP from the qdhcp namespace's dnsmasq");
        let lease: Lease = json_step(site, "instance dhcp", &[SCRIPT, "dhcp", &port.port_id, &instance], Duration::from_secs(120)).await?;
        let fip: FloatingIp =
            json_step(site, "floating ip", &[API, "fip-create", &port.port_id, &nets.public_network_id], CHANGE_TIMEOUT).await?;
        site.progress.message(&format!("neutron: waiting for the L3 agent to apply the floating IP {}", fip.floating_ip));
        let (fip_s, fixed_s) = (fip.floating_ip.to_string(), lease.ip.to_string());
        let _: serde_json::Value = json_step(
            site,
            "floating ip applied",
            &[SCRIPT, "wait-fip", &fip_s, &fixed_s, "present", &CHANGE_TIMEOUT.as_secs().to_string()],
            CHANGE_TIMEOUT + Duration::from_secs(30),
        )
        .await?;
        // The L3 agent plugs qr- and qg- into br-int, and the OVS agent gives them
        // their VLAN tag later (under load, minutes later): until then the router
        // answers nothing. The floating IP's NAT rules do not say so, the ports'
        // status does; a state saved before it would be a cloud without a router.
        for (what, port_id) in [("router interface", &nets.int_port_id), ("router gateway", &nets.gw_port_id)] {
            site.progress.message(&format!("neutron: waiting for the OVS agent to wire the {what} port"));
            let _: serde_json::Value = json_step(
                site,
                &format!("{what} active"),
                &[API, "wait-port", port_id, "ACTIVE", &CHANGE_TIMEOUT.as_secs().to_string()],
                CHANGE_TIMEOUT + Duration::from_secs(30),
            )
            .await?;
        }
        let _ = std::fs::write(site.log("dhcp-lease.json"), serde_json::to_vec_pretty(&lease).expect("serializable"));

        let version =
            site.guest.run(&Cmd::new(["dpkg-query", "-W", "-f", "${Version}", "python3-neutron"]).timeout(Duration::from_secs(60))).await?;
        let facts = [
            ("neutron_version", serde_json::json!(version.stdout.trim())),
            ("dhcp_lease", serde_json::to_value(&lease).expect("serializable")),
            ("security_group", serde_json::to_value(&rules).expect("serializable")),
            ("agents", agents),
            ("instance_host", serde_json::json!(host)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(Deployed {
            facts,
            floating_ip: fip.floating_ip,
            fixed_ip: lease.ip,
            network_gateway: lease.router,
            router_gw_ip: nets.router_gw_ip,
            instance_probe: vec!["ip".into(), "netns".into(), "exec".into(), instance.clone(), GUEST_PROBE.into()],
            volatile_names: [
                (nets.router_id, "<router-id>"),
                (nets.gw_port_id[..11].to_owned(), "<gw-port>"),
                (nets.int_port_id[..11].to_owned(), "<int-port>"),
                (port.port_id[..11].to_owned(), "<vm-port>"),
                (port.mac, "<vm-mac>"),
                // Neutron's IPAM picks these at random in their ranges.
                (fip.floating_ip.to_string(), "<floating-ip>"),
                (lease.ip.to_string(), "<fixed-ip>"),
                (lease.server.to_string(), "<dhcp-server>"),
                (nets.router_gw_ip.to_string(), "<router-gw-ip>"),
                (site.run_id.to_owned(), "<run>"),
            ]
            .into_iter()
            .map(|(id, tag)| (id, tag.to_owned()))
            .collect(),
        })
    }

    /// A restored VM's agents last reported before the save, so the API thinks
    /// them dead until they report again (within their report interval). The
    /// datapath does not wait for that: only a change through the API does (see
    /// [`Neutron::agents_alive`]), which saves a restored scenario without one
    /// about 15 s under TCG.
    async fn resumed(&self, _site: &Site<'_>) -> Result<(), CloudError> {
        self.agents_unconfirmed.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The scenario's security group, when its rules are not those in force: a
    /// new group through the API, the port moved to it, and the OVS agent seen
    /// refreshing its firewall. A group of scenarios that differ only in their
    /// rules shares one build.
    async fn scenario(&self, site: &Site<'_>, d: &mut Deployed) -> Result<Option<f64>, CloudError> {
        let want = serde_json::to_value(site.plan.security_group()).expect("serializable");
        if d.facts.get("security_group") == Some(&want) {
            return Ok(None);
        }
        self.agents_alive(site).await?;
        site.guest.upload(&serde_json::to_vec(&want).expect("serializable"), RULES, 0o644).await?;
        let unit = if site.plan.instance_host == 2 { "devstack@q-agt-2" } else { "devstack@q-agt" };
        #[derive(Deserialize)]
        struct Applied {
            after_s: f64,
        }
        let applied: Applied = json_step(
            site,
            "security group rules",
            &[API, "set-rules", RULES, unit, &CHANGE_TIMEOUT.as_secs().to_string()],
            CHANGE_TIMEOUT + Duration::from_secs(60),
        )
        .await?;
        site.progress.message(&format!(
            "neutron: the scenario's security group in force in {unit} {:.1} s after the port moved to it",
            applied.after_s
        ));
        d.facts.insert("security_group".to_owned(), want);
        Ok(Some(applied.after_s))
    }

    /// Through the API, then wait until the L3 agent has applied it (Neutron
    /// applies it asynchronously); how long that took is in the step's log.
    async fn floating_ip(&self, site: &Site<'_>, action: CloudAction) -> Result<Option<f64>, CloudError> {
        let verb = super::fip_verb(action);
        #[derive(Deserialize)]
        struct Changed {
            floating_ip: Ipv4Addr,
            fixed_ip: Ipv4Addr,
        }
        self.agents_alive(site).await?;
        let changed: Changed = json_step(site, verb, &[API, verb], CHANGE_TIMEOUT).await?;
        let changed_at = std::time::Instant::now();
        let want = match action {
            CloudAction::FipAssociate => "present",
            CloudAction::FipDisassociate => "absent",
        };
        let (fip, fixed) = (changed.floating_ip.to_string(), changed.fixed_ip.to_string());
        let _: serde_json::Value = json_step(
            site,
            &format!("{verb} applied"),
            &[SCRIPT, "wait-fip", &fip, &fixed, want, &CHANGE_TIMEOUT.as_secs().to_string()],
            CHANGE_TIMEOUT + Duration::from_secs(30),
        )
        .await?;
        let took = changed_at.elapsed().as_secs_f64();
        site.progress.message(&format!("neutron: {verb} took effect in the router {took:.1} s after the API call"));
        Ok(Some((took * 10.0).round() / 10.0))
    }
}

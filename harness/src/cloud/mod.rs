//! Cloud stage: builds the cloud inside the guest from the scenario's rendered
//! local.conf, and changes it the way its API would (the floating IP). Every cloud
//! is behind [`Cloud`] and answers with one [`Deployed`]; adding one takes its own
//! file, its template, and a line in [`for_kind`].
//!
//! - [`replica`]: the harness's imitation of Neutron's ML2/OVS + L3 datapath for
//!   one router, one tenant network and one instance, with real OVS and iptables.
//! - [`devstack`]: the real stack.sh (needs the internet: the `.github/` workflow).

pub mod devstack;
pub mod neutron;
pub mod replica;

use crate::exec::{Cmd, ExecError, Executor};
use crate::localconf::{self, effective::Effective};
use crate::progress::Progress;
use crate::render::Renderer;
use crate::scenario::{CloudAction, CloudKind, Plan};
use async_trait::async_trait;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("local.conf: {name} is {value:?}; the replica needs {expected} (run `harness lint` on the rendered local.conf)")]
    Value { name: String, value: String, expected: String },
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("template {0}: {1}")]
    Template(String, String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Unsupported(String),
    #[error("{step} failed in the guest (exit {status}): {output}\n  the whole output is in {log}")]
    Step { step: String, status: i32, output: String, log: String },
    #[error("the devstack cloud needs the guest to reach {0}/openstack/devstack.git, and it cannot from here (set [devstack] git_base to a mirror it can reach, or run it where it can: the .github/ devstack workflow)")]
    NoInternet(String),
    #[error("stack.sh failed (exit {status}) in the phase \"{phase}\":\n{tail}\n  the whole log is in {log}")]
    Stack { phase: String, status: i32, tail: String, log: String },
    #[error("stack.sh did not finish within {minutes} min (phase \"{phase}\"); the log so far is in {log}")]
    StackTimeout { minutes: u32, phase: String, log: String },
    #[error("the instance step printed no result line; its output is in {0}")]
    Instance(String),
    #[error("Neutron made {what} {seen}, where DevStack's arithmetic (harness localconf neutron) predicts {expected}; the API calls are in {log}")]
    Prediction { what: String, expected: String, seen: String, log: String },
}

impl CloudError {
    /// A template that does not render is bad input (exit 2), not a broken machine.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, CloudError::Template(..) | CloudError::Value { .. } | CloudError::Unsupported(_))
    }
}

/// What a built cloud is, for the checks and the snapshots: the instance's
/// addresses, how to probe from inside it, and the names that change run to run.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Deployed {
    pub floating_ip: Ipv4Addr,
    pub fixed_ip: Ipv4Addr,
    /// The tenant network's gateway (the router's inner port).
    pub network_gateway: Ipv4Addr,
    /// The router's address on the public network.
    pub router_gw_ip: Ipv4Addr,
    /// The argv, in the guest, that runs the probe inside the instance; the probe's
    /// own arguments follow it.
    pub instance_probe: Vec<String>,
    /// Names that differ from run to run (router and port ids), each with the
    /// stable name that replaces it in snapshots.
    pub volatile_names: Vec<(String, String)>,
    /// What the cloud says about itself for the result (the neutron cloud: its
    /// version, the DHCP lease, the security group in force, the agents' start).
    #[serde(default)]
    pub facts: std::collections::BTreeMap<String, serde_json::Value>,
}

/// What a cloud needs from the network plane besides the world of docs/design.md.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// A way out of the cloud edge to the internet (DevStack fetches its sources).
    pub uplink: bool,
    /// The image to boot when the scenario names the default one.
    pub image: Option<&'static str>,
    /// Guest memory at least this (unless `--memory-mib` says otherwise).
    pub memory_mib: u32,
}

/// Where a cloud is built: the guest, the scenario, and the run's directory and id.
pub struct Site<'a> {
    pub guest: &'a dyn Executor,
    pub plan: &'a Plan,
    /// The scenario's rendered local.conf.
    pub local_conf: &'a str,
    pub run_dir: &'a Path,
    pub run_id: &'a str,
    pub renderer: &'a Renderer,
    pub progress: &'a Progress,
}

impl Site<'_> {
    pub fn log(&self, name: &str) -> std::path::PathBuf {
        self.run_dir.join(name)
    }

    /// Keep a rendered file in the run directory, beside the others.
    fn keep_rendered(&self, name: &str, text: &str) -> Result<(), CloudError> {
        let path = self.run_dir.join("rendered").join(name);
        std::fs::create_dir_all(self.run_dir.join("rendered"))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|source| CloudError::Io { path: path.display().to_string(), source })
    }
}

#[async_trait]
pub trait Cloud: Send + Sync {
    fn kind(&self) -> CloudKind;

    fn needs(&self) -> Needs {
        Needs::default()
    }

    /// Right after boot, before the network plane and the host recipe: start what
    /// is slow to start, in the background.
    async fn start_early(&self, _guest: &dyn Executor) -> Result<(), CloudError> {
        Ok(())
    }

    /// After the VM was restored from a prepared state: wait until the cloud
    /// answers as it did when saved.
    async fn resumed(&self, _site: &Site<'_>) -> Result<(), CloudError> {
        Ok(())
    }

    /// Build the cloud and its one instance with a floating IP.
    async fn build(&self, site: &Site<'_>) -> Result<Deployed, CloudError>;

    /// After the guest rebooted: start again what a host's services start at boot
    /// (the agents and the instance), and nothing that stack.sh set at run time.
    async fn after_reboot(&self, _site: &Site<'_>) -> Result<(), CloudError> {
        Err(CloudError::Unsupported(format!(
            "before = \"host_reboot\" on the {} cloud: only the replica reboots yet",
            self.kind().as_str()
        )))
    }

    /// Before a scenario's checks, in the cloud its group built or restored: put
    /// in force what the scenario declares of the cloud beyond that build (the
    /// neutron cloud: the instance's security-group rules), and say so in `d`'s
    /// facts. The seconds it took, when something changed.
    async fn scenario(&self, _site: &Site<'_>, _d: &mut Deployed) -> Result<Option<f64>, CloudError> {
        Ok(None)
    }

    /// Associate or disassociate the instance's floating IP, as the cloud's API
    /// does; the seconds it took to take effect, where the cloud applies it later.
    async fn floating_ip(&self, site: &Site<'_>, action: CloudAction) -> Result<Option<f64>, CloudError>;
}

/// The cloud of each kind: the one place that lists them.
pub fn for_kind(kind: CloudKind) -> Box<dyn Cloud> {
    match kind {
        CloudKind::Replica => Box::new(replica::Replica),
        CloudKind::Devstack => Box::new(devstack::Devstack),
        CloudKind::Neutron => Box::new(neutron::Neutron::default()),
    }
}

/// The verb of the clouds' guest scripts for a floating-IP action.
pub fn fip_verb(action: CloudAction) -> &'static str {
    match action {
        CloudAction::FipDisassociate => "fip-disassociate",
        CloudAction::FipAssociate => "fip-associate",
    }
}

/// A floating-IP action through a cloud's guest script (`SCRIPT fip-associate`).
async fn script_fip(site: &Site<'_>, script: &str, action: CloudAction) -> Result<Option<f64>, CloudError> {
    let verb = fip_verb(action);
    let cmd = Cmd::new([script, verb]).timeout(std::time::Duration::from_secs(120));
    guest_step(site.guest, verb, &cmd, &site.log(&format!("{verb}.log"))).await.map(|_| None)
}

/// Run a step in the guest; its output goes to `log` in the run directory. A
/// non-zero exit is an error with the last lines and the log's path.
pub async fn guest_step(guest: &dyn Executor, step: &str, cmd: &Cmd, log: &Path) -> Result<String, CloudError> {
    let out = guest.run(cmd).await?;
    let text = out.text();
    let _ = std::fs::write(log, &text);
    if out.status != 0 {
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(CloudError::Step { step: step.into(), status: out.status, output: tail.join("\n"), log: log.display().to_string() });
    }
    Ok(text)
}

/// The run-to-run names of a cloud, from the predicted or the allocated ids.
fn volatile_names(router_id: &str, gw: &str, int: &str, vm: &str) -> Vec<(String, String)> {
    [(router_id, "<router-id>"), (gw, "<gw-port>"), (int, "<int-port>"), (vm, "<vm-port>")]
        .into_iter()
        .map(|(id, tag)| (id.to_owned(), tag.to_owned()))
        .collect()
}

/// What the replica takes from local.conf (DevStack's effective values) and the
/// names and addresses Neutron would pick.
#[derive(Debug, Clone, Serialize)]
pub struct CloudValues {
    pub ovs_physical_bridge: String,
    pub physical_network: String,
    pub floating_prefix: u8,
    pub public_gateway: Ipv4Addr,
    /// `Q_ASSIGN_GATEWAY_TO_PUBLIC_BRIDGE` ("True" or "False").
    pub assign_gateway: String,
    /// The router's gateway address: the first of the allocation pool.
    pub router_gw_ip: Ipv4Addr,
    /// The instance's floating IP: the next one.
    pub floating_ip: Ipv4Addr,
    pub fixed_ip: Ipv4Addr,
    pub network_gateway: Ipv4Addr,
    pub fixed_prefix: u8,
    pub mtu: u16,
    pub router_id: String,
    pub gw_port_id: String,
    pub int_port_id: String,
    pub vm_port_id: String,
    pub instance_ns: String,
    /// `NAME=value` lines for templates/devstack-host-steps.sh.
    pub host_env: String,
    /// DevStack's initial networks, as predicted.
    pub networks: localconf::networks::InitialNetworks,
}

fn value(eff: &Effective, name: &str) -> Result<String, CloudError> {
    eff.get(name).filter(|v| !v.is_empty()).map(str::to_owned).ok_or_else(|| CloudError::Value {
        name: name.into(),
        value: String::new(),
        expected: "a value".into(),
    })
}

impl CloudValues {
    /// The values as local.conf predicts them in the scenario's world: DevStack's
    /// effective values and the initial networks as DevStack and Neutron make them.
    pub fn from_local_conf(text: &str, plan: &Plan, run_id: &str) -> Result<CloudValues, CloudError> {
        let conf = localconf::parse(text);
        let eff = localconf::plan::effective(&conf, &plan.world);
        let networks = match localconf::networks::predict(&eff) {
            localconf::networks::Outcome::Created(n) => n,
            other => {
                return Err(CloudError::Value {
                    name: "the initial networks".into(),
                    value: serde_json::to_string(&other).expect("serializable"),
                    expected: "DevStack's private network, router and public network (harness localconf neutron says why not)".into(),
                })
            }
        };
        let host_env = localconf::plan::host_steps(&eff, &localconf::networks::Outcome::Created(networks.clone())).shell();
        let pool_start = networks.public_subnet.allocation_pools.first().map(|(a, _)| *a).ok_or_else(|| CloudError::Value {
            name: "Q_FLOATING_ALLOCATION_POOL".into(),
            value: String::new(),
            expected: "a public allocation pool".into(),
        })?;
        let network_gateway = networks.private_subnet.gateway;
        let mappings = value(&eff, "OVS_BRIDGE_MAPPINGS")?;
        let (physnet, _) = mappings.split(',').next().and_then(|m| m.split_once(':')).ok_or_else(|| CloudError::Value {
            name: "OVS_BRIDGE_MAPPINGS".into(),
            value: mappings.clone(),
            expected: "physnet:bridge".into(),
        })?;
        // Neutron names ports after the first 11 characters of their UUIDs; these
        // are derived from the run id so that each run's names are its own.
        let id = |tag: &str| format!("{tag}{run_id}")[..11].to_owned();
        Ok(CloudValues {
            ovs_physical_bridge: value(&eff, "OVS_PHYSICAL_BRIDGE")?,
            physical_network: physnet.into(),
            floating_prefix: networks.public_subnet.cidr.prefix_len(),
            public_gateway: networks.public_subnet.gateway,
            assign_gateway: value(&eff, "Q_ASSIGN_GATEWAY_TO_PUBLIC_BRIDGE")?,
            router_gw_ip: pool_start,
            floating_ip: Ipv4Addr::from(u32::from(pool_start) + 1),
            fixed_ip: Ipv4Addr::from(u32::from(network_gateway) + 4),
            network_gateway,
            fixed_prefix: networks.private_subnet.cidr.prefix_len(),
            mtu: plan.world.tenant_mtu,
            router_id: format!("{run_id}-0000-4000-8000-000000000001"),
            gw_port_id: id("0a1b2"),
            int_port_id: id("0c3d4"),
            vm_port_id: id("0e5f6"),
            instance_ns: format!("instance-{run_id}"),
            host_env,
            networks: *networks,
        })
    }
}

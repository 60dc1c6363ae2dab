//! Cloud stage: builds the cloud inside the guest, from the scenario's rendered
//! local.conf. `replica` builds Neutron's ML2/OVS + L3 datapath for one router,
//! one tenant network and one instance with real OVS and iptables (runs here);
//! `devstack` runs the real stack.sh (needs the internet: the `.github/` workflow).

use crate::localconf::{self, effective::Effective};
use crate::scenario::{CloudKind, Plan};
use crate::ssh::{Ssh, SshError};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("local.conf: {name} is {value:?}; the replica needs {expected} (run `harness lint` on the rendered local.conf)")]
    Value { name: String, value: String, expected: String },
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("template {0}: {1}")]
    Template(String, String),
    #[error("{step} failed in the guest (exit {status}): {output}\n  the whole output is in {log}")]
    Step { step: String, status: i32, output: String, log: String },
    #[error("the devstack cloud needs the guest to reach {0}; it runs in the .github/ workflow on a KVM runner")]
    NoInternet(String),
}

/// What the replica takes from local.conf (DevStack's effective values) and the
/// names and addresses Neutron would pick.
#[derive(Debug, Clone, Serialize)]
pub struct CloudValues {
    pub public_interface: String,
    pub ovs_physical_bridge: String,
    pub physical_network: String,
    pub floating_prefix: u8,
    pub public_gateway: Ipv4Addr,
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
}

fn value(eff: &Effective, name: &str) -> Result<String, CloudError> {
    eff.get(name).filter(|v| !v.is_empty()).map(str::to_owned).ok_or_else(|| CloudError::Value {
        name: name.into(),
        value: String::new(),
        expected: "a value".into(),
    })
}

fn parsed<T: std::str::FromStr>(eff: &Effective, name: &str, expected: &str) -> Result<T, CloudError> {
    let v = value(eff, name)?;
    v.parse().map_err(|_| CloudError::Value { name: name.into(), value: v, expected: expected.into() })
}

impl CloudValues {
    pub fn from_local_conf(text: &str, plan: &Plan, run_id: &str) -> Result<CloudValues, CloudError> {
        let eff = Effective::evaluate(&localconf::parse(text));
        let floating: Ipv4Net = parsed(&eff, "FLOATING_RANGE", "a CIDR")?;
        let fixed: Ipv4Net = parsed(&eff, "FIXED_RANGE", "a CIDR")?;
        let pool = value(&eff, "Q_FLOATING_ALLOCATION_POOL").unwrap_or_default();
        let pool_start = pool
            .split(',')
            .find_map(|p| p.strip_prefix("start="))
            .and_then(|a| a.parse::<Ipv4Addr>().ok())
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(floating.network()) + 2));
        let network_gateway: Ipv4Addr = parsed(&eff, "NETWORK_GATEWAY", "an IPv4 address")?;
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
            public_interface: value(&eff, "PUBLIC_INTERFACE")?,
            ovs_physical_bridge: value(&eff, "OVS_PHYSICAL_BRIDGE")?,
            physical_network: physnet.into(),
            floating_prefix: floating.prefix_len(),
            public_gateway: parsed(&eff, "PUBLIC_NETWORK_GATEWAY", "an IPv4 address")?,
            router_gw_ip: pool_start,
            floating_ip: Ipv4Addr::from(u32::from(pool_start) + 1),
            fixed_ip: Ipv4Addr::from(u32::from(network_gateway) + 4),
            network_gateway,
            fixed_prefix: fixed.prefix_len(),
            mtu: plan.world.tenant_mtu,
            router_id: format!("{run_id}-0000-4000-8000-000000000001"),
            gw_port_id: id("0a1b2"),
            int_port_id: id("0c3d4"),
            vm_port_id: id("0e5f6"),
            instance_ns: format!("instance-{run_id}"),
        })
    }
}

pub fn render_replica(plan: &Plan, values: &CloudValues, templates: Option<&std::path::Path>) -> Result<String, CloudError> {
    crate::render::Renderer::new(templates)
        .and_then(|r| r.render_extra(crate::render::REPLICA, plan, values))
        .map_err(|e| CloudError::Template("replica.sh".into(), e.to_string()))
}

/// Run a script step in the guest; its output goes to `log` in the run directory.
pub async fn guest_step(ssh: &Ssh, step: &str, command: &str, timeout: Duration, log: &std::path::Path) -> Result<String, CloudError> {
    let out = ssh.exec(command, timeout).await?;
    let text = format!("{}{}", out.stdout, out.stderr);
    let _ = std::fs::write(log, &text);
    if out.status != 0 {
        let tail: Vec<&str> = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(CloudError::Step { step: step.into(), status: out.status, output: tail.join("\n"), log: log.display().to_string() });
    }
    Ok(text)
}

/// Build the scenario's cloud in the guest.
pub async fn build(
    plan: &Plan,
    kind: CloudKind,
    values: &CloudValues,
    ssh: &Ssh,
    run_dir: &std::path::Path,
    templates: Option<&std::path::Path>,
) -> Result<(), CloudError> {
    match kind {
        CloudKind::Replica => {
            let script = render_replica(plan, values, templates)?;
            let _ = std::fs::write(run_dir.join("rendered/replica.sh"), &script);
            ssh.upload(script.into_bytes(), "/usr/local/sbin/harness-replica", 0o755).await?;
            guest_step(
                ssh,
                "replica build",
                "/usr/local/sbin/harness-replica build 2>&1",
                Duration::from_secs(300),
                &run_dir.join("cloud.log"),
            )
            .await?;
            Ok(())
        }
        CloudKind::Devstack => Err(CloudError::NoInternet(plan.devstack.git_base.clone())),
    }
}

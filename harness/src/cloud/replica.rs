//! The replica cloud: replica.sh, rendered from the local.conf's effective values,
//! builds Neutron's ML2/OVS + L3 datapath for one router, one tenant network and
//! one instance (a namespace) with real Open vSwitch and iptables. Fast, and not
//! Neutron: every report says "replica".

use super::{guest_step, script_fip, volatile_names, Cloud, CloudError, CloudValues, Deployed, Site};
use crate::exec::{Cmd, Executor};
use crate::scenario::{CloudAction, CloudKind};
use crate::scripts::GUEST_PROBE;
use async_trait::async_trait;
use std::time::Duration;

pub const SCRIPT: &str = "/usr/local/sbin/harness-replica";

pub struct Replica;

#[async_trait]
impl Cloud for Replica {
    fn kind(&self) -> CloudKind {
        CloudKind::Replica
    }

    /// Open vSwitch takes 15-20 s to start under TCG: started now, in the
    /// background, while the network plane and the host recipe are set up; the
    /// build waits for it.
    async fn start_early(&self, guest: &dyn Executor) -> Result<(), CloudError> {
        guest.run(&Cmd::new(["systemctl", "start", "--no-block", "openvswitch-switch.service"]).timeout(Duration::from_secs(30))).await?;
        Ok(())
    }

    async fn build(&self, site: &Site<'_>) -> Result<Deployed, CloudError> {
        let v = CloudValues::from_local_conf(site.local_conf, site.plan, site.run_id)?;
        let script = site
            .renderer
            .render_extra(crate::render::REPLICA, site.plan, &v)
            .map_err(|e| CloudError::Template("replica.sh".into(), e.to_string()))?;
        site.keep_rendered("replica.sh", &script)?;
        site.guest.upload(script.as_bytes(), SCRIPT, 0o755).await?;
        let build = Cmd::new([SCRIPT, "build"]).timeout(Duration::from_secs(300));
        guest_step(site.guest, "replica build", &build, &site.log("cloud.log")).await?;
        Ok(Deployed {
            floating_ip: v.floating_ip,
            fixed_ip: v.fixed_ip,
            network_gateway: v.network_gateway,
            router_gw_ip: v.router_gw_ip,
            instance_probe: vec!["ip".into(), "netns".into(), "exec".into(), v.instance_ns.clone(), GUEST_PROBE.into()],
            volatile_names: volatile_names(&v.router_id, &v.gw_port_id, &v.int_port_id, &v.vm_port_id),
        })
    }

    async fn floating_ip(&self, site: &Site<'_>, action: CloudAction) -> Result<(), CloudError> {
        script_fip(site, SCRIPT, action).await
    }
}

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
            // The names carry the run id the guest was built in (a restored guest keeps it).
            volatile_names: volatile_names(&v.router_id, &v.gw_port_id, &v.int_port_id, &v.vm_port_id)
                .into_iter()
                .chain([(site.run_id.to_owned(), "<run>".to_owned())])
                .collect(),
            facts: Default::default(),
        })
    }

    async fn after_reboot(&self, site: &Site<'_>) -> Result<(), CloudError> {
        let agents = Cmd::new([SCRIPT, "after-reboot"]).timeout(Duration::from_secs(300));
        guest_step(site.guest, "replica agents after the reboot", &agents, &site.log("cloud-after-reboot.log")).await?;
        Ok(())
    }

    async fn floating_ip(&self, site: &Site<'_>, action: CloudAction) -> Result<Option<f64>, CloudError> {
        script_fip(site, SCRIPT, action).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::fake::Recorder;

    #[tokio::test]
    async fn builds_from_the_local_conf_and_answers_with_its_addresses() {
        let plan = crate::scenario::load(std::path::Path::new("../scenarios/instance-egress.toml")).expect("scenario");
        let renderer = crate::render::Renderer::new(None).expect("templates");
        let local_conf = renderer.local_conf(&plan).expect("local.conf");
        let guest = Recorder::new("guest");
        let dir = tempfile::tempdir().expect("tempdir");
        let progress = crate::progress::Progress::new(true);
        let site = Site {
            guest: &guest,
            plan: &plan,
            local_conf: &local_conf,
            run_dir: dir.path(),
            run_id: "abcd1234",
            renderer: &renderer,
            progress: &progress,
        };
        let d = Replica.build(&site).await.expect("build");
        // The pool's first address is the router's, the next the instance's floating IP.
        assert_eq!((d.router_gw_ip.to_string(), d.floating_ip.to_string()), (plan.world.pool_start.to_string(), "192.168.100.101".into()));
        assert_eq!(d.instance_probe, ["ip", "netns", "exec", "instance-abcd1234", crate::scripts::GUEST_PROBE]);
        assert!(d.volatile_names.iter().any(|(id, tag)| id.starts_with("abcd1234") && tag == "<router-id>"), "{:?}", d.volatile_names);
        assert_eq!(guest.transcript(), [format!("upload {SCRIPT} (mode 755)"), format!("run {SCRIPT} build")]);
        let script = std::fs::read_to_string(dir.path().join("rendered/replica.sh")).expect("kept");
        assert!(script.contains("FIP=192.168.100.101"), "{script}");

        Replica.floating_ip(&site, CloudAction::FipDisassociate).await.expect("fip");
        assert_eq!(guest.transcript().last().map(String::as_str), Some(format!("run {SCRIPT} fip-disassociate").as_str()));

        // A local.conf the replica cannot read is bad input, before anything runs.
        let broken = local_conf.replace("FLOATING_RANGE=", "FLOATING_RANGE=nonsense#");
        let site = Site { local_conf: &broken, ..site };
        let e = Replica.build(&site).await.expect_err("bad FLOATING_RANGE");
        assert!(e.is_bad_input() && e.to_string().contains("FLOATING_RANGE"), "{e}");
    }
}

//! The world a scenario runs in (docs/design.md, "The world"): every address and
//! name of the cloud VM, its provider network, the tenant network and the
//! internet around it. Plain data; `scenario` fills it from a file with defaults,
//! and `localconf::lint` judges a local.conf against it.

use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;

/// The world of one scenario, every value typed.
#[derive(Debug, Clone, Serialize)]
pub struct World {
    pub public_ip: Ipv4Addr,
    pub guest_nic: String,
    pub guest_address: Ipv4Net,
    pub guest_gateway: Ipv4Addr,
    pub hostname: String,
    pub provider_bridge: String,
    /// Whether the host recipe makes the Linux bridge (`[host_recipe] bridge`); without
    /// it br-ex itself is the provider network, as in DevStack's all-in-one.
    pub provider_bridge_made: bool,
    /// Whether the host recipe turns forwarding on (`[host_recipe] ip_forward`).
    pub recipe_ip_forward: bool,
    pub provider_address: Ipv4Net,
    pub floating_range: Ipv4Net,
    pub public_gateway: Ipv4Addr,
    pub pool_start: Ipv4Addr,
    pub pool_end: Ipv4Addr,
    pub ovs_bridge: String,
    pub physical_network: String,
    pub fixed_range: Ipv4Net,
    pub fixed_gateway: Ipv4Addr,
    pub tenant_network_type: String,
    pub tenant_mtu: u16,
    pub internet_edge: Ipv4Net,
    pub internet_client: Ipv4Addr,
    pub internet_responder: Ipv4Addr,
}

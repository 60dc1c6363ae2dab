//! The initial networks DevStack makes (`create_neutron_initial_network`, in
//! lib/neutron_plugins/services/l3), IPv4, with the address arithmetic Neutron
//! does for them: the private subnet comes from the subnet pool DevStack makes on
//! `SUBNETPOOL_PREFIX_V4` (by default `IPV4_ADDRS_SAFE_TO_USE`, /26 prefixes) unless
//! `USE_SUBNETPOOL=False`, and `FIXED_RANGE` is then not used at all. The
//! DevStack-oracle test (tests/devstack_oracle.rs) holds this against DevStack's own
//! function run on the same local.conf.

use super::effective::Effective;
use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubnetPool {
    pub name: String,
    pub prefix: Ipv4Net,
    pub default_prefixlen: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subnet {
    pub name: String,
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Where instances' (or floating IPs') addresses come from.
    pub allocation_pools: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// The pool the CIDR was allocated from, if any.
    pub subnet_pool: Option<String>,
    pub enable_dhcp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicNetwork {
    pub name: String,
    /// `flat` (or `PUBLIC_PROVIDERNET_TYPE`) with `Q_USE_PROVIDERNET_FOR_PUBLIC`,
    /// else none (the tenant network type Neutron picks).
    pub network_type: Option<String>,
    pub physical_network: Option<String>,
    pub segmentation_id: Option<String>,
}

/// What `create_neutron_initial_network` leaves in Neutron (IPv4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitialNetworks {
    pub subnet_pool: Option<SubnetPool>,
    pub private_network: String,
    pub private_subnet: Subnet,
    pub router: String,
    pub public_network: PublicNetwork,
    pub public_subnet: Subnet,
}

/// Why DevStack's run would stop there: stack.sh dies on Neutron's refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The variable whose value Neutron refused.
    pub variable: &'static str,
    /// Neutron's reason, as its API words it.
    pub reason: String,
}

/// The outcome for a local.conf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Created(Box<InitialNetworks>),
    /// `NEUTRON_CREATE_INITIAL_NETWORKS` is not True or no q-svc runs here.
    NotCreated {
        why: String,
    },
    Refused(Refusal),
    /// DevStack builds something this cloud does not (the provider-network topology).
    Unsupported {
        variable: &'static str,
        why: String,
    },
}

/// Neutron's default allocation pools (neutron/ipam/utils.py `generate_pools`):
/// every address but the network's and the broadcast, less the gateway.
pub fn default_pools(cidr: Ipv4Net, gateway: Ipv4Addr) -> Vec<(Ipv4Addr, Ipv4Addr)> {
    let (first, last) = (u32::from(cidr.network()) + 1, u32::from(cidr.broadcast()).saturating_sub(1));
    if first > last {
        return vec![];
    }
    let gw = u32::from(gateway);
    let spans = if (first..=last).contains(&gw) { vec![(first, gw.wrapping_sub(1)), (gw + 1, last)] } else { vec![(first, last)] };
    spans.into_iter().filter(|(a, b)| a <= b && *b >= first && *a <= last).map(|(a, b)| (Ipv4Addr::from(a), Ipv4Addr::from(b))).collect()
}

/// `Q_FLOATING_ALLOCATION_POOL`'s `start=A,end=B`.
pub fn parse_pool(raw: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let mut start = None;
    let mut end = None;
    for part in raw.split(',') {
        match part.split_once('=') {
            Some(("start", v)) => start = v.trim().parse::<Ipv4Addr>().ok(),
            Some(("end", v)) => end = v.trim().parse::<Ipv4Addr>().ok(),
            _ => {}
        }
    }
    Some((start?, end?))
}

/// The gateway Neutron gives a subnet created without one: its first address.
pub fn default_gateway(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.trunc().network()) + 1)
}

fn net(eff: &Effective, name: &'static str) -> Result<Ipv4Net, Refusal> {
    let raw = eff.get(name).unwrap_or("");
    raw.trim_matches('"')
        .parse::<Ipv4Net>()
        .map(|n| n.trunc())
        .map_err(|_| Refusal { variable: name, reason: format!("Invalid input for cidr: '{raw}' is not a valid IP subnet.") })
}

fn addr(eff: &Effective, name: &'static str) -> Result<Option<Ipv4Addr>, Refusal> {
    let raw = eff.get(name).unwrap_or("").trim_matches('"');
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<Ipv4Addr>()
        .map(Some)
        .map_err(|_| Refusal { variable: name, reason: format!("Invalid input for gateway_ip: '{raw}' is not a valid IP address.") })
}

/// A gateway Neutron's IPAM refuses inside a CIDR: its network or broadcast address.
fn check_gateway(variable: &'static str, cidr: Ipv4Net, gateway: Ipv4Addr) -> Result<(), Refusal> {
    if gateway == cidr.network() || gateway == cidr.broadcast() {
        return Err(Refusal {
            variable,
            reason: format!("Invalid input for operation: Gateway IP {gateway} cannot be allocated in CIDR {cidr}."),
        });
    }
    Ok(())
}

/// DevStack's initial networks for these effective values.
pub fn predict(eff: &Effective) -> Outcome {
    if eff.get("NEUTRON_CREATE_INITIAL_NETWORKS") != Some("True") {
        return Outcome::NotCreated { why: "NEUTRON_CREATE_INITIAL_NETWORKS is not True".into() };
    }
    // stack.sh: `is_service_enabled q-svc neutron-api`.
    if !eff.service_enabled("q-svc") && !eff.service_enabled("neutron-api") {
        return Outcome::NotCreated { why: "q-svc is not enabled on this host".into() };
    }
    if eff.get("Q_USE_PROVIDER_NETWORKING") == Some("True") {
        return Outcome::Unsupported {
            variable: "Q_USE_PROVIDER_NETWORKING",
            why: "DevStack then makes a shared provider network named after PHYSICAL_NETWORK instead of the private network and router"
                .into(),
        };
    }
    match created(eff) {
        Ok(n) => Outcome::Created(Box::new(n)),
        Err(r) => Outcome::Refused(r),
    }
}

fn created(eff: &Effective) -> Result<InitialNetworks, Refusal> {
    let v = |name: &str| eff.get(name).unwrap_or("").to_owned();
    // _neutron_create_private_subnet_v4, with Neutron's subnet allocation
    // (neutron/ipam/requests.py SubnetRequestFactory, subnet_alloc.py).
    let subnet_pool = if v("USE_SUBNETPOOL") == "True" {
        let len = v("SUBNETPOOL_SIZE_V4");
        Some(SubnetPool {
            name: v("SUBNETPOOL_NAME_V4"),
            prefix: net(eff, "SUBNETPOOL_PREFIX_V4")?,
            default_prefixlen: len.parse().map_err(|_| Refusal {
                variable: "SUBNETPOOL_SIZE_V4",
                reason: format!("Invalid input for default_prefixlen: '{len}' is not an integer."),
            })?,
        })
    } else {
        None
    };
    let network_gateway = addr(eff, "NETWORK_GATEWAY")?;
    let (cidr, gateway) = match &subnet_pool {
        Some(pool) => {
            if pool.default_prefixlen < pool.prefix.prefix_len() || pool.default_prefixlen > 32 {
                return Err(Refusal {
                    variable: "SUBNETPOOL_SIZE_V4",
                    reason: format!(
                        "Failed to allocate subnet: Insufficient prefix space to allocate subnet size /{}.",
                        pool.default_prefixlen
                    ),
                });
            }
            match network_gateway {
                // A gateway without a CIDR asks for the gateway's own prefix.
                Some(g) => {
                    let cidr = Ipv4Net::new(g, pool.default_prefixlen).expect("length checked").trunc();
                    if !pool.prefix.contains(&cidr) {
                        return Err(Refusal {
                            variable: "NETWORK_GATEWAY",
                            reason: format!(
                                "Failed to allocate subnet: Cannot allocate requested subnet from the available set of prefixes \
                                 (NETWORK_GATEWAY {g} asks for {cidr}, outside the subnet pool {})",
                                pool.prefix
                            ),
                        });
                    }
                    (cidr, g)
                }
                None => {
                    let cidr = Ipv4Net::new(pool.prefix.network(), pool.default_prefixlen).expect("length checked");
                    (cidr, default_gateway(cidr))
                }
            }
        }
        None => {
            let cidr = net(eff, "FIXED_RANGE")?;
            (cidr, network_gateway.unwrap_or_else(|| default_gateway(cidr)))
        }
    };
    check_gateway("NETWORK_GATEWAY", cidr, gateway)?;
    let private_subnet = Subnet {
        name: v("PRIVATE_SUBNET_NAME"),
        cidr,
        gateway,
        allocation_pools: default_pools(cidr, gateway),
        subnet_pool: subnet_pool.as_ref().map(|p| p.name.clone()),
        enable_dhcp: true,
    };

    // The external network and _neutron_create_public_subnet_v4.
    let providernet = v("Q_USE_PROVIDERNET_FOR_PUBLIC") == "True";
    let public_network = PublicNetwork {
        name: v("PUBLIC_NETWORK_NAME"),
        network_type: providernet.then(|| eff.get("PUBLIC_PROVIDERNET_TYPE").filter(|s| !s.is_empty()).unwrap_or("flat").to_owned()),
        physical_network: providernet.then(|| v("PUBLIC_PHYSICAL_NETWORK")),
        segmentation_id: eff.get("PUBLIC_PROVIDERNET_SEGMENTATION_ID").filter(|s| providernet && !s.is_empty()).map(str::to_owned),
    };
    let floating = net(eff, "FLOATING_RANGE")?;
    let public_gateway = addr(eff, "PUBLIC_NETWORK_GATEWAY")?.unwrap_or_else(|| default_gateway(floating));
    check_gateway("PUBLIC_NETWORK_GATEWAY", floating, public_gateway)?;
    let raw_pool = v("Q_FLOATING_ALLOCATION_POOL");
    let allocation_pools = if raw_pool.is_empty() {
        default_pools(floating, public_gateway)
    } else {
        let (s, e) = parse_pool(raw_pool.trim_matches('"')).ok_or(Refusal {
            variable: "Q_FLOATING_ALLOCATION_POOL",
            reason: format!("Invalid input for allocation_pools: {raw_pool:?} is not start=ADDRESS,end=ADDRESS."),
        })?;
        if !floating.contains(&s) || !floating.contains(&e) || s > e {
            return Err(Refusal {
                variable: "Q_FLOATING_ALLOCATION_POOL",
                reason: format!("The allocation pool {s}-{e} spans beyond the subnet cidr {floating}."),
            });
        }
        if (s..=e).contains(&public_gateway) {
            return Err(Refusal {
                variable: "Q_FLOATING_ALLOCATION_POOL",
                reason: format!("Gateway ip {public_gateway} conflicts with allocation pool {s}-{e}."),
            });
        }
        vec![(s, e)]
    };
    Ok(InitialNetworks {
        subnet_pool,
        private_network: v("PRIVATE_NETWORK_NAME"),
        private_subnet,
        router: v("Q_ROUTER_NAME"),
        public_network,
        public_subnet: Subnet {
            name: v("PUBLIC_SUBNET_NAME"),
            cidr: floating,
            gateway: public_gateway,
            allocation_pools,
            subnet_pool: None,
            enable_dhcp: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localconf::parse::parse;

    fn outcome(localrc: &str) -> Outcome {
        let conf = parse(&format!("[[local|localrc]]\nenable_service q-svc\n{localrc}"));
        predict(&Effective::evaluate(&conf))
    }

    fn private(localrc: &str) -> (String, String) {
        match outcome(localrc) {
            Outcome::Created(n) => (n.private_subnet.cidr.to_string(), n.private_subnet.gateway.to_string()),
            other => panic!("expected networks, saw {other:?}"),
        }
    }

    #[test]
    fn the_private_subnet_comes_from_the_pool_not_fixed_range() {
        assert_eq!(private("FIXED_RANGE=10.4.128.0/20\n"), ("10.0.0.0/26".into(), "10.0.0.1".into()));
        assert_eq!(private("NETWORK_GATEWAY=10.0.1.1\n"), ("10.0.1.0/26".into(), "10.0.1.1".into()));
        assert_eq!(private("USE_SUBNETPOOL=False\nFIXED_RANGE=10.4.128.0/20\n"), ("10.4.128.0/20".into(), "10.4.128.1".into()));
        match outcome("NETWORK_GATEWAY=15.0.0.1\nFIXED_RANGE=15.0.0.0/24\n") {
            Outcome::Refused(r) => {
                assert_eq!(r.variable, "NETWORK_GATEWAY");
                assert!(r.reason.contains("Cannot allocate requested subnet"), "{}", r.reason);
            }
            other => panic!("expected Neutron's refusal, saw {other:?}"),
        }
    }

    #[test]
    fn public_gateway_and_pool_default_as_neutron_makes_them() {
        let Outcome::Created(n) = outcome("FLOATING_RANGE=192.168.100.0/24\n") else { panic!() };
        assert_eq!(n.public_subnet.gateway.to_string(), "192.168.100.1");
        assert_eq!(n.public_subnet.allocation_pools, vec![("192.168.100.2".parse().unwrap(), "192.168.100.254".parse().unwrap())]);
        assert_eq!(
            default_pools("10.0.0.0/29".parse().unwrap(), "10.0.0.3".parse().unwrap()),
            vec![("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()), ("10.0.0.4".parse().unwrap(), "10.0.0.6".parse().unwrap())]
        );
        assert!(matches!(outcome("NEUTRON_CREATE_INITIAL_NETWORKS=False\n"), Outcome::NotCreated { .. }));
    }
}

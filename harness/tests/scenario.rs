//! The scenario loader: defaults are the world of docs/design.md, and every bad input
//! is an error naming the file, line and column and what was expected.

use harness::scenario::{self, CheckKind, Endpoint, Expect, Target};
use std::net::Ipv4Addr;
use std::path::Path;

fn err(text: &str) -> String {
    scenario::parse(Path::new("bad.toml"), text).expect_err("must be rejected").to_string()
}

#[test]
fn defaults_are_the_design_world() {
    let plan = scenario::parse(Path::new("x/empty.toml"), "").expect("empty scenario is the default world");
    let w = &plan.world;
    assert_eq!(plan.name, "empty");
    assert_eq!(w.public_ip, Ipv4Addr::new(203, 0, 113, 10));
    assert_eq!(w.guest_address.to_string(), "192.168.0.10/24");
    assert_eq!(w.guest_gateway, Ipv4Addr::new(192, 168, 0, 1));
    assert_eq!(w.provider_bridge, "mybr0");
    assert_eq!(w.provider_address.to_string(), "192.168.100.1/24");
    assert_eq!(w.floating_range.to_string(), "192.168.100.0/24");
    assert_eq!(w.fixed_range.to_string(), "10.0.0.0/24");
    assert_eq!(w.internet_client, Ipv4Addr::new(198, 51, 100, 10));
    assert_eq!(w.internet_responder, Ipv4Addr::new(198, 51, 100, 20));
    assert!(plan.host_recipe.masquerade && plan.host_recipe.forward && plan.host_recipe.lo_public_ip);
    assert_eq!(plan.vm.image, "debian-12");
}

#[test]
fn every_shipped_scenario_loads() {
    let dirs =
        [std::fs::read_dir("../scenarios").expect("scenarios"), std::fs::read_dir("../scenarios/neutron").expect("scenarios/neutron")];
    for entry in dirs.into_iter().flatten() {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            continue;
        }
        let plan = scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!plan.checks.is_empty(), "{} declares no check", path.display());
    }
}

#[test]
fn checks_are_typed() {
    let plan = scenario::parse(
        Path::new("c.toml"),
        "[[check]]\nkind = \"tcp\"\nfrom = \"instance\"\nto = \"responder\"\nport = 80\nseen_as = \"public_ip\"\n\n[[check]]\nkind = \"icmp\"\nfrom = \"host\"\nto = \"192.168.100.150\"\nexpect = \"unreachable\"\n",
    )
    .expect("valid");
    let c = &plan.checks[0];
    assert_eq!(
        (c.kind, c.from, c.to.clone(), c.port, c.expect),
        (CheckKind::Tcp, Endpoint::Instance, Target::Responder, Some(80), Expect::Reachable)
    );
    assert_eq!(c.seen_as, Some(Target::PublicIp));
    assert_eq!(c.name, "tcp instance -> responder:80");
    assert_eq!(plan.checks[1].to, Target::Address(Ipv4Addr::new(192, 168, 100, 150)));
}

#[test]
fn errors_name_file_line_and_column() {
    let e = err("[guest]\npublic_ip = \"203.0.113.300\"\n");
    assert!(e.starts_with("bad.toml:2:13: expected an IPv4 address"), "{e}");
    let e = err("[provider]\nbrige = \"mybr0\"\n");
    assert!(e.starts_with("bad.toml:2:1: unknown field `brige`"), "{e}");
    let e = err("name = \"x\"\n\n[[check]]\nkind = \"icmp\"\nfrom = \"moon\"\nto = \"gateway\"\n");
    assert!(e.starts_with("bad.toml:5:8: expected one of internet, host, instance"), "{e}");
    let e = err("[[check]]\nkind = \"icmp\"\nfrom = \"host\"\nto = \"gateway\"\nport = 22\n");
    assert!(e.starts_with("bad.toml:5:8: expected no port"), "{e}");
    let e = err("[vm]\nmemory_mib = \"lots\"\n");
    assert!(e.starts_with("bad.toml:2:14:"), "{e}");
}

#[test]
fn relations_between_addresses() {
    let cases: &[(&str, &str)] = &[
        (
            "[provider]\nfloating_range = \"192.168.200.0/24\"\n",
            "bad.toml:2:18: expected the floating range to be the provider bridge's subnet",
        ),
        ("[provider]\ngateway = \"192.168.100.2\"\n", "bad.toml:2:11: expected the public gateway to be the provider bridge's address"),
        ("[provider]\npool_start = \"192.168.101.5\"\n", "bad.toml:2:14: expected an address inside the floating range"),
        ("[provider]\npool_start = \"192.168.100.1\"\n", "bad.toml:2:14: expected the allocation pool"),
        ("[provider]\npool_start = \"192.168.100.50\"\npool_end = \"192.168.100.40\"\n", "bad.toml:3:12: expected the pool end"),
        (
            "[tenant]\nfixed_range = \"192.168.100.0/25\"\n",
            "bad.toml:2:15: expected the fixed range to be disjoint from the provider subnet",
        ),
        ("[tenant]\nfixed_range = \"192.168.0.0/16\"\n", "bad.toml:2:15: expected the fixed range to be disjoint"),
        ("[guest]\npublic_ip = \"10.0.0.5\"\n", "bad.toml:2:13: expected the public IP to lie outside the fixed subnet"),
        ("[tenant]\nfixed_range = \"10.0.0.1/24\"\n", "bad.toml:2:15: expected a network with no host bits set"),
    ];
    for (text, want) in cases {
        let e = err(text);
        assert!(e.starts_with(want), "for {text:?}\n got: {e}\nwant: {want}");
    }
}

#[test]
fn error_for_a_default_value_points_at_what_made_it_wrong() {
    // The pool is a default; changing the bridge makes it wrong. The error says so.
    let e = err("[provider]\naddress = \"192.168.50.1/24\"\nfloating_range = \"192.168.50.0/24\"\ngateway = \"192.168.50.1\"\n");
    assert!(e.starts_with("bad.toml:1:1: expected an address inside the floating range 192.168.50.0/24"), "{e}");
    assert!(e.contains("this is the default of `provider.pool_start`"), "{e}");
}

#[test]
fn missing_user_local_conf_is_an_error_at_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "[devstack]\nlocal_conf = \"nope.conf\"\n").expect("write");
    let e = scenario::load(&path).expect_err("missing file").to_string();
    assert!(e.contains("s.toml:2:14: cannot read local.conf") && e.contains("nope.conf"), "{e}");
}

#[test]
fn security_groups_default_to_tempests_and_declared_rules_are_validated() {
    // No rules declared: egress open, ingress ICMP and SSH, plus what checks and
    // forwards reach the instance on from outside.
    let plan = scenario::load(Path::new("../scenarios/floating-ip-ingress.toml")).expect("scenario");
    let rules = plan.security_group();
    assert!(plan.security_group_rules.is_none());
    assert_eq!((rules[0].direction, rules[0].protocol), ("egress", None));
    assert!(rules.iter().any(|r| r.direction == "ingress" && r.protocol == Some("icmp")));
    let ssh = rules.iter().filter(|r| r.protocol == Some("tcp") && r.port_range_min == Some(22)).count();
    assert_eq!(ssh, 1, "SSH once, though several checks probe it: {rules:?}");
    // Checks from the instance open nothing inbound.
    let egress = scenario::load(Path::new("../scenarios/instance-egress.toml")).expect("scenario");
    assert_eq!(egress.security_group().len(), 3, "{:?}", egress.security_group());

    let text = "[[security_group_rule]]\nprotocol = \"icmp\"\n[[security_group_rule]]\ndirection = \"egress\"\n[[check]]\nkind = \"icmp\"\nfrom = \"host\"\nto = \"floating_ip\"\n";
    let plan = scenario::parse(Path::new("sg.toml"), text).expect("valid rules");
    let rules = plan.security_group();
    assert_eq!(rules.len(), 2, "declared rules replace the default: {rules:?}");
    assert_eq!((rules[0].direction, rules[0].protocol, rules[0].remote_ip_prefix.as_deref()), ("ingress", Some("icmp"), None));

    let e = err("[[security_group_rule]]\nprotocol = \"icmp\"\nport = 22\n");
    assert!(e.contains("bad.toml:3") && e.contains("ports only with protocol tcp or udp"), "{e}");
    let e = err("[[security_group_rule]]\ndirection = \"inbound\"\n");
    assert!(e.contains("bad.toml:2") && e.contains("expected ingress or egress"), "{e}");
    let e = err("[[security_group_rule]]\nprotocol = \"tcp\"\nremote_ip_prefix = \"10.0.0.0/33\"\n");
    assert!(e.contains("bad.toml:3") && e.contains("IPv4 CIDR"), "{e}");
}

#[test]
fn the_instance_runs_on_host_1_or_2_and_there_is_one() {
    let plan = scenario::parse(Path::new("i.toml"), "[[instance]]\nhost = 2\n").expect("host 2");
    assert_eq!(plan.instance_host, 2);
    assert_eq!(scenario::parse(Path::new("i.toml"), "").expect("default").instance_host, 1);
    let e = err("[[instance]]\nhost = 3\n");
    assert!(e.contains("bad.toml:2") && e.contains("expected host 1 or 2"), "{e}");
    let e = err("[[instance]]\n[[instance]]\nhost = 2\n");
    assert!(e.contains("expected one [[instance]]"), "{e}");
}

#[test]
fn faults_are_off_unless_switched_on_and_an_instance_mtu_is_checked() {
    let plan = scenario::parse(Path::new("f.toml"), "[faults]\nrp_filter_strict = true\ninstance_mtu = 1500\n").expect("faults");
    assert!(plan.faults.rp_filter_strict && !plan.faults.ip_forward_off);
    assert_eq!(plan.faults.instance_mtu, Some(1500));
    assert_eq!(scenario::parse(Path::new("f.toml"), "").expect("default").faults.instance_mtu, None);
    let e = err("[faults]\ninstance_mtu = 100\n");
    assert!(e.starts_with("bad.toml:2:16: expected an MTU between 576 and 9000, found 100"), "{e}");
    let e = err("[faults]\nrp_filter = true\n");
    assert!(e.starts_with("bad.toml:2:1: unknown field `rp_filter`"), "{e}");
}

//! Each lint rule: a file that breaks it gets the rule at the right line, and the
//! harness's own rendered local.conf (the good case) gets no diagnostic at all.

use harness::keys::RunKeys;
use harness::localconf::{self, Diagnostic, Severity};
use harness::render::Renderer;
use harness::scenario::{self, World};
use std::path::Path;

/// The local.conf the harness renders for the default world.
fn good() -> String {
    let plan = scenario::parse(Path::new("default.toml"), "").expect("default scenario");
    let keys = RunKeys::from_seed(1).expect("keys");
    Renderer::new(None).expect("templates").render(&plan, "lint-test", &keys).expect("render").local_conf
}

fn lint(text: &str) -> Vec<Diagnostic> {
    localconf::lint(&localconf::parse(text), &World::default())
}

/// Replace the line starting with `prefix` (or append under the localrc header).
fn with(prefix: &str, replacement: &str) -> String {
    let base = good();
    let mut found = false;
    let mut out: Vec<String> = base
        .lines()
        .map(|l| {
            if !found && l.starts_with(prefix) {
                found = true;
                replacement.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    if !found {
        out.insert(1, replacement.to_owned());
    }
    out.join("\n") + "\n"
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.starts_with(needle)).expect("needle present") + 1
}

fn has(diags: &[Diagnostic], rule: &str, line: usize) -> bool {
    diags.iter().any(|d| d.rule == rule && d.line == line && d.severity == Severity::Error)
}

#[test]
fn rendered_local_conf_is_clean() {
    let diags = lint(&good());
    assert!(diags.is_empty(), "{diags:#?}");
}

#[test]
fn floating_range_and_gateway() {
    let t = with("FLOATING_RANGE=", "FLOATING_RANGE=172.24.4.0/24");
    assert!(has(&lint(&t), "floating-range", line_of(&t, "FLOATING_RANGE=")));
    let t = with("PUBLIC_NETWORK_GATEWAY=", "PUBLIC_NETWORK_GATEWAY=192.168.100.254");
    assert!(has(&lint(&t), "public-gateway", line_of(&t, "PUBLIC_NETWORK_GATEWAY=")));
    // Removing the line falls back to DevStack's default 172.24.4.0/24.
    let t = with("FLOATING_RANGE=", "# no floating range");
    let d = lint(&t);
    assert!(d.iter().any(|d| d.rule == "floating-range" && d.message.contains("DevStack's default")), "{d:#?}");
}

#[test]
fn allocation_pool() {
    for pool in
        ["start=192.168.101.10,end=192.168.101.20", "start=192.168.100.200,end=192.168.100.100", "start=192.168.100.1,end=192.168.100.50"]
    {
        let t = with("Q_FLOATING_ALLOCATION_POOL=", &format!("Q_FLOATING_ALLOCATION_POOL={pool}"));
        assert!(has(&lint(&t), "allocation-pool", line_of(&t, "Q_FLOATING_ALLOCATION_POOL=")), "{pool}");
    }
    let t = with("Q_FLOATING_ALLOCATION_POOL=", "Q_FLOATING_ALLOCATION_POOL=192.168.100.10-192.168.100.20");
    assert!(has(&lint(&t), "malformed-address", line_of(&t, "Q_FLOATING_ALLOCATION_POOL=")));
}

#[test]
fn bridges_disagreeing() {
    let t = with("OVS_BRIDGE_MAPPINGS=", "OVS_BRIDGE_MAPPINGS=public:br-eth1");
    assert!(has(&lint(&t), "bridge-mappings", line_of(&t, "OVS_BRIDGE_MAPPINGS=")));
    let t = with("PUBLIC_BRIDGE=", "PUBLIC_BRIDGE=br-ext");
    assert!(has(&lint(&t), "bridge-mappings", line_of(&t, "PUBLIC_BRIDGE=")));
    let t = with("OVS_BRIDGE_MAPPINGS=", "OVS_BRIDGE_MAPPINGS=physnet1:br-ex");
    assert!(has(&lint(&t), "bridge-mappings", line_of(&t, "OVS_BRIDGE_MAPPINGS=")));
}

/// Both other modes build as DevStack builds them: warned with what DevStack does
/// to this host, never refused.
#[test]
fn public_interface() {
    let warned = |t: &str, line: usize| -> String {
        let diags = lint(t);
        assert!(diags.iter().all(|d| d.severity != Severity::Error), "{diags:#?}");
        let d = diags.iter().find(|d| d.rule == "public-interface").unwrap_or_else(|| panic!("no public-interface in {diags:#?}"));
        assert_eq!((d.severity, d.line), (Severity::Warning, line), "{d:#?}");
        d.message.clone()
    };
    let t = with("PUBLIC_INTERFACE=", "PUBLIC_INTERFACE=eth0");
    let m = warned(&t, line_of(&t, "PUBLIC_INTERFACE="));
    assert!(m.contains("the host's own NIC") && m.contains("192.168.0.10/24") && m.contains("mybr0 stays outside br-ex"), "{m}");
    let t = with("PUBLIC_INTERFACE=", "PUBLIC_INTERFACE=ens3");
    assert!(warned(&t, line_of(&t, "PUBLIC_INTERFACE=")).contains("which this host does not have"));
    let t = with("PUBLIC_INTERFACE=", "");
    assert!(warned(&t, 1).contains("masquerades the floating range on the default-route device"));
}

#[test]
fn services_and_agent() {
    let t = with("enable_service q-svc", "enable_service q-svc q-agt q-dhcp q-meta");
    assert!(has(&lint(&t), "services", 1), "q-l3 missing must be reported");
    let t = with("disable_service ovn-controller", "disable_service ovn-northd");
    // Left on, OVN's services are inert with Q_AGENT=openvswitch (start_ovn_services
    // and configure_ovn run only for Q_AGENT=ovn): said, not refused.
    let d = lint(&t);
    assert!(d.iter().any(|d| d.rule == "services" && d.severity == Severity::Warning && d.message.contains("ovn-controller")), "{d:#?}");
    assert!(!d.iter().any(|d| d.severity == Severity::Error), "{d:#?}");
    let t = good() + "[[local|localrc]]\ndisable_service q-dhcp\n";
    let d = lint(&t);
    assert!(has(&d, "services", line_of(&t, "disable_service q-dhcp")), "{d:#?}");
    let t = with("Q_AGENT=", "Q_AGENT=ovn");
    assert!(has(&lint(&t), "agent", line_of(&t, "Q_AGENT=")));
    let t = with("Q_ML2_PLUGIN_MECHANISM_DRIVERS=", "Q_ML2_PLUGIN_MECHANISM_DRIVERS=ovn");
    assert!(has(&lint(&t), "mechanism-driver", line_of(&t, "Q_ML2_PLUGIN_MECHANISM_DRIVERS=")));
    // A neutron-* name beside q-svc: 2025.1's DevStack configures the agent for
    // either name, so the L3 agent is there.
    let t = with("enable_service q-svc", "enable_service q-svc q-agt q-dhcp neutron-l3 q-meta");
    let d = lint(&t);
    assert!(!d.iter().any(|d| d.severity == Severity::Error), "{d:#?}");
}

#[test]
fn tenant_network_type() {
    let t = with("Q_ML2_TENANT_NETWORK_TYPE=", "Q_ML2_TENANT_NETWORK_TYPE=geneve");
    assert!(has(&lint(&t), "tenant-network-type", line_of(&t, "Q_ML2_TENANT_NETWORK_TYPE=")));
}

#[test]
fn fixed_range_overlaps() {
    // FIXED_RANGE is the private subnet only without DevStack's subnet pool.
    for r in ["192.168.100.0/25", "192.168.0.0/16", "203.0.113.0/24", "10.0.0.0/8"] {
        let t = with("FIXED_RANGE=", &format!("USE_SUBNETPOOL=False\nFIXED_RANGE={r}"));
        let d = lint(&t);
        let expect_error = r != "10.0.0.0/8";
        assert_eq!(has(&d, "fixed-range", line_of(&t, "FIXED_RANGE=")), expect_error, "{r}: {d:#?}");
    }
    // With the pool (DevStack's default), FIXED_RANGE is not used: the pool's prefix decides.
    let t = with("FIXED_RANGE=", "FIXED_RANGE=192.168.100.0/25");
    assert!(!lint(&t).iter().any(|d| d.rule == "fixed-range"), "{:#?}", lint(&t));
    let t = with("NETWORK_GATEWAY=", "NETWORK_GATEWAY=\nIPV4_ADDRS_SAFE_TO_USE=192.168.100.0/22");
    assert!(has(&lint(&t), "fixed-range", line_of(&t, "IPV4_ADDRS_SAFE_TO_USE=")), "{:#?}", lint(&t));
}

#[test]
fn host_ip() {
    let t = with("HOST_IP=", "HOST_IP=10.1.2.3");
    assert!(has(&lint(&t), "host-ip", line_of(&t, "HOST_IP=")));
    let t = with("HOST_IP=", "HOST_IP=192.168.0.10");
    assert!(!lint(&t).iter().any(|d| d.rule == "host-ip"));
}

#[test]
fn malformed_addresses() {
    let t = with("FLOATING_RANGE=", "FLOATING_RANGE=192.168.100.0/33");
    assert!(has(&lint(&t), "malformed-address", line_of(&t, "FLOATING_RANGE=")));
    let t = with("PUBLIC_NETWORK_GATEWAY=", "PUBLIC_NETWORK_GATEWAY=192.168.100");
    assert!(has(&lint(&t), "malformed-address", line_of(&t, "PUBLIC_NETWORK_GATEWAY=")));
}

#[test]
fn variable_references_are_followed() {
    let t = with("FLOATING_RANGE=", "PROVIDER=192.168.100\nFLOATING_RANGE=${PROVIDER}.0/24");
    assert!(!lint(&t).iter().any(|d| d.rule == "floating-range"));
    let t = with("FIXED_RANGE=", "USE_SUBNETPOOL=False\nFIXED_RANGE=${FIXED_RANGE:-192.168.100.0/24}");
    assert!(lint(&t).iter().any(|d| d.rule == "fixed-range"));
}

#[test]
fn did_you_mean() {
    let t = with("FLOATING_RANGE=", "FLOATING_RANGE=192.168.100.0/24\nFLOATNG_RANGE=10.0.0.0/24");
    let d = lint(&t);
    let w = d.iter().find(|d| d.rule == "unknown-variable").expect("a did-you-mean warning");
    assert_eq!(w.severity, Severity::Warning);
    assert!(w.message.contains("did you mean FLOATING_RANGE"), "{}", w.message);
    assert_eq!(w.line, line_of(&t, "FLOATNG_RANGE"));
    // A plugin's own variable far from any known name is left alone.
    let t = with("FLOATING_RANGE=", "FLOATING_RANGE=192.168.100.0/24\nTACKER_MODE=standalone");
    assert!(!lint(&t).iter().any(|d| d.rule == "unknown-variable"));
}

#[test]
fn lines_devstack_mangles() {
    let crlf = good().replace('\n', "\r\n");
    assert!(has(&lint(&crlf), "crlf", 1));
    let t = good() + "[[post-config|/etc/my file.conf]]\n[DEFAULT]\nx=1\n";
    assert!(has(&lint(&t), "header-space", line_of(&t, "[[post-config|/etc/my")));
    let t = good() + "[[post-config|$NOVA_CONF]]\n[DEFAULT]\ndebug\n";
    assert!(has(&lint(&t), "key-without-equals", line_of(&t, "debug")));
    let t = with("IP_VERSION=", "IP_VERSION = 4");
    assert!(has(&lint(&t), "key-without-equals", line_of(&t, "IP_VERSION")));
}

#[test]
fn a_default_made_from_a_set_variable_points_at_that_variables_line() {
    // No FIXED_RANGE: DevStack takes IPV4_ADDRS_SAFE_TO_USE, and that line decided it.
    let text = "[[local|localrc]]\nHOST_IP=203.0.113.10\nIPV4_ADDRS_SAFE_TO_USE=192.168.100.0/22\n";
    let diags = lint(text);
    let d = diags.iter().find(|d| d.rule == "fixed-range").expect("fixed-range");
    assert_eq!(d.line, 3, "{d:?}");
    assert!(d.message.contains("made from IPV4_ADDRS_SAFE_TO_USE on line 3"), "{}", d.message);
    // Left to DevStack altogether, it points at the header, and says so.
    let plain = lint("[[local|localrc]]\nHOST_IP=203.0.113.10\n");
    let fixed: Vec<_> = plain.iter().filter(|d| d.rule == "fixed-range").collect();
    assert!(fixed.iter().all(|d| d.line == 1), "{fixed:?}");
}

/// The rules that hold a file to what DevStack does with it (tests/devstack_oracle.rs
/// holds the harness's reading against DevStack's own code).
#[test]
fn devstack_refusals_and_release_differences() {
    // NETWORK_GATEWAY outside the subnet pool: Neutron refuses, stack.sh dies.
    let t = with("NETWORK_GATEWAY=", "NETWORK_GATEWAY=15.0.0.1");
    let d = lint(&t);
    assert!(has(&d, "network-refused", line_of(&t, "NETWORK_GATEWAY=")), "{d:#?}");
    let msg = &d.iter().find(|x| x.rule == "network-refused").expect("rule").message;
    assert!(msg.contains("Cannot allocate requested subnet from the available set of prefixes"), "{msg}");
    // FIXED_RANGE=10.4.128.0/20 without a gateway is fine: the subnet is the pool's /26.
    let t = with("NETWORK_GATEWAY=", "NETWORK_GATEWAY=").replace("FIXED_RANGE=10.0.0.0/24", "FIXED_RANGE=10.4.128.0/20");
    let d = lint(&t);
    assert!(!d.iter().any(|x| x.severity == Severity::Error), "{d:#?}");
    // Variables DevStack reads that this cloud does not build.
    for (line, rule) in [
        ("Q_USE_PUBLIC_VETH=True", "unsupported-variable"),
        ("Q_USE_PROVIDER_NETWORKING=True", "unsupported-variable"),
        ("IP_VERSION=6", "unsupported-variable"),
        ("Q_DVR_MODE=dvr", "unsupported-variable"),
        ("NEUTRON_CREATE_INITIAL_NETWORKS=False", "no-initial-networks"),
        ("HOST_IP=$(hostname -I)", "shell-syntax"),
    ] {
        let name = line.split('=').next().expect("name");
        let t = with(&format!("{name}="), line);
        let d = lint(&t);
        assert!(d.iter().any(|x| x.rule == rule && x.severity == Severity::Error), "{line}: expected error[{rule}], saw {d:#?}");
    }
    // A compute node's file.
    let d = lint(&good().replace("enable_service q-svc q-agt", "disable_service q-svc\nenable_service q-agt"));
    assert!(d.iter().any(|x| x.rule == "node-role"), "{d:#?}");
    // Warnings: master's option name translated, post-config this cloud does not
    // apply.
    let t = format!(
        "{}[[post-config|/$Q_PLUGIN_CONF_FILE]]\n[ml2]\nproject_network_types = vxlan\n[[post-config|$NOVA_CONF]]\n[DEFAULT]\nx = 1\n",
        good()
    );
    let d = lint(&t);
    assert!(d.iter().any(|x| x.rule == "option-translated" && x.severity == Severity::Warning), "{d:#?}");
    assert!(d.iter().any(|x| x.rule == "post-config-ignored" && x.severity == Severity::Warning), "{d:#?}");
}

#[test]
fn a_host_recipe_without_forwarding_is_said_to_have_no_effect() {
    let plan = scenario::parse(Path::new("no-forward.toml"), "[host_recipe]\nip_forward = false\n").expect("scenario");
    let d = localconf::lint(&localconf::parse(&good()), &plan.world);
    let w = d.iter().find(|d| d.rule == "host-recipe").unwrap_or_else(|| panic!("{d:#?}"));
    assert_eq!(w.severity, Severity::Warning);
    assert!(w.message.contains("stack.sh sets it to 1") && w.hint.contains("ip_forward_off"), "{w:#?}");
    assert!(!lint(&good()).iter().any(|d| d.rule == "host-recipe"), "the default recipe forwards");
}

#[test]
fn a_service_disabled_once_stays_disabled() {
    // functions-common's enable_service skips what disable_service put in DISABLED_SERVICES.
    let t = good() + "[[local|localrc]]\ndisable_service q-l3\nenable_service q-l3\n";
    let d = lint(&t);
    let w = d.iter().find(|d| d.rule == "services" && d.severity == Severity::Warning && d.message.contains("has no effect"));
    let w = w.unwrap_or_else(|| panic!("{d:#?}"));
    assert_eq!(w.line, line_of(&t, "enable_service q-l3"));
    assert!(d.iter().any(|d| d.severity == Severity::Error && d.message.contains("q-l3 is not enabled")), "{d:#?}");
}

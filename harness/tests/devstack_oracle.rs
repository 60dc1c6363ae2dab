//! DevStack's own code as the judge. For every local.conf of the corpus
//! (tests/data/localconf-corpus/, real files) and every shipped scenario's
//! rendered local.conf, the oracle (tests/oracle/oracle.sh: DevStack's own
//! functions in a bubblewrap sandbox, host commands and API calls recorded) runs
//! DevStack 2025.1, the release the neutron cloud predicts, and the test holds the
//! harness's plan (`harness localconf neutron`) against it:
//!   (a) every datapath key of the four Neutron files,
//!   (b) the initial networks as API objects,
//!   (c) the host steps as a list of commands (the harness's own
//!       templates/devstack-host-steps.sh, run in the same sandboxed world),
//! and, where DevStack's run dies, that the harness refuses the file too.
//! What the harness keeps different on purpose is the ALLOWED list below. The
//! same files against DevStack master print where a master user's file would
//! behave differently (a report, not a failure).

mod common;

use harness::localconf::{self, networks::Outcome, neutron_files as nf, plan};
use harness::scenario::{self, World};
use ini::Ini;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The DevStack the neutron cloud predicts (`plan::PREDICTS`): the tree of the
/// image's Neutron (Debian 13's Neutron 26).
const PREDICTED: &str = "2025.1";

/// Differences kept on purpose, each with its reason: (what, reason). `what` is
/// `FILE:[section] key` for a key, `host: COMMAND` for a host step.
const ALLOWED: &[(&str, &str)] = &[
    (
        "ml2_conf.ini:[agent] root_helper",
        "Debian's python3-neutron installs neutron-rootwrap in /usr/bin; DevStack's pip install puts it in /usr/local/bin",
    ),
    ("ml2_conf.ini:[agent] root_helper_daemon", "the same, for neutron-rootwrap-daemon"),
    ("l3_agent.ini:[AGENT] root_helper", "the same"),
    ("l3_agent.ini:[AGENT] root_helper_daemon", "the same"),
    ("dhcp_agent.ini:[agent] root_helper", "the same"),
    ("dhcp_agent.ini:[agent] root_helper_daemon", "the same"),
    (
        "host: sysctl -w net.ipv4.ip_forward=1",
        "stack.sh sets it in its own body (`Force IP forwarding on`), which the oracle does not run; the harness runs it as stack.sh does",
    ),
    (
        "ml2_conf.ini:[ml2] *_network_types",
        "only where post-config sets `project_network_types` (master's name): Neutron 26 ignores it, so the harness writes it as \
         `tenant_network_types` and the linter says so (warning[option-translated])",
    ),
    (
        "host: ipv6 *",
        "IP_VERSION=4+6 (DevStack's default): the harness builds the IPv4 half; DevStack's IPv6 host steps \
         (ip -6, net.ipv6 sysctls, _neutron_configure_router_v6) are not run (the linter warns: ip-version)",
    ),
];

/// Lint rules by which the harness refuses a file DevStack runs: the neutron cloud
/// is one ML2/OVS node running neutron-server, and these files are something else.
const NOT_THIS_CLOUD: &[&str] = &["agent", "node-role", "unsupported-variable", "shell-syntax"];

/// The keys that decide the datapath, per file: (file, section, key); a section
/// with key "*" compares every key in it.
const DATAPATH: &[(&str, &str, &str)] = &[
    (nf::NEUTRON_CONF, "DEFAULT", "core_plugin"),
    (nf::NEUTRON_CONF, "DEFAULT", "service_plugins"),
    (nf::NEUTRON_CONF, "DEFAULT", "router_distributed"),
    (nf::ML2_CONF, "ml2", "*"),
    (nf::ML2_CONF, "ml2_type_flat", "*"),
    (nf::ML2_CONF, "ml2_type_vlan", "*"),
    (nf::ML2_CONF, "ml2_type_vxlan", "*"),
    (nf::ML2_CONF, "ml2_type_gre", "*"),
    (nf::ML2_CONF, "ml2_type_geneve", "*"),
    (nf::ML2_CONF, "ovs", "*"),
    (nf::ML2_CONF, "agent", "*"),
    (nf::ML2_CONF, "securitygroup", "*"),
    (nf::ML2_CONF, "ovn", "*"),
    (nf::OVN_META_CONF, "ovn", "*"),
    (nf::OVN_META_CONF, "ovs", "*"),
    (nf::L3_CONF, "DEFAULT", "interface_driver"),
    (nf::L3_CONF, "DEFAULT", "agent_mode"),
    (nf::L3_CONF, "DEFAULT", "ovs_use_veth"),
    (nf::L3_CONF, "AGENT", "*"),
    (nf::L3_CONF, "agent", "*"),
    (nf::DHCP_CONF, "DEFAULT", "interface_driver"),
    (nf::DHCP_CONF, "DEFAULT", "ovs_use_veth"),
    (nf::DHCP_CONF, "DEFAULT", "enable_isolated_metadata"),
    (nf::DHCP_CONF, "DEFAULT", "enable_metadata_network"),
    (nf::DHCP_CONF, "AGENT", "*"),
    (nf::DHCP_CONF, "agent", "*"),
];

/// Host commands that change the host (the recorders log every call; the rest
/// are services starting, which the harness does its own way).
const HOST_COMMANDS: &[&str] = &["ip", "ovs-vsctl", "ovs-ofctl", "iptables", "ip6tables", "sysctl", "modprobe", "arping"];

/// Where DevStack's trees are: $DEVSTACK_TREES, the shared copy beside the
/// repository, or the cache `.ci/setup` fills.
fn trees() -> PathBuf {
    let candidates = [
        std::env::var_os("DEVSTACK_TREES").map(PathBuf::from),
        Some(common::root().join("../shared/devstack")),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/devstack-harness/devstack")),
    ];
    candidates.into_iter().flatten().find(|p| p.join(PREDICTED).join("stackrc").is_file()).unwrap_or_else(|| {
        panic!("DevStack's trees are not here ($DEVSTACK_TREES, ../shared/devstack, ~/.cache/devstack-harness/devstack): bash .ci/setup fetches them")
    })
}

struct Case {
    name: String,
    conf: PathBuf,
    world: World,
}

fn cases(tmp: &Path) -> Vec<Case> {
    let mut out = Vec::new();
    let dir = common::root().join("harness/tests/data/localconf-corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).expect("corpus").map(|e| e.expect("entry").path()).collect();
    files.sort();
    for f in files.into_iter().filter(|p| p.file_name().is_some_and(|n| n != "SOURCES.txt")) {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        // Most real files are OVN (DevStack's default) or another node's: the same
        // file made ML2/OVS as `harness lint` tells its user (error[agent]) is
        // compared too, so that its other settings are held against DevStack.
        let conf = localconf::read(&f).expect("readable");
        let refused = localconf::lint(&conf, &World::default())
            .iter()
            .any(|d| d.severity == localconf::Severity::Error && NOT_THIS_CLOUD.contains(&d.rule));
        if refused {
            let text = std::fs::read_to_string(&f).expect("readable");
            if let Some(ovs) = as_ml2_ovs(&text) {
                let dest = tmp.join(format!("{name}+ovs"));
                std::fs::write(&dest, ovs).expect("write");
                out.push(Case { name: format!("{name} +ovs"), conf: dest, world: World::default() });
            }
        }
        out.push(Case { name, conf: f, world: World::default() });
    }
    // The shipped scenarios, rendered; the same local.conf in the same world once.
    let mut seen = std::collections::HashSet::new();
    let mut scenarios: Vec<PathBuf> = ["scenarios", "scenarios/neutron"]
        .iter()
        .flat_map(|d| std::fs::read_dir(common::root().join(d)).expect("scenarios").map(|e| e.expect("entry").path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    scenarios.sort();
    for s in scenarios {
        let name = s.strip_prefix(common::root()).unwrap_or(&s).display().to_string();
        let dest = tmp.join(name.replace('/', "_"));
        let r = common::harness(&["render", &s.display().to_string(), "--out", &dest.display().to_string()]);
        assert!(r.status.success(), "render {name}: {}", String::from_utf8_lossy(&r.stderr));
        let world = scenario::load(&s).expect("scenario").world;
        let text = std::fs::read_to_string(dest.join("local.conf")).expect("rendered local.conf");
        if seen.insert(format!("{text}{world:?}")) {
            out.push(Case { name, conf: dest.join("local.conf"), world });
        }
    }
    out
}

/// What `harness lint`'s hints for error[agent] and error[node-role] add, at the
/// end of the localrc section (so that they win over the file's own lines).
const ML2_OVS: &str = "# devstack_oracle.rs: ML2/OVS on one node, as harness lint tells this file's user\n\
Q_AGENT=openvswitch\nQ_ML2_PLUGIN_MECHANISM_DRIVERS=openvswitch\nQ_ML2_TENANT_NETWORK_TYPE=vxlan\n\
disable_service ovn-controller ovn-northd q-ovn-metadata-agent q-ovn-agent\n\
enable_service q-svc q-agt q-dhcp q-l3 q-meta\n";

fn as_ml2_ovs(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.trim_end() == "[[local|localrc]]")?;
    let end = lines.iter().skip(start + 1).position(|l| l.starts_with("[[")).map_or(lines.len(), |i| start + 1 + i);
    let mut out: Vec<String> = lines[..end].iter().map(|l| (*l).to_owned()).collect();
    out.push(ML2_OVS.to_owned());
    out.extend(lines[end..].iter().map(|l| (*l).to_owned()));
    Some(out.join("\n") + "\n")
}

/// The oracle's sandbox for a world.
fn oracle(tree: &Path, input: &Path, out: &Path, world: &World, mode: &str) -> String {
    let script = common::root().join("harness/tests/oracle/oracle.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg(tree)
        .arg(input)
        .arg(out)
        .env("ORACLE_MODE", mode)
        .env("WORLD_NIC", &world.guest_nic)
        .env("WORLD_NIC_ADDR", world.guest_address.to_string())
        .env("WORLD_GATEWAY", world.guest_gateway.to_string())
        .env("WORLD_PUBLIC_IP", world.public_ip.to_string())
        .env("WORLD_BRIDGE", &world.provider_bridge)
        .env("WORLD_BRIDGE_ADDR", world.provider_address.to_string())
        .env("WORLD_HOSTNAME", &world.hostname)
        .output()
        .expect("bash");
    assert!(
        o.status.success(),
        "oracle.sh {} failed: {}{}",
        input.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read_to_string(out.join("result")).expect("result").trim().to_owned()
}

fn load_ini(path: &Path) -> Ini {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    Ini::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every datapath value of a file: "[section] key" -> value (repeated keys joined).
fn datapath_values(ini: &Ini, path: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (_, section, key) in DATAPATH.iter().filter(|(f, _, _)| *f == path) {
        let Some(props) = ini.section(Some(*section)) else { continue };
        for (k, _) in props.iter() {
            if *key == "*" || k == *key {
                let all: Vec<&str> = props.get_all(k).collect();
                out.insert(format!("[{section}] {k}"), all.join("\n"));
            }
        }
    }
    out
}

fn oracle_file(path: &str) -> &'static str {
    match path {
        nf::NEUTRON_CONF => "etc/neutron.conf",
        nf::ML2_CONF => "etc/plugins/ml2/ml2_conf.ini",
        nf::L3_CONF => "etc/l3_agent.ini",
        nf::DHCP_CONF => "etc/dhcp_agent.ini",
        nf::OVN_META_CONF => "etc/neutron_ovn_metadata_agent.ini",
        _ => unreachable!(),
    }
}

fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The host commands of a recorder log, one string each (an OVN chassis'
/// system-id is a fresh UUID on each side).
fn host_commands(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|argv| argv.first().is_some_and(|c| HOST_COMMANDS.contains(c)))
        .map(|argv| {
            argv.iter().map(|a| if a.starts_with("external-ids:system-id=") { "external-ids:system-id=UUID" } else { a }).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// DevStack's initial networks from the oracle's API state, in the prediction's terms.
fn devstack_networks(api: &serde_json::Value) -> Option<BTreeMap<&'static str, String>> {
    let arr = |k: &str| api[k].as_array().cloned().unwrap_or_default();
    let v4 = |s: &serde_json::Value| s["ip_version"] == 4;
    let subnets: Vec<_> = arr("subnets").into_iter().filter(v4).collect();
    let nets = arr("networks");
    let private = nets.iter().find(|n| n["router:external"] == false)?;
    let public = nets.iter().find(|n| n["router:external"] == true)?;
    let sub_of = |net: &serde_json::Value| subnets.iter().find(|s| s["network_id"] == net["id"]).cloned();
    let (ps, us) = (sub_of(private)?, sub_of(public)?);
    let pools = |s: &serde_json::Value| {
        s["allocation_pools"]
            .as_array()
            .map(|a| a.iter().map(|p| format!("{}-{}", p["start"], p["end"]).replace('"', "")).collect::<Vec<_>>().join(","))
    };
    let pool = arr("subnet_pools").into_iter().find(|p| ps["subnetpool_id"] == p["id"]);
    let router = arr("routers").into_iter().next()?;
    let gw = router["external_gateway"]["external_fixed_ips"]
        .as_array()
        .and_then(|ips| ips.iter().find(|ip| ip["subnet_id"] == us["id"]))
        .map(|ip| ip["ip_address"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default();
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    Some(BTreeMap::from([
        ("subnet pool", pool.map_or("-".into(), |p| format!("{} {} /{}", s(&p["name"]), s(&p["prefixes"][0]), s(&p["default_prefixlen"])))),
        ("private network", s(&private["name"])),
        ("private subnet", format!("{} {} gw {} pools {}", s(&ps["name"]), s(&ps["cidr"]), s(&ps["gateway_ip"]), pools(&ps)?)),
        ("router", s(&router["name"])),
        (
            "public network",
            format!(
                "{} type {} physnet {} segment {}",
                s(&public["name"]),
                s(&public["provider:network_type"]),
                s(&public["provider:physical_network"]),
                s(&public["provider:segmentation_id"])
            ),
        ),
        ("public subnet", format!("{} {} gw {} pools {}", s(&us["name"]), s(&us["cidr"]), s(&us["gateway_ip"]), pools(&us)?)),
        ("router gateway", gw),
    ]))
}

fn predicted_networks(o: &Outcome) -> Option<BTreeMap<&'static str, String>> {
    let Outcome::Created(n) = o else { return None };
    let pools = |p: &[(std::net::Ipv4Addr, std::net::Ipv4Addr)]| p.iter().map(|(a, b)| format!("{a}-{b}")).collect::<Vec<_>>().join(",");
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let (ps, us) = (&n.private_subnet, &n.public_subnet);
    Some(BTreeMap::from([
        ("subnet pool", n.subnet_pool.as_ref().map_or("-".into(), |p| format!("{} {} /{}", p.name, p.prefix, p.default_prefixlen))),
        ("private network", n.private_network.clone()),
        ("private subnet", format!("{} {} gw {} pools {}", ps.name, ps.cidr, ps.gateway, pools(&ps.allocation_pools))),
        ("router", n.router.clone()),
        (
            "public network",
            format!(
                "{} type {} physnet {} segment {}",
                n.public_network.name,
                opt(&n.public_network.network_type),
                opt(&n.public_network.physical_network),
                opt(&n.public_network.segmentation_id)
            ),
        ),
        ("public subnet", format!("{} {} gw {} pools {}", us.name, us.cidr, us.gateway, pools(&us.allocation_pools))),
        ("router gateway", us.allocation_pools.first().map(|(a, _)| a.to_string()).unwrap_or_default()),
    ]))
}

/// One difference between DevStack's run and the harness's plan.
#[derive(Debug)]
struct Difference {
    case: String,
    what: String,
    devstack: String,
    harness: String,
    /// The case's post-config sets an option the harness translates for Neutron.
    translated: bool,
}

/// Whether the file's post-config sets an option by a name the harness translates.
fn translates(conf: &Path) -> bool {
    localconf::read(conf).ok().is_some_and(|conf| {
        conf.files
            .iter()
            .any(|f| f.options.iter().any(|o| nf::TRANSLATED_OPTIONS.iter().any(|(s, from, _)| o.section == *s && o.key == *from)))
    })
}

fn allowed(d: &Difference, translated: bool) -> bool {
    ALLOWED.iter().any(|(what, _)| allowed_by(d, what, translated))
}

fn allowed_by(d: &Difference, what: &str, translated: bool) -> bool {
    let hit = match what.split_once('*') {
        Some((pre, post)) => d.what.starts_with(pre) && d.what.ends_with(post),
        None => what == d.what,
    };
    hit && (!what.ends_with("_network_types") || translated)
}

/// DevStack's IPv6 host steps, named as the allow-list names them.
fn ipv6(cmd: &str) -> bool {
    cmd.starts_with("ip -6 ") || cmd.contains("net.ipv6.")
}

/// Compare one case against one DevStack tree; returns (DevStack's result, differences).
fn compare(case: &Case, tree: &Path, work: &Path) -> (String, Vec<Difference>) {
    let conf = localconf::read(&case.conf).expect("readable");
    let plan = plan::neutron(&conf, &case.world);
    let out = work.join("devstack");
    let result = oracle(tree, &case.conf, &out, &case.world, "devstack");
    let mut diffs = Vec::new();
    let mut diff = |what: String, devstack: String, harness: String| {
        if devstack != harness {
            diffs.push(Difference { case: case.name.clone(), what, devstack, harness, translated: translates(&case.conf) });
        }
    };
    if result != "ok" {
        // DevStack's run dies: the harness must refuse the file too (a lint error,
        // or Neutron's refusal in the plan), or it would build what DevStack cannot.
        let errors: Vec<String> = localconf::lint(&conf, &case.world)
            .into_iter()
            .filter(|d| d.severity == localconf::Severity::Error)
            .map(|d| d.rule.to_owned())
            .collect();
        let refused = matches!(plan.initial_networks, Outcome::Refused(_) | Outcome::Unsupported { .. });
        if errors.is_empty() && !refused {
            diff("outcome".into(), result.clone(), "builds (no lint error, no refusal)".into());
        }
        return (result, diffs);
    }
    // DevStack runs it, but it is not this cloud's kind of node: the harness
    // refuses it by name, and there is nothing to compare.
    let not_this: Vec<&str> = localconf::lint(&conf, &case.world)
        .into_iter()
        .filter(|d| d.severity == localconf::Severity::Error && NOT_THIS_CLOUD.contains(&d.rule))
        .map(|d| d.rule)
        .collect();
    // ML2/OVN is refused by the cloud (error[agent]) but planned: compared.
    let ovn = plan::effective(&conf, &case.world).get("Q_AGENT") == Some("ovn");
    if !not_this.is_empty() && !(ovn && not_this == ["agent"]) {
        return (format!("ok; refused here: {}", not_this.join(",")), diffs);
    }
    // (a) the datapath keys.
    for file in [nf::NEUTRON_CONF, nf::ML2_CONF, nf::L3_CONF, nf::DHCP_CONF, nf::OVN_META_CONF] {
        let theirs = datapath_values(&load_ini(&out.join(oracle_file(file))), file);
        let mut ours_ini = Ini::new();
        // The OVN metadata agent's file is only in an ML2/OVN plan.
        for o in plan.files.iter().filter(|f| f.path == file).flat_map(|f| &f.options) {
            ours_ini.with_section(Some(o.section.as_str())).add(o.key.as_str(), o.value.as_str());
        }
        let ours = datapath_values(&ours_ini, file);
        for k in theirs.keys().chain(ours.keys()).collect::<std::collections::BTreeSet<_>>() {
            let get = |m: &BTreeMap<String, String>| m.get(k).cloned().unwrap_or_else(|| "(unset)".into());
            diff(format!("{}:{k}", short(file)), get(&theirs), get(&ours));
        }
    }
    // (b) the initial networks.
    let api: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("api.json")).unwrap_or_else(|_| "{}".into())).expect("api.json");
    match (devstack_networks(&api), predicted_networks(&plan.initial_networks)) {
        (Some(theirs), Some(ours)) => {
            for (k, v) in &theirs {
                diff(format!("networks: {k}"), v.clone(), ours.get(k).cloned().unwrap_or_default());
            }
        }
        (None, None) => {}
        (theirs, _) => diff(
            "networks".into(),
            if theirs.is_some() { "made".into() } else { "none".into() },
            serde_json::to_string(&plan.initial_networks).expect("serializable"),
        ),
    }
    // (c) the host steps, the harness's own script in the same world.
    let steps = work.join("host-steps.sh");
    let script = std::fs::read_to_string(common::root().join("harness/templates/devstack-host-steps.sh")).expect("template");
    std::fs::write(&steps, format!("{}{script}", plan.host_steps.shell())).expect("write");
    let hout = work.join("harness");
    let hresult = oracle(tree, &steps, &hout, &case.world, "harness");
    // A command run twice (DevStack adds br-ex in two places) counts once; IPv6
    // steps are named apart (the allow-list's "host: ipv6").
    let dedup = |v: Vec<String>| {
        let mut seen = std::collections::HashSet::new();
        v.into_iter().filter(|c| seen.insert(c.clone())).map(|c| if ipv6(&c) { format!("ipv6 {c}") } else { c }).collect::<Vec<_>>()
    };
    let theirs = dedup(host_commands(&out.join("host.log")));
    let ours = dedup(host_commands(&hout.join("host.log")));
    if hresult != "ok" {
        diff("host steps".into(), "ok".into(), hresult);
    }
    // Compared as lists: a command only one side runs is a difference; so is the
    // order of those both run.
    for c in ours.iter().filter(|c| !theirs.contains(c)) {
        diff(format!("host: {c}"), "(not run)".into(), "run".into());
    }
    for c in theirs.iter().filter(|c| !ours.contains(c)) {
        diff(format!("host: {c}"), "run".into(), "(not run)".into());
    }
    let both =
        |l: &[String], other: &[String]| l.iter().filter(|c| other.contains(c) && !c.starts_with("ipv6 ")).cloned().collect::<Vec<_>>();
    let (t, o) = (both(&theirs, &ours), both(&ours, &theirs));
    if t != o {
        diff("host steps' order".into(), t.join("; "), o.join("; "));
    }
    (result, diffs)
}

fn run_all(branch: &str) -> (Vec<(String, String)>, Vec<Difference>, usize) {
    common::require(&[("bwrap", "bubblewrap"), ("gawk", "gawk"), ("uuidgen", "uuid-runtime")]);
    let tree = trees().join(branch);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases = cases(tmp.path());
    let corpus = cases.iter().filter(|c| !c.name.starts_with("scenarios") && !c.name.ends_with("+ovs")).count();
    // Two at a time: each sandbox is one bash, mostly waiting on forks.
    let results = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let work = tmp.path().join(format!("case-{i}"));
                let (result, diffs) = compare(case, &tree, &work);
                results.lock().expect("lock").push((i, case.name.clone(), result, diffs));
            });
        }
    });
    let mut results = results.into_inner().expect("lock");
    results.sort_by_key(|r| r.0);
    let mut table = Vec::new();
    let mut all = Vec::new();
    for (_, name, result, diffs) in results {
        table.push((name, result));
        all.extend(diffs);
    }
    (table, all, corpus)
}

#[test]
#[ignore = "runs DevStack's own code in bubblewrap sandboxes: needs bubblewrap, gawk, uuid-runtime and DevStack's trees (bash .ci/setup)"]
fn the_neutron_cloud_builds_what_devstack_2025_1_builds() {
    let (table, diffs, corpus) = run_all(PREDICTED);
    assert!(corpus >= 30, "the corpus must hold at least 30 real local.conf files, it holds {corpus}");
    assert!(ALLOWED.len() <= 10, "the allow-list may hold at most 10 entries");
    println!("DevStack {PREDICTED} on {} local.conf files:", table.len());
    for (name, result) in &table {
        println!("  {result:<60.60}  {name}");
    }
    let (kept, wrong): (Vec<&Difference>, Vec<&Difference>) = diffs.iter().partition(|d| allowed(d, d.translated));
    println!("{} differences kept on purpose (ALLOWED), {} not", kept.len(), wrong.len());
    for (what, _) in ALLOWED {
        let n = kept.iter().filter(|d| ALLOWED.iter().find(|(w, _)| allowed_by(d, w, d.translated)).is_some_and(|(w, _)| w == what)).count();
        println!("  {n:>4}  {what}");
    }
    let text: Vec<String> =
        wrong.iter().map(|d| format!("{}: {}\n    DevStack: {}\n    harness:  {}", d.case, d.what, d.devstack, d.harness)).collect();
    assert!(wrong.is_empty(), "the harness's plan differs from DevStack {PREDICTED}'s run:\n{}", text.join("\n"));
}

#[test]
#[ignore = "runs DevStack's own code in bubblewrap sandboxes: needs bubblewrap, gawk, uuid-runtime and DevStack's trees (bash .ci/setup)"]
fn where_devstack_master_would_differ() {
    let (table, diffs, _) = run_all("master");
    println!("DevStack master on {} local.conf files; where the neutron cloud ({PREDICTED}) differs:", table.len());
    // Differences of name only: master writes what Neutron would assume anyway,
    // or calls the option by its new name.
    let same = |d: &Difference| {
        d.what.ends_with("[ml2] project_network_types") || (d.what.ends_with("[ml2] tenant_network_types") && d.devstack == "(unset)")
    };
    let mut per_case: BTreeMap<&str, Vec<&Difference>> = BTreeMap::new();
    for d in diffs.iter().filter(|d| !allowed(d, true) && !same(d)) {
        per_case.entry(&d.case).or_default().push(d);
    }
    // Each file master would build differently gets warning[devstack-release].
    let corpus = common::root().join("harness/tests/data/localconf-corpus");
    let mut unwarned = Vec::new();
    for case in per_case.keys() {
        let path = corpus.join(case.trim_end_matches(" +ovs"));
        let Ok(mut text) = std::fs::read_to_string(&path) else { continue };
        if case.ends_with(" +ovs") {
            text = as_ml2_ovs(&text).expect("localrc");
        }
        let diags = localconf::lint(&localconf::parse(&text), &World::default());
        if !diags.iter().any(|d| d.rule == "devstack-release") {
            unwarned.push(*case);
        }
    }
    for (case, ds) in &per_case {
        println!("  {case}:");
        for d in ds {
            println!("    {}: master {} / harness {}", d.what, d.devstack, d.harness);
        }
    }
    assert!(unwarned.is_empty(), "files DevStack master builds differently, without warning[devstack-release]: {unwarned:?}");
    // Master runs at all on the corpus: a tree that cannot run would make this report empty.
    assert!(table.iter().filter(|(_, r)| r == "ok").count() >= 10, "DevStack master ran on too few files: {table:?}");
}

#[test]
#[ignore = "needs shellcheck; cargo nextest run --run-ignored all"]
fn the_oracle_and_the_host_steps_pass_shellcheck() {
    common::require(&[("shellcheck", "shellcheck")]);
    let root = common::root();
    let files = [
        "harness/tests/oracle/oracle.sh",
        "harness/tests/oracle/inner.sh",
        "harness/tests/oracle/stubs/record",
        "harness/tests/oracle/stubs/ip",
        "harness/tests/oracle/stubs/sysctl",
        "harness/tests/oracle/stubs/sudo",
        "harness/templates/devstack-host-steps.sh",
    ];
    for f in files {
        // The host steps are a fragment included by the clouds' scripts, whose
        // variables are set above it.
        let out = Command::new("shellcheck").args(["-s", "bash", "-e", "SC2154"]).arg(root.join(f)).output().expect("shellcheck");
        assert!(out.status.success(), "{f}:\n{}", String::from_utf8_lossy(&out.stdout));
    }
}

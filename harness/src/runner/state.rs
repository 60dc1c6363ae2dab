//! What a scenario leaves behind for people and for snapshots: the guest's state,
//! normalized so that two runs of one scenario compare equal, the snapshot's text,
//! and the diagnostics split into files under `state/`.

use super::ScenarioResult;
use crate::cloud::Deployed;
use std::path::{Path, PathBuf};

/// Drop what changes run to run: iptables comments and counters, ids, MACs.
pub fn normalize_state(raw: &str, run_id: &str, d: &Deployed) -> String {
    let mut out = String::new();
    for line in raw.lines() {
        if line.starts_with("# Generated") || line.starts_with("# Completed") {
            continue;
        }
        let mut l = line.to_owned();
        if l.starts_with(':') {
            l = l.split(" [").next().unwrap_or(&l).to_owned();
        }
        l = replace_names(&l, &d.volatile_names).replace(run_id, "<run>");
        out.push_str(l.trim_end());
        out.push('\n');
    }
    sorted_ports(&stable_names(&out))
}

/// The ports of each OVS bridge in the order of their stable names, not of the
/// ids they replaced (which differ run to run).
fn sorted_ports(text: &str) -> String {
    let mut out = String::new();
    let mut in_ovs = false;
    for line in text.lines() {
        if line.starts_with("# ") {
            in_ovs = line == "# ovs";
        }
        match line.split_once(": ").filter(|_| in_ovs) {
            Some((bridge, ports)) => {
                let mut p: Vec<&str> = ports.split_whitespace().collect();
                p.sort_unstable();
                out.push_str(&format!("{bridge}: {}\n", p.join(" ")));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Each run-to-run name replaced by its tag; an address only as a whole address
/// (10.0.0.1 is not replaced inside 10.0.0.17).
pub fn replace_names(text: &str, names: &[(String, String)]) -> String {
    let mut text = text.to_owned();
    for (id, tag) in names {
        if id.parse::<std::net::Ipv4Addr>().is_ok() {
            let re = regex::Regex::new(&format!(r"\b{}\b", regex::escape(id))).expect("an escaped address");
            text = re.replace_all(&text, tag.as_str()).into_owned();
        } else {
            text = text.replace(id.as_str(), tag);
        }
    }
    text
}

/// Ids the cloud chose that no [`Deployed`] names (Neutron's UUIDs, the DHCP
/// port's device, MACs): each becomes a numbered tag by order of first
/// appearance, so two runs of one scenario compare equal.
fn stable_names(text: &str) -> String {
    static PATTERNS: std::sync::LazyLock<[(regex::Regex, &str); 3]> = std::sync::LazyLock::new(|| {
        let re = |s: &str| regex::Regex::new(s).expect("valid pattern");
        [
            (re(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "uuid"),
            // Neutron's device names: a prefix and the port id's first 11 characters.
            (re(r"\b(?:tap|qr-|qg-|qvo|qvb|qbr|sg-|fpr-|rfp-)[0-9a-f]{8}-[0-9a-f]{2}\b"), "dev"),
            (re(r"\b(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b"), "mac"),
        ]
    });
    let mut text = text.to_owned();
    for (re, tag) in PATTERNS.iter() {
        let mut seen: Vec<String> = Vec::new();
        for m in re.find_iter(&text) {
            if !seen.iter().any(|s| s == m.as_str()) {
                seen.push(m.as_str().to_owned());
            }
        }
        for (i, s) in seen.iter().enumerate() {
            text = text.replace(s.as_str(), &format!("<{tag}-{}>", i + 1));
        }
    }
    text
}

/// The part of a result that a snapshot records: no timings, ids or machine facts.
pub fn snapshot_text(r: &ScenarioResult) -> String {
    let mut s = format!("scenario: {}\ncloud: {}\nimage: {}\npassed: {}\n\n## checks\n", r.name, r.cloud, r.image, r.passed);
    for c in &r.checks {
        let port = c.port.map(|p| format!(":{p}")).unwrap_or_default();
        s.push_str(&format!(
            "- {} [{:?} from {:?} to {}{port}] expect {:?}, outcome {:?}{} -> {}\n",
            c.name,
            c.kind,
            c.from,
            c.to,
            c.expect,
            c.outcome,
            c.observed.seen_as.as_ref().map(|a| format!(", seen as {a}")).unwrap_or_default(),
            if c.passed { "pass" } else { "FAIL" }
        ));
        if let Some(d) = c.trace.as_ref().and_then(|t| t.died_at.as_ref()) {
            s.push_str(&format!("  {}\n", d.line().replace(&r.run_id, "<run>")));
        }
    }
    // What the cloud says it did, where it says (neutron): the lease the instance
    // got from dnsmasq and the security group in force.
    if let Some(l) = r.cloud_facts.get("dhcp_lease") {
        s.push_str(&format!(
            "\n## instance address\nDHCP lease from {} (Neutron's dnsmasq): {}/{} router {} mtu {}\n",
            l["server"].as_str().unwrap_or("?"),
            l["ip"].as_str().unwrap_or("?"),
            l["prefix"],
            l["router"].as_str().unwrap_or("?"),
            l["mtu"]
        ));
    }
    if let Some(serde_json::Value::Array(rules)) = r.cloud_facts.get("security_group") {
        s.push_str("\n## security group\n");
        for rule in rules {
            let text = |k: &str| rule[k].as_str().map(str::to_owned).unwrap_or_else(|| "any".into());
            let ports = match (rule["port_range_min"].as_u64(), rule["port_range_max"].as_u64()) {
                (Some(a), Some(b)) if a == b => format!(" port {a}"),
                (Some(a), Some(b)) => format!(" ports {a}-{b}"),
                _ => String::new(),
            };
            s.push_str(&format!("- {} {}{ports} remote {}\n", text("direction"), text("protocol"), text("remote_ip_prefix")));
        }
    }
    s.push_str("\n## guest state\n");
    s.push_str(&r.state);
    replace_names(&s, &r.volatile_names)
}

/// Split the guest's diagnostics ("=== FILE ===" sections) into files under `dir`.
pub fn write_sections(text: &str, dir: &Path) {
    let mut current: Option<(PathBuf, String)> = None;
    let flush = |c: &mut Option<(PathBuf, String)>| {
        if let Some((path, body)) = c.take() {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(path, body);
        }
    };
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("=== ").and_then(|l| l.strip_suffix(" ===")) {
            flush(&mut current);
            // Names come from the guest: no way out of `dir`.
            let safe: PathBuf = name.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..").collect();
            current = Some((dir.join(safe), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&mut current);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_the_cloud_chose_get_stable_names() {
        let raw = "qrouter-caa81d67-72ed-4c07-bfd0-629d6e579010 tap0da2893a-f4 fa:16:3e:96:79:df\nagain caa81d67-72ed-4c07-bfd0-629d6e579010 tap1111aaaa-bb\n";
        assert_eq!(stable_names(raw), "qrouter-<uuid-1> <dev-1> <mac-1>\nagain <uuid-1> <dev-2>\n");
        assert_eq!(
            sorted_ports("# ovs\nbr-int: tap<b> <dev-1> qr-x\n# other\nk: b a\n"),
            "# ovs\nbr-int: <dev-1> qr-x tap<b>\n# other\nk: b a\n"
        );
        let names = [("10.0.0.1".to_owned(), "<gw>".to_owned())];
        assert_eq!(replace_names("via 10.0.0.1 src 10.0.0.17 10.0.0.1/24", &names), "via <gw> src 10.0.0.17 <gw>/24");
    }

    #[test]
    fn sections_stay_inside_their_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_sections("=== a/b.txt ===\none\n=== ../../escape ===\ntwo\n", dir.path());
        assert_eq!(std::fs::read_to_string(dir.path().join("a/b.txt")).expect("a/b"), "one\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("escape")).expect("escape kept inside"), "two\n");
    }
}

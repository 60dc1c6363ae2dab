//! The rendered host recipe, run for real (ip, sysctl, iptables) in a fresh network
//! namespace that this test creates and always deletes: apply, verify, apply again
//! changes nothing, revert leaves the namespace exactly as it was.

use harness::keys::RunKeys;
use harness::render::Renderer;
use harness::scenario;
use std::path::Path;
use std::process::Output;

mod common;
use common::Netns;

/// Everything the recipe may touch, normalized for comparison.
fn state(ns: &Netns) -> String {
    let mut s = String::new();
    for args in [
        &["ip", "-o", "addr", "show"][..],
        &["ip", "-o", "link", "show"][..],
        &["ip", "route", "show", "table", "all"][..],
        &["sysctl", "net.ipv4.ip_forward"][..],
        &["iptables-save"][..],
    ] {
        let out = ns.exec(args);
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines() {
            // iptables-save: keep rules, custom chains and non-default policies;
            // drop comments (timestamps), counters and the empty tables that
            // merely listing them creates.
            let line = if line.starts_with(':') { line.split(" [").next().unwrap_or(line) } else { line };
            let is_default_chain = line.starts_with(':') && line.ends_with(" ACCEPT");
            if line.starts_with('#') || line.starts_with('*') || line == "COMMIT" || is_default_chain {
                continue;
            }
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

fn recipe(scenario_file: &str, dir: &Path) -> String {
    let plan = scenario::load(Path::new(scenario_file)).expect("scenario");
    let keys = RunKeys::from_seed(3).expect("keys");
    let rendered = Renderer::new(None).expect("templates").render(&plan, "recipe-test", &keys).expect("render");
    let path = dir.join("host-recipe.sh");
    std::fs::write(&path, rendered.host_recipe).expect("write recipe");
    path.to_string_lossy().into_owned()
}

fn run(ns: &Netns, recipe: &str, state: &Path, verb: &str) -> Output {
    let state_env = format!("HARNESS_RECIPE_STATE={}", state.display());
    ns.exec(&["env", &state_env, "bash", recipe, verb])
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn apply_verify_revert(scenario_file: &str, tag: &str, must_see: &[&str], must_not_see: &[&str]) {
    common::require_root(&[("ip", "iproute2"), ("iptables", "iptables"), ("iptables-save", "iptables"), ("sysctl", "procps")]);
    let ns = Netns::create(tag);
    let dir = tempfile::tempdir().expect("tempdir");
    let recipe = recipe(scenario_file, dir.path());
    let state_file = dir.path().join("state");
    // Every real host has lo up; a fresh namespace does not.
    assert!(ns.exec(&["ip", "link", "set", "lo", "up"]).status.success());
    let before = state(&ns);

    let o = run(&ns, &recipe, &state_file, "verify");
    assert!(!o.status.success(), "verify must fail before apply:\n{}", text(&o));

    let o = run(&ns, &recipe, &state_file, "apply");
    assert!(o.status.success(), "apply failed:\n{}", text(&o));
    let applied = state(&ns);
    for s in must_see {
        assert!(applied.contains(s), "after apply, expected {s:?} in:\n{applied}");
    }
    for s in must_not_see {
        assert!(!applied.contains(s), "after apply, expected no {s:?} in:\n{applied}");
    }
    let o = run(&ns, &recipe, &state_file, "verify");
    assert!(o.status.success(), "verify failed after apply:\n{}", text(&o));

    let o = run(&ns, &recipe, &state_file, "apply");
    assert!(o.status.success(), "second apply failed:\n{}", text(&o));
    assert_eq!(state(&ns), applied, "a second apply changed the namespace");

    let o = run(&ns, &recipe, &state_file, "revert");
    assert!(o.status.success(), "revert failed:\n{}", text(&o));
    assert_eq!(state(&ns), before, "revert did not restore the namespace");
}

#[test]
#[ignore = "needs root and network namespaces; cargo nextest run --run-ignored all"]
fn full_recipe_in_a_namespace() {
    apply_verify_revert(
        "../scenarios/instance-egress.toml",
        "full",
        &[
            "inet 203.0.113.10/32 scope global lo",
            "mybr0",
            "inet 192.168.100.1/24",
            "net.ipv4.ip_forward = 1",
            "-A FORWARD -s 192.168.100.0/24 -j ACCEPT",
            "-A FORWARD -d 192.168.100.0/24 -j ACCEPT",
            "-A POSTROUTING -s 192.168.100.0/24 ! -d 192.168.100.0/24 -j MASQUERADE",
        ],
        &[],
    );
}

#[test]
#[ignore = "needs root and network namespaces; cargo nextest run --run-ignored all"]
fn recipe_without_masquerade() {
    apply_verify_revert(
        "../scenarios/repro-no-masquerade.toml",
        "nomasq",
        &["inet 203.0.113.10/32 scope global lo", "-A FORWARD -s 192.168.100.0/24 -j ACCEPT"],
        &["MASQUERADE"],
    );
}

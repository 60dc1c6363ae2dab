//! The `harness` binary: exit codes and what it prints for the commands of the
//! foundation (render, lint, localconf parse) and of `run` up to the point where a
//! VM would boot (exit codes 2 and 3, JUnit, annotations), `list`, completions, man.

use std::process::Command;

fn harness(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness")).args(args).output().expect("run harness");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn render_writes_every_artifact_and_its_local_conf_lints_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let (code, stdout, stderr) = harness(&["render", "../scenarios/floating-ip-ingress.toml", "--out", out.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{stderr}");
    for name in ["user-data", "meta-data", "network-config", "host-recipe.sh", "local.conf", "id_ed25519"] {
        assert!(out.join(name).exists(), "{name} missing; printed:\n{stdout}");
    }
    let (code, stdout, _) =
        harness(&["lint", out.join("local.conf").to_str().expect("utf8"), "--scenario", "../scenarios/floating-ip-ingress.toml"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("0 error(s), 0 warning(s)"), "{stdout}");
}

#[test]
fn lint_exit_codes_and_formats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("local.conf");
    std::fs::write(&file, "[[local|localrc]]\nQ_AGENT=openvswitch\nFLOATING_RANGE=172.24.4.0/24\n").expect("write");
    let f = file.to_str().expect("utf8");
    let (code, stdout, _) = harness(&["lint", f]);
    assert_eq!(code, 1, "errors mean exit 1");
    assert!(stdout.contains("local.conf:3: error[floating-range]:"), "{stdout}");
    assert!(stdout.contains("    3 | FLOATING_RANGE=172.24.4.0/24"), "{stdout}");
    let (code, stdout, _) = harness(&["lint", f, "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let d = v["diagnostics"].as_array().expect("array");
    assert!(
        d.iter().any(|d| d["rule"] == "floating-range"
            && d["line"] == 3
            && d["severity"] == "error"
            && d["hint"].as_str().is_some_and(|h| h.contains("192.168.100.0/24"))),
        "{stdout}"
    );
}

#[test]
fn bad_input_is_exit_2_with_file_and_line() {
    let (code, _, stderr) = harness(&["lint", "/nonexistent/local.conf"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("/nonexistent/local.conf"), "{stderr}");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = dir.path().join("s.toml");
    std::fs::write(&s, "[provider]\nbridge = \"mybr0\"\nfloating_range = \"nope\"\n").expect("write");
    let (code, _, stderr) = harness(&["render", s.to_str().expect("utf8"), "--out", dir.path().join("o").to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("s.toml:3:18: expected a CIDR"), "{stderr}");
    assert!(!dir.path().join("o").exists(), "nothing is written for bad input");
    let (code, _, _) = harness(&["render"]);
    assert_eq!(code, 2, "a usage error is bad input too");
}

#[test]
fn templates_can_be_overridden() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("t")).expect("mkdir");
    std::fs::write(dir.path().join("t/local.conf"), "[[local|localrc]]\n# custom {{ plan.name }}\n").expect("write");
    let out = dir.path().join("o");
    let (code, _, stderr) = harness(&[
        "--templates",
        dir.path().join("t").to_str().expect("utf8"),
        "render",
        "../scenarios/instance-egress.toml",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(out.join("local.conf")).expect("read"), "[[local|localrc]]\n# custom instance-egress\n");
    std::fs::write(dir.path().join("t/local.conf"), "{% if %}").expect("write");
    let (code, _, stderr) = harness(&[
        "--templates",
        dir.path().join("t").to_str().expect("utf8"),
        "render",
        "../scenarios/instance-egress.toml",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("template local.conf") && stderr.contains("1:"), "{stderr}");
}

#[test]
fn localconf_parse_json() {
    let (code, stdout, _) = harness(&["localconf", "parse", "tests/fixtures/meta-cases.conf", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(v["files"][0]["group"], "local");
    assert_eq!(v["localrc"]["assignments"][0]["name"], "HOST_IP");
}

#[test]
fn localconf_neutron_says_what_the_cloud_builds() {
    // FIXED_RANGE is not DevStack's private subnet: the subnet pool's first /26 is,
    // and without HOST_IP the OVS agent's local_ip is the default-route NIC's address.
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("local.conf");
    std::fs::write(
        &conf,
        "[[local|localrc]]\nQ_AGENT=openvswitch\nQ_ML2_PLUGIN_MECHANISM_DRIVERS=openvswitch\nQ_ML2_TENANT_NETWORK_TYPE=vxlan\n\
         enable_service q-svc q-agt q-dhcp q-l3\nFIXED_RANGE=10.4.128.0/20\n",
    )
    .expect("write");
    let (code, stdout, stderr) = harness(&["localconf", "neutron", conf.to_str().expect("utf-8"), "--format", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let n = &v["initial_networks"];
    assert_eq!(n["outcome"], "created", "{n}");
    assert_eq!(n["private_subnet"]["cidr"], "10.0.0.0/26", "{n}");
    assert_eq!(n["subnet_pool"]["prefix"], "10.0.0.0/22", "{n}");
    let ml2 =
        v["files"].as_array().expect("files").iter().find(|f| f["path"] == "/etc/neutron/plugins/ml2/ml2_conf.ini").expect("ml2").clone();
    let local_ip = ml2["options"].as_array().expect("options").iter().find(|o| o["key"] == "local_ip").expect("local_ip").clone();
    assert_eq!(local_ip["value"], "192.168.0.10", "{local_ip}");
    assert!(local_ip["decided_by"].as_str().expect("text").contains("get_default_host_ip"), "{local_ip}");
    let (code, text, _) = harness(&["localconf", "neutron", conf.to_str().expect("utf-8")]);
    assert_eq!(code, 0);
    assert!(text.contains("subnet private-subnet 10.0.0.0/26 gateway 10.0.0.1"), "{text}");
}

/// Serves `files` over HTTP on 127.0.0.1 (the only address these tests talk to).
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> u16 {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = reader.into_inner();
            let body = files.iter().find(|(p, _)| *p == path).map(|(_, b)| b.clone());
            let _ = match body {
                Some(b) => stream
                    .write_all(format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes())
                    .and_then(|_| stream.write_all(&b)),
                None => stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            };
        }
    });
    port
}

fn xmllint_validates(xml: &std::path::Path) {
    let have = Command::new("sh").args(["-c", "command -v xmllint"]).output().is_ok_and(|o| o.status.success());
    assert!(have, "this test needs xmllint (apt-get install libxml2-utils; bash .ci/setup does)");
    let out = Command::new("xmllint").args(["--noout", "--schema", "tests/data/junit.xsd"]).arg(xml).output().expect("xmllint");
    assert!(out.status.success(), "JUnit output does not validate:\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_exit_2_for_bad_input_before_anything_boots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = harness(&["run", "--image", "no-such-image", "../scenarios/instance-egress.toml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no-such-image"), "{stderr}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[check]]\nname = \"x\"\nkind = \"icmp\"\nfrom = \"moon\"\nto = \"floating_ip\"\n").expect("write");
    let (code, _, stderr) = harness(&["run", bad.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.toml:4:"), "file and line: {stderr}");
    let (code, _, _) = harness_at_root(&["run", "--shard", "0/2"]);
    assert_eq!(code, 2, "a bad shard is bad input");
}

#[test]
#[ignore = "needs QEMU's tools (the run's prerequisites) and xmllint; cargo nextest run --run-ignored all"]
fn run_exit_3_when_the_image_fails_its_checksum_and_retries_say_so() {
    // A download recipe served from loopback whose SHA256SUMS is wrong: the
    // infrastructure fails before any VM exists, every attempt.
    let port =
        serve(vec![("/disk.img", b"not really a disk".to_vec()), ("/SHA256SUMS", format!("{} *disk.img\n", "0".repeat(64)).into_bytes())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let images = dir.path().join("images");
    std::fs::create_dir(&images).expect("images");
    std::fs::write(
        images.join("broken.toml"),
        format!(
            "description = \"wrong checksum\"\n[build]\nkind = \"download\"\nurl = \"http://127.0.0.1:{port}/disk.img\"\nsha256sums = \"http://127.0.0.1:{port}/SHA256SUMS\"\ndisk_gib = 1\n[boot]\nmethod = \"firmware\"\ndisk_bus = \"virtio\"\n"
        ),
    )
    .expect("recipe");
    let junit = dir.path().join("junit.xml");
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--images", images.to_str().expect("utf8"), "--image", "broken", "--retries", "1", "--format", "json", "--junit"])
        .arg(&junit)
        .arg("../scenarios/instance-egress.toml")
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .env("HARNESS_RUNS_DIR", dir.path().join("runs"))
        .env("GITHUB_ACTIONS", "true")
        .output()
        .expect("harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let json_start = stdout.find('{').expect("JSON");
    let v: serde_json::Value = serde_json::from_str(&stdout[json_start..]).expect("JSON result");
    let f = &v["infrastructure_failures"][0];
    assert_eq!(f["scenario"], "instance-egress");
    assert_eq!(f["attempts"], 2, "one run and one retry");
    assert!(f["error"].as_str().is_some_and(|e| e.contains("checksum") || e.contains("SHA256")), "{f}");
    assert!(stdout.lines().any(|l| l.starts_with("::error file=../scenarios/instance-egress.toml,line=1,")), "annotation: {stdout}");
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    assert!(xml.contains("<error message=\"the infrastructure failed after 2 attempt(s)\" type=\"infrastructure\">"), "{xml}");
    xmllint_validates(&junit);
    assert!(v["seconds"].as_f64().is_some(), "{v}");
    // The text report ends with one line a CI log can be grepped for.
    let text = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--images", images.to_str().expect("utf8"), "--image", "broken", "../scenarios/instance-egress.toml"])
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .env("HARNESS_RUNS_DIR", dir.path().join("runs"))
        .output()
        .expect("harness");
    assert_eq!(text.status.code(), Some(3));
    let last = String::from_utf8_lossy(&text.stdout).lines().last().unwrap_or_default().to_owned();
    assert!(
        last.starts_with("1 scenarios: 0 passed, 0 failed, 0 snapshot differences, 1 infrastructure failures, 0 flaky;")
            && last.ends_with("(exit 3)"),
        "{last}"
    );
    // Nothing corrupt was cached.
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache/devstack-harness/images"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(cached.iter().all(|p| !p.join("disk.qcow2").exists()), "a failed download was cached: {cached:?}");
}

/// `harness` run from the repository root, where `scenarios/` is.
fn harness_at_root(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_harness")).args(args).current_dir("..").output().expect("run harness");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn list_and_shard() {
    let (code, stdout, _) = harness_at_root(&["list", "--format", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let names: Vec<&str> = v["scenarios"].as_array().expect("array").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "floating-ip-ingress",
            "instance-egress",
            "repro-default-route-mgmt",
            "repro-forward-policy-drop",
            "repro-instance-mtu-1500",
            "repro-ip-forward-off",
            "repro-masquerade-wrong-range",
            "repro-no-masquerade",
            "repro-ovs-bridge-down",
            "repro-ovs-bridge-no-address",
            "repro-rp-filter-strict",
            "tempest-basic-ops",
            // Listed by VM group: each that reboots its guest has its own, as has
            // one with a local.conf of its own.
            "repro-reboot-not-persisted",
            "repro-reboot-persisted",
            "repro-single-nic-public-interface"
        ]
    );
    // A VM group goes to one shard whole: twelve scenarios share one VM, each
    // reboot scenario has its own.
    let shard = |s: &str| -> usize {
        let (_, out, _) = harness_at_root(&["list", "--format", "json", "--shard", s]);
        serde_json::from_str::<serde_json::Value>(&out).expect("json")["scenarios"].as_array().expect("array").len()
    };
    assert_eq!(shard("1/2") + shard("2/2"), 15);
    assert!([12, 13, 14, 15].contains(&shard("1/2").max(shard("2/2"))), "the twelve that share a VM stay together");
    assert_eq!(shard("1/1"), 15);
}

#[test]
fn completions_and_man_pages_come_from_the_cli_definition() {
    let (code, stdout, _) = harness(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--retries") && stdout.contains("--junit"), "bash completion knows run's flags");
    let (code, stdout, _) = harness(&["man", "run"]);
    assert_eq!(code, 0);
    assert!(stdout.contains(".TH harness-run 1") && stdout.contains("retries"), "{stdout}");
    let (code, _, stderr) = harness(&["man", "nope"]);
    assert_eq!(code, 2, "{stderr}");
}

/// docs/cli.md is the CLI's own help, every command: regenerate it with
/// `UPDATE_DOCS=1 cargo test --test cli cli_reference`.
#[test]
fn cli_reference_in_docs_is_current() {
    let (_, top, _) = harness(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 10, "{top}");
    let mut doc =
        String::from("# CLI reference\n\nGenerated from the command's own help (`harness help COMMAND`); a test keeps it current.\n\n");
    doc.push_str(&format!("## harness\n\n```text\n{}```\n", top));
    for c in &commands {
        let (_, help, _) = harness(&["help", c]);
        doc.push_str(&format!("\n## harness {c}\n\n```text\n{help}```\n"));
        for sub in help.lines().skip_while(|l| !l.starts_with("Commands:")).skip(1).take_while(|l| l.starts_with("  ")) {
            let Some(s) = sub.split_whitespace().next().filter(|s| *s != "help") else { continue };
            let (_, h, _) = harness(&["help", c, s]);
            doc.push_str(&format!("\n### harness {c} {s}\n\n```text\n{h}```\n"));
        }
    }
    let path = std::path::Path::new("../docs/cli.md");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, &doc).expect("write docs/cli.md");
    }
    let current = std::fs::read_to_string(path).unwrap_or_default();
    assert!(current == doc, "docs/cli.md is out of date: UPDATE_DOCS=1 cargo test --test cli cli_reference");
}

#[test]
fn gc_prunes_old_finished_run_directories_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::env::set_var("HARNESS_RUNS_DIR", dir.path());
    let mut old = harness::run::Run::create("old").expect("run");
    old.record.created = 0;
    old.record.owner_pid = u32::MAX; // no such process: a finished run
    old.save().expect("save");
    let mut recent = harness::run::Run::create("recent").expect("run");
    recent.record.owner_pid = u32::MAX;
    recent.save().expect("save");
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["gc", "--prune", "7"])
        .env("HARNESS_RUNS_DIR", dir.path())
        .output()
        .expect("harness gc");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!old.dir.exists(), "the old run's directory remains");
    assert!(recent.dir.exists(), "a recent run's directory was removed");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("removed run directory {}", old.dir.display())));
}

#[test]
fn a_missing_tool_fails_run_at_once_naming_its_package() {
    // A PATH with every tool a run needs, but qemu-img.
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    let tools = [harness::prereq::BOOT, harness::prereq::QEMU, harness::prereq::DEBOOTSTRAP].concat();
    for t in tools.iter().filter(|t| t.command != "qemu-img") {
        if let Ok(path) = which_path(t.command) {
            std::os::unix::fs::symlink(path, bin.join(t.command)).expect("symlink");
        }
    }
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--backend", "qemu", "../scenarios/instance-egress.toml"])
        .env("PATH", &bin)
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .env("HARNESS_RUNS_DIR", dir.path().join("runs"))
        .output()
        .expect("harness");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("failed after {:.3} s", started.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("qemu-img") && stderr.contains("apt-get install qemu-utils"), "{stderr}");
    // Nothing long was started: no run, no image build.
    assert!(!dir.path().join("runs").exists(), "a run was created before the preflight failed");
    assert!(!dir.path().join("cache").exists(), "an image build started before the preflight failed");
}

#[test]
fn a_local_conf_the_cloud_cannot_honour_fails_run_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The default world's local.conf, rendered, then broken three ways a user might.
    let rendered = dir.path().join("rendered");
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["render", "--out"])
        .arg(&rendered)
        .arg("../scenarios/instance-egress.toml")
        .output()
        .expect("render");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let base = std::fs::read_to_string(rendered.join("local.conf")).expect("local.conf");
    for (name, change, expect) in [
        ("linuxbridge", ("Q_AGENT=openvswitch", "Q_AGENT=linuxbridge"), "error[agent]"),
        ("ovn-driver", ("Q_ML2_PLUGIN_MECHANISM_DRIVERS=openvswitch", "Q_ML2_PLUGIN_MECHANISM_DRIVERS=ovn"), "error[mechanism-driver]"),
        (
            "no-l3",
            ("enable_service q-svc q-agt q-dhcp q-l3 q-meta", "enable_service q-svc q-agt q-dhcp q-meta\ndisable_service q-l3"),
            "q-l3 is not enabled",
        ),
    ] {
        assert!(base.contains(change.0), "the rendered local.conf has no {:?}", change.0);
        let conf = dir.path().join(format!("{name}.conf"));
        std::fs::write(&conf, base.replace(change.0, change.1)).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_harness"))
            .args(["run", "--backend", "qemu", "--local-conf"])
            .arg(&conf)
            .arg("../scenarios/instance-egress.toml")
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env("HARNESS_RUNS_DIR", dir.path().join("runs"))
            .output()
            .expect("harness");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(expect) && stderr.contains(&conf.display().to_string()) && stderr.contains("nothing was started"),
            "{name}: {stderr}"
        );
        assert!(
            !dir.path().join("runs").exists() && !dir.path().join("cache").exists(),
            "{name}: something started before the lint failed"
        );
    }
}

fn which_path(cmd: &str) -> Result<String, ()> {
    let out = Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().map_err(|_| ())?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && !p.is_empty() {
        Ok(p)
    } else {
        Err(())
    }
}

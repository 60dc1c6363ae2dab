//! The harness binary alone, where `cargo install` puts it, works from any
//! directory: templates, scripts and image recipes are embedded, scenarios are
//! found by path.

use std::path::Path;
use std::process::Command;

#[test]
fn an_installed_harness_works_from_another_directory() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    // What `cargo install --path harness` puts in ROOT/bin: this build's binary, copied
    // there (compiling it again in a target directory of its own took 7 minutes of
    // CI, beside the VM tests).
    std::fs::create_dir_all(root.join("bin")).expect("bin");
    std::fs::copy(env!("CARGO_BIN_EXE_harness"), root.join("bin/harness")).expect("copy the binary");
    let bin = root.join("bin/harness");
    assert!(bin.is_file());
    // Elsewhere: no scenarios/, images/ or templates beside it.
    let elsewhere = tmp.path().join("project");
    std::fs::create_dir(&elsewhere).expect("dir");
    std::fs::copy(repo.join("scenarios/instance-egress.toml"), elsewhere.join("egress.toml")).expect("scenario");
    let run = |args: &[&str]| {
        let o = Command::new(&bin).args(args).current_dir(&elsewhere).output().expect("harness");
        (o.status.code(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let (code, text) = run(&["render", "egress.toml", "--out", "rendered"]);
    assert_eq!(code, Some(0), "{text}");
    for f in ["user-data", "meta-data", "network-config", "host-recipe.sh", "local.conf"] {
        assert!(elsewhere.join("rendered").join(f).is_file(), "{f}: {text}");
    }
    let (code, text) = run(&["lint", "rendered/local.conf", "--scenario", "egress.toml"]);
    assert_eq!(code, Some(0), "the rendered local.conf lints clean: {text}");
    let (code, text) = run(&["list", "egress.toml", "--format", "json"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("\"name\": \"egress\"") && text.contains("\"image\": \"debian-12\""), "{text}");
    let (code, text) = run(&["schema", "scenario"]);
    assert_eq!(code, Some(0), "{text}");
    // Without a scenarios/ here, `list` says how to name them.
    let (code, text) = run(&["list"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("name scenario files"), "{text}");
}

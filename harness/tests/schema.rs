//! The JSON Schema of scenario files: generated from the model and kept current
//! here (`UPDATE_DOCS=1 cargo test --test schema` rewrites it), every shipped
//! scenario valid against it and carrying taplo's `#:schema` directive, and an
//! unknown key refused by both the schema and the harness's own loader, each
//! naming the key.

use std::path::{Path, PathBuf};

const SCHEMA: &str = "../schema/scenario.schema.json";

fn shipped() -> Vec<PathBuf> {
    harness::suite::toml_files(Path::new("../scenarios")).expect("scenarios")
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(SCHEMA).expect("schema file")).expect("schema JSON");
    jsonschema::validator_for(&schema).expect("a valid JSON Schema")
}

fn as_json(toml_text: &str) -> serde_json::Value {
    let v: toml::Value = toml::from_str(toml_text).expect("TOML");
    serde_json::to_value(v).expect("JSON")
}

#[test]
fn the_schema_file_is_what_the_model_generates() {
    let generated = format!("{}\n", serde_json::to_string_pretty(&harness::scenario::json_schema()).expect("json"));
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(SCHEMA, &generated).expect("write the schema");
    }
    let stored = std::fs::read_to_string(SCHEMA).unwrap_or_default();
    assert!(stored == generated, "{SCHEMA} is out of date: UPDATE_DOCS=1 cargo test --test schema");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_harness")).args(["schema", "scenario"]).output().expect("harness");
    assert_eq!(String::from_utf8_lossy(&out.stdout), generated, "`harness schema scenario` prints the same schema");
}

#[test]
fn shipped_scenarios_are_valid_and_point_at_the_schema() {
    let v = validator();
    let files = shipped();
    assert!(files.len() >= 4);
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read");
        assert!(text.starts_with("#:schema ../schema/scenario.schema.json\n"), "{}: no taplo schema directive", f.display());
        let errors: Vec<String> = v.iter_errors(&as_json(&text)).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
    }
}

#[test]
fn an_unknown_key_is_refused_by_the_schema_and_the_loader_alike() {
    let text = "[vm]\nmemroy_mib = 4096\n";
    let errors: Vec<String> = validator().iter_errors(&as_json(text)).map(|e| e.to_string()).collect();
    assert!(errors.iter().any(|e| e.contains("memroy_mib")), "the schema names the key: {errors:#?}");
    let loaded = harness::scenario::parse(Path::new("typo.toml"), text).expect_err("the loader refuses it");
    let message = loaded.to_string();
    assert!(message.contains("memroy_mib") && message.starts_with("typo.toml:2:"), "{message}");
    // And a value the schema knows is wrong, the loader too.
    let bad_kind = "[[check]]\nkind = \"smtp\"\nfrom = \"host\"\nto = \"gateway\"\n";
    assert!(!validator().is_valid(&as_json(bad_kind)), "the schema lists the check kinds");
    assert!(harness::scenario::parse(Path::new("kind.toml"), bad_kind).is_err());
}

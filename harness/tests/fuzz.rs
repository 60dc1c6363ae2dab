//! No input makes the parser, the linter or the scenario loader panic
//! (property tests; PROPTEST_CASES raises the count for a longer fuzzing run).

use harness::localconf;
use harness::scenario::{self, World};
use proptest::prelude::*;
use std::path::Path;

/// Lines made of the pieces local.conf files are built from, so that generated
/// input reaches deep into the parser, not just its first branch.
fn localconf_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("[[local|localrc]]".to_owned()),
        Just("[[post-config|$NOVA_CONF]]".to_owned()),
        "\\[\\[[a-z|\\] \\[]{0,12}\\]\\]".prop_map(|s| s),
        "[A-Z_]{1,24}=[-a-z0-9.$/{}:,=\"' ]{0,30}",
        "(enable|disable)_service [a-z0-9, -]{0,20}",
        "\\[[A-Za-z ]{0,8}\\]",
        "[ \\t#]{0,2}[a-z_]{0,8} ?= ?[^\\n]{0,20}",
        "[^\\n]{0,40}",
    ]
}

fn scenario_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("public_ip"),
        Just("address"),
        Just("floating_range"),
        Just("pool_start"),
        Just("fixed_range"),
        Just("kind"),
        Just("port"),
        Just("to")
    ];
    let table = prop_oneof![
        Just("[guest]"),
        Just("[provider]"),
        Just("[tenant]"),
        Just("[[check]]"),
        Just("[host_recipe]"),
        Just("[vm]"),
        Just("")
    ];
    let value = prop_oneof!["\"[0-9./]{0,18}\"".prop_map(|s| s), "[0-9]{1,6}", Just("true".to_owned()), "\"[a-z_]{0,10}\"".prop_map(|s| s)];
    prop::collection::vec((table, key, value), 0..8)
        .prop_map(|items| items.into_iter().map(|(t, k, v)| format!("{t}\n{k} = {v}\n")).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parser_and_linter_never_panic(lines in prop::collection::vec(localconf_line(), 0..40), crlf in any::<bool>()) {
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        let conf = localconf::parse(&text);
        let diags = localconf::lint(&conf, &World::default());
        for d in &diags {
            prop_assert!(d.line >= 1 && d.line <= conf.source_lines.len().max(1), "line {} out of range", d.line);
        }
        let _ = localconf::lint::format_text("f", &conf, &diags);
    }

    #[test]
    fn arbitrary_bytes_never_panic(s in "\\PC{0,200}") {
        let conf = localconf::parse(&s);
        let _ = localconf::lint(&conf, &World::default());
        let _ = scenario::parse(Path::new("f.toml"), &s);
    }

    #[test]
    fn scenario_loader_never_panics(text in scenario_text()) {
        if let Err(e) = scenario::parse(Path::new("f.toml"), &text) {
            // Every error names the file and a line.
            let msg = e.to_string();
            prop_assert!(msg.starts_with("f.toml:"), "{}", msg);
        }
    }
}

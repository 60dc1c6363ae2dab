//! The parser agrees with DevStack's inc/meta-config on the cases its
//! tests/test_meta_config.sh exercises, and on the surprising ones.

use harness::localconf::{self, parse::LocalConf};

fn fixture() -> LocalConf {
    localconf::parse(include_str!("fixtures/meta-cases.conf"))
}

#[test]
fn files_in_order_of_first_appearance_without_empty_names() {
    let conf = fixture();
    let names: Vec<(&str, &str, usize)> = conf.files.iter().map(|f| (f.group.as_str(), f.file.as_str(), f.line)).collect();
    assert_eq!(
        names,
        vec![
            ("local", "localrc", 3),
            ("post-config", "$NOVA_CONF", 9),
            ("post-config", "/etc/a.conf", 24),
            // Only the first blank-separated field of a header counts.
            ("post-config", "/etc/my", 30),
            // Only the first two `|` fields count.
            ("test", "a", 44),
        ]
    );
}

#[test]
fn repeated_headers_concatenate_bodies() {
    let conf = fixture();
    let nova = &conf.files[1];
    assert!(nova.lines.contains(&"debug = True".to_owned()));
    assert!(nova.lines.contains(&"auth = none".to_owned()));
    let debug = nova.options.iter().find(|o| o.key == "debug").expect("debug");
    assert_eq!(debug.values, vec!["True", "False"], "repeated keys accumulate in file order");
    assert_eq!(debug.line, 13);
    let api = nova.options.iter().find(|o| o.section == "api").expect("api section");
    assert_eq!((api.key.as_str(), api.values[0].as_str(), api.line), ("auth", "none", 42));
}

#[test]
fn options_like_merge_config_file() {
    let conf = fixture();
    let nova = &conf.files[1];
    let get = |k: &str| nova.options.iter().find(|o| o.key == k).map(|o| o.values.clone());
    // Comments and indented lines are skipped.
    assert_eq!(get("#debug"), None);
    assert_eq!(get("indented"), None);
    assert_eq!(get("tabbed"), None);
    // The first '=' splits; the rest stays in the value; blanks are trimmed.
    assert_eq!(get("drivers"), Some(vec!["driver=python.import.path.Driver".to_owned()]));
    assert_eq!(get("servers"), Some(vec!["10.11.12.13:80".to_owned()]));
    // No '=' (empty key) and an empty key are dropped, as iniset drops them.
    assert!(nova.options.iter().all(|o| !o.key.is_empty()));
    // `[ ccc ]`: the section name is $1 with brackets removed, i.e. empty: dropped.
    assert_eq!(get("spaces"), None);
    let multi = &conf.files[2];
    assert_eq!(multi.options[0].values, vec!["one", "two"]);
    assert_eq!(multi.options[1].key, "other");
}

#[test]
fn localrc_assignments_and_commands() {
    let conf = fixture();
    let a: Vec<(&str, &str, usize)> = conf.localrc.assignments.iter().map(|a| (a.name.as_str(), a.value.as_str(), a.line)).collect();
    assert_eq!(
        a,
        vec![("HOST_IP", "203.0.113.10", 4), ("FLOATING_RANGE", "192.168.100.0/24", 5), ("LOGFILE", "$DEST/logs/stack.sh.log", 6)]
    );
    assert_eq!(conf.localrc.commands[0].name, "enable_service");
    assert_eq!(conf.localrc.commands[0].args, vec!["q-l3", "q-agt"]);
}

#[test]
fn json_shape() {
    let conf = localconf::parse("[[local|localrc]]\nHOST_IP=203.0.113.10\n[[post-config|$NOVA_CONF]]\n[DEFAULT]\ndebug=True\n");
    let v = serde_json::to_value(&conf).expect("json");
    assert_eq!(v["localrc"]["assignments"][0], serde_json::json!({"name": "HOST_IP", "value": "203.0.113.10", "line": 2}));
    assert_eq!(
        v["files"][1],
        serde_json::json!({"group": "post-config", "file": "$NOVA_CONF", "line": 3, "lines": ["[DEFAULT]", "debug=True"],
                           "options": [{"section": "DEFAULT", "key": "debug", "values": ["True"], "line": 5}]})
    );
}

#[test]
fn crlf_header_names_a_different_file() {
    // awk keeps '\r': the file is "localrc\r", which stack.sh never reads.
    let conf = localconf::parse("[[local|localrc]]\r\nHOST_IP=1.2.3.4\r\n");
    assert_eq!(conf.files[0].file, "localrc\r");
    assert!(conf.localrc.assignments.is_empty());
}

#[test]
fn no_trailing_newline_and_empty_input() {
    assert!(localconf::parse("").files.is_empty());
    let conf = localconf::parse("[[local|localrc]]\nA=1");
    assert_eq!(conf.localrc.assignments[0].value, "1");
}

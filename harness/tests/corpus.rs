//! Every local.conf of `tests/data/localconf-corpus/` (real files from public
//! OpenStack projects, SOURCES.txt says which) parses and lints without a crash;
//! the diagnostics are a snapshot, so that a change in what the linter says about
//! real files is reviewed.

use harness::localconf;
use harness::scenario::World;

#[test]
fn corpus_parses_and_lints() {
    let dir = std::path::Path::new("tests/data/localconf-corpus");
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("corpus").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries.iter().filter(|p| p.file_name().is_some_and(|n| n != "SOURCES.txt")) {
        let conf = localconf::read(path).expect("readable");
        assert!(conf.files.iter().any(|f| f.group == "local" && f.file == "localrc"), "{}: no localrc found", path.display());
        let diags = localconf::lint(&conf, &World::default());
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let text = localconf::lint::format_text(&name, &conf, &diags);
        insta::with_settings!({snapshot_path => "../../snapshots/corpus", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(name.clone(), text);
        });
        seen += 1;
    }
    assert!(seen >= 4, "expected the corpus's files, saw {seen}");
}

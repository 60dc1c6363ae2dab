//! The harness's own scripts (harness/scripts/, embedded) and where they live in
//! the guest.

use include_dir::{include_dir, Dir};

pub static SCRIPTS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/scripts");

/// An embedded script by file name.
pub fn script(name: &str) -> &'static str {
    SCRIPTS.get_file(name).and_then(|f| f.contents_utf8()).expect("embedded script")
}

/// The probe every check runs (probe.py), in the guest.
pub const GUEST_PROBE: &str = "/usr/local/sbin/harness-probe";

/// The host recipe of the `i`-th scenario of a VM group, in the guest.
pub fn host_recipe(i: usize) -> String {
    format!("/usr/local/sbin/harness-host-recipe-{i}")
}

/// The faults script of the scenario the guest is in (a VM shared by scenarios
/// reverts the previous one's with it before the next one's replaces it).
pub const FAULTS: &str = "/usr/local/sbin/harness-faults";

/// What the embedded scripts are: a change to any of them changes this.
pub fn digest() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    // The trace's counter script is uploaded at every start, restored or not, and
    // never runs while a state is prepared: it is not part of what a state is.
    let mut files: Vec<_> = SCRIPTS.files().filter(|f| f.path().to_str() != Some("trace-counters.sh")).collect();
    files.sort_by_key(|f| f.path());
    for f in files {
        h.update(f.path().to_string_lossy().as_bytes());
        h.update(f.contents());
    }
    hex::encode(h.finalize())
}

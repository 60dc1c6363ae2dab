//! The digest of the code that builds a prepared state (the clouds, the reading
//! of a local.conf, how a VM boots and is seeded): a state saved by other code is
//! another state, so the digest is part of its key (runner::warm_inputs).

use sha2::Digest;
use std::path::{Path, PathBuf};

const STATE_CODE: &[&str] = &["src/cloud", "src/localconf", "src/boot.rs", "src/seed.rs"];

fn files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p).expect("readable").flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            files(&e, out);
        }
    } else {
        out.push(p.to_owned());
    }
}

fn main() {
    let mut all = vec![];
    for p in STATE_CODE {
        println!("cargo:rerun-if-changed={p}");
        files(Path::new(p), &mut all);
    }
    let mut h = sha2::Sha256::new();
    for f in &all {
        h.update(f.to_string_lossy().as_bytes());
        h.update(std::fs::read(f).expect("readable"));
    }
    println!("cargo:rustc-env=HARNESS_STATE_CODE={}", hex::encode(h.finalize()));
}

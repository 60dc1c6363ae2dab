//! Snapshot comparison for `harness run`: a scenario's normalized result against
//! the insta snapshot the test suite keeps (`snapshots/scenarios/NAME.snap`; the
//! devstack cloud's are `NAME@devstack.snap`). A difference writes `NAME.snap.new`
//! beside it, which `cargo insta review` offers to accept. Scenarios without a
//! snapshot are reported as new and nothing is written.

use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum SnapshotOutcome {
    Matched {
        file: PathBuf,
    },
    /// Differs: the unified diff, and the pending snapshot written for review.
    Mismatch {
        file: PathBuf,
        pending: PathBuf,
        diff: String,
    },
    /// No snapshot for this scenario: nothing is written (the result's text is
    /// `snapshot-NAME.txt` in the run directory).
    New,
}

impl SnapshotOutcome {
    pub fn is_mismatch(&self) -> bool {
        matches!(self, SnapshotOutcome::Mismatch { .. })
    }
}

/// The snapshot's file for a scenario and cloud.
pub fn file_for(dir: &Path, scenario: &str, cloud: &str) -> PathBuf {
    match cloud {
        "replica" => dir.join(format!("{scenario}.snap")),
        other => dir.join(format!("{scenario}@{other}.snap")),
    }
}

/// The body of an insta snapshot: what follows its `---` header.
pub fn body(snap: &str) -> &str {
    let rest = snap.strip_prefix("---\n").unwrap_or(snap);
    match rest.find("\n---\n") {
        Some(i) if snap.starts_with("---\n") => &rest[i + 5..],
        _ => snap,
    }
}

/// Compare `text` with the stored snapshot; on a difference, write the pending
/// `.snap.new` for `cargo insta review`.
pub fn compare(dir: &Path, scenario: &str, cloud: &str, source: &Path, text: &str) -> std::io::Result<SnapshotOutcome> {
    let file = file_for(dir, scenario, cloud);
    let pending = PathBuf::from(format!("{}.new", file.display()));
    let write_pending =
        || std::fs::write(&pending, format!("---\nsource: harness run\ninput_file: {}\n---\n{}\n", source.display(), text.trim_end()));
    match std::fs::read_to_string(&file) {
        Ok(stored) => {
            let old = body(&stored).trim_end();
            let new = text.trim_end();
            if old == new {
                let _ = std::fs::remove_file(&pending);
                return Ok(SnapshotOutcome::Matched { file });
            }
            write_pending()?;
            let diff = similar::TextDiff::from_lines(old, new).unified_diff().context_radius(2).header("stored", "this run").to_string();
            Ok(SnapshotOutcome::Mismatch { file, pending, diff })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SnapshotOutcome::New),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_the_body_and_writes_pending_snapshots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = Path::new("scenarios/x.toml");
        let new = compare(dir.path(), "x", "replica", src, "a\nb\n").expect("compare");
        assert_eq!(new, SnapshotOutcome::New);
        assert!(!dir.path().join("x.snap.new").exists(), "nothing is written for a scenario without a snapshot");
        std::fs::write(dir.path().join("x.snap"), "---\nsource: t\n---\na\nb\n").expect("accept");
        let same = compare(dir.path(), "x", "replica", src, "a\nb").expect("compare");
        assert!(matches!(same, SnapshotOutcome::Matched { .. }), "{same:?}");
        let changed = compare(dir.path(), "x", "replica", src, "a\nc\n").expect("compare");
        match changed {
            SnapshotOutcome::Mismatch { diff, pending, .. } => {
                assert!(diff.contains("-b\n") && diff.contains("+c\n"), "{diff}");
                assert!(pending.exists());
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert_eq!(file_for(dir.path(), "x", "devstack"), dir.path().join("x@devstack.snap"));
    }
}

//! Snapshot comparison for `harness run`: a scenario's normalized result against
//! the insta snapshot the test suite keeps (`snapshots/scenarios/NAME.snap`; the
//! devstack cloud's are `NAME@devstack.snap`). A difference writes `NAME.snap.new`
//! beside it, which `cargo insta review` offers to accept. A scenario without a
//! snapshot gets its `.snap.new` too: it passes as new, except under CI, where it
//! fails and says how to record it.

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
    /// No snapshot for this scenario yet: the result is written as `pending` for
    /// `cargo insta review`. Passes, except under CI.
    New {
        pending: PathBuf,
    },
    /// No snapshot, under CI (`CI` set, as insta reads it): a failure, since CI
    /// must compare against something. `pending` was written all the same.
    Missing {
        file: PathBuf,
        pending: PathBuf,
    },
}

impl SnapshotOutcome {
    /// Fails the run (exit 1).
    pub fn is_mismatch(&self) -> bool {
        matches!(self, SnapshotOutcome::Mismatch { .. } | SnapshotOutcome::Missing { .. })
    }
}

/// True under CI, as insta decides it: `CI` set to anything but empty, "0" or "false".
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
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

/// Compare `text` with the stored snapshot; on a difference or when there is none,
/// write the pending `.snap.new` for `cargo insta review`. `ci`: a missing
/// snapshot is a failure.
pub fn compare(dir: &Path, scenario: &str, cloud: &str, source: &Path, text: &str, ci: bool) -> std::io::Result<SnapshotOutcome> {
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
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_pending()?;
            Ok(if ci { SnapshotOutcome::Missing { file, pending } } else { SnapshotOutcome::New { pending } })
        }
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
        let pending = dir.path().join("x.snap.new");
        let missing = compare(dir.path(), "x", "replica", src, "a\nb\n", true).expect("compare");
        assert_eq!(missing, SnapshotOutcome::Missing { file: dir.path().join("x.snap"), pending: pending.clone() });
        assert!(missing.is_mismatch(), "under CI a missing snapshot fails");
        let new = compare(dir.path(), "x", "replica", src, "a\nb\n", false).expect("compare");
        assert_eq!(new, SnapshotOutcome::New { pending: pending.clone() });
        assert!(!new.is_mismatch());
        assert!(std::fs::read_to_string(&pending).expect("pending written").ends_with("---\na\nb\n"));
        std::fs::write(dir.path().join("x.snap"), "---\nsource: t\n---\na\nb\n").expect("accept");
        let same = compare(dir.path(), "x", "replica", src, "a\nb", true).expect("compare");
        assert!(matches!(same, SnapshotOutcome::Matched { .. }), "{same:?}");
        let changed = compare(dir.path(), "x", "replica", src, "a\nc\n", true).expect("compare");
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

//! DevStack's `local.conf`: a parser that agrees with DevStack's
//! `inc/meta-config`, the values DevStack ends up with, and a linter that checks
//! them against the world a scenario runs in.

pub mod effective;
pub mod lint;
pub mod networks;
pub mod neutron_files;
pub mod parse;
pub mod plan;

pub use lint::{lint, Diagnostic, Severity};
pub use parse::{parse, LocalConf};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LocalConfError {
    #[error("{path}: cannot read local.conf: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// Read a local.conf. Bytes that are not UTF-8 are replaced, as they cannot
/// matter to the rules (DevStack's own names are ASCII).
pub fn read(path: &Path) -> Result<LocalConf, LocalConfError> {
    let bytes = std::fs::read(path).map_err(|source| LocalConfError::Read { path: path.into(), source })?;
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

/// Plain-text form of a parsed file, for `harness localconf parse --format text`.
pub fn format_text(conf: &LocalConf) -> String {
    let mut out = String::new();
    out.push_str("localrc:\n");
    for a in &conf.localrc.assignments {
        let op = if a.append { "+=" } else { "=" };
        out.push_str(&format!("  {:>4}  {}{op}{}\n", a.line, a.name, a.value));
    }
    for c in &conf.localrc.commands {
        out.push_str(&format!("  {:>4}  {} {}\n", c.line, c.name, c.args.join(" ")));
    }
    for f in &conf.files {
        out.push_str(&format!("[[{}|{}]] (line {}, {} body lines)\n", f.group, f.file, f.line, f.lines.len()));
        for o in &f.options {
            out.push_str(&format!("  {:>4}  [{}] {} = {}\n", o.line, o.section, o.key, o.values.join(" | ")));
        }
    }
    out
}

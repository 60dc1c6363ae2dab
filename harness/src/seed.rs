//! The NoCloud seed: the rendered `user-data`, `meta-data` and `network-config` on
//! a small disk labelled `cidata`, which cloud-init finds at boot. Behind a trait
//! so that another form (VFAT, an HTTP seed) can replace the ISO.

use crate::render::Rendered;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{tool} failed: {detail}\n  fix: {fix}")]
    Tool { tool: String, detail: String, fix: String },
}

pub trait SeedBuilder {
    /// Write the seed image for `rendered` into `dir`; returns its path.
    fn build(&self, rendered: &Rendered, dir: &Path) -> Result<PathBuf, SeedError>;
}

/// An ISO 9660 image (genisoimage), the form cloud-init documents for NoCloud.
pub struct IsoSeed;

impl SeedBuilder for IsoSeed {
    fn build(&self, rendered: &Rendered, dir: &Path) -> Result<PathBuf, SeedError> {
        let files = dir.join("seed");
        std::fs::create_dir_all(&files).map_err(|source| SeedError::Io { path: files.clone(), source })?;
        for (name, text) in
            [("user-data", &rendered.user_data), ("meta-data", &rendered.meta_data), ("network-config", &rendered.network_config)]
        {
            let p = files.join(name);
            std::fs::write(&p, text).map_err(|source| SeedError::Io { path: p, source })?;
        }
        let iso = dir.join("seed.iso");
        let out = Command::new("genisoimage")
            .args(["-quiet", "-output"])
            .arg(&iso)
            .args(["-volid", "cidata", "-joliet", "-rock"])
            .arg(files.join("user-data"))
            .arg(files.join("meta-data"))
            .arg(files.join("network-config"))
            .output()
            .map_err(|e| SeedError::Tool {
                tool: "genisoimage".into(),
                detail: e.to_string(),
                fix: "apt-get install genisoimage".into(),
            })?;
        if !out.status.success() {
            return Err(SeedError::Tool {
                tool: "genisoimage".into(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                fix: "check free space in the run directory".into(),
            });
        }
        Ok(iso)
    }
}

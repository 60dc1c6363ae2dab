//! Prepared states for warm runs: a VM group's guest saved (memory and disk) once
//! it has booted, applied its first host recipe and built its cloud, keyed by
//! everything that decided that state. A later run with the same key restores it
//! in seconds instead of booting and building again.
//!
//! An entry is a directory of the cache (`$HARNESS_STATES_DIR`, else
//! `~/.cache/devstack-harness/states/KEY/`): `state.bin` (QEMU's migration stream),
//! `disk.qcow2` (the run's overlay at that moment, backed by the base image),
//! `seed.iso`, and `meta.json` (the SSH keys, what the cloud answered, the
//! checksums). A truncated or corrupt entry is found by its checksums, removed and
//! rebuilt by the run that found it.

use crate::cloud::Deployed;
use crate::vm::qmp::{Qmp, QmpError};
use crate::wait::{self, Step};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum PreparedError {
    #[error(transparent)]
    Qmp(#[from] QmpError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("saving the VM's state: {0}")]
    Migrate(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PreparedError + '_ {
    move |source| PreparedError::Io { path: path.into(), source }
}

/// What is kept beside the saved state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub key: String,
    pub created: u64,
    pub last_used: u64,
    /// The run id the guest was built with (the replica's names carry it).
    pub guest_id: String,
    pub client_private_key: String,
    pub host_public_key: String,
    pub deployed: Deployed,
    /// The scenario and what went into the key, for `harness cache list`.
    pub scenario: String,
    pub inputs: serde_json::Value,
    pub state_bytes: u64,
    pub state_sha256: String,
    pub disk_bytes: u64,
    pub disk_sha256: String,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub dir: PathBuf,
    pub meta: Meta,
}

impl Entry {
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.bin")
    }
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub fn seed(&self) -> PathBuf {
        self.dir.join("seed.iso")
    }
    pub fn bytes(&self) -> u64 {
        self.meta.state_bytes + self.meta.disk_bytes
    }
}

pub fn root() -> PathBuf {
    std::env::var_os("HARNESS_STATES_DIR").map(PathBuf::from).unwrap_or_else(|| crate::image::cache_root().join("states"))
}

/// The cache's size limit: `$HARNESS_STATES_MAX_MIB`, else 8 GiB (a neutron
/// cloud's state is 1-2.5 GB).
pub fn max_bytes() -> u64 {
    std::env::var("HARNESS_STATES_MAX_MIB").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(8192) * 1024 * 1024
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The key of a prepared state: a digest of `inputs` (everything that decided it).
pub fn key(inputs: &serde_json::Value) -> String {
    hex::encode(Sha256::digest(inputs.to_string().as_bytes()))[..24].to_owned()
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((n, hex::encode(h.finalize())))
}

/// Why an entry cannot be used, if it cannot.
fn verify(e: &Entry) -> Result<(), String> {
    for (path, bytes, sum) in [(e.state(), e.meta.state_bytes, &e.meta.state_sha256), (e.disk(), e.meta.disk_bytes, &e.meta.disk_sha256)] {
        let (n, got) = sha256_file(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        if n != bytes {
            return Err(format!("{}: {n} bytes, {bytes} expected (truncated)", path.display()));
        }
        if &got != sum {
            return Err(format!("{}: sha256 {got}, {sum} expected (corrupt)", path.display()));
        }
    }
    if !e.seed().is_file() {
        return Err(format!("{} is missing", e.seed().display()));
    }
    Ok(())
}

/// Entries this process saved or verified (key and state checksum): a group's
/// later scenarios restore the state its first one just saved or checked, and
/// hashing it again would cost them a second each.
static TRUSTED: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn trusted(meta: &Meta) -> bool {
    TRUSTED.lock().is_ok_and(|t| t.iter().any(|(k, sum)| *k == meta.key && *sum == meta.state_sha256))
}

fn trust(meta: &Meta) {
    if let Ok(mut t) = TRUSTED.lock() {
        t.push((meta.key.clone(), meta.state_sha256.clone()));
    }
}

/// The entry for `key`, checked; a broken one is removed and reported in `Err`,
/// so that the caller builds it again.
pub fn lookup(key: &str) -> Result<Option<Entry>, String> {
    let dir = root().join(key);
    let Ok(text) = std::fs::read(dir.join("meta.json")) else { return Ok(None) };
    let Ok(meta) = serde_json::from_slice::<Meta>(&text) else {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!("{}: unreadable meta.json; removed", dir.display()));
    };
    let mut e = Entry { dir, meta };
    if !trusted(&e.meta) {
        if let Err(why) = verify(&e) {
            let _ = std::fs::remove_dir_all(&e.dir);
            return Err(format!("prepared state {key} is unusable ({why}); removed, this run builds it again"));
        }
        trust(&e.meta);
    }
    e.meta.last_used = now();
    let _ = std::fs::write(e.dir.join("meta.json"), serde_json::to_vec_pretty(&e.meta).expect("serializable"));
    Ok(Some(e))
}

/// How a VM's state is saved.
#[derive(Debug, Clone)]
pub enum SaveVia {
    /// QEMU's own migration to a file, through its QMP socket; the VM goes on.
    Qmp(PathBuf),
    /// libvirt's save image; the domain stops (the caller restores it).
    Libvirt { uri: String, domain: String },
}

/// What [`save`] needs besides the VM.
pub struct SaveInput<'a> {
    pub key: &'a str,
    pub via: &'a SaveVia,
    pub overlay: &'a Path,
    pub seed: &'a Path,
    pub guest_id: &'a str,
    pub client_private_key: String,
    pub host_public_key: String,
    pub deployed: Deployed,
    pub scenario: &'a str,
    pub inputs: serde_json::Value,
}

/// Save the running VM: pause, migrate its state to a file, copy its disk, resume.
/// The VM goes on as before for the run that saved it.
pub async fn save(s: SaveInput<'_>) -> Result<Entry, PreparedError> {
    let root = root();
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let tmp = root.join(format!(".{}.tmp-{}", s.key, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let state = tmp.join("state.bin");
    let saved = match s.via {
        SaveVia::Qmp(socket) => save_qmp(socket, &state, s.overlay, s.seed, &tmp).await,
        SaveVia::Libvirt { uri, domain } => {
            let (uri, domain, to) = (uri.clone(), domain.clone(), state.clone());
            match tokio::task::spawn_blocking(move || crate::vm::libvirt::save(&uri, &domain, &to)).await {
                Ok(Ok(())) => copy_disks(s.overlay, s.seed, &tmp).await,
                Ok(Err(e)) => Err(PreparedError::Migrate(e.to_string())),
                Err(e) => Err(PreparedError::Migrate(e.to_string())),
            }
        }
    };
    if let Err(e) = saved {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let sums = tokio::task::spawn_blocking({
        let tmp = tmp.clone();
        move || -> std::io::Result<_> { Ok((sha256_file(&tmp.join("state.bin"))?, sha256_file(&tmp.join("disk.qcow2"))?)) }
    })
    .await
    .map_err(|e| PreparedError::Migrate(e.to_string()))?
    .map_err(io(&tmp))?;
    let ((state_bytes, state_sha256), (disk_bytes, disk_sha256)) = sums;
    let meta = Meta {
        key: s.key.into(),
        created: now(),
        last_used: now(),
        guest_id: s.guest_id.into(),
        client_private_key: s.client_private_key,
        host_public_key: s.host_public_key,
        deployed: s.deployed,
        scenario: s.scenario.into(),
        inputs: s.inputs,
        state_bytes,
        state_sha256,
        disk_bytes,
        disk_sha256,
    };
    let meta_path = tmp.join("meta.json");
    std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).expect("serializable")).map_err(io(&meta_path))?;
    let dir = root.join(s.key);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    trust(&meta);
    Ok(Entry { dir, meta })
}

/// The disk as the saved memory knows it, and the seed, into the entry.
async fn copy_disks(overlay: &Path, seed: &Path, tmp: &Path) -> Result<(), PreparedError> {
    for (from, to) in [(overlay, tmp.join("disk.qcow2")), (seed, tmp.join("seed.iso"))] {
        tokio::task::spawn_blocking({
            let (from, to) = (from.to_owned(), to.clone());
            move || std::fs::copy(&from, &to)
        })
        .await
        .map_err(|e| PreparedError::Migrate(e.to_string()))?
        .map_err(io(&to))?;
    }
    Ok(())
}

/// Pause, migrate to `state`, copy the disks, resume (in every case: the run
/// that saved goes on).
async fn save_qmp(socket: &Path, state: &Path, overlay: &Path, seed: &Path, tmp: &Path) -> Result<(), PreparedError> {
    let qmp = tokio::sync::Mutex::new(Qmp::connect(socket).await?);
    qmp.lock().await.execute("stop", serde_json::json!({})).await?;
    let uri = format!("exec:cat > {}", crate::exec::quote(&[state.display().to_string()]));
    let saved = async {
        qmp.lock().await.execute("migrate", serde_json::json!({ "uri": uri })).await?;
        let q = &qmp;
        let status = wait::until("the migration to a file", Duration::from_secs(300), Duration::from_millis(100), || async move {
            match q.lock().await.execute("query-migrate", serde_json::json!({})).await {
                Ok(v) => match v["status"].as_str() {
                    Some("completed") => Step::Done(Ok(())),
                    Some("failed") | Some("cancelled") => Step::Done(Err(v.to_string())),
                    other => Step::NotYet(format!("status {other:?}")),
                },
                Err(e) => Step::Fail(e.to_string()),
            }
        })
        .await
        .map_err(|e| PreparedError::Migrate(e.to_string()))?;
        status.map_err(PreparedError::Migrate)?;
        // The VM is still paused: the disk is as the saved memory knows it.
        copy_disks(overlay, seed, tmp).await
    }
    .await;
    let resumed = qmp.lock().await.execute("cont", serde_json::json!({})).await;
    saved?;
    resumed?;
    Ok(())
}

/// Every entry of the cache, most recently used first.
pub fn list() -> Vec<Entry> {
    let mut v: Vec<Entry> = std::fs::read_dir(root())
        .map(|r| {
            r.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| {
                    let meta = serde_json::from_slice(&std::fs::read(e.path().join("meta.json")).ok()?).ok()?;
                    Some(Entry { dir: e.path(), meta })
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|e| std::cmp::Reverse(e.meta.last_used));
    v
}

/// Remove entries, least recently used first, until the cache holds at most
/// `max_bytes`; returns the keys removed.
pub fn prune(max_bytes: u64) -> Vec<String> {
    // Half-written entries of runs that died while saving.
    for e in std::fs::read_dir(root()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let dead = name
            .rsplit_once(".tmp-")
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if name.starts_with('.') && dead {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let mut entries = list();
    let mut total: u64 = entries.iter().map(Entry::bytes).sum();
    let mut removed = Vec::new();
    while total > max_bytes {
        let Some(e) = entries.pop() else { break };
        if std::fs::remove_dir_all(&e.dir).is_ok() {
            total -= e.bytes();
            removed.push(e.meta.key);
        }
    }
    removed
}

/// Remove one entry (by key or a prefix of it); false when none matched.
pub fn remove(key: &str) -> bool {
    let mut removed = false;
    for e in list().into_iter().filter(|e| e.meta.key.starts_with(key)) {
        removed |= std::fs::remove_dir_all(&e.dir).is_ok();
    }
    removed
}

/// Wait until a VM started with `-incoming` has loaded its state, and run it: it
/// was saved paused (so that its disk could be copied), and QEMU restores it
/// paused.
pub async fn resume_restored(qmp_socket: &Path) -> Result<(), PreparedError> {
    let qmp = wait::until("QEMU's QMP socket", Duration::from_secs(30), Duration::from_millis(50), || async {
        match Qmp::connect(qmp_socket).await {
            Ok(q) => Step::Done(q),
            Err(e) => Step::NotYet(e.to_string()),
        }
    })
    .await
    .map_err(|e| PreparedError::Migrate(e.to_string()))?;
    let qmp = tokio::sync::Mutex::new(qmp);
    let q = &qmp;
    let status = wait::until("the saved state to load", Duration::from_secs(120), Duration::from_millis(50), || async move {
        match q.lock().await.execute("query-status", serde_json::json!({})).await {
            Ok(v) => match v["status"].as_str().unwrap_or("") {
                "inmigrate" | "prelaunch" => Step::NotYet(v.to_string()),
                s => Step::Done(s.to_owned()),
            },
            Err(e) => Step::Fail(e.to_string()),
        }
    })
    .await
    .map_err(|e| PreparedError::Migrate(e.to_string()))?;
    match status.as_str() {
        "running" => Ok(()),
        "paused" | "postmigrate" => {
            qmp.lock().await.execute("cont", serde_json::json!({})).await?;
            Ok(())
        }
        other => Err(PreparedError::Migrate(format!("the restored VM is {other:?}, not running"))),
    }
}

//! A run: its id, its directory (rendered files, console log, timings, SSH key),
//! and a record of every resource it creates, written *before* the resource
//! exists. Teardown reads the record, so it works from this process (success,
//! failure, Ctrl-C, panic), from `harness down`, and from `harness gc` after the
//! harness itself was killed.

use crate::vm::VmHandle;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no run {id:?} in {root} (harness ps lists them)")]
    NotFound { id: String, root: PathBuf },
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
}

/// Every resource of a run, so that any process can remove it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub scenario: String,
    pub created: u64,
    /// The harness process that owns the run; a dead owner means a killed run.
    pub owner_pid: u32,
    /// When the owner started (clock ticks after boot, /proc/PID/stat), so that a
    /// reused pid is never taken for the owner.
    #[serde(default)]
    pub owner_start: u64,
    /// Kept on purpose (`--keep`): `gc` leaves it while its VM runs.
    pub keep: bool,
    pub vm: Option<VmHandle>,
    pub netns: Vec<String>,
    pub taps: Vec<String>,
    /// Helper processes on the host (the responder), killed at teardown.
    #[serde(default)]
    pub helpers: Vec<i32>,
    pub ssh_port: Option<u16>,
    pub ssh_user: String,
    pub host_public_key: String,
    pub accel: Option<String>,
    pub image: Option<String>,
    pub status: String,
}

pub struct Run {
    pub id: String,
    pub dir: PathBuf,
    pub record: Record,
}

pub fn runs_root() -> PathBuf {
    if let Some(d) = std::env::var_os("HARNESS_RUNS_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("/var/lib"));
    base.join("devstack-harness/runs")
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io { path: path.into(), source }
}

/// Names derived from the run id, each within Linux's 15-character interface limit.
pub fn edge_netns(id: &str) -> String {
    format!("dh-{id}-edge")
}
pub fn internet_netns(id: &str) -> String {
    format!("dh-{id}-inet")
}
pub fn data_tap(id: &str) -> String {
    format!("dh{id}t0")
}
pub fn vm_name(id: &str) -> String {
    format!("dh-{id}")
}

impl Run {
    pub fn create(scenario: &str) -> Result<Run, RunError> {
        let mut bytes = [0u8; 4];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        let id = hex::encode(bytes);
        let dir = runs_root().join(&id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let run = Run {
            id: id.clone(),
            dir,
            record: Record {
                id,
                scenario: scenario.into(),
                created: now(),
                owner_pid: std::process::id(),
                owner_start: process_start(std::process::id()).unwrap_or(0),
                ssh_user: "root".into(),
                status: "starting".into(),
                ..Default::default()
            },
        };
        run.save()?;
        Ok(run)
    }

    pub fn open(id: &str) -> Result<Run, RunError> {
        let dir = runs_root().join(id);
        let path = dir.join("run.json");
        let text = std::fs::read(&path).map_err(|_| RunError::NotFound { id: id.into(), root: runs_root() })?;
        let record: Record =
            serde_json::from_slice(&text).map_err(|e| RunError::Io { path: path.clone(), source: std::io::Error::other(e) })?;
        Ok(Run { id: id.into(), dir, record })
    }

    pub fn all() -> Vec<Run> {
        let mut runs: Vec<Run> = std::fs::read_dir(runs_root())
            .map(|r| r.flatten().filter_map(|e| Run::open(e.file_name().to_str()?).ok()).collect())
            .unwrap_or_default();
        runs.sort_by_key(|r| r.record.created);
        runs
    }

    pub fn save(&self) -> Result<(), RunError> {
        let path = self.dir.join("run.json");
        let tmp = self.dir.join("run.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.record).expect("serializable")).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// How to reach the run's guest over SSH, once its port is known.
    pub fn ssh_target(&self) -> Option<crate::ssh::Target> {
        Some(crate::ssh::Target {
            port: self.record.ssh_port?,
            user: self.record.ssh_user.clone(),
            private_key: self.path("id_ed25519"),
            host_public_key: self.record.host_public_key.clone(),
        })
    }

    pub fn set_status(&mut self, status: &str) {
        self.record.status = status.into();
        let _ = self.save();
    }

    /// Create a network namespace owned by this run (recorded first).
    pub fn add_netns(&mut self, name: &str) -> Result<(), RunError> {
        self.record.netns.push(name.into());
        self.save()?;
        sh("ip netns add", Command::new("ip").args(["netns", "add", name]))
    }

    /// Create a tap in the host namespace, for QEMU to open (recorded first).
    pub fn add_tap(&mut self, name: &str) -> Result<(), RunError> {
        self.record.taps.push(name.into());
        self.save()?;
        sh("ip tuntap add", Command::new("ip").args(["tuntap", "add", "dev", name, "mode", "tap"]))
    }

    /// Is the process that owns this run still running? Its pid alone is not
    /// proof: the start time must match too.
    pub fn owner_alive(&self) -> bool {
        let pid = self.record.owner_pid;
        if pid == std::process::id() {
            return true;
        }
        match process_start(pid) {
            Some(start) => self.record.owner_start == 0 || start == self.record.owner_start,
            None => false,
        }
    }

    /// Remove everything this run created, in reverse order of dependency: the VM,
    /// then its namespaces (which take moved taps with them), then leftover taps,
    /// then the disk overlay. Safe to call twice; best effort, and says what failed.
    pub fn teardown(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(vm) = &self.record.vm {
            if let Err(e) = vm.stop(Duration::from_secs(10)) {
                problems.push(e.to_string());
            }
        }
        for (pid, name) in self.unrecorded_qemus() {
            if let Err(e) = crate::vm::qemu::stop(pid, &name, Duration::from_secs(10)) {
                problems.push(e.to_string());
            }
        }
        for &pid in &self.record.helpers {
            // Only a process still running this run's script is ours (pids are reused).
            let ours = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&self.id));
            if ours {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        for ns in &self.record.netns {
            if netns_exists(ns) {
                if let Err(e) = sh("ip netns del", Command::new("ip").args(["netns", "del", ns])) {
                    problems.push(e.to_string());
                }
            }
        }
        for tap in &self.record.taps {
            if link_exists(tap) {
                if let Err(e) = sh("ip link del", Command::new("ip").args(["link", "del", tap])) {
                    problems.push(e.to_string());
                }
            }
        }
        for f in ["disk.qcow2", "seed.iso"] {
            let p = self.path(f);
            if p.exists() {
                if let Err(e) = std::fs::remove_file(&p) {
                    problems.push(format!("{}: {e}", p.display()));
                }
            }
        }
        self.record.status = if problems.is_empty() { "down".into() } else { format!("teardown incomplete: {}", problems.join("; ")) };
        let _ = self.save();
        problems
    }

    /// Is anything of this run still there?
    /// QEMU processes named for this run that its record does not hold: a harness
    /// killed between spawning QEMU and recording it leaves one. The name is the
    /// run's own (`vm_name`), so matching it is matching this run.
    fn unrecorded_qemus(&self) -> Vec<(i32, String)> {
        let name = vm_name(&self.id);
        let recorded = match &self.record.vm {
            Some(VmHandle::Qemu { pid, .. }) => Some(*pid),
            _ => None,
        };
        crate::vm::qemu::harness_processes().into_iter().filter(|(pid, n)| *n == name && Some(*pid) != recorded).collect()
    }

    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        if let Some(vm) = &self.record.vm {
            if vm.is_running() {
                left.push(format!("VM {vm:?}"));
            }
        }
        left.extend(self.unrecorded_qemus().into_iter().map(|(pid, n)| format!("QEMU pid {pid} ({n}), never recorded")));
        left.extend(self.record.netns.iter().filter(|n| netns_exists(n)).map(|n| format!("netns {n}")));
        left.extend(self.record.taps.iter().filter(|t| link_exists(t)).map(|t| format!("tap {t}")));
        left.extend(
            ["disk.qcow2", "seed.iso"].iter().map(|f| self.path(f)).filter(|p| p.exists()).map(|p| format!("file {}", p.display())),
        );
        left
    }
}

/// When `pid` started (field 22 of /proc/PID/stat); None when it is gone or a zombie.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn sh(what: &str, cmd: &mut Command) -> Result<(), RunError> {
    let out = cmd.output().map_err(|e| RunError::Command { what: what.into(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RunError::Command { what: what.into(), detail: String::from_utf8_lossy(&out.stderr).trim().to_owned() })
    }
}

pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Namespaces and links named like the harness's (`dh-…`, `dh…t0`).
pub fn harness_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|r| r.flatten().filter_map(|e| e.file_name().to_str().map(str::to_owned)).filter(|n| n.starts_with("dh-")).collect())
        .unwrap_or_default()
}

pub fn harness_taps() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|r| {
            r.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|n| n.starts_with("dh") && n.len() == 12 && (n.ends_with("t0") || n.ends_with("e0") || n.ends_with("i0")))
                .collect()
        })
        .unwrap_or_default()
}

/// What `harness gc` did.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub runs: Vec<String>,
    pub removed: Vec<String>,
    /// Harness-named resources that no run here records: maybe another runs
    /// directory's, or a test's. Never removed by gc.
    pub left_alone: Vec<String>,
    pub problems: Vec<String>,
}

/// Remove what dead runs left: a run is dead when its owner process is gone (pid
/// and start time) and it was not kept up on purpose. Only resources recorded in a
/// dead run's record are removed; a live run's, and anything no record names, are
/// left alone. With `prune_days`, also the directories of finished runs (nothing
/// left, not kept) older than that many days.
pub fn gc(libvirt_uri: &str, prune_days: Option<u64>) -> GcReport {
    let mut report = GcReport::default();
    let mut recorded: Vec<String> = Vec::new();
    for mut run in Run::all() {
        recorded.push(vm_name(&run.id));
        recorded.extend(run.record.netns.iter().chain(&run.record.taps).cloned());
        // A kept run counts only once its boot finished: `up --keep` killed mid-boot is debris.
        let kept_and_up = run.record.keep && run.record.status == "up" && run.record.vm.as_ref().is_some_and(VmHandle::is_running);
        if run.owner_alive() || kept_and_up {
            continue;
        }
        let left = run.leftovers();
        if left.is_empty() {
            let old = prune_days.is_some_and(|d| now().saturating_sub(run.record.created) >= d * 86_400);
            if old {
                match std::fs::remove_dir_all(&run.dir) {
                    Ok(()) => report.removed.push(format!("run directory {}", run.dir.display())),
                    Err(e) => report.problems.push(format!("{}: {e}", run.dir.display())),
                }
            }
            continue;
        }
        report.problems.extend(run.teardown());
        report.removed.extend(left);
        report.runs.push(run.id.clone());
    }
    let unrecorded = |name: &String| !recorded.contains(name);
    let root = runs_root();
    let note = |what: String| format!("{what} (no run in {} records it)", root.display());
    report.left_alone.extend(
        crate::vm::qemu::harness_processes()
            .into_iter()
            .filter(|(_, n)| unrecorded(n))
            .map(|(pid, n)| note(format!("QEMU pid {pid} ({n})"))),
    );
    report
        .left_alone
        .extend(crate::vm::libvirt::harness_domains(libvirt_uri).into_iter().filter(unrecorded).map(|d| note(format!("domain {d}"))));
    report.left_alone.extend(harness_netns().into_iter().filter(unrecorded).map(|n| note(format!("netns {n}"))));
    report.left_alone.extend(harness_taps().into_iter().filter(unrecorded).map(|t| note(format!("link {t}"))));
    report
}

/// `harness ps`: a line per run.
pub fn ps_table(runs: &[Run]) -> String {
    let mut s = format!("{:<10} {:<22} {:<8} {:<8} {:<6} {:<6} status\n", "RUN", "SCENARIO", "BACKEND", "VM", "PORT", "OWNER");
    for run in runs {
        let r = &run.record;
        let vm = match &r.vm {
            Some(v) if v.is_running() => "up",
            Some(_) => "down",
            None => "-",
        };
        let owner = if run.owner_alive() {
            "alive"
        } else if r.keep {
            "kept"
        } else {
            "gone"
        };
        s.push_str(&format!(
            "{:<10} {:<22} {:<8} {:<8} {:<6} {:<6} {}\n",
            run.id,
            r.scenario,
            r.vm.as_ref().map(|v| v.backend()).unwrap_or("-"),
            vm,
            r.ssh_port.map(|p| p.to_string()).unwrap_or_default(),
            owner,
            r.status
        ));
    }
    s
}

//! The command line: clap's types, and their conversion into the library's.

use clap::{Args, Parser, Subcommand, ValueEnum};
use harness::accel::AccelChoice;
use harness::boot::BootOptions;
use harness::runner::Keep;
use harness::scenario::CloudKind;
use harness::suite::{Shard, VmOverrides};
use harness::vm::BackendChoice;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Proves that a DevStack cloud built inside a cloud VM works from the outside in and from the inside out"
)]
pub struct Cli {
    /// Directory whose templates override the embedded ones (same relative names).
    #[arg(long, global = true, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Print only results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more: each step's details and where its logs went.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How `harness diff` prints its report.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
    /// A table for a pull request's job summary.
    Markdown,
}

#[derive(Subcommand)]
pub enum Command {
    /// Render cloud-init user-data, meta-data, network-config, the host recipe and local.conf.
    Render {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Build from this local.conf instead of the scenario's.
        #[arg(long, value_name = "FILE")]
        local_conf: Option<PathBuf>,
    },
    /// Check a local.conf against the world of a scenario (the default world when none is named).
    Lint {
        /// The local.conf files (each is judged on its own; pre-commit passes several).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Read DevStack's local.conf the way DevStack does.
    Localconf {
        #[command(subcommand)]
        command: LocalconfCommand,
    },
    /// Run scenarios end to end (all of scenarios/ when none is named): boot, host
    /// recipe, cloud, checks, teardown. Exits 1 when a check does not match.
    Run {
        scenarios: Vec<PathBuf>,
        /// Which builds the cloud (default: what each scenario says).
        #[arg(long, value_enum)]
        cloud: Option<CloudArg>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Also write the results as JUnit XML (a test case per check).
        #[arg(long, value_name = "PATH")]
        junit: Option<PathBuf>,
        /// Also append a Markdown summary (the table of checks and what went wrong)
        /// to this file, such as $GITHUB_STEP_SUMMARY.
        #[arg(long, value_name = "PATH")]
        summary: Option<PathBuf>,
        /// Rerun a scenario whose infrastructure failed (never one whose check
        /// failed) up to N times; a pass after a retry is reported as flaky.
        #[arg(long, default_value_t = 0, value_name = "N")]
        retries: u32,
        /// Whether the VM stays up after the run, for `harness ssh`.
        #[arg(long, value_enum, default_value_t = KeepArg::Never)]
        keep: KeepArg,
        /// Compare each result with its snapshot here, when the directory exists
        /// (NAME.snap, NAME@devstack.snap); a difference fails the run (exit 1) and
        /// writes NAME.snap.new for `cargo insta review`.
        #[arg(long, value_name = "DIR", default_value = "snapshots/scenarios")]
        snapshots: PathBuf,
        /// Do not compare with snapshots.
        #[arg(long)]
        no_snapshots: bool,
        /// Boot and build every VM group cold: neither restore nor save prepared
        /// states (`harness cache` lists them).
        #[arg(long)]
        no_cache: bool,
        /// Run up to N VMs at once (default: as many as the machine's cores and
        /// memory hold, a core per vCPU); results stay in the order given.
        #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
        /// Collect the guest's diagnostics (journals, configs, every table, into the
        /// run's state/) after passing runs too, not only when something failed or
        /// the VM stays up.
        #[arg(long)]
        diagnostics: bool,
        /// Trace every check's packet hop by hop (`path` in the results), not only
        /// those of checks that failed or expect no answer.
        #[arg(long)]
        trace: bool,
        #[command(flatten)]
        select: Select,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Run the scenarios with two local.conf files and report what changed: lint
    /// diagnostics added or gone, each check's outcome and where its packet died,
    /// the datapath state. Exit 1 when a check that passed with OLD fails with NEW.
    Diff {
        /// The local.conf before: a file, or REV:PATH in this git repository
        /// (main:devstack/local.conf).
        old: String,
        /// The local.conf after (a file or REV:PATH).
        new: String,
        /// The scenarios (default: scenarios/).
        scenarios: Vec<PathBuf>,
        /// Which builds the cloud (default: what each scenario says).
        #[arg(long, value_enum)]
        cloud: Option<CloudArg>,
        #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
        format: DiffFormat,
        /// Also append the Markdown table to this file, such as $GITHUB_STEP_SUMMARY.
        #[arg(long, value_name = "PATH")]
        summary: Option<PathBuf>,
        /// Boot and build every VM group cold.
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// List the scenarios (all of scenarios/ when none is named) and the VM each shares.
    List {
        scenarios: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        select: Select,
    },
    /// Print the JSON Schema of scenario files (for editors: taplo's `#:schema` directive).
    Schema {
        #[arg(value_enum)]
        what: SchemaArg,
    },
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) of harness, or of one of its commands.
    Man { command: Option<String> },
    /// Boot a scenario's VM and wait until SSH works and cloud-init is done.
    Up {
        /// Scenario file (the default world when omitted).
        scenario: Option<PathBuf>,
        /// Leave the VM up and return (reach it with `harness ssh RUN`); without it,
        /// the VM stays until Ctrl-C and is then torn down.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Open an interactive SSH session to a run's guest (the pinned host key, no TOFU).
    Ssh { run: String },
    /// Run a command in a run's guest; exits with its status.
    Exec {
        run: String,
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Trace again, hop by hop, the checks of the scenario a kept run's VM is in
    /// (`--keep`), and say where each packet died: for iterating on a fix by hand.
    Diagnose {
        run: String,
        /// Only the checks whose name contains this.
        check: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Tear a run down: its VM, namespaces, taps and overlay.
    Down { run: String },
    /// List runs and whether their VM is up.
    Ps,
    /// Remove what dead runs left (their owner process is gone): processes, domains,
    /// namespaces, taps, overlays. A live run's resources, and any no run records, stay.
    Gc {
        #[arg(long, default_value = "qemu:///system")]
        connect: String,
        /// Also delete the directories of finished runs older than DAYS (0: all of them).
        #[arg(long, value_name = "DAYS")]
        prune: Option<u64>,
    },
    /// Check this machine: QEMU, KVM that works, libvirtd, privileges, debootstrap, disk.
    Doctor {
        #[arg(long, default_value = "qemu:///system")]
        connect: String,
    },
    /// List, remove or prune the prepared states of warm runs.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Build, list or remove cached images.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Measure: boot N times and print min, median and max of each phase.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Args, Clone)]
pub struct Select {
    /// Run only shard I of N (1-based); scenarios that share a VM stay in one shard.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
}

#[derive(Args, Clone)]
pub struct VmArgs {
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    #[arg(long, value_enum, default_value_t = AccelArg::Auto)]
    pub accel: AccelArg,
    /// libvirt URI (VMs may run on another hypervisor host).
    #[arg(long, default_value = "qemu:///system")]
    pub connect: String,
    /// Directory of image recipes (default: ./images, else the embedded recipes).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Boot this image instead of the one each scenario names.
    #[arg(long)]
    pub image: Option<String>,
    /// Guest memory in MiB instead of the scenario's (real DevStack wants 8192 or more).
    #[arg(long, value_name = "MIB")]
    pub memory_mib: Option<u32>,
    /// Guest CPUs instead of the scenario's.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Guest disk size in GiB instead of the scenario's (real DevStack wants 40 or more).
    #[arg(long, value_name = "GIB")]
    pub disk_gib: Option<u32>,
    /// Every scenario builds from this local.conf instead of its own ("my local.conf
    /// against the default scenarios").
    #[arg(long, value_name = "FILE")]
    pub local_conf: Option<PathBuf>,
}

impl VmArgs {
    /// The command line's VM settings, which win over each scenario's.
    pub fn overrides(&self) -> VmOverrides {
        VmOverrides {
            image: self.image.clone(),
            memory_mib: self.memory_mib,
            cpus: self.cpus,
            disk_gib: self.disk_gib,
            local_conf: self.local_conf.clone(),
            cloud: None,
        }
    }

    pub fn boot_options(&self, templates: Option<&Path>) -> BootOptions {
        BootOptions {
            backend: self.backend.into(),
            accel: self.accel.into(),
            connect: self.connect.clone(),
            images_dir: self.images.clone(),
            templates: templates.map(Into::into),
        }
    }
}

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Each prepared state: key, scenario, size, age, last use, what went into it.
    List {
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Remove the prepared state whose key starts with KEY.
    Rm { key: String },
    /// Remove the least recently used prepared states until at most MIB remain.
    Prune {
        #[arg(long, value_name = "MIB", default_value_t = 4096)]
        max_mib: u64,
    },
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build an image (rebuilds even when cached).
    Build {
        #[arg(default_value = "debian-12")]
        name: String,
        #[arg(long)]
        images: Option<PathBuf>,
    },
    /// List cached images.
    List,
    /// Remove every cached version of an image.
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Run a scenario N times cold (boot and build) and N times warm (restored from
    /// its prepared state); min, median and max of each phase and of the wall time.
    Scenario {
        /// Scenario file (default: scenarios/instance-egress.toml).
        #[arg(default_value = "scenarios/instance-egress.toml")]
        scenario: PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Boot the default image N times; phases are timed from the start of each boot.
    Boot {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        vm: VmArgs,
    },
}

#[derive(Subcommand)]
pub enum LocalconfCommand {
    /// Print the meta sections, options and localrc assignments DevStack sees.
    Parse {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What the neutron cloud will build from a local.conf, before anything boots:
    /// the four Neutron files (each value with what decided it), the host steps'
    /// variables and the initial networks, as DevStack would make them
    Neutron {
        file: PathBuf,
        /// The scenario whose world the cloud VM has (the default world when none)
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CloudArg {
    Replica,
    Devstack,
    /// Neutron's own server and agents in the guest (image debian-13-neutron)
    Neutron,
}

impl From<CloudArg> for CloudKind {
    fn from(c: CloudArg) -> CloudKind {
        match c {
            CloudArg::Replica => CloudKind::Replica,
            CloudArg::Devstack => CloudKind::Devstack,
            CloudArg::Neutron => CloudKind::Neutron,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SchemaArg {
    /// Scenario files (scenarios/*.toml).
    Scenario,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Auto,
    Libvirt,
    Qemu,
}

impl From<BackendArg> for BackendChoice {
    fn from(b: BackendArg) -> BackendChoice {
        match b {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Libvirt => BackendChoice::Libvirt,
            BackendArg::Qemu => BackendChoice::Qemu,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

impl From<AccelArg> for AccelChoice {
    fn from(a: AccelArg) -> AccelChoice {
        match a {
            AccelArg::Auto => AccelChoice::Auto,
            AccelArg::Kvm => AccelChoice::Kvm,
            AccelArg::Tcg => AccelChoice::Tcg,
        }
    }
}

/// When a run's VM stays up after the run, for `harness ssh`.
#[derive(Clone, Copy, ValueEnum)]
pub enum KeepArg {
    /// Leave it up when a check failed or the infrastructure did.
    OnFailure,
    Always,
    Never,
}

impl From<KeepArg> for Keep {
    fn from(k: KeepArg) -> Keep {
        match k {
            KeepArg::OnFailure => Keep::OnFailure,
            KeepArg::Always => Keep::Always,
            KeepArg::Never => Keep::Never,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

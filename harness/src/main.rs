//! The `harness` command: a thin layer over the library. Exit codes: 0 all as
//! expected, 1 a lint error (or, later, a failed check), 2 bad input.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use harness::accel::AccelChoice;
use harness::boot::{self, BootOptions, TeardownGuard};
use harness::progress::Progress;
use harness::report::{InfraFailure, Summary};
use harness::run::Run;
use harness::runner::Keep;
use harness::vm::BackendChoice;
use harness::{bench, doctor, image, keys::RunKeys, localconf, render::Renderer, scenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "harness",
    version,
    about = "Proves that a DevStack cloud built inside a cloud VM works from the outside in and from the inside out"
)]
struct Cli {
    /// Directory whose templates override the embedded ones (same relative names).
    #[arg(long, global = true, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Print only results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more: each step's details and where its logs went.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render cloud-init user-data, meta-data, network-config, the host recipe and local.conf.
    Render {
        /// Scenario file (TOML).
        scenario: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a local.conf against the world of a scenario (the default world when none is named).
    Lint {
        file: PathBuf,
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
        /// Rerun a scenario whose infrastructure failed (never one whose check
        /// failed) up to N times; a pass after a retry is reported as flaky.
        #[arg(long, default_value_t = 0, value_name = "N")]
        retries: u32,
        /// Whether the VM stays up after the run, for `harness ssh`.
        #[arg(long, value_enum, default_value_t = Keep::Never)]
        keep: Keep,
        /// Compare each result with its snapshot here, when the directory exists
        /// (NAME.snap, NAME@devstack.snap); a difference fails the run (exit 1) and
        /// writes NAME.snap.new for `cargo insta review`.
        #[arg(long, value_name = "DIR", default_value = "snapshots/scenarios")]
        snapshots: PathBuf,
        /// Do not compare with snapshots.
        #[arg(long)]
        no_snapshots: bool,
        #[command(flatten)]
        select: Select,
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
    /// Tear a run down: its VM, namespaces, taps and overlay.
    Down { run: String },
    /// List runs and whether their VM is up.
    Ps,
    /// Remove what killed runs left: processes, domains, namespaces, taps, overlays.
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
struct Select {
    /// Run only shard I of N (1-based); scenarios that share a VM stay in one shard.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (i, n) = s.split_once('/').ok_or_else(|| format!("expected I/N such as 1/3, found {s:?}"))?;
    let (i, n): (usize, usize) = (
        i.parse().map_err(|_| format!("expected a number, found {i:?}"))?,
        n.parse().map_err(|_| format!("expected a number, found {n:?}"))?,
    );
    if n == 0 || i == 0 || i > n {
        return Err(format!("expected 1 <= I <= N, found {i}/{n}"));
    }
    Ok((i, n))
}

#[derive(Args, Clone)]
struct VmArgs {
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    accel: AccelChoice,
    /// libvirt URI (VMs may run on another hypervisor host).
    #[arg(long, default_value = "qemu:///system")]
    connect: String,
    /// Directory of image recipes (default: ./images, else the embedded recipes).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Boot this image instead of the one each scenario names.
    #[arg(long)]
    image: Option<String>,
    /// Guest memory in MiB instead of the scenario's (real DevStack wants 8192 or more).
    #[arg(long, value_name = "MIB")]
    memory_mib: Option<u32>,
    /// Guest CPUs instead of the scenario's.
    #[arg(long)]
    cpus: Option<u32>,
    /// Guest disk size in GiB instead of the scenario's (real DevStack wants 40 or more).
    #[arg(long, value_name = "GIB")]
    disk_gib: Option<u32>,
}

impl VmArgs {
    /// The command line's VM settings win over the scenario's.
    fn apply(&self, plan: &mut scenario::Plan) {
        if let Some(i) = &self.image {
            plan.vm.image.clone_from(i);
        }
        if let Some(m) = self.memory_mib {
            plan.vm.memory_mib = m;
        }
        if let Some(c) = self.cpus {
            plan.vm.cpus = c;
        }
        if let Some(d) = self.disk_gib {
            plan.vm.disk_gib = d;
        }
    }
}

#[derive(Subcommand)]
enum ImageCommand {
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
enum BenchCommand {
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
enum LocalconfCommand {
    /// Print the meta sections, options and localrc assignments DevStack sees.
    Parse {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CloudArg {
    Replica,
    Devstack,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// An error that ends the command: what went wrong and the exit code it means.
struct Failure {
    code: u8,
    message: String,
}

fn bad_input(e: impl std::fmt::Display) -> Failure {
    Failure { code: 2, message: e.to_string() }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn infra(e: impl std::fmt::Display) -> Failure {
    Failure { code: 3, message: e.to_string() }
}

fn boot_options(vm: &VmArgs, templates: Option<&Path>) -> BootOptions {
    BootOptions {
        backend: vm.backend,
        accel: vm.accel,
        connect: vm.connect.clone(),
        images_dir: vm.images.clone(),
        templates: templates.map(Into::into),
    }
}

fn load_plan(path: Option<&Path>) -> Result<scenario::Plan, Failure> {
    match path {
        Some(p) => scenario::load(p).map_err(bad_input),
        None => scenario::parse(Path::new("default.toml"), "").map_err(bad_input),
    }
}

/// Wait for Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

fn up(scenario_path: Option<&Path>, keep: bool, vm: &VmArgs, templates: Option<&Path>) -> Result<u8, Failure> {
    let mut plan = load_plan(scenario_path)?;
    vm.apply(&mut plan);
    let opts = boot_options(vm, templates);
    let progress = Progress::new(false);
    let mut run = Run::create(&plan.name).map_err(infra)?;
    run.record.keep = keep;
    run.save().map_err(infra)?;
    let mut guard = TeardownGuard { id: run.id.clone(), armed: true };
    progress.phase(&format!("run {} ({}), directory {}", run.id, plan.name, run.dir.display()));
    let rt = runtime();
    rt.block_on(async {
        let booted = tokio::select! {
            r = boot::boot(&plan, &opts, &mut run, &progress) => r.map_err(infra)?,
            _ = interrupted() => return Err(infra(boot::BootError::Interrupted)),
        };
        println!("run {} is up: {} backend, {} ({})", run.id, booted.backend, booted.accel.accel.as_str(), booted.accel.reason);
        println!("  harness ssh {}", run.id);
        println!("  harness exec {} -- uname -a", run.id);
        println!("  harness down {}", run.id);
        if keep {
            guard.armed = false;
            return Ok(0);
        }
        progress.phase("the VM stays up until Ctrl-C");
        interrupted().await;
        Ok(0)
    })
}

/// The scenario files named, or all of scenarios/.
fn scenario_paths(mut paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, Failure> {
    if paths.is_empty() {
        paths = std::fs::read_dir("scenarios")
            .map_err(|e| bad_input(format!("scenarios/: {e} (name scenario files, or run from the repository)")))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
    }
    Ok(paths)
}

/// Every scenario named (or all of scenarios/), validated before anything boots.
fn load_plans(paths: Vec<PathBuf>) -> Result<Vec<scenario::Plan>, Failure> {
    scenario_paths(paths)?.iter().map(|p| scenario::load(p).map_err(bad_input)).collect()
}

fn cloud_of(cloud: Option<CloudArg>, plan: &scenario::Plan) -> scenario::CloudKind {
    match cloud {
        Some(CloudArg::Replica) => scenario::CloudKind::Replica,
        Some(CloudArg::Devstack) => scenario::CloudKind::Devstack,
        None => plan.cloud,
    }
}

/// The groups of scenarios that share a VM, cut to the shard asked for.
fn select<'a>(plans: &'a [scenario::Plan], cloud: Option<CloudArg>, select: &Select) -> Vec<Vec<&'a scenario::Plan>> {
    let groups = harness::runner::groups(plans, |p| cloud_of(cloud, p));
    match select.shard {
        Some((i, n)) => groups.into_iter().enumerate().filter(|(k, _)| k % n == i - 1).map(|(_, g)| g).collect(),
        None => groups,
    }
}

fn list(paths: Vec<PathBuf>, format: Format, sel: &Select) -> Result<u8, Failure> {
    let plans = load_plans(paths)?;
    let groups = select(&plans, None, sel);
    let rows: Vec<serde_json::Value> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, group)| {
            group.iter().map(move |p| {
                serde_json::json!({
                    "name": p.name, "file": p.source, "cloud": p.cloud.as_str(), "image": p.vm.image,
                    "checks": p.checks.len(), "vm_group": g, "description": p.description,
                })
            })
        })
        .collect();
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "scenarios": rows })).expect("serializable")),
        Format::Text => {
            println!("{:<24} {:<9} {:<10} {:>6} {:>8}  file", "SCENARIO", "CLOUD", "IMAGE", "CHECKS", "VM GROUP");
            for r in &rows {
                println!(
                    "{:<24} {:<9} {:<10} {:>6} {:>8}  {}",
                    r["name"].as_str().unwrap_or(""),
                    r["cloud"].as_str().unwrap_or(""),
                    r["image"].as_str().unwrap_or(""),
                    r["checks"].to_string(),
                    r["vm_group"].to_string(),
                    r["file"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(0)
}

/// How `harness run` reports: where, in which format, how loudly.
struct RunOutput {
    format: Format,
    junit: Option<PathBuf>,
    snapshots: Option<PathBuf>,
    quiet: bool,
    verbose: bool,
}

#[allow(clippy::too_many_arguments)]
fn run_scenarios(
    paths: Vec<PathBuf>,
    cloud: Option<CloudArg>,
    out: &RunOutput,
    retries: u32,
    keep: Keep,
    sel: &Select,
    vm: &VmArgs,
    templates: Option<&Path>,
) -> Result<u8, Failure> {
    let mut plans = load_plans(paths)?;
    plans.iter_mut().for_each(|p| vm.apply(p));
    for p in &plans {
        image::load_recipe(image::recipes_dir(vm.images.as_deref()).as_deref(), &p.vm.image)
            .map_err(|e| bad_input(format!("{}: {e}", p.source.display())))?;
    }
    let opts = boot_options(vm, templates);
    let progress = Progress::new(out.quiet || matches!(out.format, Format::Json)).verbose(out.verbose);
    let started = std::time::Instant::now();
    let mut summary = Summary::default();
    let rt = runtime();
    // Scenarios that can share a VM do (each reset to the state it declares; the
    // result says so).
    for group in select(&plans, cloud, sel) {
        let kind = cloud_of(cloud, group[0]);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = rt.block_on(async {
                tokio::select! {
                    r = harness::runner::run_group(&group, kind, &opts, &progress, keep) => Some(r),
                    _ = interrupted() => None,
                }
            });
            match r {
                None => return Err(infra(boot::BootError::Interrupted)),
                Some(Ok(results)) => {
                    summary.scenarios.extend(results.into_iter().map(|mut r| {
                        r.attempts = attempt;
                        r.flaky = attempt > 1;
                        r
                    }));
                    break;
                }
                // Only an infrastructure failure is retried: a check that failed is an answer.
                Some(Err(e)) if attempt <= retries => {
                    progress.phase(&format!("infrastructure failed (attempt {attempt} of {}): {e}; retrying", retries + 1));
                }
                Some(Err(e)) => {
                    progress.phase(&format!("infrastructure failed: {e}"));
                    summary.infrastructure_failures.extend(group.iter().map(|p| InfraFailure {
                        scenario: p.name.clone(),
                        file: p.source.clone(),
                        error: e.to_string(),
                        attempts: attempt,
                    }));
                    break;
                }
            }
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    if let Some(dir) = out.snapshots.as_ref().filter(|d| d.is_dir()) {
        for r in &mut summary.scenarios {
            let text = harness::runner::snapshot_text(r);
            r.snapshot = Some(
                harness::snapshot::compare(dir, &r.name, &r.cloud, &r.file, &text)
                    .map_err(|e| infra(format!("snapshot in {}: {e}", dir.display())))?,
            );
        }
    }
    if let Some(path) = &out.junit {
        std::fs::write(path, summary.junit()).map_err(|e| infra(format!("{}: {e}", path.display())))?;
    }
    if harness::report::in_github_actions() {
        for a in summary.annotations() {
            println!("{a}");
        }
    }
    match out.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary).expect("serializable")),
        Format::Text => print!("{}", summary.text()),
    }
    Ok(summary.exit_code())
}

fn ssh_interactive(id: &str) -> Result<u8, Failure> {
    let run = Run::open(id).map_err(bad_input)?;
    let port = run.record.ssh_port.ok_or_else(|| bad_input(format!("run {id} has no SSH port yet")))?;
    let known = run.path("known_hosts");
    std::fs::write(&known, format!("[127.0.0.1]:{port} {}\n", run.record.host_public_key)).map_err(infra)?;
    let status = std::process::Command::new("ssh")
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(["-o", "IdentitiesOnly=yes", "-i"])
        .arg(run.path("id_ed25519"))
        .args(["-p", &port.to_string()])
        .arg(format!("{}@127.0.0.1", run.record.ssh_user))
        .status()
        .map_err(|e| infra(format!("cannot start ssh: {e} (apt-get install openssh-client)")))?;
    Ok(u8::try_from(status.code().unwrap_or(255)).unwrap_or(255))
}

fn exec(id: &str, command: &[String], timeout: u64) -> Result<u8, Failure> {
    let run = Run::open(id).map_err(bad_input)?;
    let port = run.record.ssh_port.ok_or_else(|| bad_input(format!("run {id} has no SSH port yet")))?;
    let target = harness::ssh::Target {
        port,
        user: run.record.ssh_user.clone(),
        private_key: run.path("id_ed25519"),
        host_public_key: run.record.host_public_key.clone(),
    };
    let cmd = command.join(" ");
    runtime().block_on(async {
        let ssh = harness::ssh::Ssh::connect(target, Duration::from_secs(10), || Ok(())).await.map_err(infra)?;
        let out = ssh
            .exec_streaming(&cmd, Duration::from_secs(timeout), |chunk| {
                use std::io::Write;
                let mut o = std::io::stdout();
                let _ = o.write_all(chunk.as_bytes());
                let _ = o.flush();
            })
            .await
            .map_err(infra)?;
        Ok(u8::try_from(out.status).unwrap_or(255))
    })
}

fn down(id: &str) -> Result<u8, Failure> {
    let mut run = Run::open(id).map_err(bad_input)?;
    let problems = run.teardown();
    if problems.is_empty() {
        println!("run {id} is down");
        Ok(0)
    } else {
        Err(infra(format!("run {id}: {}", problems.join("; "))))
    }
}

fn ps() -> Result<u8, Failure> {
    println!("{:<10} {:<22} {:<8} {:<8} {:<6} {:<6} status", "RUN", "SCENARIO", "BACKEND", "VM", "PORT", "OWNER");
    for run in Run::all() {
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
        println!(
            "{:<10} {:<22} {:<8} {:<8} {:<6} {:<6} {}",
            run.id,
            r.scenario,
            r.vm.as_ref().map(|v| v.backend()).unwrap_or("-"),
            vm,
            r.ssh_port.map(|p| p.to_string()).unwrap_or_default(),
            owner,
            r.status
        );
    }
    Ok(0)
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let templates = cli.templates.clone();
    match cli.command {
        Command::Run { scenarios, cloud, format, junit, retries, keep, snapshots, no_snapshots, select, vm } => {
            let snapshots = (!no_snapshots).then_some(snapshots);
            let out = RunOutput { format, junit, snapshots, quiet: cli.quiet, verbose: cli.verbose };
            run_scenarios(scenarios, cloud, &out, retries, keep, &select, &vm, templates.as_deref())
        }
        Command::List { scenarios, format, select } => list(scenarios, format, &select),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "harness", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man { command } => man(command.as_deref()),
        Command::Up { scenario, keep, vm } => up(scenario.as_deref(), keep, &vm, templates.as_deref()),
        Command::Ssh { run } => ssh_interactive(&run),
        Command::Exec { run, timeout, command } => exec(&run, &command, timeout),
        Command::Down { run } => down(&run),
        Command::Ps => ps(),
        Command::Gc { connect, prune } => {
            let report = harness::run::gc(&connect, prune);
            for r in &report.removed {
                println!("removed {r}");
            }
            for p in &report.problems {
                eprintln!("problem: {p}");
            }
            if report.removed.is_empty() && report.problems.is_empty() {
                println!("nothing to collect");
            }
            Ok(if report.problems.is_empty() { 0 } else { 3 })
        }
        Command::Doctor { connect } => {
            let checks = runtime().block_on(doctor::run(&connect));
            print!("{}", doctor::format(&checks));
            Ok(if checks.iter().any(|c| !c.ok && c.required) { 3 } else { 0 })
        }
        Command::Image { command } => image_cmd(command),
        Command::Bench { command: BenchCommand::Boot { runs, format, vm } } => {
            let opts = boot_options(&vm, templates.as_deref());
            let mut plan = load_plan(None)?;
            vm.apply(&mut plan);
            let report = runtime().block_on(bench::boot(&plan, &opts, runs)).map_err(infra)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&report).expect("serializable")),
                Format::Text => print!("{}", report.text()),
            }
            Ok(0)
        }
        Command::Render { scenario, out } => render(&scenario, &out, cli.templates.as_deref()),
        Command::Lint { file, scenario, format } => lint(&file, scenario.as_deref(), format),
        Command::Localconf { command: LocalconfCommand::Parse { file, format } } => {
            let conf = localconf::read(&file).map_err(bad_input)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&conf).expect("serializable")),
                Format::Text => print!("{}", localconf::format_text(&conf)),
            }
            Ok(0)
        }
    }
}

fn image_cmd(command: ImageCommand) -> Result<u8, Failure> {
    let root = image::cache_root();
    match command {
        ImageCommand::Build { name, images } => {
            let recipe = image::load_recipe(image::recipes_dir(images.as_deref()).as_deref(), &name).map_err(bad_input)?;
            let progress = Progress::new(false);
            let img = image::build(&recipe, &root, &progress).map_err(infra)?;
            println!("built {} ({}) in {:.0} s: {}", img.name, img.hash, img.build_seconds, img.dir.display());
            Ok(0)
        }
        ImageCommand::List => {
            for img in image::list(&root) {
                let size = std::fs::metadata(&img.disk).map(|m| m.len()).unwrap_or(0);
                println!(
                    "{:<14} {}  {:>6.0} MiB  built in {:>4.0} s  {}",
                    img.name,
                    img.hash,
                    size as f64 / 1048576.0,
                    img.build_seconds,
                    img.dir.display()
                );
            }
            Ok(0)
        }
        ImageCommand::Rm { name } => {
            let n = image::remove(&root, &name).map_err(infra)?;
            println!("removed {n} cached version(s) of {name}");
            Ok(0)
        }
    }
}

fn render(scenario_path: &Path, out: &Path, templates: Option<&Path>) -> Result<u8, Failure> {
    let plan = scenario::load(scenario_path).map_err(bad_input)?;
    let renderer = Renderer::new(templates).map_err(bad_input)?;
    let keys = RunKeys::generate().map_err(|e| Failure { code: 3, message: e.to_string() })?;
    let run_id = format!("render-{}", std::process::id());
    let rendered = renderer.render(&plan, &run_id, &keys).map_err(bad_input)?;
    let written = rendered.write(out).map_err(|e| Failure { code: 3, message: e.to_string() })?;
    // The client key that matches user-data, so that a VM booted from this seed can be reached.
    let key_path = out.join("id_ed25519");
    boot::write_private(&key_path, &keys.client_private)
        .map_err(|e| Failure { code: 3, message: format!("{}: {e}", key_path.display()) })?;
    for p in written.iter().chain([&key_path]) {
        println!("{}", p.display());
    }
    Ok(0)
}

fn man(command: Option<&str>) -> Result<u8, Failure> {
    let root = Cli::command();
    let cmd = match command {
        None => root,
        Some(name) => {
            let sub =
                root.find_subcommand(name).cloned().ok_or_else(|| bad_input(format!("no command {name:?} (harness --help lists them)")))?;
            sub.name(format!("harness-{name}"))
        }
    };
    clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).map_err(infra)?;
    Ok(0)
}

fn lint(file: &Path, scenario_path: Option<&Path>, format: Format) -> Result<u8, Failure> {
    let world = match scenario_path {
        Some(p) => scenario::load(p).map_err(bad_input)?.world,
        None => scenario::World::default(),
    };
    let conf = localconf::read(file).map_err(bad_input)?;
    let diags = localconf::lint(&conf, &world);
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "diagnostics": diags })).expect("serializable")),
        Format::Text => print!("{}", localconf::lint::format_text(&file.display().to_string(), &conf, &diags)),
    }
    if harness::report::in_github_actions() {
        for d in diags.iter().filter(|d| d.severity == localconf::Severity::Error) {
            let msg =
                format!("{} [{}]{}", d.message, d.rule, if d.hint.is_empty() { String::new() } else { format!("\nhint: {}", d.hint) });
            println!("{}", harness::report::annotation(&file.display().to_string(), d.line, None, d.rule, &msg));
        }
    }
    Ok(u8::from(diags.iter().any(|d| d.severity == localconf::Severity::Error)))
}

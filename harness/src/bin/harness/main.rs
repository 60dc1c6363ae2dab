//! The `harness` command: parses arguments into a request for the library and
//! prints what comes back. The exit code follows from the result (0 as expected,
//! 1 a check, snapshot or lint error did not match) or from the error's kind
//! (2 bad input, 3 machine or infrastructure): `harness::error`.

mod args;

use args::{BenchCommand, CacheCommand, Cli, Command, Format, ImageCommand, LocalconfCommand};
use clap::{CommandFactory, Parser};
use harness::boot::{self, TeardownGuard};
use harness::progress::Progress;
use harness::run::Run;
use harness::suite::{self, Request};
use harness::{bench, doctor, image, keys::RunKeys, localconf, render::Renderer, scenario, Error};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn dispatch(cli: Cli) -> Result<u8, Error> {
    let templates = cli.templates.clone();
    let templates = templates.as_deref();
    match cli.command {
        Command::Run {
            scenarios,
            cloud,
            format,
            junit,
            summary,
            retries,
            keep,
            snapshots,
            no_snapshots,
            no_cache,
            jobs,
            diagnostics,
            trace,
            select,
            vm,
        } => {
            let req = Request {
                scenarios,
                cloud: cloud.map(Into::into),
                overrides: suite::VmOverrides { cloud: cloud.map(Into::into), ..vm.overrides() },
                shard: select.shard,
                retries,
                keep: keep.into(),
                snapshots: (!no_snapshots).then_some(snapshots),
                ci: harness::snapshot::in_ci(),
                warm: !no_cache,
                jobs: jobs.map(usize::from),
                diagnostics: harness::runner::Diagnostics { always: diagnostics, trace_all: trace },
                boot: vm.boot_options(templates),
            };
            let progress = Progress::new(cli.quiet || matches!(format, Format::Json)).verbose(cli.verbose);
            run(&req, format, junit.as_deref(), summary.as_deref(), &progress)
        }
        Command::Diff { old, new, scenarios, cloud, format, summary, no_cache, vm } => {
            let req = Request {
                scenarios,
                cloud: cloud.map(Into::into),
                overrides: suite::VmOverrides { cloud: cloud.map(Into::into), ..vm.overrides() },
                shard: None,
                retries: 0,
                keep: harness::runner::Keep::Never,
                snapshots: None,
                ci: harness::snapshot::in_ci(),
                warm: !no_cache,
                jobs: None,
                diagnostics: Default::default(),
                boot: vm.boot_options(templates),
            };
            let progress = Progress::new(cli.quiet || !matches!(format, args::DiffFormat::Text)).verbose(cli.verbose);
            diff(&old, &new, &req, format, summary.as_deref(), &progress)
        }
        Command::List { scenarios, format, select } => list(scenarios, format, select.shard),
        Command::Schema { what: args::SchemaArg::Scenario } => {
            println!("{}", serde_json::to_string_pretty(&scenario::json_schema()).expect("serializable"));
            Ok(0)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "harness", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man { command } => man(command.as_deref()),
        Command::Up { scenario, keep, vm } => up(scenario.as_deref(), keep, &vm, templates),
        Command::Ssh { run } => ssh_interactive(&run),
        Command::Exec { run, timeout, command } => exec(&run, command, timeout),
        Command::Diagnose { run, check, format } => diagnose(&run, check.as_deref(), format, cli.verbose),
        Command::Down { run } => {
            let problems = Run::open(&run)?.teardown();
            if !problems.is_empty() {
                return Err(Error::Usage(format!("run {run}: teardown incomplete: {}", problems.join("; "))));
            }
            println!("run {run} is down");
            Ok(0)
        }
        Command::Ps => {
            print!("{}", harness::run::ps_table(&Run::all()));
            Ok(0)
        }
        Command::Gc { connect, prune } => {
            let report = harness::run::gc(&connect, prune);
            for r in &report.removed {
                println!("removed {r}");
            }
            for l in &report.left_alone {
                println!("left alone: {l}");
            }
            for p in &report.problems {
                eprintln!("problem: {p}");
            }
            if report.removed.is_empty() && report.problems.is_empty() {
                println!("nothing to collect");
            }
            Ok(if report.problems.is_empty() { 0 } else { harness::report::exit::INFRA })
        }
        Command::Doctor { connect } => {
            let checks = runtime().block_on(doctor::run(&connect));
            print!("{}", doctor::format(&checks));
            Ok(if checks.iter().any(|c| !c.ok && c.required) { harness::report::exit::INFRA } else { 0 })
        }
        Command::Image { command } => image_cmd(command),
        Command::Cache { command } => cache_cmd(command),
        Command::Bench { command: BenchCommand::Boot { runs, format, vm } } => {
            let (plan, opts) = bench_plan(None, &vm, templates)?;
            let report = runtime().block_on(bench::boot(&plan, &opts, runs))?;
            emit(format, &report, || report.text());
            Ok(0)
        }
        Command::Bench { command: BenchCommand::Scenario { scenario, runs, format, vm } } => {
            let (plan, opts) = bench_plan(Some(&scenario), &vm, templates)?;
            let report = runtime().block_on(bench::scenario(&plan, &opts, runs))?;
            emit(format, &report, || report.text());
            Ok(0)
        }
        Command::Render { scenario, out, local_conf } => {
            let plan = suite::load_plan(Some(&scenario), &suite::VmOverrides { local_conf, ..Default::default() })?;
            render(&plan, &out, templates)
        }
        Command::Lint { files, scenario, format } => lint(&files, scenario.as_deref(), format),
        Command::Localconf { command: LocalconfCommand::Parse { file, format } } => {
            let conf = localconf::read(&file)?;
            emit(format, &conf, || localconf::format_text(&conf));
            Ok(0)
        }
        Command::Localconf { command: LocalconfCommand::Neutron { file, scenario, format } } => {
            let world = match scenario {
                Some(p) => scenario::load(&p)?.world,
                None => scenario::World::default(),
            };
            let plan = localconf::plan::neutron(&localconf::read(&file)?, &world);
            emit(format, &plan, || plan.text());
            Ok(0)
        }
    }
}

/// Print `value` as JSON, or `text()` for people.
fn emit(format: Format, value: &impl serde::Serialize, text: impl FnOnce() -> String) {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value).expect("serializable")),
        Format::Text => print!("{}", text()),
    }
}

/// The plan and boot options a benchmark runs with, its machine checked first.
fn bench_plan(
    scenario: Option<&Path>,
    vm: &args::VmArgs,
    templates: Option<&Path>,
) -> Result<(scenario::Plan, harness::boot::BootOptions), Error> {
    let opts = vm.boot_options(templates);
    let plan = suite::load_plan(scenario, &vm.overrides())?;
    suite::preflight("harness bench", &opts, std::slice::from_ref(&plan), None)?;
    Ok((plan, opts))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

/// Wait for Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `harness run`: results, JUnit and JSON are written for what finished, also
/// after Ctrl-C (the rest is torn down and reported as not run).
fn run(req: &Request, format: Format, junit: Option<&Path>, summary_md: Option<&Path>, progress: &Progress) -> Result<u8, Error> {
    let plans = suite::load_plans(req.scenarios.clone(), &req.overrides)?;
    suite::preflight("harness run", &req.boot, &plans, req.cloud)?;
    // Where the results go must exist before the run, not be found missing after it.
    for path in [junit, summary_md].into_iter().flatten() {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Input { path: path.into(), message: format!("cannot create its directory: {e}") })?;
        }
    }
    let summary = runtime().block_on(suite::run(req, &plans, progress, interrupted()))?;
    if let Some(path) = junit {
        std::fs::write(path, summary.junit()).map_err(|source| Error::Io { path: path.into(), source })?;
    }
    if let Some(path) = summary_md {
        append(path, &summary.markdown())?;
    }
    if harness::report::in_github_actions() {
        for a in summary.annotations() {
            println!("{a}");
        }
    }
    emit(format, &summary, || summary.text_with(progress.is_verbose()));
    Ok(summary.exit_code())
}

/// Append `text` to a file such as $GITHUB_STEP_SUMMARY (made if missing).
fn append(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| Error::Io { path: path.into(), source })
}

/// `harness diff`: both local.conf files are read before anything starts.
fn diff(old: &str, new: &str, req: &Request, format: args::DiffFormat, summary_md: Option<&Path>, progress: &Progress) -> Result<u8, Error> {
    let (old, new) = (harness::diff::read_conf(old)?, harness::diff::read_conf(new)?);
    let report = runtime().block_on(harness::diff::run(&old, &new, req, progress, interrupted))?;
    if let Some(path) = summary_md {
        append(path, &report.markdown())?;
    }
    match format {
        args::DiffFormat::Text => print!("{}", report.text()),
        args::DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&report).expect("serializable")),
        args::DiffFormat::Markdown => print!("{}", report.markdown()),
    }
    Ok(report.exit_code())
}

fn list(paths: Vec<PathBuf>, format: Format, shard: Option<suite::Shard>) -> Result<u8, Error> {
    let plans = suite::load_plans(paths, &Default::default())?;
    let rows: Vec<serde_json::Value> = suite::select(&plans, None, shard)
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
            // Columns as wide as their longest entry.
            let s = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("").to_owned();
            let width = |k: &str, head: &str| rows.iter().map(|r| s(r, k).len()).chain([head.len()]).max().unwrap_or(0);
            let (wn, wc, wi) = (width("name", "SCENARIO"), width("cloud", "CLOUD"), width("image", "IMAGE"));
            println!("{:<wn$} {:<wc$} {:<wi$} {:>6} {:>8}  file", "SCENARIO", "CLOUD", "IMAGE", "CHECKS", "VM GROUP");
            for r in &rows {
                println!(
                    "{:<wn$} {:<wc$} {:<wi$} {:>6} {:>8}  {}",
                    s(r, "name"),
                    s(r, "cloud"),
                    s(r, "image"),
                    r["checks"].to_string(),
                    r["vm_group"].to_string(),
                    s(r, "file")
                );
            }
        }
    }
    Ok(0)
}

fn up(scenario_path: Option<&Path>, keep: bool, vm: &args::VmArgs, templates: Option<&Path>) -> Result<u8, Error> {
    let plan = suite::load_plan(scenario_path, &vm.overrides())?;
    let opts = vm.boot_options(templates);
    suite::preflight("harness up", &opts, std::slice::from_ref(&plan), None)?;
    let progress = Progress::new(false);
    let mut run = Run::create(&plan.name)?;
    run.record.keep = keep;
    run.save()?;
    let mut guard = TeardownGuard { id: run.id.clone(), armed: true };
    progress.phase(&format!("run {} ({}), directory {}", run.id, plan.name, run.dir.display()));
    runtime().block_on(async {
        let booted = tokio::select! {
            r = boot::boot(&plan, &opts, &boot::Warm::Off, &mut run, &progress) => r?,
            _ = interrupted() => return Err(Error::Interrupted),
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

fn ssh_interactive(id: &str) -> Result<u8, Error> {
    let run = Run::open(id)?;
    let t = run.ssh_target().ok_or_else(|| Error::Usage(format!("run {id} has no SSH port yet")))?;
    let known = run.path("known_hosts");
    std::fs::write(&known, format!("[127.0.0.1]:{} {}\n", t.port, t.host_public_key))
        .map_err(|source| Error::Io { path: known.clone(), source })?;
    let status = std::process::Command::new("ssh")
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .args(["-o", "IdentitiesOnly=yes", "-i"])
        .arg(&t.private_key)
        .args(["-p", &t.port.to_string()])
        .arg(format!("{}@127.0.0.1", t.user))
        .status()
        .map_err(|e| harness::prereq::Missing {
            what: format!("harness ssh ({e})"),
            tools: vec![harness::prereq::Tool { command: "ssh", package: "openssh-client" }],
        })?;
    Ok(u8::try_from(status.code().unwrap_or(255)).unwrap_or(255))
}

/// Trace a kept run's checks again and print where each packet died.
fn diagnose(id: &str, check: Option<&str>, format: Format, verbose: bool) -> Result<u8, Error> {
    let run = Run::open(id)?;
    let traced = runtime().block_on(harness::runner::diagnose(&run, check))?;
    match format {
        Format::Json => {
            let rows: Vec<_> = traced.iter().map(|(name, t)| serde_json::json!({ "check": name, "trace": t })).collect();
            println!("{}", serde_json::to_string_pretty(&rows).expect("serializable"));
        }
        Format::Text => {
            for (name, t) in &traced {
                match t {
                    None => println!("{name}: not traced (this cloud's instance is not a namespace of the guest)"),
                    Some(t) => {
                        match &t.died_at {
                            Some(d) => println!("{name}: {}", d.line()),
                            None => println!("{name}: every hop saw it, both ways ({})", t.trace_probe),
                        }
                        if verbose {
                            for h in &t.path {
                                println!("  {} {}: {}", if h.saw { "saw" } else { "---" }, h.hop, h.evidence);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(0)
}

/// Run a command in a run's guest; the argv reaches the guest's shell quoted, word for word.
fn exec(id: &str, command: Vec<String>, timeout: u64) -> Result<u8, Error> {
    use harness::exec::{Cmd, Executor};
    let run = Run::open(id)?;
    let target = run.ssh_target().ok_or_else(|| Error::Usage(format!("run {id} has no SSH port yet")))?;
    runtime().block_on(async {
        let ssh = harness::ssh::Ssh::connect(target, Duration::from_secs(10), || Ok(())).await.map_err(harness::exec::ExecError::from)?;
        let cmd = Cmd::new(command).timeout(Duration::from_secs(timeout));
        let out = ssh
            .run_streaming(&cmd, &mut |chunk| {
                use std::io::Write;
                let mut o = std::io::stdout();
                let _ = o.write_all(chunk.as_bytes());
                let _ = o.flush();
            })
            .await?;
        Ok(u8::try_from(out.status).unwrap_or(255))
    })
}

fn cache_cmd(command: CacheCommand) -> Result<u8, Error> {
    use harness::prepared;
    match command {
        CacheCommand::List { format } => {
            let entries = prepared::list();
            match format {
                Format::Json => {
                    let rows: Vec<_> = entries
                        .iter()
                        .map(|e| serde_json::json!({ "key": e.meta.key, "scenario": e.meta.scenario, "bytes": e.bytes(), "created": e.meta.created, "last_used": e.meta.last_used, "dir": e.dir, "inputs": e.meta.inputs }))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows).expect("serializable"));
                }
                Format::Text => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    println!("{:<24}  {:<22} {:>8}  {:>9}  {:>9}  image", "KEY", "SCENARIO", "MB", "AGE", "USED");
                    for e in &entries {
                        let ago = |t: u64| format!("{:.1} h", now.saturating_sub(t) as f64 / 3600.0);
                        println!(
                            "{:<24}  {:<22} {:>8.0}  {:>9}  {:>9}  {}",
                            e.meta.key,
                            e.meta.scenario,
                            e.bytes() as f64 / 1e6,
                            ago(e.meta.created),
                            ago(e.meta.last_used),
                            e.meta.inputs["image"].as_str().unwrap_or("")
                        );
                    }
                    println!(
                        "{} prepared state(s), {:.0} MB in {}",
                        entries.len(),
                        entries.iter().map(|e| e.bytes()).sum::<u64>() as f64 / 1e6,
                        prepared::root().display()
                    );
                }
            }
        }
        CacheCommand::Rm { key } => {
            if !prepared::remove(&key) {
                return Err(Error::Usage(format!("no prepared state {key:?} (harness cache list shows them)")));
            }
            println!("removed {key}");
        }
        CacheCommand::Prune { max_mib } => {
            for k in prepared::prune(max_mib * 1024 * 1024) {
                println!("removed {k}");
            }
        }
    }
    Ok(0)
}

fn image_cmd(command: ImageCommand) -> Result<u8, Error> {
    let root = image::cache_root();
    match command {
        ImageCommand::Build { name, images } => {
            let recipe = image::load_recipe(image::recipes_dir(images.as_deref()).as_deref(), &name)?;
            if recipe.needs_debootstrap() {
                harness::prereq::require("harness image build", harness::prereq::DEBOOTSTRAP)?;
            }
            let img = image::build(&recipe, &root, &Progress::new(false))?;
            println!("built {} ({}) in {:.0} s: {}", img.name, img.hash, img.build_seconds, img.dir.display());
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
        }
        ImageCommand::Rm { name } => {
            let n = image::remove(&root, &name)?;
            println!("removed {n} cached version(s) of {name}");
        }
    }
    Ok(0)
}

fn render(plan: &scenario::Plan, out: &Path, templates: Option<&Path>) -> Result<u8, Error> {
    let renderer = Renderer::new(templates)?;
    let keys = RunKeys::generate()?;
    let rendered = renderer.render(plan, &format!("render-{}", std::process::id()), &keys)?;
    let written = rendered.write(out)?;
    // The client key that matches user-data, so that a VM booted from this seed can be reached.
    let key_path = out.join("id_ed25519");
    boot::write_private(&key_path, &keys.client_private).map_err(|source| Error::Io { path: key_path.clone(), source })?;
    for p in written.iter().chain([&key_path]) {
        println!("{}", p.display());
    }
    Ok(0)
}

fn man(command: Option<&str>) -> Result<u8, Error> {
    let root = Cli::command();
    let cmd = match command {
        None => root,
        Some(name) => {
            let sub = root
                .find_subcommand(name)
                .cloned()
                .ok_or_else(|| Error::Usage(format!("no command {name:?} (harness --help lists them)")))?;
            sub.name(format!("harness-{name}"))
        }
    };
    clap_mangen::Man::new(cmd).render(&mut std::io::stdout()).map_err(|source| Error::Io { path: "stdout".into(), source })?;
    Ok(0)
}

/// Lint each file against the world; exit 1 when any has an error. JSON: one
/// file's `{"diagnostics": [...]}`, or `{"files": [{"file", "diagnostics"}]}` for several.
fn lint(files: &[PathBuf], scenario_path: Option<&Path>, format: Format) -> Result<u8, Error> {
    let world = match scenario_path {
        Some(p) => scenario::load(p)?.world,
        None => scenario::World::default(),
    };
    let mut any_error = false;
    let mut json = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let conf = localconf::read(file)?;
        let diags = localconf::lint(&conf, &world);
        any_error |= diags.iter().any(|d| d.severity == localconf::Severity::Error);
        if let Format::Text = format {
            print!("{}", localconf::lint::format_text(&name, &conf, &diags));
        }
        if harness::report::in_github_actions() {
            for d in diags.iter().filter(|d| d.severity == localconf::Severity::Error) {
                let hint = if d.hint.is_empty() { String::new() } else { format!("\nhint: {}", d.hint) };
                let msg = format!("{} [{}]{hint}", d.message, d.rule);
                println!("{}", harness::report::annotation(&name, d.line, None, d.rule, &msg));
            }
        }
        json.push(serde_json::json!({ "file": name, "diagnostics": diags }));
    }
    if let Format::Json = format {
        let v = match json.as_slice() {
            [one] => serde_json::json!({ "diagnostics": one["diagnostics"] }),
            _ => serde_json::json!({ "files": json }),
        };
        println!("{}", serde_json::to_string_pretty(&v).expect("serializable"));
    }
    Ok(u8::from(any_error))
}

//! The `harness` command: a thin layer over the library. Exit codes: 0 all as
//! expected, 1 a lint error (or, later, a failed check), 2 bad input.

use clap::{Parser, Subcommand, ValueEnum};
use harness::{keys::RunKeys, localconf, render::Renderer, scenario};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
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

fn render(scenario_path: &Path, out: &Path, templates: Option<&Path>) -> Result<u8, Failure> {
    let plan = scenario::load(scenario_path).map_err(bad_input)?;
    let renderer = Renderer::new(templates).map_err(bad_input)?;
    let keys = RunKeys::generate().map_err(|e| Failure { code: 3, message: e.to_string() })?;
    let run_id = format!("render-{}", std::process::id());
    let rendered = renderer.render(&plan, &run_id, &keys).map_err(bad_input)?;
    let written = rendered.write(out).map_err(|e| Failure { code: 3, message: e.to_string() })?;
    // The client key that matches user-data, so that a VM booted from this seed can be reached.
    let key_path = out.join("id_ed25519");
    write_private(&key_path, &keys.client_private).map_err(|e| Failure { code: 3, message: format!("{}: {e}", key_path.display()) })?;
    for p in written.iter().chain([&key_path]) {
        println!("{}", p.display());
    }
    Ok(0)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
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
    Ok(u8::from(diags.iter().any(|d| d.severity == localconf::Severity::Error)))
}

//! Progress for people and for logs: a line per phase with its elapsed time; on a
//! terminal, a live spinner (indicatif) for long steps such as an image build;
//! plain timestamped lines when not a terminal, so that CI logs stay readable.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    start: Instant,
    bar: Option<ProgressBar>,
    quiet: bool,
    verbose: bool,
    /// Before each line: whose it is, when several VMs run at once.
    label: Option<String>,
    /// Only the progress that made the spinner clears it.
    owns_bar: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} [{elapsed:>4}] {wide_msg}").expect("valid template"));
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        Progress { start: Instant::now(), bar, quiet, verbose: false, label: None, owns_bar: true }
    }

    /// The same progress, its lines starting with `[label]`.
    pub fn labelled(&self, label: &str) -> Progress {
        Progress {
            start: self.start,
            bar: self.bar.clone(),
            quiet: self.quiet,
            verbose: self.verbose,
            label: Some(label.to_owned()),
            owns_bar: false,
        }
    }

    /// Also print the lines of [`Progress::detail`] (`-v`).
    pub fn verbose(mut self, on: bool) -> Progress {
        self.verbose = on;
        self
    }

    /// A silent progress, for tests and library callers.
    pub fn hidden() -> Progress {
        Progress { start: Instant::now(), bar: None, quiet: true, verbose: false, label: None, owns_bar: false }
    }

    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A line that stays: the start of a phase, or a result.
    pub fn phase(&self, msg: &str) {
        if self.quiet {
            return;
        }
        let line = match &self.label {
            Some(l) => format!("[{:>6.1}s] [{l}] {msg}", self.elapsed()),
            None => format!("[{:>6.1}s] {msg}", self.elapsed()),
        };
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// A line for `-v`: hidden unless verbose.
    pub fn detail(&self, msg: &str) {
        if self.verbose {
            self.phase(msg);
        }
    }

    /// A passing detail (shown on the spinner only).
    /// With `-v` it is printed as a line of its own.
    pub fn message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_owned());
        }
        if self.verbose && !self.quiet {
            self.phase(msg);
        }
    }

    pub fn bytes(&self, done: u64, total: Option<u64>) {
        if let Some(b) = &self.bar {
            let mib = |n: u64| n as f64 / 1048576.0;
            b.set_message(match total {
                Some(t) => format!("{:.0} / {:.0} MiB", mib(done), mib(t)),
                None => format!("{:.0} MiB", mib(done)),
            });
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.as_ref().filter(|_| self.owns_bar) {
            b.finish_and_clear();
        }
    }
}

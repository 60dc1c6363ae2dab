//! Progress for people and for logs: a line per phase with its elapsed time; on a
//! terminal, a live spinner (indicatif) for long steps such as an image build, and
//! one live line per VM when several run at once; plain timestamped lines when
//! not a terminal, so that CI logs stay readable.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    start: Instant,
    /// The terminal's live lines, when there is a terminal.
    multi: Option<MultiProgress>,
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
        let multi = (!quiet && std::io::stderr().is_terminal()).then(MultiProgress::new);
        let bar = multi.as_ref().map(|m| m.add(spinner("{spinner} [{elapsed:>4}] {wide_msg}")));
        Progress { start: Instant::now(), multi, bar, quiet, verbose: false, label: None, owns_bar: true }
    }

    /// The same progress, its lines starting with `[label]`; on a terminal, with a
    /// live line of its own that shows its latest phase (one per VM that runs).
    pub fn labelled(&self, label: &str) -> Progress {
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(spinner("{spinner} [{elapsed:>4}] {prefix}: {wide_msg}"));
            b.set_prefix(label.to_owned());
            b
        });
        Progress {
            start: self.start,
            multi: self.multi.clone(),
            owns_bar: bar.is_some(),
            bar: bar.or_else(|| self.bar.clone()),
            quiet: self.quiet,
            verbose: self.verbose,
            label: Some(label.to_owned()),
        }
    }

    /// Also print the lines of [`Progress::detail`] (`-v`).
    /// Whether `-v` was given (reports show more).
    pub fn is_verbose(&self) -> bool {
        self.verbose
    }

    pub fn verbose(mut self, on: bool) -> Progress {
        self.verbose = on;
        self
    }

    /// A silent progress, for tests and library callers.
    pub fn hidden() -> Progress {
        Progress { start: Instant::now(), multi: None, bar: None, quiet: true, verbose: false, label: None, owns_bar: false }
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
            Some(b) => {
                b.println(line);
                if self.label.is_some() {
                    b.set_message(msg.to_owned());
                }
            }
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

fn spinner(template: &str) -> ProgressBar {
    let b = ProgressBar::new_spinner();
    b.set_style(ProgressStyle::with_template(template).expect("valid template"));
    b.enable_steady_tick(Duration::from_millis(120));
    b
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.as_ref().filter(|_| self.owns_bar) {
            b.finish_and_clear();
        }
    }
}

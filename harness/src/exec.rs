//! Where commands run. Every stage above the VM (host recipe, clouds, checks,
//! state collection, the network plane) talks to an [`Executor`]: "run this argv
//! with a timeout, stream or capture its output, upload a file". The guest's SSH
//! session is one (module `ssh`); a host network namespace is another
//! ([`HostNetns`]); [`fake::Recorder`] records what a stage sends, for unit tests.
//!
//! Commands are argv lists. Where a shell must read them (SSH hands the guest's
//! shell one string), [`quote`] is the one function that joins them.

use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;

/// A command: its argv and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

impl Cmd {
    /// A command with the default timeout (60 s).
    pub fn new<I, S>(argv: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd { argv: argv.into_iter().map(Into::into).collect(), timeout: Duration::from_secs(60) }
    }

    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = t;
        self
    }

    /// Add arguments.
    pub fn args<I, S>(mut self, more: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(more.into_iter().map(Into::into));
        self
    }

    /// The command as one line a POSIX shell reads back into the same argv.
    pub fn shell_line(&self) -> String {
        quote(&self.argv)
    }
}

/// Join `argv` for a POSIX shell, each word quoted where it must be.
pub fn quote(argv: &[String]) -> String {
    // shlex refuses only NUL bytes, which no argv of ours holds (and execve could not pass).
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| panic!("a NUL byte in {argv:?}"))
}

/// The result of a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout then stderr, as a person would read them.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The way to the place broke (SSH to the guest): not the command's fault.
    #[error("{place}: {source}")]
    Transport { place: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("cannot run `{command}` ({place}): {source}")]
    Spawn { command: String, place: String, source: std::io::Error },
    #[error("`{command}` ({place}) did not finish within {timeout:.0} s")]
    Timeout { command: String, place: String, timeout: f64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl ExecError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ExecError::Timeout { .. })
    }
}

/// A place where commands run.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Where this is, for messages: "guest 127.0.0.1:2222", "host netns dh-1234-inet".
    fn place(&self) -> String;

    /// Run `cmd`; each chunk of output goes to `on_output` as it arrives.
    async fn run_streaming(&self, cmd: &Cmd, on_output: &mut (dyn for<'s> FnMut(&'s str) + Send)) -> Result<Output, ExecError>;

    /// Put `data` at `path` (created or replaced) with `mode`.
    async fn upload(&self, data: &[u8], path: &str, mode: u32) -> Result<(), ExecError>;

    /// Run `cmd` and capture its output.
    async fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.run_streaming(cmd, &mut |_| {}).await
    }

    /// Connect again within `deadline` (after the place rebooted); nothing to do
    /// for a place that is not reached through a connection.
    async fn reconnect(&self, _deadline: std::time::Duration) -> Result<(), ExecError> {
        Ok(())
    }
}

/// Commands on this machine, inside a network namespace (or the host's own, for
/// `None`), through `ip netns exec`. Uploads write the host's file system.
#[derive(Debug, Clone)]
pub struct HostNetns {
    pub netns: Option<String>,
}

impl HostNetns {
    pub fn new(netns: &str) -> HostNetns {
        HostNetns { netns: Some(netns.to_owned()) }
    }

    fn full_argv(&self, cmd: &Cmd) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip".to_owned(), "netns".into(), "exec".into(), ns.clone()]);
        }
        argv.extend(cmd.argv.iter().cloned());
        argv
    }
}

#[async_trait]
impl Executor for HostNetns {
    fn place(&self) -> String {
        match &self.netns {
            Some(ns) => format!("host netns {ns}"),
            None => "host".into(),
        }
    }

    async fn run_streaming(&self, cmd: &Cmd, on_output: &mut (dyn for<'s> FnMut(&'s str) + Send)) -> Result<Output, ExecError> {
        use tokio::io::AsyncReadExt;
        let argv = self.full_argv(cmd);
        let command = quote(&cmd.argv);
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ExecError::Spawn { command: command.clone(), place: self.place(), source })?;
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let (mut bo, mut be) = ([0u8; 8192], [0u8; 8192]);
        let (mut o_done, mut e_done) = (false, false);
        let work = async {
            while !(o_done && e_done) {
                tokio::select! {
                    n = out.read(&mut bo), if !o_done => match n {
                        Ok(0) | Err(_) => o_done = true,
                        Ok(n) => { on_output(&String::from_utf8_lossy(&bo[..n])); o.extend_from_slice(&bo[..n]); }
                    },
                    n = err.read(&mut be), if !e_done => match n {
                        Ok(0) | Err(_) => e_done = true,
                        Ok(n) => { on_output(&String::from_utf8_lossy(&be[..n])); e.extend_from_slice(&be[..n]); }
                    },
                }
            }
            child.wait().await
        };
        let status = match tokio::time::timeout(cmd.timeout, work).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ExecError::Spawn { command, place: self.place(), source }),
            // kill_on_drop ends the child.
            Err(_) => return Err(ExecError::Timeout { command, place: self.place(), timeout: cmd.timeout.as_secs_f64() }),
        };
        Ok(Output {
            status: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o).into_owned(),
            stderr: String::from_utf8_lossy(&e).into_owned(),
        })
    }

    async fn upload(&self, data: &[u8], path: &str, mode: u32) -> Result<(), ExecError> {
        use std::os::unix::fs::PermissionsExt;
        let p = PathBuf::from(path);
        let io = |source| ExecError::Io { path: p.clone(), source };
        tokio::fs::write(&p, data).await.map_err(io)?;
        tokio::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).await.map_err(io)
    }
}

/// A recording executor for unit tests: it answers every command from a list of
/// rules (the first whose pattern the quoted command line contains wins; no rule:
/// status 0, no output) and records what was sent, in order.
pub mod fake {
    use super::*;
    use std::sync::Mutex;

    /// What a stage sent.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Sent {
        Run(String),
        Upload { path: String, mode: u32, bytes: usize },
    }

    impl std::fmt::Display for Sent {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                Sent::Run(line) => write!(f, "run {line}"),
                Sent::Upload { path, mode, .. } => write!(f, "upload {path} (mode {mode:o})"),
            }
        }
    }

    /// How the fake answers a command.
    #[derive(Debug, Clone)]
    pub enum Answer {
        Output(Output),
        /// The command runs past its timeout.
        Timeout,
    }

    pub struct Recorder {
        name: String,
        rules: Mutex<Vec<(String, Answer)>>,
        sent: Mutex<Vec<Sent>>,
    }

    impl Recorder {
        pub fn new(name: &str) -> Recorder {
            Recorder { name: name.into(), rules: Mutex::new(Vec::new()), sent: Mutex::new(Vec::new()) }
        }

        /// Commands whose line contains `pattern` answer with `status` and `stdout`.
        pub fn answer(&self, pattern: &str, status: i32, stdout: &str) -> &Recorder {
            let out = Output { status, stdout: stdout.into(), stderr: String::new() };
            self.rules.lock().expect("rules").push((pattern.into(), Answer::Output(out)));
            self
        }

        /// Commands whose line contains `pattern` time out.
        pub fn time_out(&self, pattern: &str) -> &Recorder {
            self.rules.lock().expect("rules").push((pattern.into(), Answer::Timeout));
            self
        }

        /// Everything sent so far, one line each.
        pub fn transcript(&self) -> Vec<String> {
            self.sent.lock().expect("sent").iter().map(ToString::to_string).collect()
        }
    }

    #[async_trait]
    impl Executor for Recorder {
        fn place(&self) -> String {
            format!("fake {}", self.name)
        }

        async fn run_streaming(&self, cmd: &Cmd, on_output: &mut (dyn for<'s> FnMut(&'s str) + Send)) -> Result<Output, ExecError> {
            let line = cmd.shell_line();
            self.sent.lock().expect("sent").push(Sent::Run(line.clone()));
            let answer = self.rules.lock().expect("rules").iter().find(|(p, _)| line.contains(p.as_str())).map(|(_, a)| a.clone());
            match answer {
                Some(Answer::Output(o)) => {
                    on_output(&o.stdout);
                    Ok(o)
                }
                Some(Answer::Timeout) => Err(ExecError::Timeout { command: line, place: self.place(), timeout: cmd.timeout.as_secs_f64() }),
                None => Ok(Output::default()),
            }
        }

        async fn upload(&self, data: &[u8], path: &str, mode: u32) -> Result<(), ExecError> {
            self.sent.lock().expect("sent").push(Sent::Upload { path: path.into(), mode, bytes: data.len() });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_every_word_whole() {
        let argv: Vec<String> = ["bash", "-c", "curl -s -m 30 http://127.0.0.1:9696/", "it's", ""].map(String::from).to_vec();
        let line = quote(&argv);
        assert_eq!(shlex::split(&line).expect("splits"), argv, "{line}");
        assert_eq!(quote(&["ip".into(), "-br".into(), "addr".into()]), "ip -br addr");
    }

    #[tokio::test]
    async fn host_commands_capture_status_output_and_time_out() {
        let host = HostNetns { netns: None };
        let out = host.run(&Cmd::new(["sh", "-c", "echo out; echo err >&2; exit 3"])).await.expect("runs");
        assert_eq!((out.status, out.stdout.as_str(), out.stderr.as_str()), (3, "out\n", "err\n"));
        let mut seen = String::new();
        host.run_streaming(&Cmd::new(["printf", "a b"]), &mut |c| seen.push_str(c)).await.expect("runs");
        assert_eq!(seen, "a b");
        let slow = host.run(&Cmd::new(["sleep", "5"]).timeout(Duration::from_millis(200))).await;
        assert!(matches!(slow, Err(ExecError::Timeout { .. })), "{slow:?}");
        let missing = host.run(&Cmd::new(["/nonexistent/tool"])).await;
        assert!(matches!(&missing, Err(ExecError::Spawn { command, .. }) if command == "/nonexistent/tool"), "{missing:?}");
    }
}

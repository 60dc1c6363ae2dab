//! SSH to the guest with `ssh2`, wrapped for tokio (every libssh2 call runs on a
//! blocking thread). The guest's host key is the one the harness put into the
//! seed: it is compared byte for byte before authenticating, so there is no trust
//! on first use.

use crate::exec::{Cmd, ExecError, Executor};
use crate::wait::{Step, WaitError};
use base64::Engine;
use ssh2::Session;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("SSH to {addr} not up after {waited:.0} s (last error: {last})")]
    NeverUp { addr: String, waited: f64, last: String },
    #[error("host key mismatch at {addr}: expected the seeded key {expected}, the guest offered {found}; refusing to authenticate")]
    HostKey { addr: String, expected: String, found: String },
    #[error("SSH: {0}")]
    Protocol(String),
    #[error("`{command}` did not finish within {timeout:.0} s")]
    Timeout { command: String, timeout: f64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn proto(e: impl std::fmt::Display) -> SshError {
    SshError::Protocol(e.to_string())
}

pub use crate::exec::Output;

/// Where and how to reach the guest.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub user: String,
    pub private_key: PathBuf,
    /// The host key line, `ssh-ed25519 AAAA... comment`.
    pub host_public_key: String,
}

impl Target {
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

#[derive(Clone)]
pub struct Ssh {
    session: Arc<Mutex<Session>>,
    target: Target,
}

fn key_blob(line: &str) -> Option<Vec<u8>> {
    let b64 = line.split_whitespace().nth(1)?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

fn connect_once(t: &Target) -> Result<Session, SshError> {
    let addr = t.addr();
    let tcp = TcpStream::connect_timeout(&addr.parse().map_err(proto)?, Duration::from_secs(5)).map_err(proto)?;
    let mut s = Session::new().map_err(proto)?;
    s.set_tcp_stream(tcp);
    s.set_timeout(10_000);
    s.handshake().map_err(proto)?;
    let (found, _) = s.host_key().ok_or_else(|| proto("the server sent no host key"))?;
    let expected = key_blob(&t.host_public_key).ok_or_else(|| proto("the seeded host key is not a valid public key line"))?;
    if found != expected.as_slice() {
        return Err(SshError::HostKey {
            addr,
            expected: t.host_public_key.clone(),
            found: base64::engine::general_purpose::STANDARD.encode(found),
        });
    }
    s.userauth_pubkey_file(&t.user, None, &t.private_key, None).map_err(proto)?;
    s.set_timeout(0);
    Ok(s)
}

impl Ssh {
    /// Connect, retrying with backoff until `deadline` (sshd comes up late in boot).
    /// `alive` is asked between tries, so that a dead VM ends the wait at once.
    pub async fn connect(target: Target, deadline: Duration, alive: impl Fn() -> Result<(), String>) -> Result<Ssh, SshError> {
        let what = format!("sshd at {}", target.addr());
        let r = crate::wait::until(&what, deadline, Duration::from_millis(200), || {
            let t = target.clone();
            let alive = &alive;
            async move {
                match tokio::task::spawn_blocking(move || connect_once(&t)).await.map_err(proto) {
                    Ok(Ok(s)) => Step::Done(s),
                    Ok(Err(e @ SshError::HostKey { .. })) => Step::Fail(e.to_string()),
                    Ok(Err(e)) | Err(e) => match alive() {
                        Ok(()) => Step::NotYet(e.to_string()),
                        Err(why) => Step::Fail(why),
                    },
                }
            }
        })
        .await;
        match r {
            Ok(s) => Ok(Ssh { session: Arc::new(Mutex::new(s)), target }),
            Err(WaitError::Deadline { waited, last, .. }) | Err(WaitError::Failed { waited, why: last, .. }) => {
                Err(SshError::NeverUp { addr: target.addr(), waited, last })
            }
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Connect again to the same guest (its VM was saved and restored, which ended
    /// the old connection); every clone of this `Ssh` uses the new one.
    pub async fn reconnect(&self, deadline: Duration) -> Result<(), SshError> {
        let fresh = Ssh::connect(self.target.clone(), deadline, || Ok(())).await?;
        let session = fresh.session.lock().map_err(|_| proto("session lock poisoned"))?.clone();
        *self.session.lock().map_err(|_| proto("session lock poisoned"))? = session;
        Ok(())
    }

    /// Run a command; each chunk of output goes to `on_output` as it arrives.
    pub async fn exec_streaming(
        &self,
        command: &str,
        timeout: Duration,
        on_output: impl FnMut(&str) + Send + 'static,
    ) -> Result<Output, SshError> {
        let session = self.session.clone();
        let cmd = command.to_owned();
        let mut on_output = on_output;
        tokio::task::spawn_blocking(move || -> Result<Output, SshError> {
            let s = session.lock().map_err(|_| proto("session lock poisoned"))?;
            let mut ch = s.channel_session().map_err(proto)?;
            ch.exec(&cmd).map_err(proto)?;
            s.set_blocking(false);
            let start = Instant::now();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut buf = [0u8; 8192];
            let result = loop {
                let mut progressed = false;
                let mut failed = None;
                // Stream 0 is stdout, 1 is stderr; a non-blocking read may have nothing yet.
                for (stream, sink) in [(0, &mut out), (1, &mut err)] {
                    match ch.stream(stream).read(&mut buf) {
                        Ok(0) => {}
                        Ok(n) => {
                            on_output(&String::from_utf8_lossy(&buf[..n]));
                            sink.extend_from_slice(&buf[..n]);
                            progressed = true;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            failed = Some(proto(e));
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    break Err(e);
                }
                if ch.eof() && !progressed {
                    break Ok(());
                }
                if start.elapsed() > timeout {
                    break Err(SshError::Timeout { command: cmd.clone(), timeout: timeout.as_secs_f64() });
                }
                if !progressed {
                    std::thread::sleep(Duration::from_millis(20));
                }
            };
            s.set_blocking(true);
            s.set_timeout(5_000);
            let closed = ch.close().and_then(|()| ch.wait_close());
            s.set_timeout(0);
            result?;
            closed.map_err(proto)?;
            let status = ch.exit_status().map_err(proto)?;
            Ok(Output { status, stdout: String::from_utf8_lossy(&out).into_owned(), stderr: String::from_utf8_lossy(&err).into_owned() })
        })
        .await
        .map_err(proto)?
    }

    pub async fn exec(&self, command: &str, timeout: Duration) -> Result<Output, SshError> {
        self.exec_streaming(command, timeout, |_| {}).await
    }

    pub async fn upload(&self, data: Vec<u8>, remote: &str, mode: i32) -> Result<(), SshError> {
        let session = self.session.clone();
        let remote = remote.to_owned();
        tokio::task::spawn_blocking(move || -> Result<(), SshError> {
            let s = session.lock().map_err(|_| proto("session lock poisoned"))?;
            let mut ch = s.scp_send(Path::new(&remote), mode, data.len() as u64, None).map_err(proto)?;
            std::io::Write::write_all(&mut ch, &data).map_err(proto)?;
            ch.send_eof().map_err(proto)?;
            ch.wait_eof().map_err(proto)?;
            ch.close().map_err(proto)?;
            ch.wait_close().map_err(proto)?;
            Ok(())
        })
        .await
        .map_err(proto)?
    }

    pub async fn download(&self, remote: &str) -> Result<Vec<u8>, SshError> {
        let session = self.session.clone();
        let remote = remote.to_owned();
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>, SshError> {
            let s = session.lock().map_err(|_| proto("session lock poisoned"))?;
            let (mut ch, _) = s.scp_recv(Path::new(&remote)).map_err(|e| proto(format!("{remote}: {e}")))?;
            let mut data = Vec::new();
            ch.read_to_end(&mut data).map_err(proto)?;
            let _ = ch.send_eof();
            let _ = ch.wait_eof();
            let _ = ch.close();
            let _ = ch.wait_close();
            Ok(data)
        })
        .await
        .map_err(proto)?
    }
}

impl From<SshError> for ExecError {
    fn from(e: SshError) -> ExecError {
        match e {
            SshError::Timeout { command, timeout } => ExecError::Timeout { command, place: "guest".into(), timeout },
            other => ExecError::Transport { place: "guest".into(), source: Box::new(other) },
        }
    }
}

/// The guest as an [`Executor`]: the argv is quoted into the one line that SSH
/// hands the guest's shell; output streams back through a channel, so that the
/// caller's callback runs on its own task, not on libssh2's blocking thread.
#[async_trait::async_trait]
impl Executor for Ssh {
    fn place(&self) -> String {
        format!("guest {}", self.target.addr())
    }

    async fn run_streaming(&self, cmd: &Cmd, on_output: &mut (dyn for<'s> FnMut(&'s str) + Send)) -> Result<Output, ExecError> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let line = cmd.shell_line();
        let fut = self.exec_streaming(&line, cmd.timeout, move |chunk| {
            let _ = tx.send(chunk.to_owned());
        });
        tokio::pin!(fut);
        let result = loop {
            tokio::select! {
                r = &mut fut => break r,
                Some(chunk) = rx.recv() => on_output(&chunk),
            }
        };
        while let Ok(chunk) = rx.try_recv() {
            on_output(&chunk);
        }
        Ok(result?)
    }

    async fn upload(&self, data: &[u8], path: &str, mode: u32) -> Result<(), ExecError> {
        Ok(Ssh::upload(self, data.to_vec(), path, mode as i32).await?)
    }

    async fn reconnect(&self, deadline: Duration) -> Result<(), ExecError> {
        Ok(Ssh::reconnect(self, deadline).await?)
    }
}

/// What `cloud-init status --wait` said.
#[derive(Debug, Clone)]
pub struct CloudInitStatus {
    pub done: bool,
    pub detail: String,
}

/// Wait for cloud-init to finish; on an error, its own account of what failed.
pub async fn wait_cloud_init(ssh: &Ssh, timeout: Duration) -> Result<CloudInitStatus, SshError> {
    let out = ssh.exec("cloud-init status --wait --long", timeout).await?;
    let text = format!("{}{}", out.stdout, out.stderr);
    let done = out.status == 0 && text.contains("status: done");
    if done {
        return Ok(CloudInitStatus { done, detail: text });
    }
    let log = ssh.exec("grep -E 'WARNING|ERROR|Traceback' /var/log/cloud-init.log | tail -n 20", Duration::from_secs(30)).await?;
    Ok(CloudInitStatus { done, detail: format!("{text}\n--- /var/log/cloud-init.log (warnings and errors) ---\n{}", log.stdout) })
}

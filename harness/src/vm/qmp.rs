//! A minimal QMP client (QEMU's JSON machine protocol on a Unix socket): enough to
//! pause a VM, migrate its state to a file, follow the migration and resume.

use serde_json::{json, Value};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP at {path}: {detail}")]
    Io { path: String, detail: String },
    #[error("QMP `{command}` failed: {detail}")]
    Command { command: String, detail: String },
}

pub struct Qmp {
    path: String,
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Qmp {
    /// Connect, read the greeting and leave capabilities negotiation mode.
    pub async fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let p = path.display().to_string();
        let stream = UnixStream::connect(path).await.map_err(|e| QmpError::Io { path: p.clone(), detail: e.to_string() })?;
        let (r, w) = stream.into_split();
        let mut q = Qmp { path: p, reader: BufReader::new(r), writer: w };
        q.read_message().await?; // {"QMP": {...}}
        q.execute("qmp_capabilities", json!({})).await?;
        Ok(q)
    }

    async fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).await.map_err(|e| QmpError::Io { path: self.path.clone(), detail: e.to_string() })?;
        if n == 0 {
            return Err(QmpError::Io { path: self.path.clone(), detail: "QEMU closed the socket".into() });
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Io { path: self.path.clone(), detail: format!("{e}: {line}") })
    }

    /// Run a command; events that arrive meanwhile are skipped.
    pub async fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let msg = json!({ "execute": command, "arguments": arguments });
        let mut text = msg.to_string();
        text.push('\n');
        self.writer.write_all(text.as_bytes()).await.map_err(|e| QmpError::Io { path: self.path.clone(), detail: e.to_string() })?;
        loop {
            let v = self.read_message().await?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(QmpError::Command { command: command.into(), detail: e.to_string() });
            }
        }
    }
}

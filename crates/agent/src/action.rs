//! The post-completion action: a command from the agent's own configuration file (never from
//! the control plane), run once for each artifact whose every byte is verified on this node,
//! with the artifact's path. The safe part of what remote execution is used for: "when the
//! build lands, restart the service", decided by whoever administers the host.
//!
//! The command runs without a shell: `on_complete = ["/usr/local/bin/deploy", "--restart"]`
//! runs `deploy --restart PATH`, with `SHOAL_CONTENT_ID`, `SHOAL_NAME_TAG` and `SHOAL_PATH` in
//! its environment. It is due for each artifact this node downloads: a record next to the
//! torrent (`<id>.action`) is written just before the completion record, and the command runs
//! only once the completion record is written, so never on partial data. The record is
//! removed when the command exits: once per verified copy, not again after a restart, again
//! only if the artifact is removed and fetched anew. Artifacts published here, or held before
//! `on_complete` was configured, are not due. If the agent dies while the command runs, it
//! runs again at the next start (at least once, so make it idempotent). The artifact counts as
//! in use while the command runs, so the quota does not evict it from under the command.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use crate::store::DataDir;

/// The longest the command may run before it is killed.
pub const ACTION_TIMEOUT: Duration = Duration::from_secs(3600);

/// The most output kept for the log, per stream.
const MAX_OUTPUT: usize = 4096;

/// The configured command, if any.
#[derive(Clone, Debug, Default)]
pub struct OnComplete(Option<std::sync::Arc<Vec<String>>>);

impl OnComplete {
    /// The command and its leading arguments; an empty list means none.
    pub fn new(argv: Vec<String>) -> Self {
        Self((!argv.is_empty()).then(|| std::sync::Arc::new(argv)))
    }

    /// Returns true if and only if a command is configured.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Runs the command for artifact `id` at `path` if it is due, in the background, holding
    /// `in_use` until it exits; then records that it ran.
    pub fn run(
        &self,
        data: &DataDir,
        id: &str,
        name_tag: Option<&str>,
        path: PathBuf,
        in_use: crate::torrents::InUse,
    ) {
        let Some(argv) = self.0.clone() else {
            return;
        };
        if !data.action_due(id) {
            return;
        }
        let (data, id, name_tag) = (
            data.clone(),
            id.to_owned(),
            name_tag.unwrap_or("").to_owned(),
        );
        tokio::spawn(async move {
            let outcome = execute(&argv, &id, &name_tag, &path).await;
            match &outcome {
                Ok((status, stdout, stderr)) if status.success() => {
                    tracing::info!(content_id = %id, command = ?argv, %stdout, %stderr, "post-completion action done")
                }
                Ok((status, stdout, stderr)) => {
                    tracing::warn!(content_id = %id, command = ?argv, %status, %stdout, %stderr, "post-completion action failed; it is not run again for this copy")
                }
                Err(e) => {
                    tracing::warn!(content_id = %id, command = ?argv, error = %e, "post-completion action could not run; check `on_complete` in the agent's configuration")
                }
            }
            drop(in_use);
            if let Err(e) = data.action_done(&id) {
                tracing::warn!(content_id = %id, error = %e, "cannot record that the post-completion action ran; it runs again at the next start");
            }
        });
    }
}

/// Everything a pipe yields until it closes.
async fn read_all<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut pipe) = pipe {
        let _ = pipe.read_to_end(&mut out).await;
    }
    out
}

/// Runs `argv` with `path` appended; returns its status and the start of its output.
async fn execute(
    argv: &[String],
    id: &str,
    name_tag: &str,
    path: &std::path::Path,
) -> std::io::Result<(std::process::ExitStatus, String, String)> {
    let Some((program, args)) = argv.split_first() else {
        return Err(std::io::Error::other("no command"));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .arg(path)
        .env("SHOAL_CONTENT_ID", id)
        .env("SHOAL_NAME_TAG", name_tag)
        .env("SHOAL_PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = tokio::spawn(read_all(child.stdout.take()));
    let stderr = tokio::spawn(read_all(child.stderr.take()));
    let status = match tokio::time::timeout(ACTION_TIMEOUT, child.wait()).await {
        Ok(status) => status?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(std::io::Error::other(format!(
                "still running after {} s; killed",
                ACTION_TIMEOUT.as_secs()
            )));
        }
    };
    let text = |bytes: Vec<u8>| {
        let mut s = String::from_utf8_lossy(&bytes).into_owned();
        if s.len() > MAX_OUTPUT {
            let mut end = MAX_OUTPUT;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s.trim_end().to_owned()
    };
    Ok((
        status,
        text(stdout.await.unwrap_or_default()),
        text(stderr.await.unwrap_or_default()),
    ))
}

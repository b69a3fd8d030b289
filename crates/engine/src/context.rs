//! What a running stage gets: the workspace, its environment, and a way to run commands that
//! says what each is for.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;

use crate::workspace::Workspace;

/// A subprocess that did not succeed, described for a person.
#[derive(Debug, thiserror::Error)]
#[error("could not {purpose}: `{command}` {status}{tail}")]
pub struct CommandError {
    /// What the command was for, e.g. "check formatting".
    pub purpose: String,
    /// The command line.
    pub command: String,
    /// How it ended.
    pub status: String,
    /// The last lines of its output, already redacted, with a leading newline.
    pub tail: String,
}

/// Handed to a stage's action while it runs.
pub struct StageContext<'a> {
    pub(crate) stage: &'a str,
    pub(crate) workspace: &'a Workspace,
    pub(crate) log: Mutex<PathBuf>,
}

/// How many lines of a failed command's output an error shows.
const TAIL_LINES: usize = 30;

impl StageContext<'_> {
    /// The workspace root; relative paths in stage declarations start here.
    pub fn root(&self) -> &Path {
        self.workspace.root()
    }

    /// The stage's name.
    pub fn stage(&self) -> &str {
        self.stage
    }

    /// The environment snapshot taken when the run started.
    pub fn env(&self) -> &BTreeMap<String, String> {
        self.workspace.env()
    }

    /// A shell in the workspace root.
    pub fn shell(&self) -> xshell::Shell {
        let sh = xshell::Shell::new().expect("the current directory is readable");
        sh.change_dir(self.root());
        sh
    }

    /// Runs `cmd`, whose job is `purpose` ("check formatting"), capturing its output into the
    /// stage's log. A non-zero exit is an error naming the purpose, the command, the exit status
    /// and the tail of its output, with secrets masked.
    pub fn run(&self, purpose: &str, cmd: xshell::Cmd<'_>) -> Result<Output, CommandError> {
        let command = cmd.to_string();
        self.log_line(&format!("$ {command}    # {purpose}"));
        let output = cmd.ignore_status().quiet().output().map_err(|e| CommandError {
            purpose: purpose.to_string(),
            command: command.clone(),
            status: "could not be started".to_string(),
            tail: format!("\n{e}"),
        })?;
        let text = self.workspace.redact(&format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
        self.log_line(&text);
        if output.status.success() {
            return Ok(output);
        }
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
        let status = match output.status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_string(),
        };
        Err(CommandError { purpose: purpose.to_string(), command, status, tail: format!("\n{tail}") })
    }

    /// Appends a line to the stage's log, with secrets masked.
    pub fn log_line(&self, line: &str) {
        let path = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&*path) {
            let _ = writeln!(f, "{}", self.workspace.redact(line).trim_end());
        }
    }
}

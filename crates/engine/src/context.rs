//! What a running stage gets: the workspace root, its declared environment, the values of its
//! probes, and its declared commands, each run in a clean environment and logged with what it
//! is for.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;

use crate::command::{Command, OnFailure};
use crate::stage::StageError;
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
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) probes: BTreeMap<String, (String, bool)>,
    pub(crate) commands: &'a [Command],
    pub(crate) ran: Mutex<Vec<bool>>,
    /// When set, every command runs under `strace` and writes its trace into this directory.
    pub(crate) trace: Option<PathBuf>,
    /// Where [`StageContext::warn`] goes besides the log.
    pub(crate) reporter: &'a dyn crate::report::Reporter,
    /// Variables in `env` that the commands do not get (see [`crate::Stage::action_secrets`]).
    pub(crate) action_only: &'a [String],
}

/// How many lines of a failed command's output an error shows.
const TAIL_LINES: usize = 30;

impl StageContext<'_> {
    /// The workspace root; relative paths in stage declarations start here.
    pub fn root(&self) -> &Path {
        self.workspace.root()
    }

    /// The Cargo workspace of the program that defines the pipeline: the root, unless the
    /// project lives in a subdirectory of it ([`crate::Stage::pipeline_code`] paths are here).
    pub fn program_root(&self) -> &Path {
        self.workspace.program_root()
    }

    /// The stage's name.
    pub fn stage(&self) -> &str {
        self.stage
    }

    /// The stage's environment: the variables it declared (those that are set) and the ambient
    /// ones every stage gets (`PATH`, `HOME`, …). Nothing else of the process's environment.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// What the probe or tool `name` printed when the stage was planned, if it succeeded.
    pub fn probe(&self, name: &str) -> Option<&str> {
        self.probes.get(name).filter(|(_, ok)| *ok).map(|(out, _)| out.as_str())
    }

    /// Runs every declared command in order; stops at the first failure.
    pub fn run_commands(&self) -> Result<(), StageError> {
        for i in 0..self.commands.len() {
            self.run_index(i)?;
        }
        Ok(())
    }

    /// Runs the declared command whose purpose is `purpose`.
    pub fn run_command(&self, purpose: &str) -> Result<Output, StageError> {
        let i = self.commands.iter().position(|c| c.purpose == purpose).ok_or_else(|| {
            StageError::Failed(anyhow::anyhow!("stage `{}` declares no command to {purpose}", self.stage))
        })?;
        self.run_index(i)
    }

    /// The declared commands that must run and did not, as lines.
    pub(crate) fn not_run(&self) -> Vec<String> {
        let ran = self.ran.lock().unwrap_or_else(|e| e.into_inner());
        self.commands.iter().zip(ran.iter()).filter(|(c, r)| !c.optional && !**r).map(|(c, _)| c.to_string()).collect()
    }

    fn run_index(&self, i: usize) -> Result<Output, StageError> {
        let command = &self.commands[i];
        self.ran.lock().unwrap_or_else(|e| e.into_inner())[i] = true;
        let result = self.execute(command, i);
        match (result, command.on_failure) {
            (Ok(out), _) => Ok(out),
            (Err(e), OnFailure::Reject) => Err(StageError::Rejected(e.to_string())),
            (Err(e), OnFailure::Fail) => Err(StageError::Failed(e.into())),
        }
    }

    fn execute(&self, command: &Command, index: usize) -> Result<Output, CommandError> {
        let line = command.to_string();
        self.log_line(&format!("$ {line}    # {}", command.purpose));
        let failed = |status: String, tail: String| CommandError {
            purpose: command.purpose.clone(),
            command: line.clone(),
            status,
            tail,
        };
        let sh = xshell::Shell::new().map_err(|e| failed("could not be started".into(), format!("\n{e}")))?;
        sh.change_dir(if command.in_program { self.program_root() } else { self.root() });
        let program = self.resolve_program(&command.program);
        let mut argv: Vec<String> = command.args.clone();
        let program = match &self.trace {
            Some(dir) => {
                let out = dir.join(format!("{}.{index}.strace", self.stage));
                argv.splice(0..0, [program]);
                argv.splice(0..0, crate::trace::strace_args(&out));
                "strace".to_string()
            }
            None => program,
        };
        let commands_env = self.env.iter().filter(|(k, _)| !self.action_only.contains(k));
        let mut cmd = sh.cmd(&program).args(&argv).env_clear().envs(commands_env);
        for (k, v) in &command.env {
            cmd = cmd.env(k, v);
        }
        if !command.path.is_empty() {
            let mut dirs: Vec<String> =
                command.path.iter().map(|d| self.root().join(d).display().to_string()).collect();
            dirs.extend(self.env.get("PATH").cloned());
            cmd = cmd.env("PATH", dirs.join(":"));
        }
        let output = cmd
            .ignore_status()
            .quiet()
            .output()
            .map_err(|e| failed("could not be started".into(), format!("\n{e}")))?;
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
        Err(failed(status, format!("\n{tail}")))
    }

    /// A program named by a relative path (`.slipway/env/bin/python`) is taken from the root.
    fn resolve_program(&self, program: &str) -> String {
        if program.contains('/') && !program.starts_with('/') {
            self.root().join(program).display().to_string()
        } else {
            program.to_string()
        }
    }

    /// Something the user should see though the stage goes on (a service it only informs was
    /// unreachable): shown as the run's warning and kept in the stage's log, secrets masked.
    pub fn warn(&self, message: &str) {
        let message = self.workspace.redact(message);
        self.log_line(&format!("warning: {message}"));
        self.reporter.warn(&format!("{}: {message}", self.stage));
    }

    /// Appends a line to the stage's log, with secrets masked.
    pub fn log_line(&self, line: &str) {
        let path = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&*path) {
            let _ = writeln!(f, "{}", self.workspace.redact(line).trim_end());
        }
    }
}

//! Commands as values. A stage declares each command it runs once, as a [`Command`]; the
//! fingerprint is computed from that value and the engine runs exactly that value, so what is
//! keyed and what runs cannot drift apart. A stage's action has no other way to start a process.

use std::fmt;

/// How a failing command counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The stage could not do its job (exit 2): a build, an install.
    Fail,
    /// A gate said no (exit 1): a lint, a test suite.
    Reject,
}

/// One command line a stage runs, with the environment it adds.
///
/// Relative program paths and arguments are taken from the workspace root, where every command
/// runs. The process sees only the stage's declared environment (see [`crate::Stage::env`]),
/// plus what the command itself sets here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub(crate) purpose: String,
    pub(crate) program: String,
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) path: Vec<String>,
    pub(crate) on_failure: OnFailure,
    pub(crate) optional: bool,
    pub(crate) in_program: bool,
}

impl Command {
    /// A command whose job is `purpose` ("lint with clippy"), running `program`.
    pub fn new(purpose: &str, program: impl Into<String>) -> Command {
        Command {
            purpose: purpose.to_string(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            path: Vec::new(),
            on_failure: OnFailure::Fail,
            optional: false,
            in_program: false,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Command {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Command {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets `name` to `value` for this command. The value is part of the key: never a secret.
    pub fn env(mut self, name: &str, value: &str) -> Command {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Puts the directory `dir` (relative to the root) in front of `PATH`.
    pub fn path_prepend(mut self, dir: &str) -> Command {
        self.path.push(dir.trim_end_matches('/').to_string());
        self
    }

    /// A failure of this command is a gate's "no" (exit 1), not a breakdown (exit 2).
    pub fn rejects(mut self) -> Command {
        self.on_failure = OnFailure::Reject;
        self
    }

    /// The stage may finish without running this command (it runs only when needed).
    pub fn optional(mut self) -> Command {
        self.optional = true;
        self
    }

    /// Runs in the program root ([`crate::Workspace::with_program_root`]) instead of the
    /// project: a build of the program's own crates, so that cargo reads only the configuration
    /// of the workspace it builds (which its crates input keys), not a `.cargo` of the project
    /// or of a directory above it. The line shows it as `cd <workspace> && …`.
    pub fn in_program_root(mut self) -> Command {
        self.in_program = true;
        self
    }

    /// What the command is for.
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// The program, as declared.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The arguments, as declared.
    pub fn arguments(&self) -> &[String] {
        &self.args
    }
}

/// The command as a shell would read it: `PATH=dir:$PATH NAME=value program 'an arg'`. This is
/// what the fingerprint covers and what logs and errors show.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.in_program {
            f.write_str("cd <workspace> && ")?;
        }
        if !self.path.is_empty() {
            write!(f, "PATH={}:$PATH ", self.path.iter().map(|p| quote(p)).collect::<Vec<_>>().join(":"))?;
        }
        for (k, v) in &self.env {
            write!(f, "{k}={} ", quote(v))?;
        }
        f.write_str(&quote(&self.program))?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        Ok(())
    }
}

/// `s` quoted for a POSIX shell when it needs to be.
fn quote(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:+,@%".contains(&b));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_quotes_what_a_shell_would_split() {
        let c = Command::new("test", "cargo")
            .args(["test", "--workspace"])
            .env("RUST_BACKTRACE", "1")
            .path_prepend(".slipway/tools/bin")
            .arg("it's");
        assert_eq!(c.to_string(), r"PATH=.slipway/tools/bin:$PATH RUST_BACKTRACE=1 cargo test --workspace 'it'\''s'");
        assert_eq!(Command::new("x", "echo").arg("").to_string(), "echo ''");
        let build = Command::new("build", "cargo").in_program_root().arg("build");
        assert_eq!(build.to_string(), "cd <workspace> && cargo build", "where it runs is in the key");
    }
}

//! Stages: what runs, after what, reading what, writing what.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::command::Command;
use crate::context::StageContext;
use crate::input::{EnvUse, Input};
use crate::tree::Ignore;

/// Why a stage did not succeed. The distinction decides the exit code.
#[derive(Debug)]
pub enum StageError {
    /// The stage judged its input and said no: a failed lint, test, gate or smoke test (exit 1).
    Rejected(String),
    /// The stage could not do its job: bad input, a missing tool, a bug (exit 2).
    Failed(anyhow::Error),
}

impl StageError {
    /// A rejection with its reason.
    pub fn rejected(reason: impl fmt::Display) -> StageError {
        StageError::Rejected(reason.to_string())
    }
}

impl<E: Into<anyhow::Error>> From<E> for StageError {
    fn from(e: E) -> StageError {
        StageError::Failed(e.into())
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageError::Rejected(reason) => write!(f, "rejected: {reason}"),
            StageError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

pub(crate) type Action = dyn Fn(&StageContext) -> Result<(), StageError> + Send + Sync;

/// Says whether what an environment stage built is really there (a server answering on its
/// port), given the root and the stage's environment. `Err` says why not.
pub(crate) type Alive = dyn Fn(&Path, &BTreeMap<String, String>) -> Result<(), String> + Send + Sync;

/// What a stage is to the pipeline: an ordinary step, a check, or a stage that ships.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Produces something.
    Step,
    /// Judges: lints, tests, data and model gates. Nothing that ships may run before it passes.
    Gate,
    /// Puts something where others use it: an image on a registry, a release on an environment.
    Ships,
}

/// One step of the pipeline.
///
/// A stage's fingerprint covers every declared input: its files, environment, parameters,
/// probes, the code that runs it ([`Stage::code`], [`Stage::crates`]) and the commands it runs
/// ([`Stage::command`]), plus the outputs of every stage it [`uses`](Stage::uses), directly or
/// through another. The action sees only the declared environment and can run only the
/// declared commands, so an input cannot be read without being declared.
///
/// Build stages with [`crate::stage!`], which declares the file that builds the stage as its
/// code.
#[derive(Clone)]
pub struct Stage {
    pub(crate) name: String,
    pub(crate) about: String,
    pub(crate) uses: Vec<String>,
    pub(crate) after: Vec<String>,
    pub(crate) inputs: Vec<Input>,
    pub(crate) code: Vec<String>,
    pub(crate) pipeline_code: Vec<String>,
    pub(crate) commands: Vec<Command>,
    pub(crate) outputs: Vec<String>,
    pub(crate) updates: Vec<String>,
    pub(crate) environment: Option<String>,
    pub(crate) alive: Option<Arc<Alive>>,
    pub(crate) role: Role,
    pub(crate) keep_failed_outputs: bool,
    /// Variables the action reads but the stage's commands never see.
    pub(crate) action_only: Vec<String>,
    pub(crate) ignore: Ignore,
    pub(crate) action: Option<Arc<Action>>,
}

/// A stage whose code is the file that invokes the macro (plus whatever it declares):
/// `stage!("train", "train the model")`. Prefer it to [`Stage::new`]: a stage's own code can
/// then not be left out of its key.
#[macro_export]
macro_rules! stage {
    ($name:expr, $about:expr $(,)?) => {
        $crate::Stage::new($name, $about).pipeline_code(file!())
    };
}

impl Stage {
    /// A stage named `name` (lowercase, `-` allowed) whose job is `about`. See [`crate::stage!`].
    pub fn new(name: &str, about: &str) -> Stage {
        Stage {
            name: name.to_string(),
            about: about.to_string(),
            uses: Vec::new(),
            after: Vec::new(),
            inputs: Vec::new(),
            code: Vec::new(),
            pipeline_code: Vec::new(),
            commands: Vec::new(),
            outputs: Vec::new(),
            updates: Vec::new(),
            environment: None,
            alive: None,
            role: Role::Step,
            keep_failed_outputs: false,
            action_only: Vec::new(),
            ignore: crate::input::default_ignore(),
            action: None,
        }
    }

    /// Runs after `stage`, only if it succeeded, and is keyed on its outputs and, through it, on
    /// the outputs of everything it uses.
    pub fn uses(mut self, stage: &str) -> Stage {
        self.uses.push(stage.to_string());
        self
    }

    /// Runs after `stage`, only if it (and all it waits for) succeeded, without being keyed on
    /// it: for gates that must pass before this stage may run.
    pub fn after(mut self, stage: &str) -> Stage {
        self.after.push(stage.to_string());
        self
    }

    /// Reads the files and directories `paths`, relative to the workspace root.
    pub fn files<S: AsRef<str>>(mut self, name: &str, paths: &[S]) -> Stage {
        let paths = paths.iter().map(|p| p.as_ref().trim_end_matches('/').to_string()).collect();
        self.inputs.push(Input::Files { name: name.to_string(), paths });
        self
    }

    /// Runs the code in `path` (a source file or directory relative to the root): a script the
    /// stage executes, or a module of the program that runs the stage in process. Code paths
    /// must exist: a missing one is an error, not a "missing" input.
    pub fn code(mut self, path: &str) -> Stage {
        self.code.push(path.trim_start_matches("./").trim_end_matches('/').to_string());
        self
    }

    /// Runs the code in `path` of the program that defines the pipeline: a module of it, by
    /// `file!()`, or its `Cargo.lock`, relative to the Cargo workspace the program is built in. That is the root,
    /// unless the project lives in a subdirectory of the workspace
    /// ([`crate::Workspace::with_program_root`]). Like [`Stage::code`], it must exist.
    pub fn pipeline_code(mut self, path: &str) -> Stage {
        self.pipeline_code.push(path.trim_start_matches("./").trim_end_matches('/').to_string());
        self
    }

    /// Runs the workspace crates `packages` in process: keyed on their closure in `Cargo.lock`
    /// (sources, locked dependencies, build configuration, compiler).
    pub fn crates<S: AsRef<str>>(mut self, packages: &[S]) -> Stage {
        let mut packages: Vec<String> = packages.iter().map(|p| p.as_ref().to_string()).collect();
        if let Some(Input::Crates { packages: known }) =
            self.inputs.iter_mut().find(|i| matches!(i, Input::Crates { .. }))
        {
            known.append(&mut packages);
            return self;
        }
        self.inputs.push(Input::Crates { packages });
        self
    }

    /// Reads the environment variable `name`; its value is keyed.
    pub fn env(self, name: &str) -> Stage {
        self.env_as(name, EnvUse::Value)
    }

    /// Reads the secret `name`: only whether it is set is keyed, and its value is masked.
    pub fn secret_env(self, name: &str) -> Stage {
        self.env_as(name, EnvUse::Secret)
    }

    /// Passes `names` to the stage without keying them: they locate things whose content is
    /// keyed elsewhere (a cache directory, a remote addressed by digest).
    pub fn pass_env<S: AsRef<str>>(mut self, names: &[S]) -> Stage {
        for n in names {
            self = self.env_as(n.as_ref(), EnvUse::Pass);
        }
        self
    }

    /// Passes the secrets `names` without keying them (credentials for a remote addressed by
    /// digest); their values are masked.
    pub fn pass_secrets<S: AsRef<str>>(mut self, names: &[S]) -> Stage {
        for n in names {
            self = self.env_as(n.as_ref(), EnvUse::PassSecret);
        }
        self
    }

    /// Passes the secrets `names` to the stage's own action only, without keying them: its
    /// commands never see them (credentials for a service the action tells what the commands
    /// did, which must not be able to change what they do).
    pub fn action_secrets<S: AsRef<str>>(mut self, names: &[S]) -> Stage {
        for n in names {
            self.action_only.push(n.as_ref().to_string());
            self = self.env_as(n.as_ref(), EnvUse::PassSecret);
        }
        self
    }

    /// Passes `names` to the stage's own action only, without keying them, like
    /// [`Stage::action_secrets`] but not masked.
    pub fn action_env<S: AsRef<str>>(mut self, names: &[S]) -> Stage {
        for n in names {
            self.action_only.push(n.as_ref().to_string());
            self = self.env_as(n.as_ref(), EnvUse::Pass);
        }
        self
    }

    fn env_as(mut self, name: &str, how: EnvUse) -> Stage {
        self.inputs.push(Input::Env { name: name.to_string(), how });
        self
    }

    /// Depends on the parameter `name` with `value`.
    pub fn param(mut self, name: &str, value: impl Into<serde_json::Value>) -> Stage {
        self.inputs.push(Input::Param { name: name.to_string(), value: value.into() });
        self
    }

    /// Depends on the version that `argv` prints, e.g. `["rustc", "-V"]`; the tool must exist.
    pub fn tool<S: AsRef<str>>(mut self, name: &str, argv: &[S]) -> Stage {
        let argv = argv.iter().map(|a| a.as_ref().to_string()).collect();
        self.inputs.push(Input::Probe { name: name.to_string(), argv, must_succeed: true });
        self
    }

    /// Depends on what `argv` prints, whether it succeeds or not (`git tag --points-at HEAD`).
    /// The action reads the value with [`StageContext::probe`].
    pub fn probe<S: AsRef<str>>(mut self, name: &str, argv: &[S]) -> Stage {
        let argv = argv.iter().map(|a| a.as_ref().to_string()).collect();
        self.inputs.push(Input::Probe { name: name.to_string(), argv, must_succeed: false });
        self
    }

    /// Runs `command`. Without an action ([`Stage::run`]) the stage runs its commands in order.
    pub fn command(mut self, command: Command) -> Stage {
        self.commands.push(command);
        self
    }

    /// Writes the file or directory `path` and owns it: it is stored in the step cache and
    /// restored on a hit. A file found there that Slipway did not write is never deleted: it
    /// is moved to `.slipway/lost+found` with a warning.
    pub fn output(mut self, path: &str) -> Stage {
        self.outputs.push(path.trim_end_matches('/').to_string());
        self
    }

    /// Updates files in `path` in place without owning it (data checked out from a remote):
    /// nothing there is moved, stored or deleted by the engine. What `path` holds after a run
    /// is the stage's result for its dependents, and the stage runs again whenever `path` no
    /// longer holds exactly that.
    pub fn updates(mut self, path: &str) -> Stage {
        self.updates.push(path.trim_end_matches('/').to_string());
        self
    }

    /// Builds an environment in the directory `path` (a Python virtualenv, a running
    /// release): something too large or too machine-specific for the step cache. The stage is
    /// fresh only while `path` holds the marker Slipway writes there after a successful run
    /// with the same fingerprint, and [`Stage::alive`] (if given) says it is really there.
    pub fn environment(mut self, path: &str) -> Stage {
        self.environment = Some(path.trim_end_matches('/').to_string());
        self
    }

    /// For an environment stage: checks that what it built is really there (`Err` says why
    /// not), so a release that no longer runs after a reboot is deployed again.
    pub fn alive(
        mut self,
        check: impl Fn(&Path, &BTreeMap<String, String>) -> Result<(), String> + Send + Sync + 'static,
    ) -> Stage {
        self.alive = Some(Arc::new(check));
        self
    }

    /// Marks the stage as a check. A stage that [`ships`](Stage::ships) must run after every
    /// gate declared before it; the pipeline refuses it otherwise.
    pub fn gate(mut self) -> Stage {
        self.role = Role::Gate;
        self
    }

    /// Marks the stage as one that ships (pushes an image, deploys a release).
    pub fn ships(mut self) -> Stage {
        self.role = Role::Ships;
        self
    }

    /// Leaves what a failed run wrote in place instead of restoring the previous outputs: for
    /// gates whose report matters most when they fail. A failed run is never recorded either way.
    pub fn keep_failed_outputs(mut self) -> Stage {
        self.keep_failed_outputs = true;
        self
    }

    /// Replaces the default ignore list for this stage's file inputs and outputs.
    pub fn ignore(mut self, ignore: Ignore) -> Stage {
        self.ignore = ignore;
        self
    }

    /// What the stage does when it is not cached. It runs its declared commands with
    /// [`StageContext::run_commands`] or [`StageContext::run_command`]; every command that is not
    /// [`optional`](Command::optional) must have run when it returns.
    pub fn run(mut self, action: impl Fn(&StageContext) -> Result<(), StageError> + Send + Sync + 'static) -> Stage {
        self.action = Some(Arc::new(action));
        self
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The one-line purpose.
    pub fn about(&self) -> &str {
        &self.about
    }

    /// The stages this one uses (is keyed on), directly.
    pub fn upstream(&self) -> &[String] {
        &self.uses
    }

    /// The stages this one runs after without being keyed on them, directly.
    pub fn gates(&self) -> &[String] {
        &self.after
    }

    /// Gate, step or shipping stage.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The declared commands.
    pub fn commands(&self) -> &[Command] {
        &self.commands
    }

    /// The declared inputs.
    pub fn inputs(&self) -> &[Input] {
        &self.inputs
    }

    /// The code paths, relative to the root.
    pub fn code_paths(&self) -> &[String] {
        &self.code
    }

    /// The paths of the program's own code, relative to its Cargo workspace.
    pub fn pipeline_code_paths(&self) -> &[String] {
        &self.pipeline_code
    }

    /// Everything the stage writes: owned outputs, updated paths, its environment.
    pub fn writes(&self) -> Vec<String> {
        let mut all: Vec<String> = self.outputs.iter().chain(&self.updates).cloned().collect();
        all.extend(self.environment.clone());
        all
    }
}

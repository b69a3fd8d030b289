//! Stages and pipelines: what runs, after what, reading what, writing what.

use std::fmt;
use std::sync::Arc;

use crate::context::StageContext;
use crate::input::Input;
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

type Action = dyn Fn(&StageContext) -> Result<(), StageError> + Send + Sync;

/// One step of the pipeline.
///
/// A stage's fingerprint covers every declared input plus the outputs of the stages it runs
/// after. Anything else that can change what the stage produces — including the command line
/// it runs — must be declared, usually as a [`Stage::param`]; an undeclared input is how a
/// cache hit that should have been a miss happens.
#[derive(Clone)]
pub struct Stage {
    pub(crate) name: String,
    pub(crate) about: String,
    pub(crate) after: Vec<String>,
    pub(crate) inputs: Vec<Input>,
    pub(crate) outputs: Vec<String>,
    pub(crate) environment: Option<String>,
    pub(crate) keep_failed_outputs: bool,
    pub(crate) ignore: Ignore,
    pub(crate) action: Arc<Action>,
}

impl Stage {
    /// A stage named `name` (lowercase, `-` allowed) whose job is `about`.
    pub fn new(name: &str, about: &str) -> Stage {
        Stage {
            name: name.to_string(),
            about: about.to_string(),
            after: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            environment: None,
            keep_failed_outputs: false,
            ignore: crate::input::default_ignore(),
            action: Arc::new(|_| Ok(())),
        }
    }

    /// Runs after `stage`, only if it succeeded, and is keyed on its outputs.
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

    /// Reads the environment variable `name`; its value is part of the fingerprint.
    pub fn env(mut self, name: &str) -> Stage {
        self.inputs.push(Input::Env { name: name.to_string(), secret: false });
        self
    }

    /// Reads the secret `name`: only whether it is set counts, and its value is masked in logs.
    pub fn secret_env(mut self, name: &str) -> Stage {
        self.inputs.push(Input::Env { name: name.to_string(), secret: true });
        self
    }

    /// Depends on the parameter `name` with `value`.
    pub fn param(mut self, name: &str, value: impl Into<serde_json::Value>) -> Stage {
        self.inputs.push(Input::Param { name: name.to_string(), value: value.into() });
        self
    }

    /// Depends on the version that `argv` prints, e.g. `["rustc", "-V"]`.
    pub fn tool<S: AsRef<str>>(mut self, name: &str, argv: &[S]) -> Stage {
        let argv = argv.iter().map(|a| a.as_ref().to_string()).collect();
        self.inputs.push(Input::Tool { name: name.to_string(), argv });
        self
    }

    /// Writes the file or directory `path`; it is stored in the step cache and restored on a hit.
    pub fn output(mut self, path: &str) -> Stage {
        self.outputs.push(path.trim_end_matches('/').to_string());
        self
    }

    /// Builds an environment in the directory `path` (a Python virtualenv, say): something too
    /// large or too machine-specific for the step cache. The stage is fresh only while `path`
    /// holds the marker Slipway writes there after a successful run with the same fingerprint;
    /// otherwise it runs again, and its action must rebuild `path` from scratch or repair it.
    pub fn environment(mut self, path: &str) -> Stage {
        self.environment = Some(path.trim_end_matches('/').to_string());
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

    /// What the stage does when it is not cached.
    pub fn run(mut self, action: impl Fn(&StageContext) -> Result<(), StageError> + Send + Sync + 'static) -> Stage {
        self.action = Arc::new(action);
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

    /// The stages this one runs after.
    pub fn upstream(&self) -> &[String] {
        &self.after
    }
}

/// Stages in the order they were declared; a stage may only run after stages declared before it,
/// which rules out cycles by construction.
#[derive(Clone, Default)]
pub struct Pipeline {
    stages: Vec<Stage>,
}

/// A mistake in how a pipeline was wired. These are bugs in the pipeline's code.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Two stages share a name.
    #[error("two stages are named `{0}`")]
    Duplicate(String),
    /// A stage runs after one that is not declared before it.
    #[error("stage `{stage}` runs after `{upstream}`, which is not declared before it")]
    UnknownUpstream {
        /// The stage.
        stage: String,
        /// Its unknown upstream.
        upstream: String,
    },
    /// A stage was asked for by name and does not exist.
    #[error("there is no stage named `{0}`")]
    NoSuchStage(String),
    /// Two inputs of a stage share a name.
    #[error("stage `{stage}` declares the input `{input}` twice")]
    DuplicateInput {
        /// The stage.
        stage: String,
        /// The input's name.
        input: String,
    },
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Pipeline {
        Pipeline::default()
    }

    /// Appends `stage`, checking that its upstream stages are already declared.
    pub fn stage(mut self, stage: Stage) -> Result<Pipeline, PipelineError> {
        if self.get(&stage.name).is_some() {
            return Err(PipelineError::Duplicate(stage.name));
        }
        if let Some(up) = stage.after.iter().find(|up| self.get(up).is_none()) {
            return Err(PipelineError::UnknownUpstream { stage: stage.name.clone(), upstream: up.clone() });
        }
        let mut names: Vec<String> = stage.inputs.iter().map(Input::key_name).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(PipelineError::DuplicateInput { stage: stage.name.clone(), input: w[0].clone() });
        }
        self.stages.push(stage);
        Ok(self)
    }

    /// The stages in declaration order.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The stage named `name`.
    pub fn get(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The sub-pipeline that `targets` need: each target and everything it runs after.
    pub fn select<S: AsRef<str>>(&self, targets: &[S]) -> Result<Pipeline, PipelineError> {
        let mut wanted: Vec<&str> = Vec::new();
        let mut todo: Vec<&str> = targets.iter().map(|t| t.as_ref()).collect();
        while let Some(name) = todo.pop() {
            let stage = self.get(name).ok_or_else(|| PipelineError::NoSuchStage(name.to_string()))?;
            if !wanted.contains(&name) {
                wanted.push(name);
                todo.extend(stage.after.iter().map(String::as_str));
            }
        }
        let stages = self.stages.iter().filter(|s| wanted.contains(&s.name.as_str())).cloned().collect();
        Ok(Pipeline { stages })
    }
}

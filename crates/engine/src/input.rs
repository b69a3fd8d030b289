//! What a stage declares it reads, and the resolved form of each input that goes into a
//! fingerprint and into the stage record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cache_key::{CacheKey, Digest, KeyHasher};
use crate::tree::{FileEntry, Ignore};

/// One declared input of a stage.
#[derive(Clone, Debug)]
pub enum Input {
    /// Files and directories relative to the workspace root. A path that does not exist is
    /// recorded as missing, so creating it later changes the fingerprint.
    Files {
        /// Shown in `status`.
        name: String,
        /// Relative paths.
        paths: Vec<String>,
    },
    /// One environment variable.
    Env {
        /// The variable's name.
        name: String,
        /// A secret's value is never hashed, stored or printed: only whether it is set counts.
        secret: bool,
    },
    /// A parameter, as JSON.
    Param {
        /// Shown in `status` with its old and new value.
        name: String,
        /// The value.
        value: serde_json::Value,
    },
    /// The version a tool reports, e.g. `rustc -V`.
    Tool {
        /// Shown in `status`.
        name: String,
        /// The command whose standard output is the version.
        argv: Vec<String>,
    },
}

impl Input {
    /// The name used in records and in `status`, unique within a stage.
    pub fn key_name(&self) -> String {
        match self {
            Input::Files { name, .. } => format!("files:{name}"),
            Input::Env { name, .. } => format!("env:{name}"),
            Input::Param { name, .. } => format!("param:{name}"),
            Input::Tool { name, .. } => format!("tool:{name}"),
        }
    }
}

/// An input as observed at planning time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedInput {
    /// [`Input::key_name`], or `upstream:STAGE`.
    pub name: String,
    /// What was observed.
    #[serde(flatten)]
    pub value: InputValue,
}

/// The observed value of one input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum InputValue {
    /// Every file under the declared paths.
    Files {
        /// The ignore patterns in force.
        ignore: Vec<String>,
        /// Sorted by path.
        files: Vec<FileEntry>,
    },
    /// An environment variable.
    Env {
        /// Whether it is set.
        set: bool,
        /// Whether it was declared secret.
        secret: bool,
        /// BLAKE3 of the value; absent for secrets and unset variables.
        digest: Option<Digest>,
    },
    /// A parameter.
    Param {
        /// Its JSON value.
        value: serde_json::Value,
    },
    /// A tool's version line.
    Tool {
        /// What the tool printed, trimmed.
        version: String,
    },
    /// The outputs of a stage this one depends on.
    Upstream {
        /// The digest of that stage's output manifest.
        outputs: Digest,
    },
}

impl CacheKey for ResolvedInput {
    fn cache_key(&self, h: &mut KeyHasher) {
        h.str(&self.name);
        match &self.value {
            InputValue::Files { ignore, files } => h.tag(0).key(ignore).key(files),
            InputValue::Env { set, secret, digest } => h.tag(1).key(set).key(secret).key(digest),
            InputValue::Param { value } => h.tag(2).key(value),
            InputValue::Tool { version } => h.tag(3).key(version),
            InputValue::Upstream { outputs } => h.tag(4).key(outputs),
        };
    }
}

/// Resolves an environment input from a snapshot of the environment.
pub fn resolve_env(name: &str, secret: bool, env: &BTreeMap<String, String>) -> InputValue {
    let value = env.get(name);
    let digest = match (secret, value) {
        (false, Some(v)) => Some(Digest::of(v.as_bytes())),
        _ => None,
    };
    InputValue::Env { set: value.is_some(), secret, digest }
}

/// The default ignore list: version control, build output and Slipway's own state.
pub fn default_ignore() -> Ignore {
    Ignore::new(&[".git", "target", ".slipway", "__pycache__", "*.pyc", ".DS_Store"])
        .expect("the default ignore patterns are valid globs")
}

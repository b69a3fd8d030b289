//! What a stage declares it reads, and the resolved form of each input that goes into a
//! fingerprint and into the stage record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cache_key::{CacheKey, Digest, KeyHasher};
use crate::tree::{FileEntry, Ignore};

/// How an environment variable a stage reads enters its fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvUse {
    /// Its value changes what the stage produces: the value is keyed.
    Value,
    /// A secret: only whether it is set is keyed; the value is masked wherever Slipway prints.
    Secret,
    /// It says where things are or who acts, not what is produced (a cache directory, a
    /// remote whose content is addressed by digest): passed to the stage, not keyed.
    Pass,
    /// A secret that only grants access (credentials for a content-addressed remote): passed and
    /// masked, not keyed, not even whether it is set.
    PassSecret,
}

impl EnvUse {
    /// Whether the value must be masked.
    pub fn is_secret(self) -> bool {
        matches!(self, EnvUse::Secret | EnvUse::PassSecret)
    }
}

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
        /// How it is keyed.
        how: EnvUse,
    },
    /// A parameter, as JSON.
    Param {
        /// Shown in `status` with its old and new value.
        name: String,
        /// The value.
        value: serde_json::Value,
    },
    /// What a command prints, e.g. `rustc -V` or `git tag --points-at HEAD`. The stage's action
    /// reads the same value through [`crate::StageContext::probe`], so it never runs the
    /// command a second time and sees exactly what was keyed.
    Probe {
        /// Shown in `status`.
        name: String,
        /// The command whose standard output is the value.
        argv: Vec<String>,
        /// A tool that must be installed (an error names it) rather than a question whose
        /// answer may be a failure (`git describe` on an untagged commit).
        must_succeed: bool,
    },
    /// Workspace crates and everything they depend on: their sources, the locked versions of
    /// their dependencies and the compiler. For stages that run Slipway's own code in process.
    Crates {
        /// Package names, e.g. `slipway-gate`.
        packages: Vec<String>,
    },
}

impl Input {
    /// The name used in records and in `status`, unique within a stage.
    pub fn key_name(&self) -> String {
        match self {
            Input::Files { name, .. } => format!("files:{name}"),
            Input::Env { name, .. } => format!("env:{name}"),
            Input::Param { name, .. } => format!("param:{name}"),
            Input::Probe { name, must_succeed: true, .. } => format!("tool:{name}"),
            Input::Probe { name, must_succeed: false, .. } => format!("probe:{name}"),
            Input::Crates { .. } => "crates".to_string(),
        }
    }
}

/// An input as observed at planning time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedInput {
    /// [`Input::key_name`], `code`, `commands`, or `upstream:STAGE`.
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
        /// Slipway's ignore patterns in force (ignore files in the tree act through `files`).
        ignore: Vec<String>,
        /// Sorted by path.
        files: Vec<FileEntry>,
    },
    /// An environment variable whose value or presence is keyed.
    Env {
        /// Whether it is set.
        set: bool,
        /// Whether it was declared secret.
        secret: bool,
        /// BLAKE3 of the value; absent for secrets and unset variables.
        digest: Option<Digest>,
    },
    /// An environment variable passed to the stage but not keyed: only its declaration is.
    Passed {
        /// Whether it was declared secret.
        secret: bool,
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
    /// What a probe command printed and whether it succeeded.
    Probe {
        /// Standard output, trimmed.
        output: String,
        /// Whether it exited 0.
        success: bool,
    },
    /// Crates: their files, the locked dependencies, the compiler.
    Crates {
        /// Every workspace crate in the closure, sorted.
        packages: Vec<String>,
        /// Their source files (tests, benches and examples left out), the workspace manifest
        /// and cargo's configuration.
        files: Vec<FileEntry>,
        /// `name version source checksum` of every locked dependency in the closure, sorted.
        locked: Vec<String>,
        /// `rustc -vV`.
        rustc: String,
    },
    /// The commands the stage runs, as a shell would read them.
    Commands {
        /// In the order they run.
        lines: Vec<String>,
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
            InputValue::Passed { secret } => h.tag(5).key(secret),
            InputValue::Probe { output, success } => h.tag(6).key(output).key(success),
            InputValue::Crates { packages, files, locked, rustc } => {
                h.tag(7).key(packages).key(files).key(locked).key(rustc)
            }
            InputValue::Commands { lines } => h.tag(8).key(lines),
        };
    }
}

/// Resolves an environment input from a snapshot of the environment.
pub fn resolve_env(name: &str, how: EnvUse, env: &BTreeMap<String, String>) -> InputValue {
    let value = env.get(name);
    match how {
        EnvUse::Value => {
            InputValue::Env { set: value.is_some(), secret: false, digest: value.map(|v| Digest::of(v.as_bytes())) }
        }
        EnvUse::Secret => InputValue::Env { set: value.is_some(), secret: true, digest: None },
        EnvUse::Pass | EnvUse::PassSecret => InputValue::Passed { secret: how.is_secret() },
    }
}

/// Variables every stage gets, unkeyed: where the user's files and tools are, how text is
/// shown, and how this machine reaches the network (its trusted certificates and proxies). What
/// they locate is keyed where it matters (tool versions, files, locked packages).
pub const AMBIENT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// The default ignore list: version control, build output, Slipway's own state and the caches
/// that tools write next to the code they read (never inputs, whatever `.gitignore` says).
pub fn default_ignore() -> Ignore {
    Ignore::new(&[
        ".git",
        "target",
        ".slipway",
        "__pycache__",
        "*.pyc",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        ".DS_Store",
    ])
    .expect("the default ignore patterns are valid globs")
}

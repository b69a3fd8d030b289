//! Command-line flags.

use clap::{Args, Parser, Subcommand};

/// This module, as code of the stages whose modules read these flags' types.
pub const CODE: &str = file!();

const EXIT_CODES: &str = "\
Exit codes:
  0  everything passed (or was restored from the cache)
  1  a gate judged and rejected: formatting, lints, tests, a validation threshold, a smoke test
  2  Slipway could not do its job: bad input, a missing tool, an unreachable service, a bug";

/// Slipway: this repository's ML delivery pipeline, run the same way locally and in CI.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", after_help = EXIT_CODES)]
pub struct Flags {
    #[command(subcommand)]
    pub cmd: Cmd,
    #[command(flatten)]
    pub common: Common,
}

/// Flags that every command takes.
#[derive(Args, Clone, Debug, Default)]
pub struct Common {
    /// Run STAGE even if its inputs are unchanged (repeatable)
    #[arg(long, value_name = "STAGE", global = true)]
    pub force: Vec<String>,
    /// Ignore the step cache: run every stage (results are still recorded)
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Print every command's output, not only that of failed stages
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// The project to act on: a directory with a slipway.toml inside this workspace [default:
    /// the nearest one from the current directory up, else the workspace root]
    #[arg(long, value_name = "DIR", global = true)]
    pub project: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the whole pipeline, restoring every stage whose inputs are unchanged
    Ci(CiArgs),
    /// Show, for every stage, whether it is fresh and if not what changed; runs nothing
    Status(StatusArgs),
    /// Check formatting and lints (the `lint` stage)
    Lint,
    /// Run the workspace tests (the `test` stage)
    Test,
    /// Download DVC-tracked data from the remote into the workspace, verified by md5
    Pull(Targets),
    /// Upload DVC-tracked data that the remote lacks
    Push(Targets),
    /// Track a file or directory: cache it and write PATH.dvc, like `dvc add`
    Add(AddArgs),
    /// Build the Python environment for training (the `deps` stage)
    Deps,
    /// Pull the data, check it and train the model (through the `train` stage)
    Train,
    /// Validate a model with ONNX Runtime against thresholds (the `validate` stage, or
    /// standalone with --model-path and --test-data, like the reference validate_model.py)
    Validate(ValidateArgs),
    /// Build the serving image (and push it when SLIPWAY_REGISTRY is set), through the pipeline
    Image,
    /// Deploy the current release to an environment, with smoke tests (staging in `ci`)
    Deploy(DeployArgs),
    /// Move exactly the release live on staging to another environment; needs approval
    Promote(PromoteArgs),
    /// Let a canary step that waits for approval on an environment go on; never starts a deploy
    Approve(ApproveArgs),
    /// Put a recorded release back on an environment: no build, no training
    Rollback(RollbackArgs),
    /// List the release ledger
    Releases(ReleasesArgs),
    /// Stop what the local and docker targets run for an environment
    Stop(StopArgs),
    /// Watch what is live on an environment against its rollback criteria (errors, p99 against
    /// the previous release, predicted labels against the holdout's) and roll back on a breach
    Watch(WatchArgs),
    /// Where a release, image, model or commit came from and where it went: data, train run,
    /// validation, image, releases (a data file's digest gives the releases trained on it)
    Trace(TraceArgs),
    /// Rebuild reports/run.html (the last `ci` run: stages, data gate, validation, image,
    /// staging) from reports/run.json and what the stages left
    Report,
}

#[derive(Args, Clone, Debug)]
pub struct WatchArgs {
    /// The environment, e.g. `production`
    pub env: String,
    /// How long: `600`, `90s`, `10m` or `1h` [default: the environment's `[watch] seconds`]
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
}

/// `600`, `90s`, `10m`, `1h` as seconds.
pub fn seconds(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = number.trim().parse().map_err(|_| format!("`{t}` is not a duration: use 600, 90s, 10m or 1h"))?;
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{t}`: the unit is s, m or h")),
    };
    let s = n * scale;
    if !(s.is_finite() && (0.0..=86_400.0).contains(&s)) {
        return Err(format!("`{t}`: a watch lasts 0 to 24 hours"));
    }
    Ok(s)
}

#[derive(Args, Clone, Debug)]
pub struct TraceArgs {
    /// A release (v3), an image digest (sha256:…), a model or data file digest (64 hex), or a commit
    pub thing: String,
    /// As JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
pub struct DeployArgs {
    /// The environment, e.g. `staging`
    pub env: String,
}

#[derive(Args, Clone, Debug)]
pub struct PromoteArgs {
    /// The environment to promote to, e.g. `production`
    pub env: String,
    /// Where the release comes from
    #[arg(long, default_value = "staging")]
    pub from: String,
    /// Approve without a prompt (CI, behind a protected environment). When a canary on ENV
    /// waits for approval, this approves its step instead of promoting
    #[arg(long)]
    pub approve: bool,
    /// Promote even the release whose canary on ENV last waited for approval and has ended
    #[arg(long)]
    pub again: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ApproveArgs {
    /// The environment whose canary waits, e.g. `production`
    pub env: String,
}

#[derive(Args, Clone, Debug)]
pub struct RollbackArgs {
    /// The release: a version (v3), a git sha prefix, or an image tag
    #[arg(long)]
    pub version: String,
    /// The environment
    #[arg(long, default_value = "production")]
    pub env: String,
}

#[derive(Args, Clone, Debug)]
pub struct ReleasesArgs {
    /// Only this environment's events
    #[arg(long)]
    pub env: Option<String>,
    /// As JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Clone, Debug)]
pub struct StopArgs {
    /// The environment to stop
    #[arg(long)]
    pub env: Option<String>,
    /// Every environment
    #[arg(long, conflicts_with = "env")]
    pub all: bool,
}

#[derive(Args, Clone, Debug)]
pub struct ValidateArgs {
    /// The ONNX model to validate (standalone mode)
    #[arg(long, requires = "test_data")]
    pub model_path: Option<std::path::PathBuf>,
    /// The labelled holdout CSV: `text,label`, or feature columns and `label` (standalone mode)
    #[arg(long, requires = "model_path")]
    pub test_data: Option<std::path::PathBuf>,
    /// Minimum accuracy
    #[arg(long, default_value_t = 0.85)]
    pub min_accuracy: f64,
    /// Minimum recall of every class
    #[arg(long, default_value_t = 0.70)]
    pub min_recall: f64,
    /// Maximum p99 single-row latency, in milliseconds
    #[arg(long, default_value_t = 100.0)]
    pub max_latency_ms: f64,
    /// The model in production, to check for an accuracy regression against
    #[arg(long)]
    pub production_model: Option<std::path::PathBuf>,
    /// Maximum accuracy drop against the production model
    #[arg(long, default_value_t = 0.02)]
    pub max_accuracy_drop: f64,
    /// Where to write validation_report.json
    #[arg(long)]
    pub output_file: Option<std::path::PathBuf>,
    /// The test data's label column
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// A text model's input column in the test data
    #[arg(long, default_value = "text")]
    pub text_column: String,
}

#[derive(Args)]
pub struct Targets {
    /// `.dvc` files or the paths they track; default: every `.dvc` file in the repository
    pub targets: Vec<String>,
}

#[derive(Args)]
pub struct AddArgs {
    /// The file or directory to track, relative to the repository root
    pub path: String,
}

#[derive(Args)]
pub struct CiArgs {
    /// Run only these stages and what they need (default: every stage)
    #[arg(value_name = "STAGE")]
    pub stages: Vec<String>,
    /// Show what would run and why, like `status`, and run nothing
    #[arg(long, conflicts_with = "trace_inputs")]
    pub dry_run: bool,
    /// Run every stage that runs commands under strace and list each file inside the
    /// repository it read without declaring it (exit 1 if there is any)
    #[arg(long)]
    pub trace_inputs: bool,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Print the status as JSON
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_seconds_or_are_refused() {
        assert_eq!(super::seconds("600"), Ok(600.0));
        assert_eq!(super::seconds("90s"), Ok(90.0));
        assert_eq!(super::seconds("10m"), Ok(600.0));
        assert_eq!(super::seconds("1h"), Ok(3600.0));
        for bad in ["", "ten", "5d", "-1m", "25h", "1e400"] {
            assert!(super::seconds(bad).is_err(), "{bad:?}");
        }
    }
}

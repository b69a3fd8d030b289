//! The engine behind `cargo xtask ci`: stages that declare their inputs, fingerprints over
//! those inputs, a stat cache that makes a no-op run read no file data, a content-addressed
//! step cache, and a runner that restores what it can and runs the rest in dependency order.
//!
//! A pipeline is built from [`Stage`]s (with [`stage!`]), planned with [`status`] (which runs
//! nothing) and run with [`run`]. The crate knows nothing of any particular stage; those live in
//! `xtask`.

mod cache_key;
mod command;
mod context;
mod crates;
mod explain;
mod fsutil;
mod input;
mod outputs;
mod pipeline;
mod plan;
mod record;
pub mod report;
mod runner;
mod stage;
mod stat_cache;
mod store;
pub mod trace;
mod tree;
mod walk;
mod workspace;

pub use cache_key::{CacheKey, Digest, FINGERPRINT_VERSION, KeyHasher};
pub use command::{Command, OnFailure};
pub use context::{CommandError, StageContext};
pub use explain::diff_inputs;
pub use fsutil::write_atomic;
pub use input::{AMBIENT_ENV, EnvUse, Input, InputValue, ResolvedInput, default_ignore};
pub use outputs::LOST_AND_FOUND;
pub use pipeline::{Pipeline, PipelineError};
pub use plan::{Freshness, Resolved, StageStatus, resolve, stage_env, status};
pub use record::{RECORD_SCHEMA, RecordHead, StageRecord, is_plain_relative, outputs_digest};
pub use report::Reporter;
pub use runner::{Outcome, RunOptions, RunSummary, StageReport, TraceOptions, run};
pub use stage::{Role, Stage, StageError};
pub use stat_cache::{CachedDigest, Clock, StatCache, StatKey};
pub use store::{LocalStore, StepStore};
pub use tree::{EntryKind, FileEntry, Ignore, TreeHasher, hash_reader};
pub use walk::{Filter, IGNORE_FILES};
pub use workspace::{LOGS_DIR, STAT_CACHE_FILE, STATE_DIR, Workspace};

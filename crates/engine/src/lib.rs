//! The engine behind `cargo xtask ci`: stages that declare their inputs, fingerprints over
//! those inputs, a stat cache that makes a no-op run read no file data, a content-addressed
//! step cache, and a runner that restores what it can and runs the rest in dependency order.
//!
//! A pipeline is built from [`Stage`]s, planned with [`status`] (which runs nothing) and run
//! with [`run`]. The crate knows nothing of any particular stage; those live in `xtask`.

mod cache_key;
mod context;
mod explain;
mod fsutil;
mod input;
mod outputs;
mod plan;
mod record;
pub mod report;
mod runner;
mod stage;
mod stat_cache;
mod store;
mod tree;
mod workspace;

pub use cache_key::{CacheKey, Digest, FINGERPRINT_VERSION, KeyHasher};
pub use context::{CommandError, StageContext};
pub use explain::diff_inputs;
pub use fsutil::write_atomic;
pub use input::{Input, InputValue, ResolvedInput, default_ignore};
pub use plan::{Freshness, Resolved, StageStatus, resolve, status};
pub use record::{RECORD_SCHEMA, StageRecord, outputs_digest};
pub use report::Reporter;
pub use runner::{Outcome, RunOptions, RunSummary, StageReport, run};
pub use stage::{Pipeline, PipelineError, Stage, StageError};
pub use stat_cache::{CachedDigest, Clock, StatCache, StatKey};
pub use store::{LocalStore, StepStore};
pub use tree::{EntryKind, FileEntry, Ignore, TreeHasher, hash_reader};
pub use workspace::{STATE_DIR, Workspace};

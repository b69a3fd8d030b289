//! Deploys: environments, targets (local, docker, kubernetes), smoke tests, the release ledger,
//! promote and rollback. Every deploy starts the new release beside the live one, checks it,
//! switches the environment's stable port to it without dropping a request, checks it again,
//! and records it; `rollback --version` puts a recorded release back with nothing to build.

pub mod approve;
pub mod bundle;
pub mod canary;
pub mod flow;
pub mod http;
pub mod intent;
pub mod kube;
pub mod ledger;
pub mod lock;
pub mod names;
pub mod notify;
mod progressive;
mod protocol;
/// The router, a crate of its own (`crates/router`) so that the release build needs no S3 client.
pub use ::router;
pub mod smoke;
pub mod target;
pub mod watch;

pub use flow::{Candidate, Deployer, EnvConfig, Report};
pub use intent::Phase;
pub use ledger::{Approval, Event, EventKind, Outcome, Release};
pub use smoke::{SmokeCase, SmokeConfig};
pub use target::TargetKind;

/// Why a deploy could not run (exit 2). A deploy that ran and was rejected is not an error.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// No such environment.
    #[error("there is no environment `{env}` (environments: {})", known.join(", "))]
    UnknownEnvironment {
        /// Asked for.
        env: String,
        /// Configured.
        known: Vec<String>,
    },
    /// No release matches.
    #[error("no release matches `{spec}` (releases: {})", if known.is_empty() { "none yet".to_string() } else { known.join(", ") })]
    UnknownRelease {
        /// Asked for.
        spec: String,
        /// Recorded versions.
        known: Vec<String>,
    },
    /// Promotion from an environment where nothing is live.
    #[error("nothing is live on {env}; deploy there first")]
    NothingLive {
        /// The environment.
        env: String,
    },
    /// Another deploy holds the environment.
    #[error("another deploy to {env} is running (by {by}, for {seconds} s)")]
    Locked {
        /// The environment.
        env: String,
        /// Who holds it.
        by: String,
        /// For how long.
        seconds: u64,
    },
    /// A ledger entry cannot be read.
    #[error("ledger entry {entry} is corrupt: {detail}")]
    CorruptLedger {
        /// The entry.
        entry: String,
        /// Why.
        detail: String,
    },
    /// The remote is needed and unreachable.
    #[error("the artifact remote is unreachable, so Slipway cannot {what}")]
    RemoteUnreachable {
        /// What could not be done.
        what: String,
    },
    /// The target failed (a process, a container, the router).
    #[error("the deploy target failed: {0:#}")]
    Target(anyhow::Error),
    /// Another deploy took the lock over while this one ran (it looked dead to the other).
    #[error("another deploy took over the lock of {env} while this one ran; this one stopped")]
    LockLost {
        /// The environment.
        env: String,
    },
    /// A signal stopped a deploy, which was then put in order.
    #[error("{signal} stopped the change to {env}; what it left half-done was put in order")]
    Interrupted {
        /// The signal.
        signal: String,
        /// The environment.
        env: String,
    },
    /// The artifact remote failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl DeployError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            DeployError::UnknownEnvironment { .. } => "define it under [environments] in slipway.toml".into(),
            DeployError::UnknownRelease { .. } => {
                "`cargo xtask releases` lists every release; use a version (v3), a git sha prefix or an image tag"
                    .into()
            }
            DeployError::NothingLive { env } => format!("run `cargo xtask deploy {env}` first"),
            DeployError::Locked { .. } => format!(
                "wait for it to finish; a lock whose holder shows no sign of life for {} minutes is taken over",
                crate::lock::STALE_AFTER.as_secs() / 60
            ),
            DeployError::CorruptLedger { entry, .. } => format!(
                "restore {entry} from .slipway/ledger on a machine that has a good copy; the ledger is never rewritten by Slipway"
            ),
            DeployError::RemoteUnreachable { .. } => {
                "check the remote (SLIPWAY_REMOTE / AWS_ENDPOINT_URL) and retry".into()
            }
            DeployError::Store(e) => return e.help(),
            DeployError::LockLost { env } => format!(
                "see `cargo xtask releases --env {env}`; a deploy that stalls for {} minutes loses its lock",
                crate::lock::STALE_AFTER.as_secs() / 60
            ),
            DeployError::Interrupted { env, .. } => {
                format!("`cargo xtask releases --env {env}` shows what was recorded")
            }
            DeployError::Target(_) | DeployError::Other(_) => return None,
        })
    }
}

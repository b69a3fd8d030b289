//! Artifact remotes for Slipway: a directory (the embedded default) or S3, in DVC's layout, so
//! `dvc` and Slipway can share a repository and a bucket.
//!
//! [`config::resolve`] picks the remote, [`Store`] pulls, pushes and adds DVC-tracked data, and
//! [`RemoteStepStore`] keeps the engine's step cache on the same remote.

pub mod add;
pub mod aws_profile;
pub mod cache;
pub mod config;
pub mod dvc;
pub mod error;
pub mod md5;
pub mod progress;
pub mod remote;
pub mod s3;
mod step_cache;
pub mod transfer;

pub use config::{REMOTE_ENV, REMOTE_SECRETS, RemoteSpec, ResolvedRemote, Source, resolve};
pub use error::StoreError;
pub use md5::Md5;
pub use remote::{DirRemote, Prefixed, Remote};
pub use step_cache::{RemoteStepStore, STEP_CACHE_PREFIX, TieredStore};
pub use transfer::{PullSummary, PushSummary, Store, find_pointers};

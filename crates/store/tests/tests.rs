//! The store's integration tests, against a real S3 server (SeaweedFS) and the real `dvc`,
//! both started or run on 127.0.0.1 by the fixtures. `.ci/run` installs both; a missing one is a
//! failure, not a skip.

mod dvc_compat;
mod faults;
mod fixture;
mod fuzz;
mod step_cache;

//! The engine's step cache on an artifact remote, under its own prefix, so that a stage run on
//! one machine is restored, not rerun, on another with the same inputs.
//!
//! The engine's `StepStore` is synchronous (stages run on blocking threads), so each call here
//! enters the async remote through a runtime handle taken when the store was made.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use engine::{Digest, LocalStore, StageRecord, StepStore};

use crate::remote::Remote;

/// Where the step cache lives on a remote. Bump the version when the layout changes.
pub const STEP_CACHE_PREFIX: &str = "slipway/step-cache/v1";

/// Stage records and output objects on a remote.
pub struct RemoteStepStore {
    remote: Arc<dyn Remote>,
    runtime: tokio::runtime::Handle,
}

impl RemoteStepStore {
    /// A step cache on `remote`; calls are driven by `runtime`.
    pub fn new(remote: Arc<dyn Remote>, runtime: tokio::runtime::Handle) -> RemoteStepStore {
        RemoteStepStore { remote, runtime }
    }

    fn record_key(stage: &str, fingerprint: &Digest) -> String {
        format!("{STEP_CACHE_PREFIX}/records/{stage}/{}.json", fingerprint.to_hex())
    }

    fn object_key(digest: &Digest) -> String {
        let hex = digest.to_hex();
        format!("{STEP_CACHE_PREFIX}/objects/{}/{}", &hex[..2], &hex[2..])
    }

    fn block_on<T>(&self, fut: impl std::future::Future<Output = T>) -> T {
        // Stages call the store from blocking threads, where waiting on the runtime is allowed.
        tokio::task::block_in_place(|| self.runtime.block_on(fut))
    }
}

impl StepStore for RemoteStepStore {
    fn describe(&self) -> String {
        format!("{}/{STEP_CACHE_PREFIX}", self.remote.describe())
    }

    fn record(&self, stage: &str, fingerprint: &Digest) -> Result<Option<StageRecord>> {
        let key = Self::record_key(stage, fingerprint);
        let tmp = tempfile::NamedTempFile::new()?.into_temp_path();
        match self.block_on(self.remote.get(&key, &tmp, &|_| {})) {
            Ok(_) => {}
            Err(crate::StoreError::Missing { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let record = serde_json::from_slice::<StageRecord>(&std::fs::read(&tmp)?).ok();
        Ok(record.filter(|r| r.is_current() && r.fingerprint == *fingerprint && r.stage == stage))
    }

    fn put_record(&self, record: &StageRecord) -> Result<()> {
        let tmp = tempfile::NamedTempFile::new()?;
        std::fs::write(tmp.path(), serde_json::to_vec_pretty(record)?)?;
        let key = Self::record_key(&record.stage, &record.fingerprint);
        self.block_on(self.remote.put(&key, tmp.path())).context("cannot upload the stage record")?;
        Ok(())
    }

    fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.block_on(self.remote.exists(&Self::object_key(digest)))?)
    }

    fn put_object(&self, digest: &Digest, src: &Path) -> Result<()> {
        if self.contains(digest)? {
            return Ok(());
        }
        self.block_on(self.remote.put(&Self::object_key(digest), src)).context("cannot upload a stage output")?;
        Ok(())
    }

    fn fetch_object(&self, digest: &Digest, dest: &Path) -> Result<()> {
        self.block_on(self.remote.get(&Self::object_key(digest), dest, &|_| {}))?;
        let actual = engine::hash_reader(std::fs::File::open(dest)?, &|_| {})?;
        if actual != *digest {
            let _ = std::fs::remove_file(dest);
            anyhow::bail!("stage output {} on {} is corrupt", digest.short(), self.describe());
        }
        Ok(())
    }
}

/// The local step cache in front of a remote one: reads try local first and fill it from the
/// remote; writes go to both.
pub struct TieredStore {
    local: LocalStore,
    remote: RemoteStepStore,
}

impl TieredStore {
    /// `local` backed by `remote`.
    pub fn new(local: LocalStore, remote: RemoteStepStore) -> TieredStore {
        TieredStore { local, remote }
    }
}

impl StepStore for TieredStore {
    fn describe(&self) -> String {
        format!("{} (backed by {})", self.local.describe(), self.remote.describe())
    }

    fn record_head(&self, stage: &str, fingerprint: &Digest) -> Result<Option<engine::RecordHead>> {
        if let Some(head) = self.local.record_head(stage, fingerprint)? {
            return Ok(Some(head));
        }
        Ok(self.record(stage, fingerprint)?.map(engine::RecordHead::from))
    }

    fn record(&self, stage: &str, fingerprint: &Digest) -> Result<Option<StageRecord>> {
        if let Some(record) = self.local.record(stage, fingerprint)? {
            return Ok(Some(record));
        }
        let record = self.remote.record(stage, fingerprint)?;
        if let Some(record) = &record {
            // Never adopt a record whose paths could point anywhere (the runner then checks
            // them against the stage's declared outputs too).
            if let Some(bad) =
                record.outputs.iter().chain(&record.updates).find(|e| !engine::is_plain_relative(&e.path))
            {
                anyhow::bail!(
                    "the step-cache record of stage `{stage}` on {} is refused: path `{}` is not a plain relative path",
                    self.remote.describe(),
                    bad.path.escape_debug()
                );
            }
            // Objects first, so the local record never points at objects it lacks.
            for out in &record.outputs {
                if !self.local.contains(&out.digest)? {
                    let tmp = tempfile::NamedTempFile::new()?.into_temp_path();
                    self.remote.fetch_object(&out.digest, &tmp)?;
                    self.local.put_object(&out.digest, &tmp)?;
                }
            }
            self.local.put_record(record)?;
        }
        Ok(record)
    }

    fn put_record(&self, record: &StageRecord) -> Result<()> {
        self.local.put_record(record)?;
        self.remote.put_record(record)
    }

    fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.local.contains(digest)? || self.remote.contains(digest)?)
    }

    fn put_object(&self, digest: &Digest, src: &Path) -> Result<()> {
        self.local.put_object(digest, src)?;
        self.remote.put_object(digest, src)
    }

    fn fetch_object(&self, digest: &Digest, dest: &Path) -> Result<()> {
        self.local.fetch_object(digest, dest)
    }
}

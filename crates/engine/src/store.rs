//! The step cache: stage records and output objects, content addressed by BLAKE3.
//!
//! Every write lands in a temporary file and is renamed into place only once complete and
//! verified, and a record is written only after all of its objects; an interrupted run
//! therefore leaves at worst orphaned temporary files, never a record that points at a partial
//! object. Every object is verified against its digest again when it is restored.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cache_key::Digest;
use crate::fsutil::write_atomic;
use crate::record::{RECORD_SCHEMA, RecordHead, StageRecord};
use crate::tree::hash_reader;

/// Where stage records and output objects are kept.
pub trait StepStore: Send + Sync {
    /// Where the store is, for messages.
    fn describe(&self) -> String;
    /// The record of `stage` for `fingerprint`, if one exists in the current schema.
    fn record(&self, stage: &str, fingerprint: &Digest) -> Result<Option<StageRecord>>;
    /// [`StepStore::record`] without the inputs: all that deciding freshness needs.
    fn record_head(&self, stage: &str, fingerprint: &Digest) -> Result<Option<RecordHead>> {
        Ok(self.record(stage, fingerprint)?.map(RecordHead::from))
    }
    /// Stores `record`. Its objects must already be stored.
    fn put_record(&self, record: &StageRecord) -> Result<()>;
    /// Whether the object `digest` is stored.
    fn contains(&self, digest: &Digest) -> Result<bool>;
    /// Stores the file `src` as the object `digest`, verifying that its bytes match.
    fn put_object(&self, digest: &Digest, src: &Path) -> Result<()>;
    /// Writes the object `digest` to `dest` (a new file), verifying its bytes. A corrupt object
    /// is removed from the store and reported as an error.
    fn fetch_object(&self, digest: &Digest, dest: &Path) -> Result<()>;
}

/// A step cache in a local directory (by default `.slipway/cache`).
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root`; directories are created on first write.
    pub fn new(root: impl Into<PathBuf>) -> LocalStore {
        LocalStore { root: root.into() }
    }

    fn object_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join("objects").join(&hex[..2]).join(&hex[2..])
    }

    fn record_path(&self, stage: &str, fingerprint: &Digest) -> PathBuf {
        self.root.join("records").join(stage).join(format!("{}.json", fingerprint.to_hex()))
    }

    /// The bytes of the record of `stage` for `fingerprint`; `None` if there is none.
    fn record_bytes(&self, stage: &str, fingerprint: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.record_path(stage, fingerprint);
        match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            other => other.map(Some).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn tmp_dir(&self) -> Result<PathBuf> {
        let dir = self.root.join("tmp");
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }
}

impl StepStore for LocalStore {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn record(&self, stage: &str, fingerprint: &Digest) -> Result<Option<StageRecord>> {
        // An unreadable or foreign record is a miss: the stage runs and writes a good one.
        let record =
            self.record_bytes(stage, fingerprint)?.and_then(|b| serde_json::from_slice::<StageRecord>(&b).ok());
        Ok(record.filter(|r| r.is_current() && r.fingerprint == *fingerprint && r.stage == stage))
    }

    fn record_head(&self, stage: &str, fingerprint: &Digest) -> Result<Option<RecordHead>> {
        // serde skips the inputs without building them; the rest is checked as `record` checks.
        let head = self.record_bytes(stage, fingerprint)?.and_then(|b| serde_json::from_slice::<RecordHead>(&b).ok());
        Ok(head.filter(|r| r.schema == RECORD_SCHEMA && r.fingerprint == *fingerprint && r.stage == stage))
    }

    fn put_record(&self, record: &StageRecord) -> Result<()> {
        let path = self.record_path(&record.stage, &record.fingerprint);
        // Compact: `status` and every run read a stage's record whole, and it is mostly manifests.
        let json = serde_json::to_vec(record)?;
        write_atomic(&path, &json).with_context(|| format!("cannot write {}", path.display()))
    }

    fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.object_path(digest).is_file())
    }

    fn put_object(&self, digest: &Digest, src: &Path) -> Result<()> {
        let dest = self.object_path(digest);
        if dest.is_file() {
            return Ok(());
        }
        let tmp = tempfile::Builder::new().prefix("object-").tempfile_in(self.tmp_dir()?)?.into_temp_path();
        copy_verified(src, &tmp, digest)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444))?;
        fs::create_dir_all(dest.parent().expect("objects live in a fan-out directory"))?;
        tmp.persist(&dest).map_err(|e| e.error).with_context(|| format!("cannot store {}", dest.display()))?;
        Ok(())
    }

    fn fetch_object(&self, digest: &Digest, dest: &Path) -> Result<()> {
        let src = self.object_path(digest);
        if !src.is_file() {
            bail!("object {} is missing from the step cache at {}", digest.short(), self.describe());
        }
        let verified = copy_verified(&src, dest, digest);
        if verified.is_err() {
            // Remove the bad object so the next run stores a good copy instead of failing again.
            let _ = fs::remove_file(&src);
        }
        verified
    }
}

/// Copies `src` to `dest` (reflinked where the filesystem can) and checks the copy's digest.
/// `dest` must not exist; on a mismatch it is removed.
pub fn copy_verified(src: &Path, dest: &Path, digest: &Digest) -> Result<()> {
    let _ = fs::remove_file(dest);
    reflink_copy::reflink_or_copy(src, dest)
        .with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()))?;
    let actual = hash_reader(File::open(dest)?, &|_| {})?;
    if actual != *digest {
        let _ = fs::remove_file(dest);
        bail!(
            "{} changed while it was copied or is corrupt: expected {}, found {}",
            src.display(),
            digest.short(),
            actual.short()
        );
    }
    Ok(())
}

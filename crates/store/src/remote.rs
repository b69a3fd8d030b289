//! Artifact remotes behind one trait: a local directory (the embedded default) and S3.
//!
//! Keys are `/`-separated paths under the remote's root, e.g. `files/md5/ab/cdef…`. Every
//! download is streamed into a new file and its md5 computed on the way, so the caller can
//! verify it before renaming it into place.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::StoreError;
use crate::md5::{Md5, Md5Writer};

/// A place that holds objects by key.
#[async_trait]
pub trait Remote: Send + Sync {
    /// Where it is, for messages: a directory path or `s3://bucket/prefix`.
    fn describe(&self) -> String;

    /// Whether `key` exists.
    async fn exists(&self, key: &str) -> Result<bool, StoreError>;

    /// Streams `key` into the new file `dest`; returns the md5 and length of what was written.
    async fn get(&self, key: &str, dest: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<(Md5, u64), StoreError>;

    /// The whole of `key`, a small object, in memory: [`StoreError::TooLarge`] once more than
    /// `limit` bytes came, without reading the rest.
    async fn read_small(&self, key: &str, limit: u64) -> Result<Vec<u8>, StoreError>;

    /// Uploads the file `src` as `key`, replacing any object there.
    async fn put(&self, key: &str, src: &Path) -> Result<(), StoreError>;

    /// Creates `key` with `bytes` only if nothing is there; returns whether it did. Atomic: of
    /// two concurrent callers exactly one succeeds.
    async fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> Result<bool, StoreError>;

    /// Every key under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// When `key` was last written, by the remote's own clock; `None` if it does not exist.
    async fn modified(&self, key: &str) -> Result<Option<std::time::SystemTime>, StoreError>;
}

/// A remote in a local directory, in the same layout as DVC's local remotes.
pub struct DirRemote {
    root: PathBuf,
}

impl DirRemote {
    /// A remote rooted at `root`; it is created on first write.
    pub fn new(root: impl Into<PathBuf>) -> DirRemote {
        DirRemote { root: root.into() }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn missing(&self, key: &str) -> StoreError {
        StoreError::Missing { key: key.to_string(), remote: self.describe() }
    }
}

#[async_trait]
impl Remote for DirRemote {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.path(key).is_file())
    }

    async fn get(&self, key: &str, dest: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<(Md5, u64), StoreError> {
        let src = match File::open(self.path(key)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.missing(key)),
            other => other.map_err(|e| anyhow::anyhow!("cannot read {key} from {}: {e}", self.describe()))?,
        };
        // File I/O runs on the blocking pool; progress is told the size once the copy is done.
        let to = dest.to_path_buf();
        let copied = tokio::task::spawn_blocking(move || copy_hashing(src, &to, &|_| {}));
        let (md5, len) = copied
            .await
            .map_err(anyhow::Error::from)?
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", dest.display()))?;
        progress(len);
        Ok((md5, len))
    }

    async fn read_small(&self, key: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        let src = match File::open(self.path(key)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.missing(key)),
            other => other.map_err(|e| anyhow::anyhow!("cannot read {key} from {}: {e}", self.describe()))?,
        };
        let mut bytes = Vec::new();
        src.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| anyhow::anyhow!("cannot read {key} from {}: {e}", self.describe()))?;
        if bytes.len() as u64 > limit {
            return Err(StoreError::TooLarge { key: key.into(), remote: self.describe(), limit });
        }
        Ok(bytes)
    }

    async fn put(&self, key: &str, src: &Path) -> Result<(), StoreError> {
        let dest = self.path(key);
        let tmp = self.temp_for(&dest)?;
        fs::copy(src, &tmp)
            .map_err(|e| anyhow::anyhow!("cannot copy {} to {}: {e}", src.display(), self.describe()))?;
        tmp.persist(&dest).map_err(|e| anyhow::anyhow!("cannot store {}: {}", dest.display(), e.error))?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        let dest = self.path(key);
        let tmp = self.temp_for(&dest)?;
        fs::write(&tmp, &bytes).map_err(anyhow::Error::from)?;
        // A hard link fails if the name exists, and the file it names is already complete.
        match fs::hard_link(&tmp, &dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(anyhow::anyhow!("cannot create {}: {e}", dest.display()).into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let base = self.path(prefix);
        let mut keys = Vec::new();
        for entry in walkdir::WalkDir::new(&base).sort_by_file_name() {
            let entry = match entry {
                Err(e) if e.io_error().is_some_and(|io| io.kind() == io::ErrorKind::NotFound) => break,
                other => other.map_err(anyhow::Error::from)?,
            };
            let name = entry.file_name().to_string_lossy();
            if entry.file_type().is_file() && !name.starts_with(".tmp-") {
                let rel = entry.path().strip_prefix(&self.root).expect("walked under the root");
                keys.push(rel.to_string_lossy().into_owned());
            }
        }
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match fs::remove_file(self.path(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(anyhow::anyhow!("cannot delete {key}: {e}").into()),
            _ => Ok(()),
        }
    }

    async fn modified(&self, key: &str) -> Result<Option<std::time::SystemTime>, StoreError> {
        match fs::metadata(self.path(key)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("cannot read {key}: {e}").into()),
            Ok(meta) => Ok(Some(meta.modified().map_err(anyhow::Error::from)?)),
        }
    }
}

impl DirRemote {
    fn temp_for(&self, dest: &Path) -> Result<tempfile::TempPath, StoreError> {
        let dir = dest.parent().expect("keys have a parent directory");
        fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(anyhow::Error::from)?;
        Ok(tmp.into_temp_path())
    }
}

/// Copies `src` into the new file `dest`, computing the md5 on the way.
pub fn copy_hashing(src: impl Read, dest: &Path, progress: &(dyn Fn(u64) + Sync)) -> io::Result<(Md5, u64)> {
    copy_hashing_into(src, &mut File::create(dest)?, progress)
}

/// Copies `src` into the open file `out`, computing the md5 on the way.
pub fn copy_hashing_into(
    mut src: impl Read,
    out: &mut File,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<(Md5, u64)> {
    let mut md5 = Md5Writer::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        md5.update(&buf[..n]);
        progress(n as u64);
    }
    // No fsync: the file is verified and renamed into place by the caller, and a file cut short
    // by a power loss is caught by the next run's verification, whereas an fsync per object
    // costs milliseconds each across thousands of small files.
    Ok(md5.finish())
}

/// Another remote's objects under `prefix`: one project's ledger, locks and releases beside
/// another's on a shared remote. Keys are prefixed on the way in and the prefix taken off what
/// [`Remote::list`] returns.
pub struct Prefixed {
    inner: Box<dyn Remote>,
    prefix: String,
}

impl Prefixed {
    /// `inner` with every key under `prefix` (a `/`-separated path; a trailing `/` is added).
    pub fn new(inner: Box<dyn Remote>, prefix: &str) -> Prefixed {
        let prefix = format!("{}/", prefix.trim_matches('/'));
        Prefixed { inner, prefix }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait]
impl Remote for Prefixed {
    fn describe(&self) -> String {
        format!("{}/{}", self.inner.describe().trim_end_matches('/'), self.prefix.trim_end_matches('/'))
    }

    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.inner.exists(&self.key(key)).await
    }

    async fn get(&self, key: &str, dest: &Path, progress: &(dyn Fn(u64) + Sync)) -> Result<(Md5, u64), StoreError> {
        self.inner.get(&self.key(key), dest, progress).await
    }

    async fn read_small(&self, key: &str, limit: u64) -> Result<Vec<u8>, StoreError> {
        self.inner.read_small(&self.key(key), limit).await
    }

    async fn put(&self, key: &str, src: &Path) -> Result<(), StoreError> {
        self.inner.put(&self.key(key), src).await
    }

    async fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        self.inner.put_if_absent(&self.key(key), bytes).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let keys = self.inner.list(&self.key(prefix)).await?;
        Ok(keys.into_iter().filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string)).collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(&self.key(key)).await
    }

    async fn modified(&self, key: &str) -> Result<Option<std::time::SystemTime>, StoreError> {
        self.inner.modified(&self.key(key)).await
    }
}

#[cfg(test)]
mod prefixed_tests {
    use super::*;

    #[tokio::test]
    async fn a_prefixed_remote_keeps_its_objects_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            Prefixed::new(Box::new(DirRemote::new(dir.path())), "projects/a"),
            Prefixed::new(Box::new(DirRemote::new(dir.path())), "projects/b/"),
        );
        assert!(a.put_if_absent("ledger/v1/1.json", b"a1".to_vec()).await.unwrap());
        assert!(b.put_if_absent("ledger/v1/1.json", b"b1".to_vec()).await.unwrap(), "b has its own key space");
        assert!(!a.put_if_absent("ledger/v1/1.json", b"again".to_vec()).await.unwrap());
        assert_eq!(a.list("ledger/v1/").await.unwrap(), ["ledger/v1/1.json"]);
        assert_eq!(std::fs::read(dir.path().join("projects/b/ledger/v1/1.json")).unwrap(), b"b1");
        assert!(a.describe().ends_with("/projects/a"), "{}", a.describe());
        a.delete("ledger/v1/1.json").await.unwrap();
        assert!(!a.exists("ledger/v1/1.json").await.unwrap() && b.exists("ledger/v1/1.json").await.unwrap());
    }
}

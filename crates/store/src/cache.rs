//! DVC's local cache (`.dvc/cache/files/md5/…`) and the md5s of workspace files.
//!
//! Objects in the cache are read-only, as DVC leaves them, and every copy out of the cache is
//! checked against the md5 that names it. Workspace md5s are kept in a stat cache (the same
//! racy-safe one the engine uses for BLAKE3), so a pull with nothing to do reads no data.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use engine::{StatCache, StatKey};

use crate::dvc::object_key;
use crate::md5::{Md5, md5_reader};
use crate::remote::copy_hashing;

/// The local DVC cache of one repository.
#[derive(Clone)]
pub struct DvcCache {
    dir: PathBuf,
    tmp: PathBuf,
}

impl DvcCache {
    /// The cache of the repository at `root`.
    pub fn new(root: &Path) -> DvcCache {
        DvcCache { dir: root.join(".dvc").join("cache"), tmp: root.join(".dvc").join("tmp").join("slipway") }
    }

    /// Where the object lives.
    pub fn path(&self, md5: &Md5, is_dir: bool) -> PathBuf {
        self.dir.join(object_key(md5, is_dir))
    }

    /// Whether the object is present.
    pub fn has(&self, md5: &Md5, is_dir: bool) -> bool {
        self.path(md5, is_dir).is_file()
    }

    /// A new temporary path on the cache's filesystem, removed on drop. Nothing is created
    /// there yet: whoever writes the object creates the file, on the thread that writes it. The
    /// name is unique by construction (the process and a counter), not by chance.
    pub fn temp_path(&self) -> Result<tempfile::TempPath> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        fs::create_dir_all(&self.tmp).with_context(|| format!("cannot create {}", self.tmp.display()))?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("obj-{}-{n}", std::process::id());
        Ok(tempfile::TempPath::try_from_path(self.tmp.join(name))?)
    }

    /// Moves the verified temporary file `tmp` into the cache as the object `md5`.
    pub fn adopt(&self, tmp: tempfile::TempPath, md5: &Md5, is_dir: bool) -> Result<()> {
        let dest = self.path(md5, is_dir);
        fs::create_dir_all(dest.parent().expect("objects live in a fan-out directory"))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444))?;
        tmp.persist(&dest).map_err(|e| e.error).with_context(|| format!("cannot store {}", dest.display()))?;
        Ok(())
    }

    /// Copies `src` into the cache unless the object is there; `md5` must be its digest.
    pub fn insert_file(&self, src: &Path, md5: &Md5) -> Result<()> {
        if self.has(md5, false) {
            return Ok(());
        }
        let tmp = self.temp_path()?;
        let (actual, _) = copy_hashing(fs::File::open(src)?, &tmp, &|_| {})?;
        anyhow::ensure!(actual == *md5, "{} changed while it was being cached", src.display());
        self.adopt(tmp, md5, false)
    }

    /// Writes the bytes of a `.dir` manifest into the cache.
    pub fn insert_manifest(&self, bytes: &[u8], md5: &Md5) -> Result<()> {
        if self.has(md5, true) {
            return Ok(());
        }
        let tmp = self.temp_path()?;
        fs::write(&tmp, bytes)?;
        self.adopt(tmp, md5, true)
    }

    /// The verified bytes of a cached manifest, or `None` if absent or corrupt (a corrupt one
    /// is removed so it is fetched again).
    pub fn read_manifest(&self, md5: &Md5) -> Option<Vec<u8>> {
        let path = self.path(md5, true);
        let bytes = fs::read(&path).ok()?;
        if Md5::of(&bytes) == *md5 {
            return Some(bytes);
        }
        let _ = fs::remove_file(path);
        None
    }
}

/// The md5 stat cache's file under `.slipway/`.
pub const MD5_STAT_CACHE_FILE: &str = "md5-stat-cache.bin";

/// Workspace md5s, reused while a file's stat fields are unchanged.
pub struct WorkspaceHashes {
    root: PathBuf,
    stat: Mutex<StatCache<Md5>>,
}

impl WorkspaceHashes {
    /// Loads the stat cache kept under `.slipway/`.
    pub fn load(root: &Path) -> WorkspaceHashes {
        let path = root.join(engine::STATE_DIR).join(MD5_STAT_CACHE_FILE);
        WorkspaceHashes { root: root.to_path_buf(), stat: Mutex::new(StatCache::load(&path)) }
    }

    /// The md5 of the workspace file `rel`, or `None` if it does not exist.
    pub fn md5(&self, rel: &str) -> Result<Option<Md5>> {
        let path = self.root.join(rel);
        let meta = match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other.with_context(|| format!("cannot stat {rel}"))?,
        };
        if !meta.is_file() {
            return Ok(None);
        }
        let key = StatKey::of(&meta);
        let clock = {
            let stat = self.stat.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(md5) = stat.get(rel, &key) {
                return Ok(Some(md5));
            }
            stat.clock().context("cannot read the filesystem clock under .slipway")?
        };
        let (md5, _) = md5_reader(fs::File::open(&path)?).with_context(|| format!("cannot read {rel}"))?;
        self.stat.lock().unwrap_or_else(|e| e.into_inner()).insert(rel, key, md5, clock);
        Ok(Some(md5))
    }

    /// Records the md5s of workspace files Slipway has just written, without reading them back:
    /// the filesystem clock is read after the writes, then each file's stat, and the stat cache
    /// keeps only entries older than that clock (a file written again since then, or within the
    /// same clock tick, is hashed next time). Paths that vanished are skipped.
    pub fn record_written(&self, written: &[(String, Md5)]) -> Result<()> {
        if written.is_empty() {
            return Ok(());
        }
        let mut stat = self.stat.lock().unwrap_or_else(|e| e.into_inner());
        let clock = stat.clock().context("cannot read the filesystem clock under .slipway")?;
        for (rel, md5) in written {
            match fs::symlink_metadata(self.root.join(rel)) {
                Ok(meta) if meta.is_file() => stat.insert(rel, StatKey::of(&meta), *md5, clock),
                _ => {}
            }
        }
        Ok(())
    }

    /// Saves the stat cache.
    pub fn save(&self) -> Result<()> {
        self.stat.lock().unwrap_or_else(|e| e.into_inner()).save().context("cannot save the md5 stat cache")
    }
}

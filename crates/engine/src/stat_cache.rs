//! The stat cache: a file's digest is reused while its `lstat` fields have not changed.
//!
//! The fields compared are size, mtime and ctime in nanoseconds, inode and mode. ctime cannot
//! be set from user space, so an edit that restores the mtime is still seen.
//!
//! File timestamps come from a coarse kernel clock (a tick of up to 10 ms; a whole second on
//! some filesystems), so a file written twice within one tick can keep identical stat fields —
//! the "racy git" problem. Each hashing pass therefore first writes a marker file and reads its
//! mtime, the filesystem's own idea of "now". An entry is stored only when the file's mtime and
//! ctime are strictly older than that marker: any later write to the file must then carry a
//! timestamp at or past the marker, so it cannot match the stored one. A file changed within
//! the same tick as the pass is simply hashed again next time.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache_key::Digest;
use crate::fsutil::write_atomic;

/// Bump when the entry layout or the digest algorithm of file contents changes.
const STAT_CACHE_VERSION: &str = "slipway-stat-cache-v1";

/// The stat fields that must all match for a stored digest to be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatKey {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    mode: u32,
}

impl StatKey {
    /// The key of `meta`, which must come from `symlink_metadata`.
    pub fn of(meta: &fs::Metadata) -> StatKey {
        StatKey {
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    stat: StatKey,
    digest: Digest,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: String,
    entries: HashMap<String, Entry>,
}

/// Digests of files keyed by path relative to the workspace root.
pub struct StatCache {
    path: PathBuf,
    entries: HashMap<String, Entry>,
    /// The marker's mtime for the current pass; entries at or past it are not stored.
    clock_ns: Option<i64>,
    dirty: bool,
}

impl StatCache {
    /// Loads the cache at `path`. A missing, unreadable or outdated file gives an empty cache:
    /// it only costs hashing again.
    pub fn load(path: &Path) -> StatCache {
        let entries = fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<OnDisk>(&bytes).ok())
            .filter(|d| d.version == STAT_CACHE_VERSION)
            .map(|d| d.entries)
            .unwrap_or_default();
        StatCache { path: path.to_path_buf(), entries, clock_ns: None, dirty: false }
    }

    /// Starts a hashing pass: reads the filesystem clock through a marker file next to the cache.
    pub fn begin_pass(&mut self) -> io::Result<()> {
        let marker = self.path.with_extension("clock");
        if let Some(dir) = marker.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&marker, b"")?;
        let meta = fs::symlink_metadata(&marker)?;
        self.clock_ns = Some(StatKey::of(&meta).mtime_ns);
        Ok(())
    }

    /// The stored digest of `rel`, if its stat fields still match.
    pub fn get(&self, rel: &str, stat: &StatKey) -> Option<Digest> {
        self.entries.get(rel).filter(|e| e.stat == *stat).map(|e| e.digest)
    }

    /// Records the digest of `rel`, taken from a file whose stat was `stat` *before* it was
    /// read. Racy entries (see the module docs) are dropped instead.
    pub fn insert(&mut self, rel: &str, stat: StatKey, digest: Digest) {
        let settled = self.clock_ns.is_some_and(|clock| stat.mtime_ns < clock && stat.ctime_ns < clock);
        if settled {
            self.entries.insert(rel.to_string(), Entry { stat, digest });
        } else {
            self.entries.remove(rel);
        }
        self.dirty = true;
    }

    /// Writes the cache if anything changed, atomically.
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let on_disk = OnDisk { version: STAT_CACHE_VERSION.to_string(), entries: std::mem::take(&mut self.entries) };
        let result =
            serde_json::to_vec(&on_disk).map_err(io::Error::other).and_then(|bytes| write_atomic(&self.path, &bytes));
        self.entries = on_disk.entries;
        self.dirty = result.is_err();
        result
    }
}

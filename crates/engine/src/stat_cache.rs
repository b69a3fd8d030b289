//! The stat cache: a file's digest is reused while its `lstat` fields have not changed.
//!
//! The fields compared are size, mtime and ctime in nanoseconds, inode and mode. ctime cannot
//! be set from user space, so an edit that restores the mtime is still seen.
//!
//! File timestamps come from a coarse kernel clock (a tick of up to 10 ms; a whole second on
//! some filesystems), so a file written twice within one tick can keep identical stat fields —
//! the "racy git" problem. Each hashing pass therefore first creates a marker file of its own and
//! reads its mtime, the filesystem's own idea of "now" ([`StatCache::clock`]). An entry is stored
//! only when the file's mtime and ctime are strictly older than that marker: any write after the
//! pass began must then carry a timestamp at or past the marker, so it cannot match the stored
//! one. A file changed within the same tick as the pass is simply hashed again next time.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cache_key::Digest;
use crate::fsutil::write_atomic;

/// A content digest the stat cache can hold: BLAKE3 for the engine, MD5 for DVC data.
pub trait CachedDigest: Copy + Serialize + DeserializeOwned {
    /// Written into the cache file; a file with another namespace is ignored. Bump the version
    /// in it when the entry layout or the way contents are hashed changes.
    const NAMESPACE: &'static str;
}

impl CachedDigest for Digest {
    const NAMESPACE: &'static str = "slipway-stat-cache-v1";
}

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

/// The filesystem's time at the start of a hashing pass, in nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock(i64);

#[derive(Serialize, Deserialize)]
#[serde(bound = "D: CachedDigest")]
struct Entry<D> {
    stat: StatKey,
    digest: D,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "D: CachedDigest")]
struct OnDisk<D> {
    version: String,
    entries: HashMap<String, Entry<D>>,
}

/// Digests of files keyed by path relative to the workspace root.
pub struct StatCache<D: CachedDigest = Digest> {
    path: PathBuf,
    entries: HashMap<String, Entry<D>>,
    dirty: bool,
}

impl<D: CachedDigest> StatCache<D> {
    /// Loads the cache at `path`. A missing, unreadable or outdated file gives an empty cache:
    /// it only costs hashing again.
    pub fn load(path: &Path) -> StatCache<D> {
        let entries = fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<OnDisk<D>>(&bytes).ok())
            .filter(|d| d.version == D::NAMESPACE)
            .map(|d| d.entries)
            .unwrap_or_default();
        StatCache { path: path.to_path_buf(), entries, dirty: false }
    }

    /// The filesystem's clock, read through a new marker file next to the cache. A hashing pass
    /// reads it before reading any file and hands it to [`StatCache::insert`]. Each call makes its
    /// own marker, so concurrent passes cannot see each other's time.
    pub fn clock(&self) -> io::Result<Clock> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let marker = tempfile::Builder::new().prefix(".clock-").tempfile_in(dir)?;
        let meta = fs::symlink_metadata(marker.path())?;
        Ok(Clock(StatKey::of(&meta).mtime_ns))
    }

    /// The stored digest of `rel`, if its stat fields still match.
    pub fn get(&self, rel: &str, stat: &StatKey) -> Option<D> {
        self.entries.get(rel).filter(|e| e.stat == *stat).map(|e| e.digest)
    }

    /// Records the digest of `rel`, read after `clock` from a file whose stat was `stat` before
    /// it was read. Racy entries (see the module docs) are dropped instead.
    pub fn insert(&mut self, rel: &str, stat: StatKey, digest: D, clock: Clock) {
        let settled = stat.mtime_ns < clock.0 && stat.ctime_ns < clock.0;
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
        let on_disk = OnDisk { version: D::NAMESPACE.to_string(), entries: std::mem::take(&mut self.entries) };
        let result =
            serde_json::to_vec(&on_disk).map_err(io::Error::other).and_then(|bytes| write_atomic(&self.path, &bytes));
        self.entries = on_disk.entries;
        self.dirty = result.is_err();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(mtime_ns: i64, ctime_ns: i64) -> StatKey {
        StatKey { size: 10, mtime_ns, ctime_ns, ino: 42, mode: 0o100644 }
    }

    fn cache() -> (tempfile::TempDir, StatCache<Digest>) {
        let dir = tempfile::tempdir().unwrap();
        let cache = StatCache::load(&dir.path().join("stat.json"));
        (dir, cache)
    }

    #[test]
    fn entries_older_than_the_pass_are_kept_and_survive_a_reload() {
        let (dir, mut cache) = cache();
        let d = Digest::of(b"x");
        cache.insert("f", key(100, 100), d, Clock(101));
        assert_eq!(cache.get("f", &key(100, 100)), Some(d));
        cache.save().unwrap();
        let reloaded = StatCache::<Digest>::load(&dir.path().join("stat.json"));
        assert_eq!(reloaded.get("f", &key(100, 100)), Some(d));
    }

    #[test]
    fn racy_entries_are_not_kept() {
        let (_dir, mut cache) = cache();
        let d = Digest::of(b"x");
        // Written in the same tick as the pass began: a later write in that tick could keep
        // every stat field, so the digest must not be trusted next time.
        cache.insert("same-tick", key(100, 101), d, Clock(101));
        cache.insert("mtime-in-future", key(200, 50), d, Clock(101));
        assert_eq!(cache.get("same-tick", &key(100, 101)), None);
        assert_eq!(cache.get("mtime-in-future", &key(200, 50)), None);
    }

    #[test]
    fn any_changed_field_misses() {
        let (_dir, mut cache) = cache();
        cache.insert("f", key(100, 100), Digest::of(b"x"), Clock(1_000));
        let changed = [
            StatKey { size: 11, ..key(100, 100) },
            StatKey { ino: 43, ..key(100, 100) },
            StatKey { mode: 0o100755, ..key(100, 100) },
            key(101, 100),
            key(100, 101),
        ];
        for k in changed {
            assert_eq!(cache.get("f", &k), None, "{k:?}");
        }
    }

    #[test]
    fn a_corrupt_cache_file_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("stat.json"), b"{ not json").unwrap();
        let cache = StatCache::<Digest>::load(&dir.path().join("stat.json"));
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn the_clock_is_the_filesystem_time_now() {
        let (dir, cache) = cache();
        let before = fs::metadata(dir.path()).unwrap();
        let clock = cache.clock().unwrap();
        assert!(clock.0 >= StatKey::of(&before).mtime_ns);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "the marker is removed: {leftovers:?}");
    }
}

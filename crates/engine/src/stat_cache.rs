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
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use crate::cache_key::Digest;
use crate::fsutil::write_atomic;

/// A content digest the stat cache can hold: BLAKE3 for the engine, MD5 for DVC data.
pub trait CachedDigest: Copy + Send + Sync + 'static {
    /// Written into the cache file; a file with another namespace is ignored. Bump the version
    /// in it when the entry layout or the way contents are hashed changes.
    const NAMESPACE: &'static str;
    /// The digest's length in bytes.
    const LEN: usize;
    /// Its bytes, `LEN` of them.
    fn bytes(&self) -> &[u8];
    /// The digest of `LEN` bytes.
    fn from_bytes(bytes: &[u8]) -> Self;
}

impl CachedDigest for Digest {
    const NAMESPACE: &'static str = "slipway-stat-cache-v2";
    const LEN: usize = 32;
    fn bytes(&self) -> &[u8] {
        &self.0
    }
    fn from_bytes(bytes: &[u8]) -> Digest {
        Digest(bytes.try_into().expect("32 bytes"))
    }
}

/// The file's first bytes; the namespace, the entries and a BLAKE3 of all that follow.
const MAGIC: &[u8; 8] = b"SLWSTAT\x02";

/// The largest cache file read: about 5 million entries. A larger one is ignored.
const MAX_FILE_BYTES: u64 = 512 << 20;

/// The stat fields that must all match for a stored digest to be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

struct Entry<D> {
    stat: StatKey,
    digest: D,
}

/// Digests of files keyed by path relative to the workspace root.
pub struct StatCache<D: CachedDigest = Digest> {
    path: PathBuf,
    /// The file being read and decoded on a thread of its own, until the entries are needed.
    loading: Mutex<Option<JoinHandle<Entries<D>>>>,
    entries: OnceLock<Entries<D>>,
    dirty: bool,
}

type Entries<D> = HashMap<String, Entry<D>>;

impl<D: CachedDigest> StatCache<D> {
    /// Loads the cache at `path`. A missing, unreadable, corrupt or outdated file gives an empty
    /// cache: it only costs hashing again.
    pub fn load(path: &Path) -> StatCache<D> {
        let cache = StatCache::empty(path);
        let _ = cache.entries.set(read(path));
        cache
    }

    /// [`StatCache::load`], with the file read and decoded on a thread of its own while the
    /// caller walks the tree; the first lookup waits for it.
    pub fn load_in_background(path: &Path) -> StatCache<D> {
        let cache = StatCache::empty(path);
        let file = path.to_path_buf();
        match std::thread::Builder::new().name("stat-cache".into()).spawn(move || read(&file)) {
            Ok(thread) => *cache.loading.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread),
            Err(_) => drop(cache.entries.set(read(path))),
        }
        cache
    }

    fn empty(path: &Path) -> StatCache<D> {
        StatCache { path: path.to_path_buf(), loading: Mutex::new(None), entries: OnceLock::new(), dirty: false }
    }

    /// The entries, once loaded. A loading thread that died leaves an empty cache, which only
    /// costs hashing again.
    fn entries(&self) -> &Entries<D> {
        self.entries.get_or_init(|| {
            let loading = self.loading.lock().unwrap_or_else(|e| e.into_inner()).take();
            loading.and_then(|thread| thread.join().ok()).unwrap_or_default()
        })
    }

    fn entries_mut(&mut self) -> &mut Entries<D> {
        self.entries();
        self.entries.get_mut().expect("loaded just above")
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
        self.entries().get(rel).filter(|e| e.stat == *stat).map(|e| e.digest)
    }

    /// Records the digest of `rel`, read after `clock` from a file whose stat was `stat` before
    /// it was read. Racy entries (see the module docs) are dropped instead.
    pub fn insert(&mut self, rel: &str, stat: StatKey, digest: D, clock: Clock) {
        let settled = stat.mtime_ns < clock.0 && stat.ctime_ns < clock.0;
        let entries = self.entries_mut();
        if settled {
            entries.insert(rel.to_string(), Entry { stat, digest });
        } else {
            entries.remove(rel);
        }
        self.dirty = true;
    }

    /// Writes the cache if anything changed, atomically.
    pub fn save(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let result = write_atomic(&self.path, &encode(self.entries()));
        self.dirty = result.is_err();
        result
    }
}

/// The entries of the cache file at `path`; none if it is missing, too large or not valid.
fn read<D: CachedDigest>(path: &Path) -> Entries<D> {
    fs::metadata(path)
        .ok()
        .filter(|m| m.len() <= MAX_FILE_BYTES)
        .and_then(|_| fs::read(path).ok())
        .and_then(|bytes| decode::<D>(&bytes))
        .unwrap_or_default()
}

/// The file: [`MAGIC`], then the namespace and the entries, then the BLAKE3 of everything
/// between the magic and itself. Integers are little-endian; each entry is its path (u32 length,
/// then UTF-8), its stat fields, and its digest.
fn encode<D: CachedDigest>(entries: &HashMap<String, Entry<D>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * (64 + D::LEN));
    out.extend_from_slice(MAGIC);
    let body = out.len();
    out.extend_from_slice(&(D::NAMESPACE.len() as u32).to_le_bytes());
    out.extend_from_slice(D::NAMESPACE.as_bytes());
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for (rel, e) in entries {
        out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        out.extend_from_slice(rel.as_bytes());
        let s = &e.stat;
        for n in [s.size, s.mtime_ns as u64, s.ctime_ns as u64, s.ino] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&s.mode.to_le_bytes());
        out.extend_from_slice(e.digest.bytes());
    }
    let sum = blake3::hash(&out[body..]);
    out.extend_from_slice(sum.as_bytes());
    out
}

/// The entries of a cache file, or `None` if it is not one of this namespace, is cut short, has
/// a bad checksum, or holds anything out of place.
fn decode<D: CachedDigest>(bytes: &[u8]) -> Option<HashMap<String, Entry<D>>> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (body, sum) = rest.split_at_checked(rest.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != sum {
        return None;
    }
    let mut r = Reader(body);
    let len = r.u32()? as usize;
    let namespace = r.take(len)?;
    if namespace != D::NAMESPACE.as_bytes() {
        return None;
    }
    let count = r.u64()?;
    // Every entry takes at least this many bytes, so a huge count cannot make a huge map.
    let min_entry = 4 + 8 * 4 + 4 + D::LEN;
    if count > (r.0.len() / min_entry) as u64 {
        return None;
    }
    let mut entries = HashMap::with_capacity(count as usize);
    for _ in 0..count {
        let len = r.u32()? as usize;
        let rel = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        let (size, mtime, ctime, ino) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let stat = StatKey { size, mtime_ns: mtime as i64, ctime_ns: ctime as i64, ino, mode: r.u32()? };
        let digest = D::from_bytes(r.take(D::LEN)?);
        entries.insert(rel, Entry { stat, digest });
    }
    r.0.is_empty().then_some(entries)
}

/// Reads little-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
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
        let cache = StatCache::load(&dir.path().join("stat.bin"));
        (dir, cache)
    }

    #[test]
    fn entries_older_than_the_pass_are_kept_and_survive_a_reload() {
        let (dir, mut cache) = cache();
        let d = Digest::of(b"x");
        cache.insert("f", key(100, 100), d, Clock(101));
        assert_eq!(cache.get("f", &key(100, 100)), Some(d));
        cache.save().unwrap();
        let reloaded = StatCache::<Digest>::load(&dir.path().join("stat.bin"));
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
        fs::write(dir.path().join("stat.bin"), b"{ not a cache").unwrap();
        let cache = StatCache::<Digest>::load(&dir.path().join("stat.bin"));
        assert!(cache.entries().is_empty());
    }

    /// A second digest type, as the store's MD5 is: its files are not this cache's.
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Other([u8; 4]);

    impl CachedDigest for Other {
        const NAMESPACE: &'static str = "test-other-v1";
        const LEN: usize = 4;
        fn bytes(&self) -> &[u8] {
            &self.0
        }
        fn from_bytes(bytes: &[u8]) -> Other {
            Other(bytes.try_into().unwrap())
        }
    }

    #[test]
    fn the_file_round_trips_and_any_damage_or_another_namespace_is_an_empty_cache() {
        let (dir, mut cache) = cache();
        for i in 0..300u32 {
            let stat =
                StatKey { size: i.into(), mtime_ns: -7, ctime_ns: i64::MAX - 1, ino: u64::MAX - 1, mode: 0o100755 };
            cache.insert(&format!("data/é/{i}.bin"), stat, Digest::of(&i.to_le_bytes()), Clock(i64::MAX));
        }
        cache.save().unwrap();
        let path = dir.path().join("stat.bin");
        for reloaded in [StatCache::<Digest>::load(&path), StatCache::<Digest>::load_in_background(&path)] {
            assert_eq!(reloaded.entries().len(), 300);
            for (rel, e) in cache.entries() {
                assert_eq!(reloaded.get(rel, &e.stat), Some(e.digest), "{rel}");
            }
        }
        // Written to before the thread is done: the loaded entries are there, and so is the new one.
        let mut added = StatCache::<Digest>::load_in_background(&path);
        let stat = StatKey { size: 1, mtime_ns: 1, ctime_ns: 1, ino: 1, mode: 0o100644 };
        added.insert("new.bin", stat, Digest::of(b"new"), Clock(i64::MAX));
        assert_eq!((added.entries().len(), added.get("new.bin", &stat)), (301, Some(Digest::of(b"new"))));
        let good = fs::read(&path).unwrap();
        for at in [0, 9, 20, good.len() / 2, good.len() - 40, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            assert!(StatCache::<Digest>::load(&path).entries().is_empty(), "a flipped byte at {at} was accepted");
        }
        for len in [0, 7, 8, 40, good.len() - 1] {
            fs::write(&path, &good[..len]).unwrap();
            assert!(StatCache::<Digest>::load(&path).entries().is_empty(), "a file cut at {len} was accepted");
        }
        fs::write(&path, &good).unwrap();
        assert!(StatCache::<Other>::load(&path).entries().is_empty(), "another namespace's file was read");
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

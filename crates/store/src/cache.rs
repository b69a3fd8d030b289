//! DVC's local cache (`.dvc/cache/files/md5/…`) and the md5s of workspace files.
//!
//! Objects in the cache are read-only, as DVC leaves them, and every copy out of the cache of an
//! object that was there before is checked against the md5 that names it (one fetched moments
//! ago was checked on its way in). Workspace md5s are kept in a stat cache (the same
//! racy-safe one the engine uses for BLAKE3), so a pull with nothing to do reads no data.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use anyhow::{Context, Result};
use engine::{Clock, StatCache, StatKey};

use crate::dvc::object_key;
use crate::md5::{Md5, md5_reader};
use crate::remote::copy_hashing;

/// The local DVC cache of one repository.
#[derive(Clone)]
pub struct DvcCache {
    dir: PathBuf,
    /// Directories this cache's user has made or found, shared by its clones, each with a lock
    /// that its users take around the calls that change it: a pull asks the filesystem about
    /// each fan-out and workspace directory once, not once per file.
    dirs: Arc<Mutex<HashMap<PathBuf, DirLock>>>,
}

/// Held around a call that creates or renames a name in one directory. The kernel runs those
/// one at a time per directory anyway, and its waiters spin on the CPU while the holder runs:
/// dozens of concurrent transfers checking files out into one directory spent most of a
/// 2-core machine's time spinning, where waiters on this lock sleep.
pub(crate) type DirLock = Arc<Mutex<()>>;

impl DvcCache {
    /// The cache of the repository at `root`.
    pub fn new(root: &Path) -> DvcCache {
        DvcCache { dir: root.join(".dvc").join("cache"), dirs: Arc::default() }
    }

    /// Forgets the directories found so far, at the start of a transfer: one removed since is
    /// made again rather than taken as still there.
    pub(crate) fn forget_dirs(&self) {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Makes sure `dir` (a fan-out directory, or one a file is checked out into) exists, and
    /// returns its lock: looked up the first time, then remembered. Looked up rather than made
    /// outright: `mkdir` takes the parent directory's lock for writing even when the name
    /// exists, and concurrent transfers would queue on that lock.
    pub(crate) fn ensure_dir(&self, dir: &Path) -> Result<DirLock> {
        if let Some(lock) = self.dirs.lock().unwrap_or_else(|e| e.into_inner()).get(dir) {
            return Ok(Arc::clone(lock));
        }
        if !dir.is_dir() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Arc::clone(dirs.entry(dir.to_path_buf()).or_default()))
    }

    /// Where the object lives.
    pub fn path(&self, md5: &Md5, is_dir: bool) -> PathBuf {
        self.dir.join(object_key(md5, is_dir))
    }

    /// Whether the object is present.
    pub fn has(&self, md5: &Md5, is_dir: bool) -> bool {
        self.path(md5, is_dir).is_file()
    }

    /// A new temporary path for the object `md5`, removed on drop, beside where the object will
    /// live: `.slipway-<pid>-<random>-<n>.tmp` in its fan-out directory, where DVC puts its own
    /// (`.<random>.tmp`). Renaming it into place then changes one directory, and concurrent
    /// downloads create their files in up to 256 directories rather than all in one, whose lock
    /// they would otherwise queue on. Nothing is created yet: whoever writes the object creates
    /// the file, on the thread that writes it. The name is unique by construction within a
    /// process (a counter) and apart from other processes by their pid and a random number
    /// drawn once per process (a process of the same pid in another container, say); no object
    /// is named like it.
    pub fn temp_path(&self, md5: &Md5, is_dir: bool) -> Result<tempfile::TempPath> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        static RANDOM: OnceLock<u64> = OnceLock::new();
        let random = RANDOM.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        });
        let dest = self.path(md5, is_dir);
        let dir = dest.parent().expect("objects live in a fan-out directory");
        self.ensure_dir(dir)?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(".slipway-{}-{random:016x}-{n}.tmp", std::process::id());
        Ok(tempfile::TempPath::try_from_path(dir.join(name))?)
    }

    /// Moves the verified temporary file `tmp` (from [`DvcCache::temp_path`]) into the cache as
    /// the object `md5`.
    pub fn adopt(&self, tmp: tempfile::TempPath, md5: &Md5, is_dir: bool) -> Result<()> {
        let dest = self.path(md5, is_dir);
        let dir = self.ensure_dir(dest.parent().expect("objects live in a fan-out directory"))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o444))?;
        let _changing = dir.lock().unwrap_or_else(|e| e.into_inner());
        tmp.persist(&dest).map_err(|e| e.error).with_context(|| format!("cannot store {}", dest.display()))?;
        Ok(())
    }

    /// Copies `src` into the cache unless the object is there; `md5` must be its digest.
    pub fn insert_file(&self, src: &Path, md5: &Md5) -> Result<()> {
        if self.has(md5, false) {
            return Ok(());
        }
        let tmp = self.temp_path(md5, false)?;
        let (actual, _) = copy_hashing(fs::File::open(src)?, &tmp, &|_| {})?;
        anyhow::ensure!(actual == *md5, "{} changed while it was being cached", src.display());
        self.adopt(tmp, md5, false)
    }

    /// Writes the bytes of a `.dir` manifest into the cache.
    pub fn insert_manifest(&self, bytes: &[u8], md5: &Md5) -> Result<()> {
        if self.has(md5, true) {
            return Ok(());
        }
        let tmp = self.temp_path(md5, true)?;
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
        self.md5_after(rel, &OnceLock::new())
    }

    /// [`WorkspaceHashes::md5`], with the filesystem clock of a batch of files: read at the
    /// batch's first file the stat cache cannot answer for, and before any of them is read,
    /// which is all an entry's clock must be (one marker file per batch, not per file).
    fn md5_after(&self, rel: &str, batch_clock: &OnceLock<Clock>) -> Result<Option<Md5>> {
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
            match batch_clock.get() {
                Some(clock) => *clock,
                None => {
                    let clock = stat.clock().context("cannot read the filesystem clock under .slipway")?;
                    // Another thread's clock, if it won, was read before it was set, so before
                    // this file is read.
                    *batch_clock.get_or_init(|| clock)
                }
            }
        };
        let (md5, _) = md5_reader(fs::File::open(&path)?).with_context(|| format!("cannot read {rel}"))?;
        self.stat.lock().unwrap_or_else(|e| e.into_inner()).insert(rel, key, md5, clock);
        Ok(Some(md5))
    }

    /// The md5s of many workspace files at once, in the order given: what the stat cache holds
    /// is answered from it, and the files it cannot answer for are hashed on rayon's pool, one
    /// thread per core, as the engine hashes its inputs (MD5 is serial within a file). The
    /// first error, in the order given, is returned.
    pub fn md5_many(&self, rels: &[&str]) -> Result<Vec<Option<Md5>>> {
        use rayon::prelude::*;
        let clock = OnceLock::new();
        let found: Vec<Result<Option<Md5>>> = rels.par_iter().map(|rel| self.md5_after(rel, &clock)).collect();
        found.into_iter().collect()
    }

    /// Records the md5s of workspace files Slipway has just written, without reading them back.
    /// Each was given the modification time `written_at` (a second before the pull began) once
    /// its content was written, and comes with the stat it had just after it was put in place. An entry is kept only if
    /// that stat still carries `written_at` (any write since would have set a later time) and is
    /// still the path's stat now (a file replaced since is not the one written), and, as every
    /// entry, if it is older than the filesystem clock read here, after all the writes. Paths
    /// that vanished are skipped; all of these are hashed next time.
    pub(crate) fn record_written(&self, written: &[crate::transfer::Written], written_at: SystemTime) -> Result<()> {
        if written.is_empty() {
            return Ok(());
        }
        let mut stat = self.stat.lock().unwrap_or_else(|e| e.into_inner());
        let clock = stat.clock().context("cannot read the filesystem clock under .slipway")?;
        for w in written {
            let Some(placed) = w.stat.filter(|p| p.modified <= written_at) else { continue };
            match fs::symlink_metadata(self.root.join(&w.rel)) {
                Ok(meta) if meta.is_file() && StatKey::of(&meta) == placed.stat => {
                    stat.insert(&w.rel, placed.stat, w.md5, clock)
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_files_are_hashed_in_the_order_given_as_one_at_a_time_would() {
        let root = tempfile::tempdir().unwrap();
        let mut rels = Vec::new();
        for i in 0..40 {
            let rel = format!("data/{i}.bin");
            if i % 7 != 3 {
                fs::create_dir_all(root.path().join("data")).unwrap();
                fs::write(root.path().join(&rel), vec![i as u8; i * 1000]).unwrap();
            }
            rels.push(rel);
        }
        rels.push("data".to_string());
        let rels: Vec<&str> = rels.iter().map(String::as_str).collect();
        let want: Vec<Option<Md5>> =
            rels.iter().map(|rel| fs::read(root.path().join(rel)).ok().map(|bytes| Md5::of(&bytes))).collect();
        assert_eq!(want.iter().filter(|m| m.is_none()).count(), 7, "missing files and the directory are absent");
        let hashes = WorkspaceHashes::load(root.path());
        assert_eq!(hashes.md5_many(&rels).unwrap(), want);
        // Answered again, now from the stat cache, and by a fresh one after a save.
        assert_eq!(hashes.md5_many(&rels).unwrap(), want);
        hashes.save().unwrap();
        assert_eq!(WorkspaceHashes::load(root.path()).md5_many(&rels).unwrap(), want);
        assert_eq!(hashes.md5_many(&[]).unwrap(), Vec::<Option<Md5>>::new());
    }

    /// What a pull wrote is recorded without being read back, but only while the file is still
    /// the one it wrote: a file replaced or written to since, even with the same size, is hashed
    /// afresh.
    #[test]
    fn a_written_file_is_recorded_only_while_it_is_still_as_written() {
        use crate::transfer::{Placed, Written};
        let root = tempfile::tempdir().unwrap();
        let path = |rel: &str| root.path().join(rel);
        let written_at = SystemTime::now() - std::time::Duration::from_secs(1);
        let names = ["data/kept", "data/rewritten", "data/same-size", "data/replaced", "data/never-dated"];
        fs::create_dir_all(path("data")).unwrap();
        for rel in names {
            fs::write(path(rel), b"as pulled").unwrap();
            if rel != "data/never-dated" {
                fs::File::options().write(true).open(path(rel)).unwrap().set_modified(written_at).unwrap();
            }
        }
        // A digest nobody could compute from the bytes: if it comes back, it came from the record.
        let recorded = Md5::of(b"the record");
        let written: Vec<Written> = names
            .iter()
            .map(|rel| {
                let meta = fs::symlink_metadata(path(rel)).unwrap();
                let placed = Placed { stat: StatKey::of(&meta), modified: meta.modified().unwrap() };
                Written { rel: rel.to_string(), md5: recorded, stat: Some(placed) }
            })
            .collect();
        fs::write(path("data/rewritten"), b"changed by someone else").unwrap();
        fs::write(path("data/same-size"), b"AS PULLED").unwrap();
        fs::write(path("data/other"), b"as pulled").unwrap();
        fs::rename(path("data/other"), path("data/replaced")).unwrap();
        // The clock must pass the files' times for any entry to be kept.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let hashes = WorkspaceHashes::load(root.path());
        hashes.record_written(&written, written_at).unwrap();
        assert_eq!(hashes.md5("data/kept").unwrap(), Some(recorded));
        assert_eq!(hashes.md5("data/rewritten").unwrap(), Some(Md5::of(b"changed by someone else")));
        assert_eq!(hashes.md5("data/same-size").unwrap(), Some(Md5::of(b"AS PULLED")));
        assert_eq!(hashes.md5("data/replaced").unwrap(), Some(Md5::of(b"as pulled")));
        assert_eq!(hashes.md5("data/never-dated").unwrap(), Some(Md5::of(b"as pulled")), "not dated by the pull");
    }

    #[test]
    fn a_directory_is_made_once_and_has_one_lock_for_every_clone_of_the_cache() {
        let root = tempfile::tempdir().unwrap();
        let (cache, other) = (DvcCache::new(root.path()), DvcCache::new(root.path()));
        let dir = root.path().join("data/deep/er");
        let lock = cache.ensure_dir(&dir).unwrap();
        assert!(dir.is_dir());
        assert!(Arc::ptr_eq(&lock, &cache.clone().ensure_dir(&dir).unwrap()), "clones share the lock");
        assert!(!Arc::ptr_eq(&lock, &other.ensure_dir(&dir).unwrap()), "another cache has its own");
        fs::write(root.path().join("file"), b"").unwrap();
        let err = cache.ensure_dir(&root.path().join("file/sub")).unwrap_err();
        assert!(format!("{err:#}").contains("cannot create"), "{err:#}");
    }

    #[test]
    fn a_temporary_object_lives_beside_its_object_and_is_named_unlike_any() {
        let root = tempfile::tempdir().unwrap();
        let cache = DvcCache::new(root.path());
        let md5 = Md5::of(b"x");
        let (a, b) = (cache.temp_path(&md5, false).unwrap(), cache.temp_path(&md5, false).unwrap());
        assert_ne!(*a, *b);
        let object = cache.path(&md5, false);
        assert_eq!(a.parent(), object.parent());
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".slipway-") && name.ends_with(".tmp"), "{name}");
        assert!(Md5::from_hex(&name).is_none() && !name.ends_with(".dir"));
        fs::write(&a, b"x").unwrap();
        cache.adopt(a, &md5, false).unwrap();
        assert!(cache.has(&md5, false) && fs::read_dir(object.parent().unwrap()).unwrap().count() == 1);
    }
}

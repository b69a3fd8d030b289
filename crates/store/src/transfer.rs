//! Pull and push of DVC-tracked data: concurrent, retried, verified, and never leaving a
//! partial file where a good one was.
//!
//! A download lands in a temporary file beside its place in the cache, its md5 is computed on the
//! way, and only a file whose md5 matches its name is renamed into the cache; the workspace copy
//! is made the same way. An interrupted pull therefore leaves only temporary files, and the next
//! pull picks up where it stopped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use backon::{ExponentialBuilder, Retryable};
use futures_util::{StreamExt, stream};

use engine::StatKey;

use crate::cache::{DvcCache, WorkspaceHashes};
use crate::dvc::{DirEntry, Out, object_key, parse_dir_manifest, parse_pointer};
use crate::error::StoreError;
use crate::md5::Md5;
use crate::progress::Progress;
use crate::remote::{Remote, copy_hashing_into};

/// How many transfers are in flight at once.
pub const DEFAULT_JOBS: usize = 32;

/// A repository's DVC data and the remote it is pulled from and pushed to.
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) remote: Arc<dyn Remote>,
    pub(crate) cache: DvcCache,
    pub(crate) hashes: Arc<WorkspaceHashes>,
    jobs: usize,
    tty: bool,
}

/// What a pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PullSummary {
    /// Files the pointers name.
    pub files: usize,
    /// Files already in the workspace with the right content.
    pub up_to_date: usize,
    /// Files downloaded from the remote.
    pub downloaded: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Files found in tracked directories that the pointers do not name (left in place).
    pub untracked: Vec<String>,
}

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushSummary {
    /// Objects the pointers name, manifests included.
    pub objects: usize,
    /// Objects the remote already had.
    pub present: usize,
    /// Objects uploaded.
    pub uploaded: usize,
}

/// A workspace file a pull wrote: its path, its md5, and its stat just after it was put in place
/// (none if that could not be read: the file is then hashed next time).
#[derive(Clone, Debug)]
pub(crate) struct Written {
    pub(crate) rel: String,
    pub(crate) md5: Md5,
    pub(crate) stat: Option<Placed>,
}

/// The stat of a file a pull put in place, and the modification time it was given.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placed {
    pub(crate) stat: StatKey,
    pub(crate) modified: SystemTime,
}

/// The modification time a pull gives the files it writes: a second before it started. Any
/// write to such a file afterwards, by anyone, sets a later time, so a file whose time is still
/// this one has not been written to since the pull wrote it, whatever the clock's resolution.
fn written_at(start: SystemTime) -> SystemTime {
    start.checked_sub(Duration::from_secs(1)).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// One file to materialise: where, and which content.
#[derive(Clone, Debug)]
struct Wanted {
    rel: String,
    md5: Md5,
    /// Whether the cache held the object when the workspace was looked at.
    cached: bool,
}

impl Store {
    /// A store for the repository at `root` using `remote`. `tty` turns on progress bars.
    pub fn new(root: &Path, remote: Box<dyn Remote>, tty: bool) -> Store {
        Store {
            root: root.to_path_buf(),
            remote: remote.into(),
            cache: DvcCache::new(root),
            hashes: Arc::new(WorkspaceHashes::load(root)),
            jobs: DEFAULT_JOBS,
            tty,
        }
    }

    /// The remote, for messages.
    pub fn remote(&self) -> &dyn Remote {
        &*self.remote
    }

    /// Every `.dvc` file in the repository, or the ones `targets` name (a `.dvc` file or the
    /// path it tracks), relative to the root.
    pub fn pointers(&self, targets: &[String]) -> Result<Vec<String>, StoreError> {
        if targets.is_empty() {
            return Ok(find_pointers(&self.root));
        }
        targets
            .iter()
            .map(|t| {
                let t = t.trim_end_matches('/');
                let pointer = if t.ends_with(".dvc") { t.to_string() } else { format!("{t}.dvc") };
                if self.root.join(&pointer).is_file() {
                    Ok(pointer)
                } else {
                    Err(anyhow::anyhow!("no pointer file {pointer}; track the data with `cargo xtask add {t}` first")
                        .into())
                }
            })
            .collect()
    }

    /// Reads a pointer file; its outputs' paths are made relative to the repository root.
    pub fn read_pointer(&self, pointer: &str) -> Result<Vec<Out>, StoreError> {
        let text =
            std::fs::read_to_string(self.root.join(pointer)).with_context(|| format!("cannot read {pointer}"))?;
        let mut outs = parse_pointer(pointer, &text)?;
        let base = Path::new(pointer).parent().unwrap_or(Path::new(""));
        for out in &mut outs {
            out.path = base.join(&out.path).to_string_lossy().into_owned();
        }
        Ok(outs)
    }

    /// Materialises the data of `pointers` in the workspace.
    pub async fn pull(&self, pointers: &[String]) -> Result<PullSummary, StoreError> {
        self.cache.forget_dirs();
        let written_at = written_at(SystemTime::now());
        let mut wanted = Vec::new();
        let mut dirs = Vec::new();
        for pointer in pointers {
            for out in self.read_pointer(pointer)? {
                if out.is_dir {
                    let entries = self.manifest(&out.md5).await?;
                    let names: BTreeSet<String> =
                        entries.iter().map(|e| format!("{}/{}", out.path, e.relpath)).collect();
                    wanted.extend(entries.into_iter().map(|e| Wanted {
                        rel: format!("{}/{}", out.path, e.relpath),
                        md5: e.md5,
                        cached: false,
                    }));
                    dirs.push((out.path.clone(), names));
                } else {
                    wanted.push(Wanted { rel: out.path, md5: out.md5, cached: false });
                }
            }
        }
        let mut summary = PullSummary { files: wanted.len(), ..Default::default() };
        let todo = self.not_up_to_date(wanted).await?;
        summary.up_to_date = summary.files - todo.len();
        let progress = Progress::new("pull", todo.len() as u64, self.tty);
        let results: Vec<Result<Written, StoreError>> = stream::iter(todo.iter())
            .map(|w| self.materialise(w, written_at, &progress))
            .buffer_unordered(self.jobs)
            .collect()
            .await;
        progress.finish();
        // What was just written is known: its md5 goes into the stat cache, so the next pull or
        // status reads none of it again, unless the file has changed since it was written.
        let written: Vec<Written> = results.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
        let hashes = Arc::clone(&self.hashes);
        tokio::task::spawn_blocking(move || {
            hashes.record_written(&written, written_at)?;
            hashes.save()
        })
        .await
        .map_err(anyhow::Error::from)??;
        summary.downloaded = results.iter().filter(|r| r.is_ok()).count();
        summary.bytes = progress.total_bytes();
        first_error(results)?;
        summary.untracked = dirs.iter().flat_map(|(dir, names)| self.untracked_in(dir, names)).collect();
        Ok(summary)
    }

    /// Uploads every object of `pointers` that the remote lacks: files first, manifests last,
    /// as DVC does, so a manifest on the remote always has its files.
    pub async fn push(&self, pointers: &[String]) -> Result<PushSummary, StoreError> {
        self.cache.forget_dirs();
        let mut files: Vec<(Md5, Option<String>)> = Vec::new();
        let mut manifests = Vec::new();
        for pointer in pointers {
            for out in self.read_pointer(pointer)? {
                if !out.is_dir {
                    files.push((out.md5, Some(out.path.clone())));
                    continue;
                }
                let bytes = self.cache.read_manifest(&out.md5).ok_or_else(|| {
                    anyhow::anyhow!(
                        "the manifest of {} is not in .dvc/cache; run `cargo xtask add {}` first",
                        out.path,
                        out.path
                    )
                })?;
                let entries = parse_dir_manifest(&bytes).map_err(|reason| self.bad_manifest(&out.md5, reason))?;
                files.extend(entries.into_iter().map(|e| (e.md5, Some(format!("{}/{}", out.path, e.relpath)))));
                manifests.push(out.md5);
            }
        }
        files.sort_by_key(|(m, _)| *m);
        files.dedup_by_key(|(m, _)| *m);
        let mut summary = PushSummary { objects: files.len() + manifests.len(), ..Default::default() };
        let progress = Progress::new("push", summary.objects as u64, self.tty);
        for (batch, is_dir) in [(files, false), (manifests.into_iter().map(|m| (m, None)).collect(), true)] {
            let results: Vec<Result<bool, StoreError>> = stream::iter(batch.iter())
                .map(|(md5, rel)| self.push_one(md5, is_dir, rel.as_deref(), &progress))
                .buffer_unordered(self.jobs)
                .collect()
                .await;
            summary.uploaded += results.iter().filter(|r| matches!(r, Ok(true))).count();
            summary.present += results.iter().filter(|r| matches!(r, Ok(false))).count();
            first_error(results)?;
        }
        progress.finish();
        Ok(summary)
    }

    /// The entries of the directory manifest `md5`, from the cache or the remote, verified.
    pub(crate) async fn manifest(&self, md5: &Md5) -> Result<Vec<DirEntry>, StoreError> {
        if let Some(bytes) = self.cache.read_manifest(md5) {
            return parse_dir_manifest(&bytes).map_err(|reason| self.bad_manifest(md5, reason));
        }
        let tmp = self.download(md5, true, &|_| {}).await?;
        let bytes = std::fs::read(&tmp).map_err(anyhow::Error::from)?;
        let entries = parse_dir_manifest(&bytes).map_err(|reason| self.bad_manifest(md5, reason))?;
        self.cache.adopt(tmp, md5, true)?;
        Ok(entries)
    }

    fn bad_manifest(&self, md5: &Md5, reason: String) -> StoreError {
        StoreError::BadManifest { key: object_key(md5, true), remote: self.remote.describe(), reason }
    }

    /// Downloads an object into a temporary file and checks its md5, retrying while the remote
    /// is unreachable. The file is returned only if it is exactly the object.
    async fn download(
        &self,
        md5: &Md5,
        is_dir: bool,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<tempfile::TempPath, StoreError> {
        let key = object_key(md5, is_dir);
        let tmp = self.cache.temp_path(md5, is_dir)?;
        let (actual, _) = (|| self.remote.get(&key, &tmp, progress)).retry(backoff()).when(is_transient).await?;
        if actual != *md5 {
            return Err(StoreError::Corrupt {
                key,
                remote: self.remote.describe(),
                expected: md5.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(tmp)
    }

    /// The wanted files whose workspace copy is absent or different, read through the md5 stat
    /// cache on the blocking pool (files it cannot answer for are hashed on every core), each
    /// marked with whether the cache holds its object.
    async fn not_up_to_date(&self, wanted: Vec<Wanted>) -> Result<Vec<Wanted>, StoreError> {
        let (hashes, cache) = (Arc::clone(&self.hashes), self.cache.clone());
        tokio::task::spawn_blocking(move || {
            let rels: Vec<&str> = wanted.iter().map(|w| w.rel.as_str()).collect();
            let found = hashes.md5_many(&rels)?;
            let mut todo = Vec::new();
            for (mut w, md5) in wanted.into_iter().zip(found) {
                if md5 != Some(w.md5) {
                    w.cached = cache.has(&w.md5, false);
                    todo.push(w);
                }
            }
            Ok(todo)
        })
        .await
        .map_err(anyhow::Error::from)?
    }

    /// Puts one file in the workspace: from the cache, fetching it into the cache first if needed.
    /// An object fetched now was verified on the way in and is copied out as it is (a reflink
    /// where the filesystem can); one that was already in the cache is verified as it is copied,
    /// so a cache corrupted on disk is caught. Returns what it wrote.
    async fn materialise(
        &self,
        w: &Wanted,
        written_at: SystemTime,
        progress: &Progress,
    ) -> Result<Written, StoreError> {
        // Two wanted files with the same content that the cache lacked are each fetched (the
        // pull does not group them), and each renames its own verified copy into place: either
        // copy is the object.
        let fetched = match w.cached {
            true => None,
            false => Some(self.download(&w.md5, false, &|n| progress.bytes(n)).await?),
        };
        let (root, rel, md5, cache) = (self.root.clone(), w.rel.clone(), w.md5, self.cache.clone());
        let stat = tokio::task::spawn_blocking(move || {
            let verify = match fetched {
                Some(tmp) => {
                    cache.adopt(tmp, &md5, false)?;
                    false
                }
                None => true,
            };
            checkout(&cache, &root, &rel, &md5, verify, written_at)
        })
        .await
        .map_err(anyhow::Error::from)??;
        progress.file_done();
        Ok(Written { rel: w.rel.clone(), md5: w.md5, stat })
    }

    async fn push_one(
        &self,
        md5: &Md5,
        is_dir: bool,
        rel: Option<&str>,
        progress: &Progress,
    ) -> Result<bool, StoreError> {
        let key = object_key(md5, is_dir);
        if (|| self.remote.exists(&key)).retry(backoff()).when(is_transient).await? {
            progress.file_done();
            return Ok(false);
        }
        if !is_dir && !self.cache.has(md5, false) {
            // Not cached (e.g. tracked by an older tool): take it from the workspace if it matches.
            let rel = rel.expect("files carry their workspace path");
            if self.hashes.md5(rel)? != Some(*md5) {
                return Err(anyhow::anyhow!(
                    "{rel} is neither in .dvc/cache nor unchanged in the workspace; cannot push it"
                )
                .into());
            }
            self.cache.insert_file(&self.root.join(rel), md5)?;
        }
        let src = self.cache.path(md5, is_dir);
        (|| self.remote.put(&key, &src)).retry(backoff()).when(is_transient).await?;
        progress.bytes(std::fs::metadata(&src).map_or(0, |m| m.len()));
        progress.file_done();
        Ok(true)
    }

    fn untracked_in(&self, dir: &str, names: &BTreeSet<String>) -> Vec<String> {
        walkdir::WalkDir::new(self.root.join(dir))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| e.path().strip_prefix(&self.root).ok().map(|p| p.to_string_lossy().into_owned()))
            .filter(|rel| !names.contains(rel))
            .collect()
    }
}

/// Copies a cached object into the workspace through a temporary file, checking its md5 on the
/// way when `verify` (a reflink or a plain copy otherwise, for an object verified moments ago).
/// The file is given the modification time `written_at` ([`written_at`]); returns its stat, read
/// from the file itself just after it was put in place, if that could be read.
fn checkout(
    cache: &DvcCache,
    root: &Path,
    rel: &str,
    md5: &Md5,
    verify: bool,
    written_at: SystemTime,
) -> Result<Option<Placed>, StoreError> {
    let cached = &cache.path(md5, false);
    let dest = root.join(rel);
    let dir = dest.parent().expect("workspace files have a parent");
    let dir_lock = cache.ensure_dir(dir)?;
    let changing = || dir_lock.lock().unwrap_or_else(|e| e.into_inner());
    let created = {
        let _changing = changing();
        tempfile::Builder::new().prefix(".slipway-").tempfile_in(dir)
    };
    let mut tmp = created.map_err(anyhow::Error::from)?;
    if !verify {
        // A reflink where the filesystem can, else an in-kernel copy, into the temporary file
        // already open: one new inode per checkout, none created and freed on the way.
        let mut src = std::fs::File::open(cached).map_err(anyhow::Error::from)?;
        // A reflink that fails leaves the file as it was: empty.
        if reflink_copy::reflink_file(&src, tmp.as_file()).is_err() {
            std::io::copy(&mut src, tmp.as_file_mut())
                .with_context(|| format!("cannot copy {} to {}", cached.display(), tmp.path().display()))?;
        }
    }
    tmp.as_file().set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(anyhow::Error::from)?;
    if verify {
        let src = std::fs::File::open(cached).map_err(anyhow::Error::from)?;
        let opened = src.metadata().map_err(anyhow::Error::from)?;
        let (actual, _) = copy_hashing_into(&src, tmp.as_file_mut(), &|_| {}).map_err(anyhow::Error::from)?;
        if actual != *md5 {
            // A corrupt cache object is removed, so the next pull downloads a good one; but not
            // a good copy another pull may have renamed over it since it was opened (the file
            // read is still open, so its inode cannot be reused meanwhile).
            use std::os::unix::fs::MetadataExt;
            let same = |m: std::fs::Metadata| m.ino() == opened.ino() && m.dev() == opened.dev();
            if std::fs::symlink_metadata(cached).is_ok_and(same) {
                let _ = std::fs::remove_file(cached);
            }
            let key = object_key(md5, false);
            return Err(StoreError::Corrupt {
                key,
                remote: ".dvc/cache".into(),
                expected: md5.to_hex(),
                actual: actual.to_hex(),
            });
        }
    }
    tmp.as_file().set_modified(written_at).with_context(|| format!("cannot set the time of {rel}"))?;
    let placed = {
        let _changing = changing();
        tmp.persist(&dest).map_err(|e| anyhow::anyhow!("cannot write {rel}: {}", e.error))?
    };
    // The rename changed its ctime: the stat that counts is the one after it. The file is in
    // place and good either way; without its stat it is only hashed again next time.
    let meta = placed.metadata().ok();
    Ok(meta.and_then(|m| Some(Placed { stat: StatKey::of(&m), modified: m.modified().ok()? })))
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(3))
        .with_max_times(4)
}

fn is_transient(e: &StoreError) -> bool {
    matches!(e, StoreError::Unreachable { .. })
}

/// The error to report of many: a corrupt object first, since it explains others (files of the
/// same content find its cache object removed), else the first.
fn first_error<T>(results: Vec<Result<T, StoreError>>) -> Result<(), StoreError> {
    let mut errors: Vec<StoreError> = results.into_iter().filter_map(Result::err).collect();
    match errors.iter().position(|e| matches!(e, StoreError::Corrupt { .. })) {
        Some(i) => Err(errors.swap_remove(i)),
        None => errors.into_iter().next().map_or(Ok(()), Err),
    }
}

/// Every `*.dvc` file under `root`, skipping version control, build output, Slipway's state and
/// other projects (directories with a `slipway.toml` of their own).
pub fn find_pointers(root: &Path) -> Vec<String> {
    let skip = [".git", ".dvc", "target", ".slipway", "node_modules"];
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            // A directory with a slipway.toml of its own is another project, with its own data.
            let other_project = e.file_type().is_dir() && e.path().join("slipway.toml").is_file();
            e.depth() == 0 || !(skip.contains(&e.file_name().to_string_lossy().as_ref()) || other_project)
        })
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name().to_string_lossy().ends_with(".dvc"))
        .filter_map(|e| e.path().strip_prefix(root).ok().map(|p| p.to_string_lossy().into_owned()))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod pointer_tests {
    #[test]
    fn pointers_of_other_projects_are_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        };
        for rel in ["data.dvc", "more/extra.dvc", "examples/tab/data.dvc", "examples/tab/slipway.toml", "target/x.dvc"]
        {
            write(rel);
        }
        write("slipway.toml");
        assert_eq!(super::find_pointers(dir.path()), ["data.dvc", "more/extra.dvc"]);
        assert_eq!(super::find_pointers(&dir.path().join("examples/tab")), ["data.dvc"]);
    }
}

#[cfg(test)]
mod checkout_tests {
    use super::*;

    /// A checkout is dated as the pull dates what it writes, and the stat it returns is the
    /// workspace file's own, which is what lets the stat cache record it unread.
    #[test]
    fn a_checkout_returns_the_stat_of_the_file_in_place_dated_before_the_pull() {
        let root = tempfile::tempdir().unwrap();
        let cache = DvcCache::new(root.path());
        let bytes = b"text,label\nhello,1\n";
        let md5 = Md5::of(bytes);
        let tmp = cache.temp_path(&md5, false).unwrap();
        std::fs::write(&tmp, bytes).unwrap();
        cache.adopt(tmp, &md5, false).unwrap();
        let written_at = written_at(SystemTime::now());
        for (rel, verify) in [("data/fresh.csv", false), ("data/sub/verified.csv", true)] {
            let placed = checkout(&cache, root.path(), rel, &md5, verify, written_at).unwrap().unwrap();
            let meta = std::fs::symlink_metadata(root.path().join(rel)).unwrap();
            assert_eq!(placed.stat, StatKey::of(&meta), "{rel}");
            assert_eq!(std::fs::read(root.path().join(rel)).unwrap(), bytes, "{rel}");
            let modified = meta.modified().unwrap();
            assert!(modified <= written_at && modified > written_at - Duration::from_secs(2), "{rel}: {modified:?}");
            assert_eq!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777, 0o644, "{rel}");
        }
    }
}

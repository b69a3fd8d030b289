//! Hashing what declared paths hold (see `walk.rs` for which files that is), in parallel,
//! through the stat cache.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cache_key::{CacheKey, Digest, KeyHasher};
use crate::stat_cache::{StatCache, StatKey};
use crate::walk::{Filter, IgnoreFiles, walk};

/// What a path in a manifest is. The executable bit is part of a file's identity: a script
/// that lost it behaves differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file without any execute bit.
    File,
    /// A regular file with at least one execute bit.
    Executable,
    /// A symbolic link; its digest is that of the target path, which is not followed.
    Symlink,
    /// A declared path that does not exist. Its absence is an input too.
    Missing,
}

/// One file of a manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the workspace root, `/`-separated.
    pub path: String,
    /// See [`EntryKind`].
    pub kind: EntryKind,
    /// Bytes; 0 for symlinks and missing paths.
    pub size: u64,
    /// BLAKE3 of the contents (or of the link target).
    pub digest: Digest,
}

impl CacheKey for FileEntry {
    fn cache_key(&self, h: &mut KeyHasher) {
        let kind = match self.kind {
            EntryKind::File => 0,
            EntryKind::Executable => 1,
            EntryKind::Symlink => 2,
            EntryKind::Missing => 3,
        };
        h.str(&self.path).tag(kind).u64(self.size).key(&self.digest);
    }
}

/// Glob patterns of paths that are never inputs or outputs. A pattern without `/` matches a
/// name anywhere in the tree (as in `.gitignore`): `target` skips every `target` directory.
#[derive(Clone, Debug)]
pub struct Ignore {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Ignore {
    /// Compiles `patterns`.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Ignore> {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            let p = p.as_ref();
            builder.add(Glob::new(p).with_context(|| format!("bad ignore pattern `{p}`"))?);
            if !p.contains('/') {
                builder.add(Glob::new(&format!("**/{p}"))?);
            }
        }
        let patterns = patterns.iter().map(|p| p.as_ref().to_string()).collect();
        Ok(Ignore { patterns, set: builder.build()? })
    }

    /// The patterns as given, for cache keys and messages.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the relative path `rel` is ignored.
    pub fn is_match(&self, rel: &str) -> bool {
        self.set.is_match(rel)
    }
}

/// Hashes trees under one root, reusing digests from the stat cache.
pub struct TreeHasher<'a> {
    root: &'a Path,
    stat: &'a Mutex<StatCache>,
    progress: &'a (dyn Fn(u64) + Sync),
}

struct Found {
    rel: String,
    kind: EntryKind,
    stat: StatKey,
    size: u64,
}

impl<'a> TreeHasher<'a> {
    /// A hasher that reports every hashed byte count to `progress`.
    pub fn new(root: &'a Path, stat: &'a Mutex<StatCache>, progress: &'a (dyn Fn(u64) + Sync)) -> Self {
        TreeHasher { root, stat, progress }
    }

    /// The manifest of `paths` (files or directories relative to the root), sorted by path. A
    /// declared path that does not exist is recorded as [`EntryKind::Missing`].
    pub fn manifest(&self, paths: &[String], filter: &Filter<'_>) -> Result<Vec<FileEntry>> {
        // Absolute, so that no path relative to the root can look like an ignore file's own
        // directory (see `walk::verdict`).
        let root = std::path::absolute(self.root).with_context(|| format!("cannot resolve {}", self.root.display()))?;
        let ignores = IgnoreFiles::new(&root);
        let mut found = Vec::new();
        let mut entries = Vec::new();
        for p in paths {
            match walk(&root, p, filter, &ignores)? {
                None => entries.push(missing(p)),
                Some(files) => found.extend(files.into_iter().map(|w| Found::new(w.rel, &w.meta))),
            }
        }
        entries.extend(self.hash(found)?);
        // Stable: where declared paths overlap, the entry of the first one declared is kept.
        entries.par_sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        Ok(entries)
    }

    /// Digests for `found`: from the stat cache where it still holds, hashed in parallel otherwise.
    fn hash(&self, found: Vec<Found>) -> Result<Vec<FileEntry>> {
        let (cached, clock) = {
            let stat = self.stat.lock().unwrap_or_else(|e| e.into_inner());
            let lookup = |f: &Found| stat.get(&f.rel, &f.stat);
            // In parallel while the lock is held, but never from inside the pool: a worker that
            // waited here could take up a job that wants this same lock.
            let cached: Vec<Option<Digest>> = match rayon::current_thread_index() {
                None => found.par_iter().map(lookup).collect(),
                Some(_) => found.iter().map(lookup).collect(),
            };
            // The clock costs a file write: read it only when something will be hashed.
            let clock = match cached.iter().any(Option::is_none) {
                true => Some(stat.clock().context("cannot read the filesystem clock under .slipway")?),
                false => None,
            };
            (cached, clock)
        };
        // A freshly hashed entry carries the stat taken by the walk, *before* the file was
        // read: that is the one the stat cache may store (see `StatCache::insert`).
        let hashed: Vec<Result<(FileEntry, Option<StatKey>)>> = found
            .into_par_iter()
            .zip(cached)
            .map(|(f, cached)| match cached {
                Some(digest) => Ok((f.into_entry(digest), None)),
                None => self.hash_one(&f).map(|d| (f.stat, f.into_entry(d))).map(|(s, e)| (e, Some(s))),
            })
            .collect();
        let mut stat = self.stat.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(hashed.len());
        for item in hashed {
            let (entry, fresh) = item?;
            if let (Some(before), Some(clock)) = (fresh, clock) {
                stat.insert(&entry.path, before, entry.digest, clock);
            }
            out.push(entry);
        }
        Ok(out)
    }

    fn hash_one(&self, f: &Found) -> Result<Digest> {
        let path = self.root.join(&f.rel);
        if f.kind == EntryKind::Symlink {
            let target = fs::read_link(&path).with_context(|| format!("cannot read link `{}`", f.rel))?;
            return Ok(Digest::of(target.as_os_str().as_encoded_bytes()));
        }
        let file = File::open(&path).with_context(|| format!("cannot open `{}`", f.rel))?;
        hash_reader(file, self.progress).with_context(|| format!("cannot read `{}`", f.rel))
    }
}

impl Found {
    fn new(rel: String, meta: &fs::Metadata) -> Found {
        let kind = if meta.file_type().is_symlink() {
            EntryKind::Symlink
        } else if meta.permissions().mode() & 0o111 != 0 {
            EntryKind::Executable
        } else {
            EntryKind::File
        };
        let size = if kind == EntryKind::Symlink { 0 } else { meta.len() };
        Found { rel, kind, stat: StatKey::of(meta), size }
    }

    fn into_entry(self, digest: Digest) -> FileEntry {
        FileEntry { path: self.rel, kind: self.kind, size: self.size, digest }
    }
}

fn missing(rel: &str) -> FileEntry {
    FileEntry { path: rel.to_string(), kind: EntryKind::Missing, size: 0, digest: Digest::of(b"") }
}

/// BLAKE3 of everything `reader` yields, reporting progress per buffer. Large buffers are hashed
/// with BLAKE3's own parallelism, so one big file still uses every core.
pub fn hash_reader(mut reader: impl Read, progress: &(dyn Fn(u64) + Sync)) -> io::Result<Digest> {
    thread_local! {
        // One buffer per thread: zeroing a fresh 1 MiB buffer per file was 40% of a cold pass.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 1 << 20]);
    }
    BUF.with_borrow_mut(|buf| hash_with(&mut reader, buf, progress))
}

fn hash_with(reader: &mut impl Read, buf: &mut [u8], progress: &(dyn Fn(u64) + Sync)) -> io::Result<Digest> {
    let mut hasher = blake3::Hasher::new();
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n >= 256 * 1024 {
            hasher.update_rayon(&buf[..n]);
        } else {
            hasher.update(&buf[..n]);
        }
        progress(n as u64);
    }
    Ok(Digest(*hasher.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root given relative to the working directory walks as the same root given absolute:
    /// `src/.gitignore`'s anchored `/main.rs` is `src/main.rs`, never `src/src/main.rs`.
    #[test]
    fn a_relative_root_sees_ignore_files_as_an_absolute_one_does() {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in [("src/.gitignore", "/main.rs\n"), ("src/main.rs", ""), ("src/src/main.rs", "")] {
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        let cwd = std::env::current_dir().unwrap();
        let up: std::path::PathBuf = cwd.components().skip(1).map(|_| "..").collect();
        let relative = up.join(dir.path().strip_prefix("/").unwrap());
        assert!(relative.is_relative() && relative.join("src/main.rs").is_file());
        let ignore = Ignore::new(&["target"]).unwrap();
        let stat = Mutex::new(StatCache::load(&dir.path().join("stat.bin")));
        for root in [dir.path(), relative.as_path()] {
            let hasher = TreeHasher::new(root, &stat, &|_| {});
            let files = hasher.manifest(&["src".to_string()], &Filter::new(&ignore)).unwrap();
            let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
            assert_eq!(paths, ["src/.gitignore", "src/src/main.rs"], "root {}", root.display());
        }
    }
}

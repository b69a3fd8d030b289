//! Which files a declared path holds: a walk that honours `.gitignore` and `.dvcignore` files the
//! way git does, Slipway's own ignore list, and the paths a pipeline excludes from a stage's
//! inputs (its own outputs, and outputs it is already keyed on through an upstream stage).
//!
//! Ignore files are read from the workspace root down to each declared path and inside it; a
//! pattern in a deeper file wins over a shallower one, the last matching line of a file wins,
//! and nothing under an ignored directory is looked at (git cannot re-include such a file either).
//! A path that is declared explicitly is always walked, even if an ignore file names it: a
//! stage that says it reads `data/` reads it, whatever `.gitignore` says about `data/` itself.
//! Global and per-clone excludes (`core.excludesFile`, `.git/info/exclude`) are not read, so two
//! machines with the same tree see the same inputs.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use rayon::prelude::*;

use crate::fsutil::relative_utf8;
use crate::tree::Ignore;

/// The ignore files read in every directory, in rising precedence.
pub const IGNORE_FILES: &[&str] = &[".dvcignore", ".gitignore"];

/// A file found by a walk, with the `lstat` metadata the walk took.
pub struct Walked {
    /// Relative to the root, `/`-separated.
    pub rel: String,
    /// From `symlink_metadata`: links are never followed.
    pub meta: fs::Metadata,
}

/// What a walk leaves out.
pub struct Filter<'a> {
    /// Slipway's own patterns (`target`, `.slipway`, tool caches).
    pub ignore: &'a Ignore,
    /// Relative paths whose whole subtree is skipped.
    pub excluded: &'a [String],
}

impl<'a> Filter<'a> {
    /// A filter with Slipway's patterns `ignore` and nothing excluded.
    pub fn new(ignore: &'a Ignore) -> Filter<'a> {
        Filter { ignore, excluded: &[] }
    }

    /// Whether `rel` is one of the excluded paths or lies under one.
    pub fn excludes(&self, rel: &str) -> bool {
        self.excluded.iter().any(|x| is_within(rel, x))
    }
}

/// Whether `path` is `base` or lies under it, comparing whole components.
pub fn is_within(path: &str, base: &str) -> bool {
    path == base || (path.starts_with(base) && path.as_bytes().get(base.len()) == Some(&b'/'))
}

/// Whether two relative paths overlap: one is the other or lies under it.
pub fn overlaps(a: &str, b: &str) -> bool {
    is_within(a, b) || is_within(b, a)
}

/// The ignore files of each directory, read once per walk.
pub struct IgnoreFiles {
    root: PathBuf,
    by_dir: Mutex<HashMap<PathBuf, Option<std::sync::Arc<Gitignore>>>>,
}

impl IgnoreFiles {
    /// Ignore files under `root` (and none above it).
    pub fn new(root: &Path) -> IgnoreFiles {
        IgnoreFiles { root: root.to_path_buf(), by_dir: Mutex::new(HashMap::new()) }
    }

    /// The matcher of the ignore files in `dir`, if it has any.
    fn of(&self, dir: &Path) -> Result<Option<std::sync::Arc<Gitignore>>> {
        if let Some(known) = self.by_dir.lock().unwrap_or_else(|e| e.into_inner()).get(dir) {
            return Ok(known.clone());
        }
        let mut builder = GitignoreBuilder::new(dir);
        let mut any = false;
        for name in IGNORE_FILES {
            let file = dir.join(name);
            if file.is_file() {
                any = true;
                if let Some(e) = builder.add(&file) {
                    return Err(anyhow::anyhow!("{e}")).with_context(|| format!("cannot read {}", file.display()));
                }
            }
        }
        let matcher = match any {
            true => Some(std::sync::Arc::new(
                builder.build().with_context(|| format!("bad patterns in {}", dir.display()))?,
            )),
            false => None,
        };
        self.by_dir.lock().unwrap_or_else(|e| e.into_inner()).insert(dir.to_path_buf(), matcher.clone());
        Ok(matcher)
    }

    /// The matchers that apply to entries of `dir`: its own ignore files' and those of every
    /// directory above it up to the root, deepest first, each with the length of its
    /// directory's path relative to the root, `/` included (0 for the root itself).
    fn chain(&self, dir: &Path) -> Result<Vec<(std::sync::Arc<Gitignore>, usize)>> {
        let mut chain = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at.filter(|d| d.starts_with(&self.root)) {
            if let Some(matcher) = self.of(d)? {
                let prefix = relative_utf8(&self.root, d)?;
                chain.push((matcher, if prefix.is_empty() || prefix == "." { 0 } else { prefix.len() + 1 }));
            }
            at = d.parent();
        }
        Ok(chain)
    }
}

/// Whether `chain` (deepest first) ignores `rel`, a path relative to the root: the deepest
/// matcher with an opinion decides, given the path relative to its own directory. The root
/// must be absolute: a matcher strips its own directory from a path that starts with it, and a
/// relative one (`src`) would take `src/src/main.rs` for `main.rs`.
fn verdict(chain: &[(std::sync::Arc<Gitignore>, usize)], rel: &str, is_dir: bool) -> bool {
    for (m, prefix) in chain {
        let verdict = m.matched(Path::new(rel.get(*prefix..).unwrap_or(rel)), is_dir);
        if verdict.is_ignore() {
            return true;
        }
        if verdict.is_whitelist() {
            return false;
        }
    }
    false
}

/// Every file under the declared path `rel` (or `rel` itself if it is a file), not following
/// links. `None` if `rel` does not exist.
/// `root` must be absolute.
pub fn walk(root: &Path, rel: &str, filter: &Filter<'_>, ignores: &IgnoreFiles) -> Result<Option<Vec<Walked>>> {
    let top = root.join(rel);
    let meta = match fs::symlink_metadata(&top) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{rel}`")),
        Ok(meta) => meta,
    };
    if !meta.is_dir() {
        return Ok(Some(vec![Walked { rel: rel.to_string(), meta }]));
    }
    // The top directory's own entries here; each of its subdirectories is walked on a thread
    // of its own. Not sorted: the manifest is sorted once, whole.
    let top_rel = relative_utf8(root, &top)?;
    let (mut found, mut subdirs) = (Vec::new(), Vec::new());
    read_admitted(&top, &top_rel, filter, ignores, &mut found, &mut subdirs)?;
    let subtrees: Vec<Result<Vec<Walked>>> =
        subdirs.par_iter().map(|(dir, dir_rel)| walk_tree(dir, dir_rel, filter, ignores)).collect();
    for subtree in subtrees {
        found.extend(subtree?);
    }
    Ok(Some(found))
}

/// The admitted entries of the directory `dir` (relative path `dir_rel`): files into `found`
/// with their `lstat`, directories into `subdirs` to walk next.
///
/// Metadata comes from `DirEntry::metadata`, an `fstatat` relative to the open directory: a
/// `stat` of the full path made the kernel resolve every component of it again, a third of
/// what `status` on 10,000 files spent in the kernel.
fn read_admitted(
    dir: &Path,
    dir_rel: &str,
    filter: &Filter<'_>,
    ignores: &IgnoreFiles,
    found: &mut Vec<Walked>,
    subdirs: &mut Vec<(PathBuf, String)>,
) -> Result<()> {
    let chain = ignores.chain(dir)?;
    for entry in fs::read_dir(dir).with_context(|| format!("cannot walk `{dir_rel}`"))? {
        let entry = entry.with_context(|| format!("cannot walk `{dir_rel}`"))?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("path is not valid UTF-8: {}", Path::new(dir_rel).join(&name).display()))?;
        // The workspace root itself is declared as `.`, whose relative path is empty.
        let rel = if dir_rel.is_empty() || dir_rel == "." { name.to_string() } else { format!("{dir_rel}/{name}") };
        let kind = entry.file_type().with_context(|| format!("cannot stat `{rel}`"))?;
        if filter.ignore.is_match(&rel) || filter.excludes(&rel) {
            continue;
        }
        if verdict(&chain, &rel, kind.is_dir()) {
            continue;
        }
        if kind.is_dir() {
            subdirs.push((entry.path(), rel));
        } else {
            let meta = entry.metadata().with_context(|| format!("cannot stat `{rel}`"))?;
            found.push(Walked { rel, meta });
        }
    }
    Ok(())
}

/// Every file under the directory `top` (relative path `top_rel`), which is already admitted:
/// entries are checked against the filter and the ignore files, depth first. Links are never
/// followed: a link to a directory is a file of the tree.
fn walk_tree(top: &Path, top_rel: &str, filter: &Filter<'_>, ignores: &IgnoreFiles) -> Result<Vec<Walked>> {
    let mut found = Vec::new();
    let mut todo = vec![(top.to_path_buf(), top_rel.to_string())];
    while let Some((dir, dir_rel)) = todo.pop() {
        read_admitted(&dir, &dir_rel, filter, ignores, &mut found, &mut todo)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let path = dir.path().join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    fn check(files: &[(&str, &str)], declared: &str, excluded: &[&str], expect: &[&str]) {
        let dir = tree(files);
        let ignore = Ignore::new(&["target", "__pycache__"]).unwrap();
        let excluded: Vec<String> = excluded.iter().map(|s| s.to_string()).collect();
        let filter = Filter { ignore: &ignore, excluded: &excluded };
        let found = walk(dir.path(), declared, &filter, &IgnoreFiles::new(dir.path())).unwrap().unwrap_or_default();
        let mut rels: Vec<String> = found.into_iter().map(|w| w.rel).collect();
        rels.sort();
        assert_eq!(rels, expect);
    }

    #[test]
    fn gitignore_files_at_every_level_apply() {
        let files = [
            (".gitignore", "/training/.ruff_cache\n*.log\n"),
            ("training/train.py", ""),
            ("training/run.log", ""),
            ("training/.ruff_cache/x", ""),
            ("training/.pytest_cache/.gitignore", "*\n"),
            ("training/.pytest_cache/v/cache", ""),
            ("training/sub/.gitignore", "!keep.log\n"),
            ("training/sub/keep.log", ""),
            ("training/__pycache__/m.pyc", ""),
        ];
        check(&files, "training", &[], &["training/sub/.gitignore", "training/sub/keep.log", "training/train.py"]);
    }

    #[test]
    fn a_declared_path_is_walked_even_if_ignored_and_exclusions_win() {
        let files = [(".gitignore", "/data\n"), ("data/a.csv", ""), ("data/b/c.csv", ""), ("data/out/x", "")];
        check(&files, "data", &["data/out"], &["data/a.csv", "data/b/c.csv"]);
        check(&files, "data/a.csv", &[], &["data/a.csv"]);
    }

    #[test]
    fn nothing_under_an_ignored_directory_comes_back() {
        let files = [(".gitignore", "build/\n!build/keep\n"), ("src/build/keep", ""), ("src/main.rs", "")];
        check(&files, "src", &[], &["src/main.rs"]);
    }

    #[test]
    fn the_root_declared_as_dot_gives_plain_relative_paths() {
        let files =
            [(".gitignore", "*.log\n"), ("src/lib.rs", ""), ("tests/t.rs", ""), ("run.log", ""), ("Cargo.toml", "")];
        check(&files, ".", &["tests"], &[".gitignore", "Cargo.toml", "src/lib.rs"]);
    }

    #[test]
    fn dvcignore_counts_too() {
        check(&[(".dvcignore", "*.tmp\n"), ("d/a.tmp", ""), ("d/b", "")], "d", &[], &["d/b"]);
    }

    #[test]
    fn within_compares_whole_components() {
        assert!(is_within("data/a", "data") && is_within("data", "data"));
        assert!(!is_within("database", "data"));
        assert!(overlaps("data", "data/x") && !overlaps("models", "model"));
    }
}

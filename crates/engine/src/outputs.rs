//! Moving a stage's owned outputs between the workspace and the step cache: storing them after a
//! run, restoring them on a hit, and keeping the previous outputs safe while a stage runs.
//!
//! The workspace never sees a partial output from Slipway: restored files are assembled in a
//! staging directory under `.slipway/tmp` and each declared output is swapped in by a rename.
//! Nothing Slipway did not write is ever deleted: a file found in an output that the stage's
//! last record does not name (a note a person left in `models/`) is moved to
//! `.slipway/lost+found/STAGE/TIME/` and reported.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cache_key::Digest;
use crate::store::StepStore;
use crate::tree::{EntryKind, FileEntry, hash_reader};
use crate::workspace::Workspace;

/// Where files found in outputs that Slipway did not write are kept, under the state directory.
pub const LOST_AND_FOUND: &str = "lost+found";

/// Copies every output file into the store. Outputs must be regular files.
pub fn store_outputs(ws: &Workspace, outputs: &[FileEntry]) -> Result<()> {
    for entry in outputs {
        match entry.kind {
            EntryKind::File | EntryKind::Executable => {}
            EntryKind::Symlink => bail!("output `{}` is a symbolic link; outputs must be regular files", entry.path),
            EntryKind::Missing => bail!("the stage did not write its declared output `{}`", entry.path),
        }
        let src = ws.root().join(&entry.path);
        ws.store().put_object(&entry.digest, &src).with_context(|| format!("cannot cache output `{}`", entry.path))?;
    }
    Ok(())
}

/// Replaces the declared `outputs` of `stage` in the workspace with the recorded files. `known`
/// is what Slipway last put there; anything else found there goes to lost+found. Returns a
/// line per file moved there.
pub fn restore_outputs(
    ws: &Workspace,
    stage: &str,
    declared: &[String],
    recorded: &[FileEntry],
    known: &[FileEntry],
) -> Result<Vec<String>> {
    let staging = scratch_dir(ws, "restore")?;
    for entry in recorded {
        // Checked by the runner already; a path outside the outputs is never written here.
        let inside = declared.iter().any(|d| crate::walk::is_within(&entry.path, d));
        if !crate::record::is_plain_relative(&entry.path) || !inside {
            bail!("refusing to restore `{}`: not inside the stage's outputs", entry.path.escape_debug());
        }
        let dest = staging.path().join(&entry.path);
        fs::create_dir_all(dest.parent().expect("an output path has a parent"))?;
        fetch(ws.store(), entry, &dest).with_context(|| format!("cannot restore `{}`", entry.path))?;
    }
    let previous = Stash::take(ws, declared)?;
    for path in declared {
        let staged = staging.path().join(path);
        let target = ws.root().join(path);
        if staged.exists() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&staged, &target).with_context(|| format!("cannot put `{path}` in place"))?;
        }
    }
    previous.settle(ws, stage, known)
}

fn fetch(store: &dyn StepStore, entry: &FileEntry, dest: &Path) -> Result<()> {
    store.fetch_object(&entry.digest, dest)?;
    let mode = if entry.kind == EntryKind::Executable { 0o755 } else { 0o644 };
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The previous outputs of a stage, moved aside while it runs so that a failed run leaves them
/// exactly as they were and a successful one starts from a clean slate.
pub struct Stash {
    dir: tempfile::TempDir,
    moved: Vec<String>,
    root: PathBuf,
}

impl Stash {
    /// Moves every existing declared output into a scratch directory.
    pub fn take(ws: &Workspace, declared: &[String]) -> Result<Stash> {
        let dir = scratch_dir(ws, "stash")?;
        let mut moved = Vec::new();
        for path in declared {
            let src = ws.root().join(path);
            if fs::symlink_metadata(&src).is_ok() {
                let dest = dir.path().join(path);
                fs::create_dir_all(dest.parent().expect("an output path has a parent"))?;
                fs::rename(&src, &dest).with_context(|| format!("cannot move the previous `{path}` aside"))?;
                moved.push(path.clone());
            }
        }
        Ok(Stash { dir, moved, root: ws.root().to_path_buf() })
    }

    /// Puts the previous outputs back, discarding whatever the failed run wrote in their place.
    pub fn put_back(self, declared: &[String]) -> Result<()> {
        for path in declared {
            remove_path(&self.root.join(path))?;
        }
        for path in &self.moved {
            fs::rename(self.dir.path().join(path), self.root.join(path))
                .with_context(|| format!("cannot put the previous `{path}` back"))?;
        }
        Ok(())
    }

    /// Drops the previous outputs, keeping every file that is not one `known` names (path and
    /// content): those go to lost+found. Returns a line per kept file.
    pub fn settle(self, ws: &Workspace, stage: &str, known: &[FileEntry]) -> Result<Vec<String>> {
        let mut kept = Vec::new();
        let mut home: Option<PathBuf> = None;
        for path in &self.moved {
            for entry in walkdir::WalkDir::new(self.dir.path().join(path)).follow_links(false) {
                let entry = entry?;
                if entry.file_type().is_dir() {
                    continue;
                }
                let rel = entry.path().strip_prefix(self.dir.path()).expect("inside the stash");
                let rel = rel.to_string_lossy().into_owned();
                if is_known(entry.path(), &rel, known)? {
                    continue;
                }
                let dir = match &home {
                    Some(d) => d.clone(),
                    None => home.insert(lost_and_found(ws, stage)).clone(),
                };
                let dest = dir.join(&rel);
                fs::create_dir_all(dest.parent().expect("a file has a parent"))?;
                fs::rename(entry.path(), &dest)
                    .with_context(|| format!("cannot keep `{rel}` in {}", dest.display()))?;
                kept.push(format!("`{rel}` was not written by Slipway; it is kept in {}", dest.display()));
            }
        }
        Ok(kept)
    }
}

/// Whether the file at `abs` is the one `known` names for `rel`.
fn is_known(abs: &Path, rel: &str, known: &[FileEntry]) -> Result<bool> {
    let Some(entry) = known.iter().find(|e| e.path == rel) else { return Ok(false) };
    let meta = fs::symlink_metadata(abs)?;
    let digest = if meta.file_type().is_symlink() {
        Digest::of(fs::read_link(abs)?.as_os_str().as_encoded_bytes())
    } else {
        if meta.len() != entry.size {
            return Ok(false);
        }
        hash_reader(fs::File::open(abs)?, &|_| {})?
    };
    Ok(digest == entry.digest)
}

fn lost_and_found(ws: &Workspace, stage: &str) -> PathBuf {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let base = ws.state_path(LOST_AND_FOUND).join(stage);
    let mut dir = base.join(now.as_secs().to_string());
    let mut n = 1;
    while dir.exists() {
        dir = base.join(format!("{}-{n}", now.as_secs()));
        n += 1;
    }
    dir
}

fn scratch_dir(ws: &Workspace, what: &str) -> Result<tempfile::TempDir> {
    let tmp = ws.state_path("tmp");
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    Ok(tempfile::Builder::new().prefix(&format!("{what}-")).tempdir_in(&tmp)?)
}

fn remove_path(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    }
}

//! Moving a stage's outputs between the workspace and the step cache: storing them after a
//! run, restoring them on a hit, and keeping the previous outputs safe while a stage runs.
//!
//! The workspace never sees a partial output from Slipway: restored files are assembled in a
//! staging directory under `.slipway/tmp` and each declared output is swapped in by a rename.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::store::StepStore;
use crate::tree::{EntryKind, FileEntry};
use crate::workspace::Workspace;

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

/// Replaces the declared `outputs` in the workspace with the recorded files.
pub fn restore_outputs(ws: &Workspace, declared: &[String], recorded: &[FileEntry]) -> Result<()> {
    let staging = scratch_dir(ws, "restore")?;
    for entry in recorded {
        let dest = staging.path().join(&entry.path);
        fs::create_dir_all(dest.parent().expect("an output path has a parent"))?;
        fetch(ws.store(), entry, &dest).with_context(|| format!("cannot restore `{}`", entry.path))?;
    }
    for path in declared {
        let staged = staging.path().join(path);
        let target = ws.root().join(path);
        remove_path(&target)?;
        if staged.exists() {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&staged, &target).with_context(|| format!("cannot put `{path}` in place"))?;
        }
    }
    Ok(())
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

//! `add`: hash a file or directory into the DVC cache and write its `.dvc` pointer, as `dvc add`
//! does; and `import_dir`, which fills a remote from a directory whose content is already named
//! by a pointer (how the demo data is rebuilt on a fresh machine).

use std::fs;
use std::path::Path;

use anyhow::Context;
use futures_util::{StreamExt, stream};

use crate::dvc::{DirEntry, Out, object_key, write_dir_manifest, write_pointer};
use crate::error::StoreError;
use crate::md5::{Md5, md5_reader};
use crate::transfer::Store;

impl Store {
    /// Tracks `path` (relative to the root): caches its content and writes `path.dvc`.
    pub fn add(&self, path: &str) -> Result<Out, StoreError> {
        let path = path.trim_end_matches('/');
        let abs = self.root.join(path);
        let meta = fs::metadata(&abs).with_context(|| format!("cannot add {path}: it does not exist"))?;
        let name =
            Path::new(path).file_name().context("cannot add the repository root")?.to_string_lossy().into_owned();
        let out = if meta.is_dir() {
            let entries = self.hash_dir(path)?;
            for e in &entries {
                self.cache.insert_file(&abs.join(&e.relpath), &e.md5)?;
            }
            let size = entries.iter().map(|e| fs::metadata(abs.join(&e.relpath)).map_or(0, |m| m.len())).sum();
            let bytes = write_dir_manifest(&entries);
            let md5 = Md5::of(&bytes);
            self.cache.insert_manifest(&bytes, &md5)?;
            Out { path: name.clone(), md5, is_dir: true, size: Some(size), nfiles: Some(entries.len() as u64) }
        } else {
            let md5 = self.hashes.md5(path)?.context("the file vanished while it was added")?;
            self.cache.insert_file(&abs, &md5)?;
            Out { path: name.clone(), md5, is_dir: false, size: Some(meta.len()), nfiles: None }
        };
        self.hashes.save()?;
        let pointer = format!("{path}.dvc");
        engine::write_atomic(&self.root.join(&pointer), write_pointer(&out).as_bytes())
            .with_context(|| format!("cannot write {pointer}"))?;
        ignore_in_git(&abs, &name)?;
        Ok(out)
    }

    /// The manifest entries of the directory `dir` (relative to the root), hashed through the
    /// workspace stat cache, several files at once.
    fn hash_dir(&self, dir: &str) -> Result<Vec<DirEntry>, StoreError> {
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(self.root.join(dir)).sort_by_file_name() {
            let entry = entry.with_context(|| format!("cannot walk {dir}"))?;
            if entry.file_type().is_dir() {
                continue;
            }
            let rel_to_root = entry.path().strip_prefix(&self.root).expect("walked under the root");
            let rel_to_root =
                rel_to_root.to_str().with_context(|| format!("{} is not valid UTF-8", rel_to_root.display()))?;
            if !entry.file_type().is_file() {
                return Err(anyhow::anyhow!(
                    "{rel_to_root} is not a regular file; data directories may hold only files"
                )
                .into());
            }
            files.push(rel_to_root.to_string());
        }
        let rels: Vec<&str> = files.iter().map(String::as_str).collect();
        let md5s = self.hashes.md5_many(&rels)?;
        let entries = files.iter().zip(md5s).map(|(rel_to_root, md5)| {
            let md5 = md5.with_context(|| format!("{rel_to_root} vanished while it was hashed"))?;
            Ok(DirEntry { relpath: rel_to_root[dir.len() + 1..].to_string(), md5 })
        });
        entries.collect()
    }

    /// Uploads the content of the directory `src` as the directory output `expected`, after
    /// checking that `src` is exactly what `expected` names. Returns how many objects were sent.
    pub async fn import_dir(&self, src: &Path, expected: &Out) -> Result<usize, StoreError> {
        let mut entries = Vec::new();
        for entry in walkdir::WalkDir::new(src).sort_by_file_name() {
            let entry = entry.map_err(anyhow::Error::from)?;
            if entry.file_type().is_file() {
                let rel = entry.path().strip_prefix(src).expect("walked under src").to_string_lossy().into_owned();
                let (md5, _) = md5_reader(fs::File::open(entry.path()).map_err(anyhow::Error::from)?)
                    .map_err(anyhow::Error::from)?;
                entries.push(DirEntry { relpath: rel, md5 });
            }
        }
        let manifest = write_dir_manifest(&entries);
        let actual = Md5::of(&manifest);
        if actual != expected.md5 {
            return Err(anyhow::anyhow!(
                "the rebuilt {} does not match its pointer: manifest md5 {actual}, expected {}",
                expected.path,
                expected.md5
            )
            .into());
        }
        let uploads: Vec<Result<(), StoreError>> = stream::iter(entries.iter())
            .map(|e| async move { self.remote.put(&object_key(&e.md5, false), &src.join(&e.relpath)).await })
            .buffer_unordered(8)
            .collect()
            .await;
        uploads.into_iter().collect::<Result<Vec<()>, _>>()?;
        self.cache.insert_manifest(&manifest, &actual)?;
        self.remote.put(&object_key(&actual, true), &self.cache.path(&actual, true)).await?;
        Ok(entries.len() + 1)
    }
}

/// Adds `/name` to the `.gitignore` beside `path`, as `dvc add` does, unless already there.
fn ignore_in_git(path: &Path, name: &str) -> Result<(), StoreError> {
    let gitignore = path.parent().expect("an added path has a parent").join(".gitignore");
    let line = format!("/{name}");
    let text = fs::read_to_string(&gitignore).unwrap_or_default();
    if text.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    let sep = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
    engine::write_atomic(&gitignore, format!("{text}{sep}{line}\n").as_bytes()).context("cannot update .gitignore")?;
    Ok(())
}

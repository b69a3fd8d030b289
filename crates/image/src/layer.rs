//! One layer: a tree of directories, files and symlinks, written as a reproducible `tar.gz` blob.
//!
//! Reproducible means: entries sorted by path, every parent directory present, owner 0:0 with no
//! user or group names, one fixed mtime, modes normalised (0755 executables and directories,
//! 0644 other files), no extended attributes, and gzip at a fixed level with no timestamp or file
//! name in its header. The tar and gzip writers come from `tar` and `flate2` (miniz_oxide); a
//! change in either that alters bytes is caught by the golden test.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use flate2::{Compression, GzBuilder};

use crate::digest::HashWriter;
use crate::error::ImageError;
use crate::layout::Blobs;

/// The gzip level of every layer. Changing it changes every layer digest.
const GZIP_LEVEL: u32 = 6;

/// Where a file's bytes come from.
pub(crate) enum Content {
    /// A file on this machine (symlinks followed), and what it is for error messages.
    Path(PathBuf, &'static str),
    /// Bytes made here.
    Bytes(Vec<u8>),
}

/// One entry of a layer.
pub(crate) enum Node {
    /// A directory with its mode.
    Dir(u32),
    /// A file; `None` takes the mode from the source (0755 if any execute bit, else 0644).
    File(Content, Option<u32>),
    /// A symbolic link to the given target.
    Symlink(String),
}

/// The entries of one layer, by path relative to `/`, kept sorted.
#[derive(Default)]
pub(crate) struct Tree(BTreeMap<String, Node>);

impl Tree {
    /// Adds a directory (and its parents).
    pub(crate) fn dir(&mut self, path: &str, mode: u32) {
        self.parents(path);
        self.0.insert(path.into(), Node::Dir(mode));
    }

    /// Adds a file (and its parents).
    pub(crate) fn file(&mut self, path: &str, content: Content, mode: Option<u32>) {
        self.parents(path);
        self.0.insert(path.into(), Node::File(content, mode));
    }

    /// Adds a symbolic link (and its parents).
    pub(crate) fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.0.insert(path.into(), Node::Symlink(target.into()));
    }

    /// Every ancestor of `path` becomes a 0755 directory unless already present, so that tools
    /// unpacking the layer never invent directories with their own modes.
    fn parents(&mut self, path: &str) {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            end += slash;
            self.0.entry(path[..end].into()).or_insert(Node::Dir(0o755));
            end += 1;
        }
    }
}

/// A layer written into the blob store.
#[derive(Clone, Debug)]
pub(crate) struct LayerBlob {
    /// Digest of the compressed blob.
    pub digest: String,
    /// Digest of the uncompressed tar (the config's `diff_id`).
    pub diff_id: String,
    /// Size of the compressed blob.
    pub size: u64,
}

/// Writes `tree` as a gzip-compressed tar into `blobs`.
pub(crate) fn write(tree: &Tree, mtime: u64, blobs: &Blobs) -> Result<LayerBlob, ImageError> {
    let (temp, file) = blobs.temp()?;
    let out = |source| ImageError::Output { path: temp.clone(), source };
    let compressed = HashWriter::new(BufWriter::new(file));
    let gzip = GzBuilder::new().write(compressed, Compression::new(GZIP_LEVEL));
    let mut tar = tar::Builder::new(HashWriter::new(gzip));
    for (path, node) in &tree.0 {
        append(&mut tar, path, node, mtime, &out)?;
    }
    let (gzip, diff_id, _) = tar.into_inner().map_err(out)?.finish();
    let (buffered, digest, size) = gzip.finish().map_err(out)?.finish();
    buffered.into_inner().map_err(|e| out(e.into_error()))?.sync_all().map_err(out)?;
    blobs.commit(&temp, &digest)?;
    Ok(LayerBlob { digest, diff_id, size })
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    node: &Node,
    mtime: u64,
    out: &dyn Fn(io::Error) -> ImageError,
) -> Result<(), ImageError> {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    match node {
        Node::Dir(mode) => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(*mode);
            header.set_size(0);
            tar.append_data(&mut header, format!("{path}/"), io::empty()).map_err(out)
        }
        Node::Symlink(target) => {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, path, target).map_err(out)
        }
        Node::File(Content::Bytes(bytes), mode) => {
            header.set_mode(mode.unwrap_or(0o644));
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, path, &bytes[..]).map_err(out)
        }
        Node::File(Content::Path(source, what), mode) => {
            let input = |e| ImageError::Input { what, path: source.clone(), source: e };
            let file = File::open(source).map_err(input)?;
            let meta = file.metadata().map_err(input)?;
            header.set_mode(mode.unwrap_or_else(|| normal_mode(meta.permissions().mode())));
            header.set_size(meta.len());
            tar.append_data(&mut header, path, file).map_err(out)
        }
    }
}

/// 0755 for anything executable by someone, 0644 otherwise: the host's umask and group bits
/// must not reach the image.
pub(crate) fn normal_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_added_once_and_sorted_before_children() {
        let mut tree = Tree::default();
        tree.file("usr/lib/x/libc.so.6", Content::Bytes(vec![]), None);
        tree.dir("tmp", 0o1777);
        tree.symlink("lib64", "usr/lib64");
        let paths: Vec<&str> = tree.0.keys().map(String::as_str).collect();
        assert_eq!(paths, ["lib64", "tmp", "usr", "usr/lib", "usr/lib/x", "usr/lib/x/libc.so.6"]);
    }

    #[test]
    fn modes_are_normalised() {
        for (host, image) in [(0o700, 0o755), (0o775, 0o755), (0o600, 0o644), (0o664, 0o644), (0o100, 0o755)] {
            assert_eq!(normal_mode(host), image, "{host:o}");
        }
    }
}

//! The OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/…`) and the single
//! tar that is both an OCI archive and a `docker load` archive.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{self, hex_of};
use crate::error::ImageError;
use crate::oci::{self, Descriptor, DockerManifest, Index};

/// The `oci-layout` file's contents.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The `blobs/sha256` directory of a layout under construction.
pub(crate) struct Blobs {
    dir: PathBuf,
    next: AtomicU64,
}

impl Blobs {
    /// Creates `layout/blobs/sha256`.
    pub(crate) fn create(layout: &Path) -> Result<Blobs, ImageError> {
        let dir = layout.join("blobs/sha256");
        fs::create_dir_all(&dir).map_err(|source| ImageError::Output { path: dir.clone(), source })?;
        Ok(Blobs { dir, next: AtomicU64::new(0) })
    }

    /// A fresh temporary file in the blob directory, to be renamed by [`Blobs::commit`].
    pub(crate) fn temp(&self) -> Result<(PathBuf, File), ImageError> {
        let path = self.dir.join(format!(".tmp-{}", self.next.fetch_add(1, Ordering::Relaxed)));
        let file = File::create(&path).map_err(|source| ImageError::Output { path: path.clone(), source })?;
        Ok((path, file))
    }

    /// Moves a finished temporary file to its content address.
    pub(crate) fn commit(&self, temp: &Path, digest: &str) -> Result<(), ImageError> {
        let path = self.path(digest);
        fs::rename(temp, &path).map_err(|source| ImageError::Output { path, source })
    }

    /// Stores `bytes` and returns their descriptor.
    pub(crate) fn put(&self, media_type: &str, bytes: &[u8]) -> Result<Descriptor, ImageError> {
        let digest = digest::sha256(bytes);
        let path = self.path(&digest);
        fs::write(&path, bytes).map_err(|source| ImageError::Output { path, source })?;
        Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
    }

    /// Where the blob with `digest` lives.
    pub(crate) fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(hex_of(digest))
    }
}

/// `index.json` entries for an image manifest: one per tag, each named for OCI tools
/// (`ref.name`) and for containerd (`io.containerd.image.name`).
pub(crate) fn tag_entries(manifest: &Descriptor, repository: &str, tags: &[String]) -> Vec<Descriptor> {
    let entry = |tag: &String| {
        let mut d = Descriptor::new(oci::MANIFEST, manifest.digest.clone(), manifest.size);
        d.annotations.insert(oci::REF_NAME.into(), tag.clone());
        d.annotations.insert(oci::CONTAINERD_NAME.into(), format!("{}:{tag}", full_name(repository)));
        d
    };
    tags.iter().map(entry).collect()
}

/// Docker Hub's spelling of a short repository name, as `docker save` writes it.
fn full_name(repository: &str) -> String {
    let first = repository.split('/').next().unwrap_or_default();
    if first.contains(['.', ':']) || first == "localhost" {
        repository.into()
    } else if repository.contains('/') {
        format!("docker.io/{repository}")
    } else {
        format!("docker.io/library/{repository}")
    }
}

/// Writes `oci-layout` and `index.json` into `layout`.
pub(crate) fn write_index(layout: &Path, manifests: Vec<Descriptor>) -> Result<(), ImageError> {
    write_file(&layout.join("oci-layout"), OCI_LAYOUT)?;
    write_file(&layout.join("index.json"), &to_json(&Index::of(manifests)))
}

/// What goes into the archive besides the blobs.
pub(crate) struct Archive<'a> {
    /// The image's index entries (tags), without referrers.
    pub index: Vec<Descriptor>,
    /// The blobs, config first then layers.
    pub blobs: Vec<&'a Descriptor>,
    /// The manifest blob.
    pub manifest: &'a Descriptor,
    /// Docker's view of the same image.
    pub docker: DockerManifest,
}

/// Writes the one-file archive: an OCI layout in a tar (skopeo's `oci-archive:`, Docker ≥ 25)
/// that also carries Docker's `manifest.json` (every `docker load`). Entries are sorted and
/// stamped like layer entries, so the tar is as reproducible as the blobs.
pub(crate) fn write_archive(path: &Path, blobs: &Blobs, archive: &Archive<'_>, mtime: u64) -> Result<(), ImageError> {
    let out = |source| ImageError::Output { path: path.to_path_buf(), source };
    let temp = path.with_extension("tar.tmp");
    let mut tar = tar::Builder::new(BufWriter::new(File::create(&temp).map_err(out)?));
    let mut entries: Vec<(String, Entry)> = vec![
        ("blobs/".into(), Entry::Dir),
        ("blobs/sha256/".into(), Entry::Dir),
        ("index.json".into(), Entry::Bytes(to_json(&Index::of(archive.index.clone())))),
        ("manifest.json".into(), Entry::Bytes(to_json(&[&archive.docker]))),
        ("oci-layout".into(), Entry::Bytes(OCI_LAYOUT.to_vec())),
    ];
    for d in archive.blobs.iter().copied().chain([archive.manifest]) {
        entries.push((format!("blobs/sha256/{}", hex_of(&d.digest)), Entry::Blob(blobs.path(&d.digest))));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    for (name, entry) in &entries {
        append_entry(&mut tar, name, entry, mtime).map_err(out)?;
    }
    tar.into_inner().map_err(out)?.into_inner().map_err(|e| out(e.into_error()))?.sync_all().map_err(out)?;
    fs::rename(&temp, path).map_err(out)
}

impl Index {
    fn of(manifests: Vec<Descriptor>) -> Index {
        Index { schema_version: 2, media_type: oci::INDEX.into(), manifests }
    }
}

enum Entry {
    Dir,
    Bytes(Vec<u8>),
    Blob(PathBuf),
}

fn append_entry<W: Write>(tar: &mut tar::Builder<W>, name: &str, entry: &Entry, mtime: u64) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    match entry {
        Entry::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, name, io::empty())
        }
        Entry::Bytes(bytes) => {
            header.set_mode(0o644);
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, name, &bytes[..])
        }
        Entry::Blob(path) => {
            let file = File::open(path)?;
            header.set_mode(0o644);
            header.set_size(file.metadata()?.len());
            tar.append_data(&mut header, name, file)
        }
    }
}

/// Compact JSON. Serializing our own types cannot fail.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("the OCI types always serialize")
}

pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    fs::write(path, bytes).map_err(|source| ImageError::Output { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::full_name;

    #[test]
    fn short_names_get_docker_hub_spelling() {
        assert_eq!(full_name("slipway-serve"), "docker.io/library/slipway-serve");
        assert_eq!(full_name("slipway/serve"), "docker.io/slipway/serve");
        assert_eq!(full_name("127.0.0.1:5000/serve"), "127.0.0.1:5000/serve");
        assert_eq!(full_name("localhost/serve"), "localhost/serve");
    }
}

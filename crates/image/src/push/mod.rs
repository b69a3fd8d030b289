//! `push`: sends an image from an OCI layout to a registry, uploading only the blobs the
//! registry lacks, then its referrers (the SBOM) under the `sha256-<hex>.sbom` fallback tag.

mod auth;
mod reference;
mod registry;

use std::fs;
use std::path::{Path, PathBuf};

pub use auth::{Credentials, ENV_VARS as REGISTRY_ENV, PASSWORD_VAR, USER_VAR};
pub use reference::Reference;

use crate::digest::{self, hex_of};
use crate::error::PushError;
use crate::oci::{self, Descriptor, Index, Manifest};
use registry::Registry;

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// `sha256:…` of the image manifest, as the registry now serves it.
    pub digest: String,
    /// Blobs actually uploaded (the rest were already there).
    pub uploaded_blobs: usize,
    /// Bytes of the blobs actually uploaded (manifests not counted).
    pub uploaded_bytes: u64,
    /// Blobs the registry already held.
    pub skipped_blobs: usize,
    /// The referrer tags pushed, e.g. `sha256-<hex>.sbom`.
    pub referrer_tags: Vec<String>,
}

/// Pushes the image tagged `reference`'s tag in the layout at `layout` to `reference`
/// (`[http://]HOST[:PORT]/REPO[:TAG]`; see [`Reference::parse`]), with its SBOM.
///
/// Blocking: it runs its own single-threaded runtime, so call it from plain threads or
/// `spawn_blocking`, not from inside an async task.
pub fn push(layout: &Path, reference: &str, credentials: &Credentials) -> Result<Pushed, PushError> {
    let reference = Reference::parse(reference)?;
    let image = LayoutImage::open(layout, &reference.tag)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
        PushError::Unreachable { url: reference.base_url(), detail: format!("cannot start the HTTP runtime: {e}") }
    })?;
    let mut registry = Registry::new(&reference, credentials.clone())?;
    runtime.block_on(push_image(&mut registry, &image, &reference.tag))
}

async fn push_image(registry: &mut Registry, image: &LayoutImage, tag: &str) -> Result<Pushed, PushError> {
    let mut pushed = Pushed {
        digest: image.manifest.digest.clone(),
        uploaded_blobs: 0,
        uploaded_bytes: 0,
        skipped_blobs: 0,
        referrer_tags: vec![],
    };
    push_blobs(registry, image, &image.blobs, &mut pushed).await?;
    registry.put_manifest(tag, oci::MANIFEST, &image.manifest_bytes).await?;
    for referrer in &image.referrers {
        push_blobs(registry, image, &referrer.blobs, &mut pushed).await?;
        let tag = format!("sha256-{}.{}", hex_of(&image.manifest.digest), referrer.suffix);
        registry.put_manifest(&tag, oci::MANIFEST, &referrer.bytes).await?;
        pushed.referrer_tags.push(tag);
    }
    Ok(pushed)
}

/// HEAD each blob, upload the missing ones.
async fn push_blobs(
    registry: &mut Registry,
    image: &LayoutImage,
    blobs: &[Descriptor],
    pushed: &mut Pushed,
) -> Result<(), PushError> {
    for blob in blobs {
        if registry.has_blob(&blob.digest).await? {
            pushed.skipped_blobs += 1;
            continue;
        }
        let bytes = image.read_blob(blob)?;
        registry.upload_blob(&blob.digest, bytes).await?;
        pushed.uploaded_blobs += 1;
        pushed.uploaded_bytes += blob.size;
    }
    Ok(())
}

/// One image in a layout: its manifest, its blobs and the artifacts that refer to it.
struct LayoutImage {
    dir: PathBuf,
    manifest: Descriptor,
    manifest_bytes: Vec<u8>,
    blobs: Vec<Descriptor>,
    referrers: Vec<Referrer>,
}

struct Referrer {
    bytes: Vec<u8>,
    blobs: Vec<Descriptor>,
    /// Tag suffix from the artifact type: `sbom` for CycloneDX.
    suffix: &'static str,
}

impl LayoutImage {
    fn open(dir: &Path, tag: &str) -> Result<LayoutImage, PushError> {
        let bad = |detail: String| PushError::Layout { path: dir.into(), detail };
        let index = fs::read(dir.join("index.json")).map_err(|e| bad(format!("index.json: {e}")))?;
        let index: Index = serde_json::from_slice(&index).map_err(|e| bad(format!("index.json: {e}")))?;
        let manifest = pick(&index, tag).map_err(bad)?;
        let mut image =
            LayoutImage { dir: dir.into(), manifest, manifest_bytes: vec![], blobs: vec![], referrers: vec![] };
        let (bytes, parsed) = image.read_manifest(&image.manifest)?;
        image.manifest_bytes = bytes;
        image.blobs = std::iter::once(parsed.config).chain(parsed.layers).collect();
        for entry in index.manifests.iter().filter(|d| d.artifact_type.is_some()) {
            let (bytes, parsed) = image.read_manifest(entry)?;
            if parsed.subject.as_ref().is_some_and(|s| s.digest == image.manifest.digest) {
                let suffix = if entry.artifact_type.as_deref() == Some(oci::CYCLONEDX) { "sbom" } else { "att" };
                let blobs = std::iter::once(parsed.config).chain(parsed.layers).collect();
                image.referrers.push(Referrer { bytes, blobs, suffix });
            }
        }
        Ok(image)
    }

    fn read_manifest(&self, descriptor: &Descriptor) -> Result<(Vec<u8>, Manifest), PushError> {
        let bytes = self.read_blob(descriptor)?;
        let manifest = serde_json::from_slice(&bytes).map_err(|e| PushError::Layout {
            path: self.dir.clone(),
            detail: format!("manifest {}: {e}", descriptor.digest),
        })?;
        Ok((bytes, manifest))
    }

    /// A blob's bytes, checked against its descriptor so a damaged layout is never pushed.
    fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, PushError> {
        let path = self.dir.join("blobs/sha256").join(hex_of(&descriptor.digest));
        let bad = |detail: String| PushError::Layout { path: self.dir.clone(), detail };
        let bytes = fs::read(&path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        if bytes.len() as u64 != descriptor.size || digest::sha256(&bytes) != descriptor.digest {
            return Err(bad(format!("blob {} does not match its digest or size", descriptor.digest)));
        }
        Ok(bytes)
    }
}

/// The image manifest tagged `tag`; or, if the layout holds one image under other tags, that.
fn pick(index: &Index, tag: &str) -> Result<Descriptor, String> {
    let images: Vec<&Descriptor> =
        index.manifests.iter().filter(|d| d.artifact_type.is_none() && d.media_type == oci::MANIFEST).collect();
    if let Some(found) = images.iter().find(|d| d.annotations.get(oci::REF_NAME).is_some_and(|t| t == tag)) {
        return Ok((*found).clone());
    }
    match images.first() {
        Some(first) if images.iter().all(|d| d.digest == first.digest) => Ok((*first).clone()),
        _ => {
            let tags: Vec<&str> =
                images.iter().filter_map(|d| d.annotations.get(oci::REF_NAME)).map(String::as_str).collect();
            Err(format!("no image is tagged `{tag}` (tags: {})", tags.join(", ")))
        }
    }
}

//! The OCI and Docker JSON formats this crate writes and reads, as serde types.
//!
//! Hand-written rather than `oci-spec`'s: every map here is a `BTreeMap`, so the JSON (and with
//! it every digest) is the same from run to run, and the few fields we need cost no builder
//! macros. Field order is declaration order; changing it changes every manifest digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Media type of an OCI image manifest.
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed layer.
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of the empty `{}` config an artifact manifest carries.
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Artifact type and layer media type of a CycloneDX JSON SBOM.
pub const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// Index annotation naming a tag in an image layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Index annotation containerd (and Docker ≥ 25) reads for the image's full name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A pointer to a blob: what it is, its digest and its size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// For artifact manifests listed in an index: the artifact's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations (tag names in an index).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor with no annotations.
    pub fn new(media_type: &str, digest: String, size: u64) -> Self {
        Descriptor { media_type: media_type.into(), digest, size, artifact_type: None, annotations: BTreeMap::new() }
    }
}

/// An image (or artifact) manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MANIFEST`] (optional when read).
    #[serde(default)]
    pub media_type: String,
    /// Set for artifacts (the SBOM), absent for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// For a referrer: the manifest it describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The `index.json` of an image layout.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`INDEX`] (optional when read).
    #[serde(default)]
    pub media_type: String,
    /// One entry per tag, plus the referrers (the SBOM).
    pub manifests: Vec<Descriptor>,
}

/// The image config: how to run the image and what its layers are.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time, from `SOURCE_DATE_EPOCH`.
    pub created: String,
    /// `amd64`.
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// How a container runs.
    pub config: RunConfig,
    /// The uncompressed layer digests.
    pub rootfs: RootFs,
    /// One entry per layer.
    pub history: Vec<History>,
}

/// The runtime part of the image config (Docker's capitalised field names).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `uid:gid`.
    pub user: String,
    /// `8080/tcp` → `{}`.
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `NAME=value` lines, sorted.
    pub env: Vec<String>,
    /// The program and its fixed arguments.
    pub entrypoint: Vec<String>,
    /// The working directory.
    pub working_dir: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// The JSON `{}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Empty {}

/// The layers' uncompressed digests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `sha256:<hex>` of each uncompressed layer tar.
    pub diff_ids: Vec<String>,
}

/// What made a layer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339, from `SOURCE_DATE_EPOCH`.
    pub created: String,
    /// A human description.
    pub created_by: String,
}

/// One image in Docker's `manifest.json` (the `docker save` format).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifest {
    /// Path of the config blob inside the tar.
    pub config: String,
    /// `repository:tag` names `docker load` applies.
    pub repo_tags: Vec<String>,
    /// Paths of the layer blobs inside the tar, base first.
    pub layers: Vec<String>,
}

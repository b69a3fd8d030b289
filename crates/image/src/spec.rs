//! What an image is built from (`ImageSpec`) and what a build produced (`Built`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::ImageError;

/// The git commit the image was built from.
pub const LABEL_REVISION: &str = "org.opencontainers.image.revision";
/// Where the source lives.
pub const LABEL_SOURCE: &str = "org.opencontainers.image.source";
/// When the image was "created" (from `SOURCE_DATE_EPOCH`; filled in when absent).
pub const LABEL_CREATED: &str = "org.opencontainers.image.created";
/// The release version.
pub const LABEL_VERSION: &str = "org.opencontainers.image.version";
/// Digest of the model file.
pub const LABEL_MODEL_DIGEST: &str = "dev.slipway.model.digest";
/// Digest of the training data.
pub const LABEL_DATA_DIGEST: &str = "dev.slipway.data.digest";

/// Where the server binary lives in the image.
pub const SERVE_PATH: &str = "/usr/local/bin/slipway-serve";
/// Where the model lives in the image.
pub const MODEL_PATH: &str = "/model/model.onnx";
/// The directory holding ONNX Runtime in the image.
pub const ORT_DIR: &str = "/opt/onnxruntime";
/// The address the server listens on inside the container.
pub const LISTEN: &str = "0.0.0.0:8080";
/// The non-root user and group the server runs as.
pub const UID: u32 = 10001;

/// Everything an image is built from. Two builds of equal specs produce identical bytes.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Repository name `docker load` tags the image with (e.g. `slipway-serve`).
    pub repository: String,
    /// The `slipway-serve` binary.
    pub serve_binary: PathBuf,
    /// `libonnxruntime.so.<version>`; its file name is kept in the image.
    pub onnxruntime: PathBuf,
    /// The ONNX model.
    pub model: PathBuf,
    /// Every mtime in every layer, and the config's `created`.
    pub source_date_epoch: i64,
    /// Image labels (see the `LABEL_*` constants).
    pub labels: BTreeMap<String, String>,
    /// Where the layout (`oci/`), the archive (`image.tar`) and `sbom.cdx.json` are written.
    pub out_dir: PathBuf,
    /// Tags, e.g. the git sha, the branch (see [`tag_from`]) and the version.
    pub tags: Vec<String>,
    /// The CycloneDX SBOM (from [`crate::sbom()`]), stored beside the image and attached to it.
    pub sbom: Vec<u8>,
    /// The runtime libraries layer. `None` resolves them with `ldd` from the serve binary and
    /// ONNX Runtime; an explicit list makes the image independent of this machine's libc.
    pub libraries: Option<Vec<Library>>,
}

/// One entry of the runtime libraries layer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Library {
    /// A file copied from `source` (symlinks followed) to the absolute `path` in the image.
    File {
        /// On this machine.
        source: PathBuf,
        /// In the image.
        path: String,
    },
    /// A symbolic link at the absolute `path` in the image.
    Symlink {
        /// In the image.
        path: String,
        /// What it points to.
        target: String,
    },
}

/// One layer of a built image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// `base`, `libraries`, `onnxruntime`, `server` or `model`.
    pub name: &'static str,
    /// Digest of the compressed blob (what registries store).
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct Built {
    /// `sha256:…` of the image manifest: the image's identity.
    pub manifest_digest: String,
    /// Size of the image manifest.
    pub manifest_size: u64,
    /// `sha256:…` of the image config (Docker's image ID).
    pub config_digest: String,
    /// Size of the image config.
    pub config_size: u64,
    /// The layers, base first.
    pub layers: Vec<LayerInfo>,
    /// `sha256:…` of the SBOM artifact manifest that refers to the image.
    pub sbom_manifest_digest: String,
    /// Size of the SBOM blob.
    pub sbom_size: u64,
    /// The OCI image layout directory.
    pub layout: PathBuf,
    /// The tar that is an OCI archive and a `docker load` archive.
    pub archive: PathBuf,
    /// The SBOM file beside them.
    pub sbom: PathBuf,
}

/// Checks an OCI tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), ImageError> {
    let ok_first = tag.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let ok_rest = tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok_first && ok_rest && tag.len() <= 128 { Ok(()) } else { Err(ImageError::BadTag { tag: tag.into() }) }
}

/// Turns any name (a branch like `feature/x`) into a valid tag: other characters become `-`.
pub fn tag_from(name: &str) -> String {
    let mut tag: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' }).collect();
    if tag.starts_with(['.', '-']) || tag.is_empty() {
        tag.insert(0, '_');
    }
    tag.truncate(128);
    tag
}

/// The version in a library's file name: `libonnxruntime.so.1.32.0` → `1.32.0`.
pub fn onnxruntime_version(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let version = name.split_once(".so.")?.1;
    (!version.is_empty()).then(|| version.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for good in ["v1", "0.1.0", "main", "_x", "abc-DEF_1.2"] {
            check_tag(good).unwrap();
        }
        for bad in ["", "-x", ".x", "feature/x", "a:b", &"x".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        assert_eq!(tag_from("feature/new-model"), "feature-new-model");
        assert_eq!(tag_from("-x"), "_-x");
        check_tag(&tag_from("héllo/wörld")).unwrap();
    }

    #[test]
    fn onnxruntime_version_comes_from_the_file_name() {
        assert_eq!(onnxruntime_version(Path::new("/x/libonnxruntime.so.1.32.0")).as_deref(), Some("1.32.0"));
        assert_eq!(onnxruntime_version(Path::new("/x/libonnxruntime.so")), None);
    }
}

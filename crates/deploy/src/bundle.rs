//! A release's files — the server binary, the router, ONNX Runtime, the model, the image tar —
//! kept by BLAKE3 in the artifact remote and in a local copy, so that a rollback needs no build,
//! and no network when the local copy has them.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use store::Remote;

use crate::DeployError;

/// Where release files live on a remote.
pub const BLOBS_PREFIX: &str = "slipway/blobs/v1";

/// Release files by content, remote and local.
pub struct Blobs {
    remote: Arc<dyn Remote>,
    local: PathBuf,
}

impl Blobs {
    /// Blobs on `remote`, copied under `local` (e.g. `.slipway/blobs`).
    pub fn new(remote: Arc<dyn Remote>, local: PathBuf) -> Blobs {
        Blobs { remote, local }
    }

    /// The remote key of a file; the digest must have been checked ([`check`]).
    fn key(digest: &str) -> String {
        format!("{BLOBS_PREFIX}/{}/{digest}", digest.get(..2).unwrap_or("xx"))
    }

    /// Stores `files` (name → path); returns name → BLAKE3.
    pub async fn store(&self, files: &[(String, PathBuf)]) -> Result<BTreeMap<String, String>, DeployError> {
        let mut out = BTreeMap::new();
        for (name, path) in files {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let digest = blake3::hash(&bytes).to_hex().to_string();
            check(name, &digest)?;
            let local = self.local.join(&digest);
            if !local.is_file() {
                engine::write_atomic(&local, &bytes).map_err(anyhow::Error::from)?;
            }
            if !self.remote.exists(&Self::key(&digest)).await? {
                self.remote.put(&Self::key(&digest), &local).await?;
            }
            out.insert(name.clone(), digest);
        }
        Ok(out)
    }

    /// Lays the files out in `dir` (name → content), from the local copy when it holds them and
    /// the remote otherwise; every file is checked against its digest.
    pub async fn materialise(&self, files: &BTreeMap<String, String>, dir: &Path) -> Result<(), DeployError> {
        for (name, digest) in files {
            check(name, digest)?;
        }
        std::fs::create_dir_all(dir).map_err(anyhow::Error::from)?;
        for (name, digest) in files {
            let dest = dir.join(name);
            if blake3_of(&dest).as_deref() == Some(digest.as_str()) {
                continue;
            }
            let local = self.local.join(digest);
            if blake3_of(&local).as_deref() != Some(digest.as_str()) {
                std::fs::create_dir_all(&self.local).map_err(anyhow::Error::from)?;
                let tmp = tempfile::NamedTempFile::new_in(&self.local).map_err(anyhow::Error::from)?.into_temp_path();
                self.remote.get(&Self::key(digest), &tmp, &|_| {}).await?;
                if blake3_of(&tmp).as_deref() != Some(digest.as_str()) {
                    return Err(anyhow::anyhow!(
                        "release file {name} ({digest}) on {} is corrupt",
                        self.remote.describe()
                    )
                    .into());
                }
                tmp.persist(&local).map_err(|e| anyhow::anyhow!("cannot keep {name}: {}", e.error))?;
            }
            let tmp = tempfile::NamedTempFile::new_in(dir).map_err(anyhow::Error::from)?.into_temp_path();
            std::fs::copy(&local, &tmp).map_err(anyhow::Error::from)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(anyhow::Error::from)?;
            tmp.persist(&dest).map_err(|e| anyhow::anyhow!("cannot lay out {name}: {}", e.error))?;
        }
        Ok(())
    }
}

/// Refuses a release file whose name is not one a release holds or whose digest is not 64 hex
/// digits: both become paths and keys.
pub fn check(name: &str, digest: &str) -> Result<(), DeployError> {
    if !crate::names::RELEASE_FILES.contains(&name) {
        return Err(anyhow::anyhow!(
            "`{}` is not a release file (they are {})",
            name.escape_debug(),
            crate::names::RELEASE_FILES.join(", ")
        )
        .into());
    }
    if !crate::names::is_hex64(digest) {
        return Err(anyhow::anyhow!("the digest of {name}, `{}`, is not 64 hex digits", digest.escape_debug()).into());
    }
    Ok(())
}

/// BLAKE3 of a file, if it can be read.
pub fn blake3_of(path: &Path) -> Option<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path).ok()?).ok()?;
    Some(hasher.finalize().to_hex().to_string())
}

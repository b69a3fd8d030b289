//! Loading the model to serve: ONNX Runtime, the model's sessions, its BLAKE3 digest and the
//! version to report, run on the blocking pool while the server already answers `/healthz`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use model::Model;

use crate::{App, Config};

/// A model loaded and ready to serve.
pub struct Loaded {
    model: Model,
    version: String,
    digest: String,
    classes: Vec<String>,
}

/// Why the model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The model file could not be read to compute its digest.
    #[error("cannot read model {}: {source}", path.display())]
    Read {
        /// The model file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// ONNX Runtime or the model failed to load.
    #[error(transparent)]
    Model(#[from] model::ModelError),
    /// The loading task panicked.
    #[error("loading the model panicked")]
    Panicked,
}

impl LoadError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            LoadError::Read { .. } | LoadError::Model(model::ModelError::ModelMissing { .. }) => {
                Some("pass the model file with --model or SLIPWAY_MODEL")
            }
            LoadError::Model(e) => e.help(),
            LoadError::Panicked => None,
        }
    }
}

impl Loaded {
    /// Loads the model `config` names: the blocking work of a server start.
    pub fn load(config: &Config) -> Result<Loaded, LoadError> {
        let path = &config.model;
        let digest = digest_of(path)?;
        let runtime = model::load_runtime(&config.runtime)?;
        let model = Model::load(runtime, path, config.sessions)?;
        let classes = model.signature().classes.clone().unwrap_or_default();
        let version = config.model_version.clone().unwrap_or_else(|| digest[..12].to_string());
        Ok(Loaded { model, version, digest: format!("blake3:{digest}"), classes })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The version reported in `x-model-version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `blake3:<hex>` of the model file's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The name of probability column `i`: the class from the model's metadata, or `i` itself
    /// when the model has none.
    pub fn class_name(&self, i: usize) -> String {
        self.classes.get(i).cloned().unwrap_or_else(|| i.to_string())
    }
}

/// The BLAKE3 of the file's bytes, streamed so a large model is never read into memory twice.
fn digest_of(path: &Path) -> Result<String, LoadError> {
    let read_err = |source| LoadError::Read { path: path.to_path_buf(), source };
    if !path.is_file() {
        return Err(model::ModelError::ModelMissing { path: path.to_path_buf() }.into());
    }
    let file = File::open(path).map_err(read_err)?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(read_err)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Loads the model on the blocking pool and publishes the outcome on `app`. Resolves only if
/// loading fails, with the error, so a caller can `select!` it against a shutdown signal.
pub(crate) async fn in_background(app: App, config: Config) -> LoadError {
    eprintln!("slipway-serve: loading {} with {} sessions", config.model.display(), config.sessions.max(1));
    let started = Instant::now();
    let err = match tokio::task::spawn_blocking(move || Loaded::load(&config)).await {
        Ok(Ok(loaded)) => {
            eprintln!(
                "slipway-serve: ready: model version {} ({}) loaded in {:.2} s",
                loaded.version(),
                loaded.digest(),
                started.elapsed().as_secs_f64()
            );
            app.set_ready(loaded);
            return std::future::pending().await;
        }
        Ok(Err(err)) => err,
        Err(_) => LoadError::Panicked,
    };
    app.set_failed(err.to_string());
    err
}

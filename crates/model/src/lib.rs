//! ONNX Runtime for Slipway: find and load the runtime library, load a model, read its
//! signature, and one [`Model::predict`] that validation and serving both use, so the model is
//! judged exactly as it will be served.

mod model;
mod runtime;

use std::path::PathBuf;

pub use model::{Batch, InputKind, Model, Prediction, Signature, TensorMeta, Tensors};
pub use runtime::{Runtime, RuntimeSearch, load as load_runtime};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No ONNX Runtime library was found.
    #[error("ONNX Runtime was not found; looked in: {}", tried.join("; "))]
    RuntimeMissing {
        /// Every place looked in.
        tried: Vec<String>,
    },
    /// The library exists but could not be loaded.
    #[error("cannot load ONNX Runtime from {}: {detail}", path.display())]
    RuntimeLoad {
        /// The library.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The model file does not exist.
    #[error("model file {} does not exist", path.display())]
    ModelMissing {
        /// The path.
        path: PathBuf,
    },
    /// The file is not a usable ONNX model.
    #[error("{} is not a usable ONNX model: {detail}", path.display())]
    ModelInvalid {
        /// The path.
        path: PathBuf,
        /// What ONNX Runtime said.
        detail: String,
    },
    /// The data does not fit the model's input.
    #[error("the data does not fit the model: {detail}")]
    Input {
        /// How.
        detail: String,
    },
    /// ONNX Runtime failed while predicting.
    #[error("prediction failed: {detail}")]
    Inference {
        /// What ONNX Runtime said.
        detail: String,
    },
}

impl ModelError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            ModelError::RuntimeMissing { .. } | ModelError::RuntimeLoad { .. } => Some(
                "set ORT_DYLIB_PATH to libonnxruntime.so (1.31 or newer), or run `cargo xtask deps`, which installs the onnxruntime wheel that ships it",
            ),
            ModelError::ModelMissing { .. } => {
                Some("train it first (`cargo xtask train`) or pass the right --model-path")
            }
            ModelError::ModelInvalid { .. } => Some("the file is truncated or not ONNX; train or download it again"),
            ModelError::Input { .. } => Some("check that the holdout's columns match what the model was trained on"),
            ModelError::Inference { .. } => None,
        }
    }
}

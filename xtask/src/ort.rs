//! Where ONNX Runtime comes from: `ORT_DYLIB_PATH`, else the `onnxruntime` wheel of the training
//! environment. Validation, the image and releases all take the library from here.

use std::path::Path;

use crate::Env;
use crate::paths::TRAIN_ENV;

/// This module, as code of the stages that use it.
pub const CODE: &str = file!();

/// The variable that names the library.
pub const DYLIB_VAR: &str = "ORT_DYLIB_PATH";

/// Where ONNX Runtime is looked for.
pub fn search(root: &Path, env: &Env) -> model::RuntimeSearch {
    model::RuntimeSearch::new(env.get(DYLIB_VAR).map(String::as_str), &[root.join(TRAIN_ENV)])
}

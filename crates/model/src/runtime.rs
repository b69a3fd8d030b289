//! Finding and loading the ONNX Runtime library.
//!
//! ONNX Runtime is a C++ library loaded at run time. It is looked for in `ORT_DYLIB_PATH` first,
//! then in the project's Python environments (the `onnxruntime` wheel ships the library), so the
//! runtime that judges a model is the one it was tested with in Python.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::ModelError;

/// A loaded ONNX Runtime.
pub struct Runtime {
    pub(crate) env: ort::environment::Environment,
    path: PathBuf,
    version: String,
}

impl Runtime {
    /// The library file that was loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its version, e.g. `1.32.0`.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// Where to look for the library.
#[derive(Clone, Debug, Default)]
pub struct RuntimeSearch {
    /// The value of `ORT_DYLIB_PATH`, if set: used exactly, never second-guessed.
    pub dylib_path: Option<PathBuf>,
    /// Python virtualenvs whose `onnxruntime` package may hold the library.
    pub python_envs: Vec<PathBuf>,
}

impl RuntimeSearch {
    /// `ORT_DYLIB_PATH` from `env`, then the given virtualenvs.
    pub fn new(dylib_path: Option<&str>, python_envs: &[PathBuf]) -> RuntimeSearch {
        RuntimeSearch {
            dylib_path: dylib_path.filter(|p| !p.is_empty()).map(PathBuf::from),
            python_envs: python_envs.to_vec(),
        }
    }

    /// The library to load, or an error naming every place that was tried.
    pub fn find(&self) -> Result<PathBuf, ModelError> {
        if let Some(path) = &self.dylib_path {
            return if path.is_file() {
                Ok(path.clone())
            } else {
                Err(ModelError::RuntimeMissing {
                    tried: vec![format!("ORT_DYLIB_PATH={} (no such file)", path.display())],
                })
            };
        }
        let mut tried = vec!["ORT_DYLIB_PATH (not set)".to_string()];
        for venv in &self.python_envs {
            match in_venv(venv) {
                Some(lib) => return Ok(lib),
                None => tried.push(format!("{}/lib/python3*/site-packages/onnxruntime/capi", venv.display())),
            }
        }
        Err(ModelError::RuntimeMissing { tried })
    }
}

/// `libonnxruntime.so.X.Y.Z` inside a virtualenv's `onnxruntime` package.
fn in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    let mut found: Vec<PathBuf> = lib
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .filter_map(|e| std::fs::read_dir(e.path().join("site-packages/onnxruntime/capi")).ok())
        .flat_map(|dir| dir.flatten().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
        .collect();
    // The fully versioned name sorts last; it is the real file rather than a link.
    found.sort();
    found.pop()
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Loads ONNX Runtime once per process from what `search` finds. Later calls return the same
/// runtime, whatever they ask for: ONNX Runtime cannot be loaded twice.
pub fn load(search: &RuntimeSearch) -> Result<&'static Runtime, ModelError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let path = search.find()?;
    let load_err = |detail: String| ModelError::RuntimeLoad { path: path.clone(), detail };
    let builder = ort::init_from(&path).map_err(|e| load_err(e.to_string()))?;
    // ONNX Runtime's telemetry is on unless turned off: a pipeline sends nothing about its
    // models or its machine to anyone.
    let env = builder.with_name("slipway").with_telemetry(false).build().map_err(|e| load_err(e.to_string()))?;
    let version = version_of(&path).unwrap_or_else(|| "unknown".to_string());
    let _ = RUNTIME.set(Runtime { env, path: path.clone(), version });
    Ok(RUNTIME.get().expect("set above or by a concurrent caller"))
}

/// `1.32.0` from the library's file name (`libonnxruntime.so.1.32.0`), following symlinks.
/// ONNX Runtime's build info names a git branch, which is `HEAD` in the PyPI wheels.
fn version_of(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real.file_name()?.to_string_lossy().into_owned();
    let version = name.split_once(".so.")?.1.to_string();
    version.split('.').all(|p| p.parse::<u32>().is_ok()).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_read_from_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("libonnxruntime.so.1.32.0");
        std::fs::write(&real, b"").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("libonnxruntime.so")).unwrap();
        assert_eq!(version_of(&dir.path().join("libonnxruntime.so")).as_deref(), Some("1.32.0"));
        assert_eq!(version_of(Path::new("/opt/libonnxruntime.so")), None);
    }

    #[test]
    fn a_missing_library_names_every_place_tried() {
        let dir = tempfile::tempdir().unwrap();
        let search = RuntimeSearch::new(None, &[dir.path().to_path_buf()]);
        let err = search.find().unwrap_err().to_string();
        assert!(err.contains("ORT_DYLIB_PATH (not set)"), "{err}");
        assert!(err.contains("site-packages/onnxruntime/capi"), "{err}");
        let explicit = RuntimeSearch::new(Some("/nowhere/libonnxruntime.so"), &[]);
        assert!(
            explicit
                .find()
                .unwrap_err()
                .to_string()
                .contains("ORT_DYLIB_PATH=/nowhere/libonnxruntime.so (no such file)")
        );
    }

    #[test]
    fn the_library_is_found_in_a_virtualenv() {
        let venv = tempfile::tempdir().unwrap();
        let capi = venv.path().join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.32.0"), b"").unwrap();
        let found = RuntimeSearch::new(None, &[venv.path().to_path_buf()]).find().unwrap();
        assert_eq!(found, capi.join("libonnxruntime.so.1.32.0"));
    }
}

//! Errors a user can act on, each with a line that says what to do.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What went wrong building an image or its SBOM.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An input file named in the spec does not exist or cannot be read.
    #[error("cannot read the {what} at {path}: {source}")]
    Input {
        /// What the file is for ("serve binary", "model", …).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// `ldd` could not resolve the libraries of a binary.
    #[error("cannot resolve the shared libraries of {binary}: {detail}")]
    Libraries {
        /// The binary or library given to `ldd`.
        binary: PathBuf,
        /// What `ldd` said.
        detail: String,
    },
    /// A tag is not a valid OCI tag.
    #[error("`{tag}` is not a valid image tag")]
    BadTag {
        /// The tag as given.
        tag: String,
    },
    /// The spec contradicts itself or the OCI rules.
    #[error("invalid image spec: {0}")]
    BadSpec(String),
    /// The provenance statement would name something it cannot identify.
    #[error("cannot write the provenance statement: {0}")]
    Provenance(String),
    /// A lock file could not be parsed.
    #[error("cannot parse the lock file {path}: {detail}")]
    BadLock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// Writing the output failed.
    #[error("cannot write {path}: {source}")]
    Output {
        /// The file or directory being written.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
}

impl ImageError {
    /// What the user can do about it, if there is something specific.
    pub fn help(&self) -> Option<String> {
        let text = match self {
            ImageError::Input { what: "serve binary", .. } => {
                "build it first: `cargo build --release -p slipway-serve`".into()
            }
            ImageError::Input { what: "ONNX Runtime library", .. } => {
                "run `cargo xtask ci` (its deps stage installs onnxruntime into .slipway/train-env)".into()
            }
            ImageError::Input { what: "model", .. } => "train it first: `cargo xtask ci` writes models/model.onnx".into(),
            ImageError::Libraries { .. } => {
                "install the missing library on this machine, or list the image's libraries explicitly in ImageSpec::libraries".into()
            }
            ImageError::BadTag { .. } => {
                "tags are 1–128 of [A-Za-z0-9_.-], not starting with `.` or `-`; `image::tag_from` turns a branch name into one".into()
            }
            _ => return None,
        };
        Some(text)
    }
}

/// What went wrong pushing an image to a registry.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The reference cannot be parsed.
    #[error("`{reference}` is not an image reference: {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The layout is missing, unreadable or does not hold the tag.
    #[error("cannot use the image layout at {path}: {detail}")]
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The registry could not be reached at all.
    #[error("cannot reach the registry at {url}: {detail}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// The registry refused us (HTTP 401/403).
    #[error("{registry} refused to let {who} push (HTTP {status}){detail}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// "anonymous users" or "user `name`" — never the password.
        who: String,
        /// The HTTP status.
        status: u16,
        /// The registry's message, prefixed with ": " when there is one.
        detail: String,
    },
    /// The registry rejected the manifest.
    #[error("{registry} rejected the manifest {reference} (HTTP {status}): {message}")]
    ManifestRejected {
        /// The registry host.
        registry: String,
        /// repository:tag or digest.
        reference: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said.
        message: String,
    },
    /// Any other unexpected answer from the registry.
    #[error("{registry} answered HTTP {status} to {what}: {message}")]
    Protocol {
        /// The registry host.
        registry: String,
        /// What we asked for.
        what: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said.
        message: String,
    },
    /// The Docker config file exists but cannot be used.
    #[error("cannot read credentials from {path}: {detail}")]
    DockerConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

impl PushError {
    /// What the user can do about it, if there is something specific.
    pub fn help(&self) -> Option<String> {
        let text = match self {
            PushError::BadReference { .. } => {
                "write it as HOST[:PORT]/REPOSITORY[:TAG], e.g. `127.0.0.1:5000/slipway/serve:v1` or `http://host:5000/repo:tag` for plain HTTP".into()
            }
            PushError::Layout { .. } => "build the image first (`cargo xtask image`) and push the layout it wrote".into(),
            PushError::Unreachable { .. } => {
                "check that the registry is running and the host and port are right; use an `http://` reference for a registry without TLS".into()
            }
            PushError::Unauthorized { registry, .. } => format!(
                "set SLIPWAY_REGISTRY_USER and SLIPWAY_REGISTRY_PASSWORD to an account that may push, or run `docker login {registry}`"
            ),
            PushError::ManifestRejected { .. } => {
                "the registry's message says why; an old registry may not accept OCI manifests".into()
            }
            PushError::DockerConfig { .. } => {
                "fix or remove that file, or set SLIPWAY_REGISTRY_USER and SLIPWAY_REGISTRY_PASSWORD instead".into()
            }
            PushError::Protocol { .. } => return None,
        };
        Some(text)
    }
}

/// An error with its help line, for printing.
pub struct WithHelp<'a, E>(pub &'a E);

impl fmt::Display for WithHelp<'_, ImageError> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_with_help(f, self.0, self.0.help())
    }
}

impl fmt::Display for WithHelp<'_, PushError> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_with_help(f, self.0, self.0.help())
    }
}

fn write_with_help(f: &mut fmt::Formatter<'_>, error: &dyn fmt::Display, help: Option<String>) -> fmt::Result {
    write!(f, "{error}")?;
    if let Some(help) = help {
        write!(f, "\n  help: {help}")?;
    }
    Ok(())
}

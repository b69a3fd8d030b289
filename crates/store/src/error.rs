//! Errors a user can act on, each with a line that says what to do.

use std::fmt;

/// What went wrong talking to a remote or reading DVC's files.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A `.dvc` file could not be read.
    #[error("{file} is not a usable DVC pointer file: {reason}")]
    BadPointer {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A `.dir` manifest is malformed or unsafe.
    #[error("the directory manifest {key} on {remote} is unusable: {reason}")]
    BadManifest {
        /// Its key.
        key: String,
        /// Where it came from.
        remote: String,
        /// Why.
        reason: String,
    },
    /// An object's bytes do not match the md5 that names it.
    #[error("{key} on {remote} is corrupt: expected md5 {expected}, got {actual}")]
    Corrupt {
        /// Its key.
        key: String,
        /// Where it came from.
        remote: String,
        /// The md5 that names it.
        expected: String,
        /// The md5 of what was received.
        actual: String,
    },
    /// An object is not on the remote.
    #[error("{key} is missing from {remote}")]
    Missing {
        /// Its key.
        key: String,
        /// The remote.
        remote: String,
    },
    /// An object is larger than what reads it takes.
    #[error("{key} on {remote} is larger than {limit} bytes, more than such an object can be")]
    TooLarge {
        /// Its key.
        key: String,
        /// The remote.
        remote: String,
        /// The most that is read.
        limit: u64,
    },
    /// No credentials were found for S3.
    #[error("no S3 credentials for {remote}")]
    NoCredentials {
        /// The remote.
        remote: String,
    },
    /// The remote refused our credentials.
    #[error("{remote} refused the credentials: {detail}")]
    Denied {
        /// The remote.
        remote: String,
        /// What the server said.
        detail: String,
    },
    /// The bucket does not exist.
    #[error("the bucket of {remote} does not exist")]
    NoBucket {
        /// The remote.
        remote: String,
    },
    /// The remote could not be reached, even after retries.
    #[error("cannot reach {remote}: {detail}")]
    Unreachable {
        /// The remote.
        remote: String,
        /// The last error.
        detail: String,
    },
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    /// What the user can do about it, if there is something specific.
    pub fn help(&self) -> Option<String> {
        let text = match self {
            StoreError::BadPointer { file, .. } => format!("fix {file} by hand, or regenerate it with `cargo xtask add`"),
            StoreError::BadManifest { .. } => "the remote holds a manifest no tool wrote; push the directory again from a good copy".into(),
            StoreError::Corrupt { key, .. } => format!("delete {key} on the remote and push it again from a machine that has the file"),
            StoreError::Missing { .. } => "push it from the machine that added the data (`cargo xtask push` or `dvc push`), or point SLIPWAY_REMOTE at the remote that has it".into(),
            StoreError::TooLarge { .. } => "the remote holds an object no Slipway wrote; remove it, or point SLIPWAY_REMOTE at the right remote".into(),
            StoreError::NoCredentials { .. } => "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials); for a server other than AWS also set AWS_ENDPOINT_URL".into(),
            StoreError::Denied { .. } => "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and that they may use this bucket".into(),
            StoreError::NoBucket { .. } => "create the bucket, or fix the bucket name in SLIPWAY_REMOTE / .dvc/config".into(),
            StoreError::Unreachable { .. } => "check that the server is up and AWS_ENDPOINT_URL is right; rerunning resumes where this stopped".into(),
            StoreError::Other(_) => return None,
        };
        Some(text)
    }
}

/// An error with its help line, for printing.
pub struct WithHelp<'a>(pub &'a StoreError);

impl fmt::Display for WithHelp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", anyhow::Error::msg(self.0.to_string()))?;
        if let Some(help) = self.0.help() {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

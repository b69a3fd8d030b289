//! The stage record: which inputs produced which outputs. Its JSON is a stable, versioned format
//! shared by every machine that uses the same step cache.

use serde::{Deserialize, Serialize};

use crate::cache_key::{Digest, KeyHasher};
use crate::input::ResolvedInput;
use crate::tree::FileEntry;

/// The `schema` field of every record. Bump it when a field changes meaning or is removed;
/// readers treat a record of another schema as absent (a cache miss), never as an error.
pub const RECORD_SCHEMA: &str = "slipway.stage-record.v2";

/// Bump when the output manifest digest changes meaning.
const OUTPUTS_VERSION: &str = "slipway-outputs-v2";

/// What one successful run of a stage read and wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// [`RECORD_SCHEMA`].
    pub schema: String,
    /// The stage's name.
    pub stage: String,
    /// The fingerprint of `inputs`.
    pub fingerprint: Digest,
    /// Every input as it was observed, in declaration order.
    pub inputs: Vec<ResolvedInput>,
    /// Every owned output file, sorted by path; their contents are in the step cache by digest.
    pub outputs: Vec<FileEntry>,
    /// Every file under the paths the stage updates in place, as the run left them; not stored.
    #[serde(default)]
    pub updates: Vec<FileEntry>,
    /// [`outputs_digest`] of `outputs`: what dependent stages see as this stage's result.
    pub outputs_digest: Digest,
    /// How long the stage took to run.
    pub duration_ms: u64,
    /// When it finished, in seconds since the Unix epoch.
    pub finished_at: u64,
}

impl StageRecord {
    /// Whether this record was written in the current schema.
    pub fn is_current(&self) -> bool {
        self.schema == RECORD_SCHEMA
    }
}

/// The digest of a stage's result: its owned outputs and what it left in the paths it updates.
pub fn outputs_digest(outputs: &[FileEntry], updates: &[FileEntry]) -> Digest {
    KeyHasher::new(OUTPUTS_VERSION).key(outputs).key(updates).finish()
}

/// What dependents of an environment stage see: its outputs and the fingerprint that built the
/// environment, so that rebuilding it from other inputs (a new lock file) reruns them.
pub fn environment_outputs_digest(outputs: &[FileEntry], updates: &[FileEntry], fingerprint: &Digest) -> Digest {
    KeyHasher::new(OUTPUTS_VERSION).key(outputs).key(updates).str("environment").key(fingerprint).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::InputValue;
    use crate::tree::EntryKind;

    #[test]
    fn record_json_shape() {
        let file =
            FileEntry { path: "models/model.onnx".into(), kind: EntryKind::File, size: 3, digest: Digest::of(b"abc") };
        let record = StageRecord {
            schema: RECORD_SCHEMA.into(),
            stage: "train".into(),
            fingerprint: Digest::of(b"fingerprint"),
            inputs: vec![
                ResolvedInput {
                    name: "files:code".into(),
                    value: InputValue::Files { ignore: vec!["target".into()], files: vec![file.clone()] },
                },
                ResolvedInput {
                    name: "env:TOKEN".into(),
                    value: InputValue::Env { set: true, secret: true, digest: None },
                },
                ResolvedInput { name: "param:C".into(), value: InputValue::Param { value: serde_json::json!(1.0) } },
                ResolvedInput { name: "tool:rustc".into(), value: InputValue::Tool { version: "rustc 1.95.0".into() } },
                ResolvedInput {
                    name: "upstream:pull".into(),
                    value: InputValue::Upstream { outputs: Digest::of(b"") },
                },
            ],
            outputs_digest: outputs_digest(std::slice::from_ref(&file), &[]),
            outputs: vec![file],
            updates: vec![],
            duration_ms: 1200,
            finished_at: 1_790_000_000,
        };
        insta::assert_json_snapshot!(record);
        let back: StageRecord = serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap();
        assert_eq!(back, record);
    }
}

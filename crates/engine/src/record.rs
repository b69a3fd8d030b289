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

/// What deciding a stage's freshness needs of its record: not the inputs, which are most of a
/// record of a stage over many files (10,000 files made a 2 MB record).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RecordHead {
    /// [`RECORD_SCHEMA`].
    pub schema: String,
    /// The stage's name.
    pub stage: String,
    /// The fingerprint of the inputs.
    pub fingerprint: Digest,
    /// Every owned output file, sorted by path.
    pub outputs: Vec<FileEntry>,
    /// Every file under the paths the stage updates in place.
    #[serde(default)]
    pub updates: Vec<FileEntry>,
    /// [`outputs_digest`] of `outputs`.
    pub outputs_digest: Digest,
    /// Read past, not kept: a record without them is not one [`StageRecord`] would accept.
    inputs: serde::de::IgnoredAny,
    duration_ms: u64,
    finished_at: u64,
}

impl From<StageRecord> for RecordHead {
    fn from(r: StageRecord) -> RecordHead {
        RecordHead {
            schema: r.schema,
            stage: r.stage,
            fingerprint: r.fingerprint,
            outputs: r.outputs,
            updates: r.updates,
            outputs_digest: r.outputs_digest,
            inputs: serde::de::IgnoredAny,
            duration_ms: r.duration_ms,
            finished_at: r.finished_at,
        }
    }
}

impl StageRecord {
    /// Whether this record was written in the current schema.
    pub fn is_current(&self) -> bool {
        self.schema == RECORD_SCHEMA
    }

    /// Checks a record read from a store before any of its paths is used: every output is a
    /// plain relative path (no `..`, `.`, empty or absolute part) inside one of the paths the
    /// stage declares it owns, and every updated path inside one it updates. A record on a
    /// shared remote is not trusted: a path outside the outputs would let it replace any file
    /// on every machine that restores it.
    pub fn check_paths(&self, outputs: &[String], updates: &[String]) -> Result<(), String> {
        let check = |entries: &[FileEntry], declared: &[String], what: &str| {
            for e in entries {
                if !is_plain_relative(&e.path) {
                    return Err(format!("{what} path `{}` is not a plain relative path", e.path.escape_debug()));
                }
                if !declared.iter().any(|d| crate::walk::is_within(&e.path, d)) {
                    return Err(format!(
                        "{what} path `{}` is outside the stage's declared {what}s",
                        e.path.escape_debug()
                    ));
                }
            }
            Ok(())
        };
        check(&self.outputs, outputs, "output")?;
        check(&self.updates, updates, "updated")
    }
}

/// Whether `path` is relative and made only of normal parts: no `..`, `.`, empty or root part,
/// no backslash or NUL.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains(['\\', '\0'])
        && path.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
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
    fn paths_from_a_store_are_checked() {
        let entry =
            |path: &str| FileEntry { path: path.into(), kind: EntryKind::File, size: 0, digest: Digest::of(b"") };
        let record = |paths: &[&str]| StageRecord {
            schema: RECORD_SCHEMA.into(),
            stage: "s".into(),
            fingerprint: Digest::of(b""),
            inputs: vec![],
            outputs: paths.iter().map(|p| entry(p)).collect(),
            updates: vec![],
            outputs_digest: Digest::of(b""),
            duration_ms: 0,
            finished_at: 0,
        };
        let declared = ["models".to_string(), "reports/r.json".to_string()];
        let check = |paths: &[&str]| record(paths).check_paths(&declared, &[]);
        assert_eq!(check(&["models/m.onnx", "reports/r.json"]), Ok(()));
        for bad in ["/etc/passwd", "models/../../x", "models/./m", "models//m", "", "models\\..\\x", "model"] {
            assert!(check(&[bad]).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(check(&["src/x"]), Err("output path `src/x` is outside the stage's declared outputs".into()));
        assert_eq!(check(&["../x"]), Err("output path `../x` is not a plain relative path".into()));
    }

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
        // The head reads the same record, skipping its inputs, and says what the full one says.
        let json = serde_json::to_vec_pretty(&record).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = crate::LocalStore::new(dir.path());
        crate::StepStore::put_record(&store, &record).unwrap();
        let head = crate::StepStore::record_head(&store, "train", &record.fingerprint).unwrap();
        assert_eq!(head, Some(RecordHead::from(record.clone())));
        assert_eq!(serde_json::from_slice::<RecordHead>(&json).unwrap(), RecordHead::from(record.clone()));
        assert_eq!(crate::StepStore::record_head(&store, "train", &Digest::of(b"other")).unwrap(), None);
        assert_eq!(crate::StepStore::record_head(&store, "test", &record.fingerprint).unwrap(), None);
        // A record the full reader refuses (no inputs) is no head either.
        let mut bare: serde_json::Value = serde_json::from_slice(&json).unwrap();
        bare.as_object_mut().unwrap().remove("inputs");
        assert!(serde_json::from_value::<StageRecord>(bare.clone()).is_err());
        assert!(serde_json::from_value::<RecordHead>(bare).is_err());
        assert_eq!(back, record);
    }
}

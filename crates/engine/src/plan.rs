//! Planning: observing a stage's inputs, computing its fingerprint, and explaining — without
//! running anything — whether it is fresh and, if not, what changed.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cache_key::{Digest, FINGERPRINT_VERSION, KeyHasher};
use crate::input::{Input, InputValue, ResolvedInput, resolve_env};
use crate::record::{StageRecord, outputs_digest};
use crate::stage::{Pipeline, Stage};
use crate::tree::{FileEntry, TreeHasher};
use crate::workspace::Workspace;

/// A stage's inputs as observed now, and the fingerprint they give.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// In declaration order, then one `upstream:` entry per upstream stage.
    pub inputs: Vec<ResolvedInput>,
    /// BLAKE3 over the stage name and every input.
    pub fingerprint: Digest,
}

/// Observes every input of `stage`. `upstream` maps each upstream stage to its outputs digest.
pub fn resolve(
    stage: &Stage,
    ws: &Workspace,
    upstream: &BTreeMap<String, Digest>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Resolved> {
    let hasher = TreeHasher::new(ws.root(), ws.stat_cache(), progress);
    let mut inputs = Vec::with_capacity(stage.inputs.len() + stage.after.len());
    for input in &stage.inputs {
        let value = match input {
            Input::Files { paths, .. } => {
                let files = hasher.manifest(paths, &stage.ignore)?;
                InputValue::Files { ignore: stage.ignore.patterns().to_vec(), files }
            }
            Input::Env { name, secret } => resolve_env(name, *secret, ws.env()),
            Input::Param { value, .. } => InputValue::Param { value: value.clone() },
            Input::Tool { argv, .. } => InputValue::Tool { version: ws.tool_version(argv)? },
        };
        inputs.push(ResolvedInput { name: input.key_name(), value });
    }
    for up in &stage.after {
        let outputs = *upstream.get(up).with_context(|| format!("stage `{up}` has not produced its outputs"))?;
        inputs.push(ResolvedInput { name: format!("upstream:{up}"), value: InputValue::Upstream { outputs } });
    }
    let fingerprint = KeyHasher::new(FINGERPRINT_VERSION).str(&stage.name).key(&inputs).finish();
    Ok(Resolved { inputs, fingerprint })
}

/// The current manifest of a stage's outputs; missing paths appear as [`crate::EntryKind::Missing`].
pub fn observe_outputs(stage: &Stage, ws: &Workspace) -> Result<Vec<FileEntry>> {
    TreeHasher::new(ws.root(), ws.stat_cache(), &|_| {}).manifest(&stage.outputs, &stage.ignore)
}

/// Where a stage stands.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Freshness {
    /// A record matches the inputs and the outputs are in place: nothing to do.
    Fresh,
    /// A record matches the inputs; the outputs will be restored from the step cache.
    Restore {
        /// Which outputs are missing or differ.
        outputs: Vec<String>,
    },
    /// The stage will run.
    Stale {
        /// Each reason, for a person.
        reasons: Vec<String>,
    },
}

/// One line of `status`.
#[derive(Clone, Debug, Serialize)]
pub struct StageStatus {
    /// The stage.
    pub stage: String,
    /// Fresh, restorable or stale, and why.
    #[serde(flatten)]
    pub freshness: Freshness,
}

/// The status of every stage of `pipeline`, in order, running nothing.
pub fn status(pipeline: &Pipeline, ws: &Workspace, no_cache: bool) -> Result<Vec<StageStatus>> {
    let mut known: BTreeMap<String, Digest> = BTreeMap::new();
    let mut out = Vec::new();
    for stage in pipeline.stages() {
        let freshness = stage_status(stage, ws, &mut known, no_cache)
            .with_context(|| format!("cannot plan stage `{}`", stage.name))?;
        out.push(StageStatus { stage: stage.name.clone(), freshness });
    }
    ws.save_stat_cache()?;
    return Ok(out);

    fn stage_status(
        stage: &Stage,
        ws: &Workspace,
        known: &mut BTreeMap<String, Digest>,
        no_cache: bool,
    ) -> Result<Freshness> {
        let waiting: Vec<&String> = stage.after.iter().filter(|up| !known.contains_key(*up)).collect();
        if !waiting.is_empty() {
            let mut reasons: Vec<String> = waiting.iter().map(|up| format!("upstream `{up}` runs first")).collect();
            reasons.extend(explain_without_upstream(stage, ws)?);
            return Ok(Freshness::Stale { reasons });
        }
        let resolved = resolve(stage, ws, known, &|_| {})?;
        let record = if no_cache { None } else { ws.store().record(&stage.name, &resolved.fingerprint)? };
        let Some(record) = record else {
            let reasons =
                if no_cache { vec!["--no-cache".to_string()] } else { explain(ws.last_record(&stage.name), &resolved) };
            return Ok(Freshness::Stale { reasons });
        };
        if !environment_matches(stage, ws, &resolved.fingerprint) {
            let env = stage.environment.as_deref().unwrap_or_default();
            return Ok(Freshness::Stale {
                reasons: vec![format!("environment `{env}` is missing or was built from other inputs")],
            });
        }
        known.insert(stage.name.clone(), record.outputs_digest);
        let differing = differing_outputs(&record.outputs, &observe_outputs(stage, ws)?);
        Ok(if differing.is_empty() { Freshness::Fresh } else { Freshness::Restore { outputs: differing } })
    }
}

/// Reasons a stage is stale when its upstream is stale too: its own inputs compared with the
/// last run, leaving out the upstream outputs that are not known yet.
fn explain_without_upstream(stage: &Stage, ws: &Workspace) -> Result<Vec<String>> {
    let Some(last) = ws.last_record(&stage.name) else { return Ok(vec![]) };
    let upstream = last
        .inputs
        .iter()
        .filter_map(|i| match (&i.value, i.name.strip_prefix("upstream:")) {
            (InputValue::Upstream { outputs }, Some(up)) => Some((up.to_string(), *outputs)),
            _ => None,
        })
        .collect();
    let resolved = resolve(stage, ws, &upstream, &|_| {})?;
    Ok(crate::explain::diff_inputs(&last.inputs, &resolved.inputs))
}

fn explain(last: Option<StageRecord>, now: &Resolved) -> Vec<String> {
    match last {
        None => vec!["never run here".to_string()],
        Some(last) => {
            let mut reasons = crate::explain::diff_inputs(&last.inputs, &now.inputs);
            if reasons.is_empty() {
                reasons.push("no record for these inputs in the step cache".to_string());
            }
            reasons
        }
    }
}

/// Paths whose current state differs from the recorded outputs.
pub fn differing_outputs(recorded: &[FileEntry], current: &[FileEntry]) -> Vec<String> {
    if outputs_digest(recorded) == outputs_digest(current) {
        return Vec::new();
    }
    let now: BTreeMap<&str, &FileEntry> = current.iter().map(|e| (e.path.as_str(), e)).collect();
    let was: BTreeMap<&str, &FileEntry> = recorded.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out: Vec<String> =
        recorded.iter().filter(|e| now.get(e.path.as_str()) != Some(e)).map(|e| e.path.clone()).collect();
    out.extend(current.iter().filter(|e| !was.contains_key(e.path.as_str())).map(|e| e.path.clone()));
    out
}

/// The file inside a stage's environment directory that says which fingerprint built it.
pub const ENVIRONMENT_MARKER: &str = ".slipway-environment";

/// Whether the stage's environment (if it has one) was built for `fingerprint`.
pub fn environment_matches(stage: &Stage, ws: &Workspace, fingerprint: &Digest) -> bool {
    let Some(dir) = &stage.environment else { return true };
    let marker = ws.root().join(dir).join(ENVIRONMENT_MARKER);
    std::fs::read_to_string(marker).is_ok_and(|text| text.trim() == fingerprint.to_hex())
}

/// Records that the stage's environment was built for `fingerprint`.
pub fn mark_environment(stage: &Stage, ws: &Workspace, fingerprint: &Digest) -> Result<()> {
    let Some(dir) = &stage.environment else { return Ok(()) };
    let marker = ws.root().join(dir).join(ENVIRONMENT_MARKER);
    crate::fsutil::write_atomic(&marker, format!("{}\n", fingerprint.to_hex()).as_bytes())
        .with_context(|| format!("cannot mark the environment {dir}"))
}

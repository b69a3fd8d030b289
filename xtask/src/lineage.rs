//! `cargo xtask trace THING`: where a release, an image, a model or a commit came from, and
//! where it went. The chain is data → train run → model → validation → image → releases, read
//! from the step cache's records in `.slipway/cache` (which the pipeline writes on this machine)
//! and the release ledger on the remote; a data file's digest gives the reverse direction, the
//! releases whose model was trained on it. A link that neither holds is named as missing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use deploy::ledger::Event;
use engine::{Digest, FileEntry, InputValue, StageRecord};
use serde::Serialize;

use crate::Env;
use crate::paths::{IMAGE_PROVENANCE, IMAGE_RECORD, MODEL, VALIDATION_REPORT};

/// At most this many records of a stage are read, none larger than this, and no more than
/// `MAX_STAGE_BYTES` of one stage's records.
const MAX_RECORDS: usize = 10_000;
const MAX_RECORD_BYTES: u64 = 64 << 20;
const MAX_STAGE_BYTES: u64 = 256 << 20;
/// The largest report or image record read back from the step cache.
const MAX_OBJECT_BYTES: u64 = 16 << 20;

/// The answer, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Trace {
    /// What was asked.
    pub query: String,
    /// How it was read: `release`, `image`, `model`, `data` or `commit`.
    pub kind: &'static str,
    /// One chain per model the query leads to.
    pub models: Vec<ModelTrace>,
    /// Links that could not be followed, for a person.
    pub missing: Vec<String>,
}

/// The chain of one model.
#[derive(Debug, Default, Serialize)]
pub struct ModelTrace {
    /// BLAKE3 of the model file, as the ledger and the server report it.
    pub model: String,
    pub data: Option<DataLink>,
    pub train: Option<RunLink>,
    pub validation: Option<ValidationLink>,
    pub images: Vec<ImageLink>,
    /// Every ledger event of a release of this model, in ledger order.
    pub events: Vec<Event>,
}

/// The data the model was trained on: the `pull` run's files.
#[derive(Debug, Serialize)]
pub struct DataLink {
    pub record: String,
    pub files: Vec<FileEntry>,
}

/// The `train` run that wrote the model.
#[derive(Debug, Serialize)]
pub struct RunLink {
    pub fingerprint: String,
    pub finished_at: u64,
    pub duration_ms: u64,
    pub params: BTreeMap<String, serde_json::Value>,
}

/// The `validate` run on the model, and its report.
#[derive(Debug, Serialize)]
pub struct ValidationLink {
    pub fingerprint: String,
    pub finished_at: u64,
    pub report: Option<serde_json::Value>,
}

/// An image built with the model.
#[derive(Debug, Serialize)]
pub struct ImageLink {
    pub fingerprint: String,
    pub manifest_digest: Option<String>,
    pub tags: Vec<String>,
    /// BLAKE3 of its provenance statement, which the releases of the image carry.
    pub provenance: Option<String>,
}

/// The records of the step cache at `root/.slipway/cache`.
struct Records {
    dir: PathBuf,
    by_stage: BTreeMap<&'static str, Vec<StageRecord>>,
    /// Records that could not be read or are of another schema.
    skipped: usize,
    /// Whether a limit stopped the reading of a stage's records.
    truncated: bool,
}

impl Records {
    fn load(root: &Path) -> Records {
        let dir = root.join(engine::STATE_DIR).join("cache");
        let mut records = Records { dir, by_stage: BTreeMap::new(), skipped: 0, truncated: false };
        for stage in ["pull", "train", "validate", "image"] {
            let list = records.read_stage(stage);
            records.by_stage.insert(stage, list);
        }
        records
    }

    fn read_stage(&mut self, stage: &str) -> Vec<StageRecord> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("records").join(stage)) else { return Vec::new() };
        // Newest files first, so that what a limit leaves out is the oldest runs.
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok().filter(std::fs::Metadata::is_file)?;
                Some((meta.modified().ok()?, e.path()))
            })
            .collect();
        files.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let (mut out, mut read) = (Vec::new(), 0u64);
        for (i, (_, path)) in files.iter().enumerate() {
            if i >= MAX_RECORDS || read > MAX_STAGE_BYTES {
                self.truncated = true;
                break;
            }
            let bytes = read_bounded(path, MAX_RECORD_BYTES);
            read += bytes.as_ref().map_or(0, |b| b.len() as u64);
            let record = bytes
                .and_then(|bytes| serde_json::from_slice::<StageRecord>(&bytes).ok())
                .filter(|r| r.stage == stage && r.schema == engine::RECORD_SCHEMA);
            match record {
                Some(r) => out.push(r),
                None => self.skipped += 1,
            }
        }
        // Newest first: several runs can make the same output.
        out.sort_by_key(|r| std::cmp::Reverse(r.finished_at));
        out
    }

    fn of(&self, stage: &str) -> &[StageRecord] {
        self.by_stage.get(stage).map(Vec::as_slice).unwrap_or_default()
    }

    /// The content of an output, by digest, checked against it.
    fn object(&self, digest: &Digest) -> Option<Vec<u8>> {
        let hex = digest.to_hex();
        let bytes = read_bounded(&self.dir.join("objects").join(&hex[..2]).join(&hex[2..]), MAX_OBJECT_BYTES)?;
        (Digest::of(&bytes) == *digest).then_some(bytes)
    }
}

fn read_bounded(path: &Path, max: u64) -> Option<Vec<u8>> {
    // A regular file only: opening a FIFO would block.
    if !std::fs::symlink_metadata(path).ok()?.is_file() {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= max).then_some(bytes)
}

fn output<'a>(record: &'a StageRecord, path: &str) -> Option<&'a FileEntry> {
    record.outputs.iter().find(|f| f.path == path)
}

fn upstream(record: &StageRecord, stage: &str) -> Option<Digest> {
    let name = format!("upstream:{stage}");
    record.inputs.iter().find(|i| i.name == name).and_then(|i| match &i.value {
        InputValue::Upstream { outputs } => Some(*outputs),
        _ => None,
    })
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `cargo xtask trace THING [--json]`.
pub fn run(root: &Path, env: &Env, thing: &str, json: bool) -> Result<u8> {
    kind_of(thing)?;
    let records = Records::load(root);
    let program = crate::root::program_root(env, root)?;
    let mut missing = Vec::new();
    let events = match crate::release::deployer(&program, root, env, Box::new(|line: &str| eprintln!("{line}")))
        .and_then(|d| crate::release::block_on(d.events()).map_err(anyhow::Error::from))
    {
        Ok(events) => events,
        Err(e) => {
            missing.push(format!("the release ledger could not be read ({e:#}): releases are left out"));
            Vec::new()
        }
    };
    let trace = trace(thing, &records, &events, missing)?;
    if trace.models.is_empty() {
        bail!(
            "nothing in the release ledger or the local records matches `{thing}`; try `cargo xtask releases` for versions and digests"
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&trace)?);
    } else {
        print!("{}", render(&trace));
    }
    Ok(0)
}

/// How `thing` is read, or why it cannot be; checked before anything is loaded.
fn kind_of(thing: &str) -> Result<&'static str> {
    let lower = thing.trim().to_ascii_lowercase();
    Ok(if lower.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        "release"
    } else if lower.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && is_hex(h)) {
        "image"
    } else if lower.len() == 64 && is_hex(&lower) {
        "digest"
    } else if (7..=40).contains(&lower.len()) && is_hex(&lower) {
        "commit"
    } else {
        bail!(
            "`{}` is not a release version (v3), an image digest (sha256:…), a model or data file digest (64 hex) or a commit (7 to 40 hex)",
            thing.trim()
        )
    })
}

fn trace(thing: &str, records: &Records, events: &[Event], mut missing: Vec<String>) -> Result<Trace> {
    let thing = thing.trim();
    let lower = thing.to_ascii_lowercase();
    let mut models: BTreeSet<String> = BTreeSet::new();
    let kind = match kind_of(thing)? {
        "release" => {
            models.extend(events.iter().filter(|e| e.release.version == lower).map(|e| e.release.model_digest.clone()));
            "release"
        }
        "image" => {
            let digest = lower.clone();
            models.extend(
                events
                    .iter()
                    .filter(|e| e.release.image_digest.as_deref() == Some(digest.as_str()))
                    .map(|e| e.release.model_digest.clone()),
            );
            for image in records.of("image") {
                let built = output(image, IMAGE_RECORD).and_then(|f| records.object(&f.digest));
                let manifest = built.and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
                if manifest.as_ref().and_then(|m| m["manifest_digest"].as_str()) == Some(digest.as_str()) {
                    let train = upstream(image, "train");
                    models.extend(
                        records
                            .of("train")
                            .iter()
                            .filter(|t| Some(t.outputs_digest) == train)
                            .filter_map(|t| output(t, MODEL).map(|m| m.digest.to_hex())),
                    );
                }
            }
            "image"
        }
        "digest" => {
            let as_model =
                records.of("train").iter().any(|t| output(t, MODEL).is_some_and(|m| m.digest.to_hex() == lower))
                    || events.iter().any(|e| e.release.model_digest == lower);
            if as_model {
                models.insert(lower.clone());
                "model"
            } else {
                // A data file: the runs of `train` keyed on a `pull` that produced it.
                let pulls: Vec<Digest> = records
                    .of("pull")
                    .iter()
                    .filter(|p| p.outputs.iter().chain(&p.updates).any(|f| f.digest.to_hex() == lower))
                    .map(|p| p.outputs_digest)
                    .collect();
                models.extend(
                    records
                        .of("train")
                        .iter()
                        .filter(|t| upstream(t, "pull").is_some_and(|u| pulls.contains(&u)))
                        .filter_map(|t| output(t, MODEL).map(|m| m.digest.to_hex())),
                );
                "data"
            }
        }
        _ => {
            models.extend(
                events.iter().filter(|e| e.release.git_sha.starts_with(&lower)).map(|e| e.release.model_digest.clone()),
            );
            "commit"
        }
    };
    if records.truncated {
        missing.push(format!(
            "the step cache holds more records than trace reads ({MAX_RECORDS} or {} MiB a stage); the oldest runs were left out",
            MAX_STAGE_BYTES >> 20
        ));
    }
    if records.skipped > 0 {
        missing.push(format!("{} record(s) in .slipway/cache could not be read and were left out", records.skipped));
    }
    let models = models.into_iter().map(|m| chain(&m, records, events, &mut missing)).collect();
    Ok(Trace { query: thing.to_string(), kind, models, missing })
}

fn chain(model: &str, records: &Records, events: &[Event], missing: &mut Vec<String>) -> ModelTrace {
    let short = &model[..model.len().min(12)];
    let mut t = ModelTrace { model: model.to_string(), ..ModelTrace::default() };
    t.events = events.iter().filter(|e| e.release.model_digest == model).cloned().collect();
    // Several runs can write the same model (a change only the holdout saw): each is followed.
    let runs: Vec<&StageRecord> =
        records.of("train").iter().filter(|r| output(r, MODEL).is_some_and(|m| m.digest.to_hex() == model)).collect();
    let trained: Vec<Digest> = runs.iter().map(|r| r.outputs_digest).collect();
    let Some(train) = runs.first().copied() else {
        missing.push(format!(
            "model {short}: no record here of the train run that wrote it (records stay in .slipway/cache on the machine that trained it)"
        ));
        return t;
    };
    let params = train
        .inputs
        .iter()
        .filter_map(|i| match (&i.value, i.name.strip_prefix("param:")) {
            (InputValue::Param { value }, Some(name)) => Some((name.to_string(), value.clone())),
            _ => None,
        })
        .collect();
    t.train = Some(RunLink {
        fingerprint: train.fingerprint.to_hex(),
        finished_at: train.finished_at,
        duration_ms: train.duration_ms,
        params,
    });
    let pulled: Vec<Digest> = runs.iter().filter_map(|r| upstream(r, "pull")).collect();
    match records.of("pull").iter().find(|p| pulled.contains(&p.outputs_digest)) {
        // `pull` updates the data in place: its files are the record's updates.
        Some(pull) => {
            let files = pull.outputs.iter().chain(&pull.updates).cloned().collect();
            t.data = Some(DataLink { record: pull.fingerprint.to_hex(), files });
        }
        None => missing.push(format!("model {short}: no record here of the pull that gave its train run its data")),
    }
    let of_this = |r: &StageRecord| upstream(r, "train").is_some_and(|u| trained.contains(&u));
    match records.of("validate").iter().find(|v| of_this(v)) {
        Some(v) => {
            let report = output(v, VALIDATION_REPORT)
                .and_then(|f| records.object(&f.digest))
                .and_then(|b| serde_json::from_slice(&b).ok());
            if report.is_none() {
                missing.push(format!("model {short}: its validation report is not in the step cache"));
            }
            t.validation =
                Some(ValidationLink { fingerprint: v.fingerprint.to_hex(), finished_at: v.finished_at, report });
        }
        None => missing.push(format!("model {short}: no record here of a validation of it")),
    }
    for image in records.of("image").iter().filter(|i| of_this(i)) {
        let built: Option<serde_json::Value> = output(image, IMAGE_RECORD)
            .and_then(|f| records.object(&f.digest))
            .and_then(|b| serde_json::from_slice(&b).ok());
        let tags = built.as_ref().and_then(|b| serde_json::from_value(b["tags"].clone()).ok()).unwrap_or_default();
        t.images.push(ImageLink {
            fingerprint: image.fingerprint.to_hex(),
            manifest_digest: built.as_ref().and_then(|b| b["manifest_digest"].as_str().map(str::to_string)),
            tags,
            provenance: output(image, IMAGE_PROVENANCE).map(|f| f.digest.to_hex()),
        });
    }
    if t.images.is_empty() {
        missing.push(format!("model {short}: no record here of an image built with it"));
    }
    if t.events.is_empty() {
        missing.push(format!("model {short}: no release of it in the ledger"));
    }
    t
}

/// When, as `2026-12-01T23:40:12Z`.
pub fn when(epoch: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(epoch as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| epoch.to_string())
}

/// The chains for a person.
fn render(trace: &Trace) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{} {}", trace.kind, trace.query);
    for m in &trace.models {
        let _ = writeln!(s, "\nmodel {} (blake3)", m.model);
        if let Some(d) = &m.data {
            let _ = writeln!(s, "  data        pull {}", &d.record[..12]);
            for f in &d.files {
                let _ = writeln!(s, "                {} {} ({} bytes)", f.path, &f.digest.to_hex()[..12], f.size);
            }
        }
        if let Some(r) = &m.train {
            let params: Vec<String> = r.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                s,
                "  train       run {} at {} ({:.1} s): {}",
                &r.fingerprint[..12],
                when(r.finished_at),
                r.duration_ms as f64 / 1000.0,
                params.join(" ")
            );
        }
        if let Some(v) = &m.validation {
            let report = v.report.as_ref();
            let passed =
                report.and_then(|r| r["passed"].as_bool()).map_or("unknown", |p| if p { "passed" } else { "failed" });
            let accuracy = report.and_then(|r| r["accuracy"].as_f64()).map_or("?".into(), |a| format!("{a:.4}"));
            let min =
                report.and_then(|r| r["thresholds"]["min_accuracy"].as_f64()).map_or("?".into(), |a| format!("{a}"));
            let _ = writeln!(
                s,
                "  validation  run {} at {}: {passed}, accuracy {accuracy} (min {min})",
                &v.fingerprint[..12],
                when(v.finished_at)
            );
        }
        for i in &m.images {
            let _ = writeln!(
                s,
                "  image       {} tags {}{}",
                i.manifest_digest.as_deref().unwrap_or("(its record is not in the step cache)"),
                i.tags.join(", "),
                i.provenance.as_ref().map(|p| format!("; provenance {}", &p[..12])).unwrap_or_default()
            );
        }
        for e in &m.events {
            let approval =
                e.approval.as_ref().map(|a| format!(", approved by {} ({})", a.by, a.how)).unwrap_or_default();
            let _ = writeln!(
                s,
                "  release     {} #{} {} to {}: {} by {} at {}{approval}",
                e.release.version,
                e.seq,
                crate::release::kebab(&e.kind),
                e.env,
                crate::release::kebab(&e.outcome),
                e.who,
                when(e.at)
            );
        }
    }
    if !trace.missing.is_empty() {
        let _ = writeln!(s, "\nmissing links:");
        for m in &trace.missing {
            let _ = writeln!(s, "  - {m}");
        }
    }
    s
}

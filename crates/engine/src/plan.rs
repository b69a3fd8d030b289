//! Planning: observing a stage's inputs, computing its fingerprint, and explaining — without
//! running anything — whether it is fresh and, if not, what changed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::cache_key::{Digest, FINGERPRINT_VERSION, KeyHasher};
use crate::input::{AMBIENT_ENV, Input, InputValue, ResolvedInput, resolve_env};
use crate::pipeline::Pipeline;
use crate::record::{StageRecord, outputs_digest};
use crate::stage::Stage;
use crate::tree::{FileEntry, TreeHasher};
use crate::walk::Filter;
use crate::workspace::Workspace;

/// A stage's inputs as observed now, and the fingerprint they give.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// `code`, the declared inputs in order, `commands`, then one `upstream:` entry per stage it
    /// is keyed on.
    pub inputs: Vec<ResolvedInput>,
    /// BLAKE3 over the stage name and every input.
    pub fingerprint: Digest,
    /// What each probe printed and whether it succeeded, for the action.
    pub probes: BTreeMap<String, (String, bool)>,
}

/// The environment a stage sees: the ambient variables and the ones it declares, as far as
/// they are set in `ws`. Its actions and commands see nothing else.
pub fn stage_env(stage: &Stage, ws: &Workspace) -> BTreeMap<String, String> {
    let declared = stage.inputs.iter().filter_map(|i| match i {
        Input::Env { name, .. } => Some(name.as_str()),
        _ => None,
    });
    AMBIENT_ENV
        .iter()
        .copied()
        .chain(declared)
        .filter_map(|name| ws.env().get(name).map(|v| (name.to_string(), v.clone())))
        .collect()
}

/// The command every stage keyed on crates probes: the compiler's full version.
const RUSTC_VERSION: [&str; 2] = ["rustc", "-vV"];

/// Every probe `stage` runs when its inputs are resolved, each with the environment it runs in.
pub fn probes(stage: &Stage, ws: &Workspace) -> Vec<(Vec<String>, BTreeMap<String, String>)> {
    let env = stage_env(stage, ws);
    let argvs = stage.inputs.iter().filter_map(|input| match input {
        Input::Probe { argv, .. } => Some(argv.clone()),
        Input::Crates { .. } => Some(RUSTC_VERSION.map(String::from).to_vec()),
        _ => None,
    });
    argvs.map(|argv| (argv, env.clone())).collect()
}

/// Observes every input of `stage` (a stage of `pipeline`). `upstream` maps each stage it is
/// keyed on to that stage's outputs digest.
pub fn resolve(
    pipeline: &Pipeline,
    stage: &Stage,
    ws: &Workspace,
    upstream: &BTreeMap<String, Digest>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Resolved> {
    // Every probe starts now, beside the hashing below; each is read where its input comes.
    with_probes_started(ws, probes(stage, ws), || resolve_inputs(pipeline, stage, ws, upstream, progress))
}

/// Runs `f` while each of `probes` runs on a thread of its own beside it, and waits for both.
fn with_probes_started<T>(
    ws: &Workspace,
    probes: Vec<(Vec<String>, BTreeMap<String, String>)>,
    f: impl FnOnce() -> T,
) -> T {
    std::thread::scope(|scope| {
        for (argv, env) in distinct(probes) {
            scope.spawn(move || drop(ws.probe(&argv, &env)));
        }
        f()
    })
}

/// `probes` sorted, each once.
pub fn distinct(
    mut probes: Vec<(Vec<String>, BTreeMap<String, String>)>,
) -> Vec<(Vec<String>, BTreeMap<String, String>)> {
    probes.sort();
    probes.dedup();
    probes
}

fn resolve_inputs(
    pipeline: &Pipeline,
    stage: &Stage,
    ws: &Workspace,
    upstream: &BTreeMap<String, Digest>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Resolved> {
    let hasher = TreeHasher::new(ws.root(), ws.stat_cache(), progress);
    let program_hasher = TreeHasher::new(ws.program_root(), ws.program_stat_cache(), progress);
    let excluded = pipeline.excluded_inputs(stage);
    let filter = Filter { ignore: &stage.ignore, excluded: &excluded };
    let env = stage_env(stage, ws);
    let ignore = stage.ignore.patterns().to_vec();
    let mut inputs = Vec::with_capacity(stage.inputs.len() + 3);
    let mut probes = BTreeMap::new();
    // The program's own code is part of `code` when it lives under the root, as it does in the
    // repository that builds it; a project in a subdirectory keys it as `pipeline-code`.
    let merged: Vec<String> = stage.pipeline_code.iter().chain(&stage.code).cloned().collect();
    let code: Vec<(&[String], &Path, &TreeHasher<'_>, &str)> = match ws.program_elsewhere() {
        true => vec![
            (&stage.code, ws.root(), &hasher, "code"),
            (&stage.pipeline_code, ws.program_root(), &program_hasher, "pipeline-code"),
        ],
        false => vec![(&merged, ws.root(), &hasher, "code")],
    };
    for (paths, root, hasher, name) in code {
        if paths.is_empty() {
            continue;
        }
        for path in paths {
            if !root.join(path).exists() {
                bail!(
                    "the code of stage `{}`, `{path}`, is not in the workspace at {}; is this the checkout the program was built from?",
                    stage.name,
                    root.display()
                );
            }
        }
        let files = hasher.manifest(paths, &filter)?;
        inputs.push(ResolvedInput { name: name.into(), value: InputValue::Files { ignore: ignore.clone(), files } });
    }
    for input in &stage.inputs {
        let value = match input {
            Input::Files { paths, .. } => {
                InputValue::Files { ignore: ignore.clone(), files: hasher.manifest(paths, &filter)? }
            }
            Input::Env { name, how } => resolve_env(name, *how, ws.env()),
            Input::Param { value, .. } => InputValue::Param { value: value.clone() },
            Input::Probe { name, argv, must_succeed } => {
                let (output, success) = ws.probe(argv, &env)?;
                probes.insert(name.clone(), (output.clone(), success));
                match must_succeed {
                    true if !success => {
                        bail!("could not read the version of `{}`; is it installed? ({output})", argv.join(" "))
                    }
                    true => InputValue::Tool { version: output },
                    false => InputValue::Probe { output, success },
                }
            }
            Input::Crates { packages } => resolve_crates(packages, &program_hasher, stage, ws, &env)?,
        };
        inputs.push(ResolvedInput { name: input.key_name(), value });
    }
    if !stage.commands.is_empty() {
        let lines = stage.commands.iter().map(ToString::to_string).collect();
        inputs.push(ResolvedInput { name: "commands".into(), value: InputValue::Commands { lines } });
    }
    for up in pipeline.keyed_on(&stage.name) {
        let outputs =
            *upstream.get(&up.name).with_context(|| format!("stage `{}` has not produced its outputs", up.name))?;
        inputs.push(ResolvedInput { name: format!("upstream:{}", up.name), value: InputValue::Upstream { outputs } });
    }
    let fingerprint = KeyHasher::new(FINGERPRINT_VERSION).str(&stage.name).key(&inputs).finish();
    Ok(Resolved { inputs, fingerprint, probes })
}

fn resolve_crates(
    packages: &[String],
    hasher: &TreeHasher<'_>,
    stage: &Stage,
    ws: &Workspace,
    env: &BTreeMap<String, String>,
) -> Result<InputValue> {
    let closure = crate::crates::closure(ws.program_root(), packages)
        .with_context(|| format!("stage `{}`'s crates", stage.name))?;
    let excluded = crate::crates::not_linked(&closure);
    let filter = Filter { ignore: &stage.ignore, excluded: &excluded };
    let files = hasher.manifest(&crate::crates::paths(&closure), &filter)?;
    let (rustc, ok) = ws.probe(&RUSTC_VERSION.map(String::from), env)?;
    if !ok {
        bail!("could not run `rustc -vV`, which stage `{}` is keyed on: is Rust installed?", stage.name);
    }
    Ok(InputValue::Crates { packages: closure.members.into_keys().collect(), files, locked: closure.locked, rustc })
}

/// The current manifest of a stage's owned outputs and of the paths it updates.
pub fn observe_outputs(stage: &Stage, ws: &Workspace) -> Result<(Vec<FileEntry>, Vec<FileEntry>)> {
    let hasher = TreeHasher::new(ws.root(), ws.stat_cache(), &|_| {});
    let none: Vec<String> = Vec::new();
    let filter = Filter { ignore: &stage.ignore, excluded: &none };
    Ok((hasher.manifest(&stage.outputs, &filter)?, hasher.manifest(&stage.updates, &filter)?))
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
    /// The stage will run (or wait for a stage that runs first).
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
    let all = pipeline.stages().iter().flat_map(|s| probes(s, ws)).collect();
    // Every stage's probes at once, as a run starts them; nothing changes the tree meanwhile.
    let out = with_probes_started(ws, all, || {
        let mut known: BTreeMap<String, Digest> = BTreeMap::new();
        let mut out = Vec::new();
        for stage in pipeline.stages() {
            let freshness = stage_status(pipeline, stage, ws, &mut known, no_cache)
                .with_context(|| format!("cannot plan stage `{}`", stage.name))?;
            out.push(StageStatus { stage: stage.name.clone(), freshness });
        }
        anyhow::Ok(out)
    })?;
    ws.save_stat_cache()?;
    Ok(out)
}

fn stage_status(
    pipeline: &Pipeline,
    stage: &Stage,
    ws: &Workspace,
    known: &mut BTreeMap<String, Digest>,
    no_cache: bool,
) -> Result<Freshness> {
    let keyed: Vec<&str> = pipeline.keyed_on(&stage.name).iter().map(|s| s.name.as_str()).collect();
    let mut reasons: Vec<String> = Vec::new();
    for up in stage.uses.iter().filter(|u| !known.contains_key(*u)) {
        reasons.push(format!("upstream `{up}` runs first"));
    }
    for gate in stage.after.iter().filter(|g| !known.contains_key(*g)) {
        reasons.push(format!("waits for `{gate}`, which runs first"));
    }
    if keyed.iter().any(|k| !known.contains_key(*k)) {
        reasons.extend(explain_without_upstream(pipeline, stage, ws)?);
        return Ok(Freshness::Stale { reasons });
    }
    let resolved = resolve(pipeline, stage, ws, known, &|_| {})?;
    let record = if no_cache { None } else { ws.store().record_head(&stage.name, &resolved.fingerprint)? };
    let Some(record) = record else {
        reasons.extend(if no_cache {
            vec!["--no-cache".to_string()]
        } else {
            explain(ws.last_record(&stage.name), &resolved)
        });
        return Ok(Freshness::Stale { reasons });
    };
    if let Err(why) = environment_matches(stage, ws, &resolved.fingerprint) {
        reasons.push(why);
        return Ok(Freshness::Stale { reasons });
    }
    let (outputs, updates) = observe_outputs(stage, ws)?;
    let changed = differing_outputs(&record.updates, &updates);
    if !changed.is_empty() {
        reasons.extend(changed.iter().map(|p| format!("`{p}` changed since the stage last ran")));
        return Ok(Freshness::Stale { reasons });
    }
    if !reasons.is_empty() {
        // Its own record matches, but a gate it runs after must run first.
        return Ok(Freshness::Stale { reasons });
    }
    known.insert(stage.name.clone(), record.outputs_digest);
    let differing = differing_outputs(&record.outputs, &outputs);
    Ok(if differing.is_empty() { Freshness::Fresh } else { Freshness::Restore { outputs: differing } })
}

/// Reasons a stage is stale when something it is keyed on is stale too: its own inputs
/// compared with the last run, leaving out the upstream outputs that are not known yet.
fn explain_without_upstream(pipeline: &Pipeline, stage: &Stage, ws: &Workspace) -> Result<Vec<String>> {
    let Some(last) = ws.last_record(&stage.name) else { return Ok(vec![]) };
    let mut upstream: BTreeMap<String, Digest> = last
        .inputs
        .iter()
        .filter_map(|i| match (&i.value, i.name.strip_prefix("upstream:")) {
            (InputValue::Upstream { outputs }, Some(up)) => Some((up.to_string(), *outputs)),
            _ => None,
        })
        .collect();
    // A stage the last run was not keyed on gets a placeholder; the diff names it as new.
    for up in pipeline.keyed_on(&stage.name) {
        upstream.entry(up.name.clone()).or_insert(Digest([0; 32]));
    }
    let resolved = resolve(pipeline, stage, ws, &upstream, &|_| {})?;
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
    if outputs_digest(recorded, &[]) == outputs_digest(current, &[]) {
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

/// Whether the stage's environment (if it has one) was built for `fingerprint` and is really
/// there; `Err` says why not, for `status`.
pub fn environment_matches(stage: &Stage, ws: &Workspace, fingerprint: &Digest) -> Result<(), String> {
    let Some(dir) = &stage.environment else { return Ok(()) };
    let marker = ws.root().join(dir).join(ENVIRONMENT_MARKER);
    if !std::fs::read_to_string(marker).is_ok_and(|text| text.trim() == fingerprint.to_hex()) {
        return Err(format!("environment `{dir}` is missing or was built from other inputs"));
    }
    match &stage.alive {
        Some(alive) => {
            alive(ws.root(), &stage_env(stage, ws)).map_err(|why| format!("environment `{dir}` is not there: {why}"))
        }
        None => Ok(()),
    }
}

/// Records that the stage's environment was built for `fingerprint`.
pub fn mark_environment(stage: &Stage, ws: &Workspace, fingerprint: &Digest) -> Result<()> {
    let Some(dir) = &stage.environment else { return Ok(()) };
    let marker = ws.root().join(dir).join(ENVIRONMENT_MARKER);
    crate::fsutil::write_atomic(&marker, format!("{}\n", fingerprint.to_hex()).as_bytes())
        .with_context(|| format!("cannot mark the environment {dir}"))
}

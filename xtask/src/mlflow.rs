//! MLflow, when `MLFLOW_TRACKING_URI` is set: the `train` stage logs a run (parameters, the
//! metrics of `models/metrics.json`, the model, the commit), a passed `validate` logs its report
//! to that run and registers a model version, and every release that goes live moves the
//! environment's alias (`staging`, `production`) to the version of its model.
//!
//! Through MLflow's REST API. The run and the version carry the model's BLAKE3 as the tag
//! [`MODEL_TAG`], which is how a later step (on another machine: CI trains, a laptop promotes)
//! finds them; nothing is kept locally. MLflow is told, never asked: what it answers changes
//! no stage's result, so it is not keyed, and an unreachable server is a warning unless
//! `[mlflow] required = true`. The URI, user, password and token are secrets: they reach only
//! the stages that declare them and are never shown (the server is named as scheme, host and
//! port only).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::Env;
pub use crate::config::MlflowConfig;

/// This module, as code of the stages that talk to MLflow.
pub const CODE: &str = file!();

/// The tracking server; may carry `user:password@`.
pub const URI_VAR: &str = "MLFLOW_TRACKING_URI";
/// Every variable this module reads; all are secrets.
pub const VARS: &[&str] = &[URI_VAR, "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"];
/// The tag on runs and versions that names the model file, by BLAKE3.
pub const MODEL_TAG: &str = "slipway.model_blake3";

/// The most an answer of the server may hold.
const MAX_ANSWER: usize = 4 << 20;
/// The largest artifact uploaded (models are read whole), and how long an upload may take.
const MAX_ARTIFACT: u64 = 2 << 30;
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// MLflow's own limits per `log-batch` call and per parameter value.
const MAX_PARAMS: usize = 100;
const MAX_PARAM_VALUE: usize = 6000;

/// A tracking server to tell.
pub struct Tracking {
    client: reqwest::Client,
    base: reqwest::Url,
    auth: Option<String>,
    /// `http://host:port`, for messages.
    pub shown: String,
    config: MlflowConfig,
}

/// A run, as far as Slipway needs it.
#[derive(Clone, Debug)]
pub struct Run {
    pub id: String,
    artifact_uri: String,
}

impl Tracking {
    /// The server `MLFLOW_TRACKING_URI` names, or `None` when it is unset or empty.
    pub fn from_env(env: &Env, config: &MlflowConfig) -> Result<Option<Tracking>> {
        let Some(raw) = env.get(URI_VAR).map(|s| s.trim()).filter(|s| !s.is_empty()) else { return Ok(None) };
        config.check()?;
        let mut base = reqwest::Url::parse(raw).map_err(|e| {
            anyhow!("{URI_VAR} is not a URL ({e}); set it to the tracking server, e.g. http://127.0.0.1:5000")
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            bail!(
                "{URI_VAR} names a `{}` store; Slipway talks to a tracking server over http or https only",
                base.scheme()
            );
        }
        let shown = format!("{}://{}", base.scheme(), base.host_str().unwrap_or_default())
            + &base.port().map(|p| format!(":{p}")).unwrap_or_default();
        let var = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
        // In the URL, user and password are percent-encoded (`p%40ss` is `p@ss`).
        let user =
            var("MLFLOW_TRACKING_USERNAME").or_else(|| Some(percent_decode(base.username())).filter(|u| !u.is_empty()));
        let password = var("MLFLOW_TRACKING_PASSWORD").or_else(|| base.password().map(percent_decode));
        // As MLflow's own client: user and password first, else the token.
        let auth = match (user, var("MLFLOW_TRACKING_TOKEN")) {
            (Some(user), _) => {
                use base64::Engine as _;
                let pair = format!("{user}:{}", password.unwrap_or_default());
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)))
            }
            (None, Some(token)) => Some(format!("Bearer {token}")),
            (None, None) => None,
        };
        let _ = base.set_username("");
        let _ = base.set_password(None);
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client for MLflow")?;
        Ok(Some(Tracking { client, base, auth, shown, config: config.clone() }))
    }

    /// One REST call; an answer that is not 2xx is an error naming MLflow's error code.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value> {
        let url = self.base.join(path).context("a REST path")?;
        let mut request = self.client.request(method.clone(), url).query(query);
        if let Some(auth) = &self.auth {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let response =
            request.send().await.map_err(|e| anyhow!("MLflow at {} is unreachable: {}", self.shown, plain(e)))?;
        let status = response.status();
        let bytes = bounded(response, MAX_ANSWER).await.map_err(|e| anyhow!("MLflow at {}: {e}", self.shown))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let code = value["error_code"].as_str().unwrap_or("no error code");
            let message: String =
                value["message"].as_str().unwrap_or("").chars().filter(|c| !c.is_control()).take(300).collect();
            bail!("MLflow at {} refused {method} {path}: HTTP {} {code}: {message}", self.shown, status.as_u16());
        }
        Ok(value)
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        self.call(reqwest::Method::GET, path, query, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, &[], Some(body)).await
    }

    /// The experiment's id, creating it the first time.
    async fn experiment(&self) -> Result<String> {
        let name = self.config.experiment.as_str();
        let found = self.get("api/2.0/mlflow/experiments/get-by-name", &[("experiment_name", name)]).await;
        let value = match found {
            Ok(v) => v["experiment"]["experiment_id"].clone(),
            Err(e) if e.to_string().contains("RESOURCE_DOES_NOT_EXIST") => {
                self.post("api/2.0/mlflow/experiments/create", json!({ "name": name })).await?["experiment_id"].clone()
            }
            Err(e) => return Err(e),
        };
        id(&value).with_context(|| format!("MLflow at {} gave no id for experiment {name:?}", self.shown))
    }

    /// Logs a training run of the model with BLAKE3 `model`; returns its id.
    pub async fn log_training(&self, t: &Training<'_>) -> Result<Run> {
        let experiment = self.experiment().await?;
        let mut tags = vec![
            json!({"key": MODEL_TAG, "value": t.model}),
            json!({"key": "mlflow.source.name", "value": "slipway train"}),
        ];
        if let Some(commit) = t.commit {
            tags.push(json!({"key": "mlflow.source.git.commit", "value": commit}));
        }
        tags.push(json!({"key": "mlflow.user", "value": t.who}));
        let created = self
            .post(
                "api/2.0/mlflow/runs/create",
                json!({ "experiment_id": experiment, "start_time": t.started_ms, "run_name": format!("train {}", short(t.model)), "tags": tags }),
            )
            .await?;
        let run = run_of(&created["run"]["info"])
            .with_context(|| format!("MLflow at {} created a run it did not describe", self.shown))?;
        let logged = self.fill(&run, t).await;
        let status = if logged.is_ok() { "FINISHED" } else { "FAILED" };
        let ended = self
            .post("api/2.0/mlflow/runs/update", json!({"run_id": run.id, "status": status, "end_time": now_ms()}))
            .await;
        logged.and(ended).map(|_| run)
    }

    /// Everything a training run holds. The caller then ends it FINISHED, or FAILED when this
    /// did not get through, so that a later validation never adopts a half-logged run.
    async fn fill(&self, run: &Run, t: &Training<'_>) -> Result<()> {
        artifact_root(run)?;
        let params: Vec<Value> = t
            .params
            .iter()
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                json!({"key": key(k), "value": v.chars().take(MAX_PARAM_VALUE).collect::<String>()})
            })
            .collect();
        for chunk in params.chunks(MAX_PARAMS) {
            self.post("api/2.0/mlflow/runs/log-batch", json!({"run_id": run.id, "params": chunk})).await?;
        }
        self.log_metrics(run, t.metrics, t.started_ms).await?;
        for (name, path) in t.artifacts {
            self.upload(run, name, path).await?;
        }
        Ok(())
    }

    async fn log_metrics(&self, run: &Run, metrics: &[(String, f64)], at_ms: u64) -> Result<()> {
        let metrics: Vec<Value> = metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| json!({"key": key(k), "value": v, "timestamp": at_ms, "step": 0}))
            .collect();
        for chunk in metrics.chunks(1000) {
            self.post("api/2.0/mlflow/runs/log-batch", json!({"run_id": run.id, "metrics": chunk})).await?;
        }
        Ok(())
    }

    /// Puts a file among the run's artifacts, through the server's artifact proxy.
    async fn upload(&self, run: &Run, name: &str, path: &Path) -> Result<()> {
        let rest = artifact_root(run)?;
        let size = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.len();
        if size > MAX_ARTIFACT {
            bail!(
                "{} is {} MiB, over the {} MiB Slipway uploads to MLflow",
                path.display(),
                size >> 20,
                MAX_ARTIFACT >> 20
            );
        }
        let bytes = tokio::fs::read(path).await.with_context(|| format!("cannot read {}", path.display()))?;
        let url = self.base.join(&format!("api/2.0/mlflow-artifacts/artifacts/{rest}/{name}"))?;
        let mut request = self.client.put(url).timeout(UPLOAD_TIMEOUT).body(bytes);
        if let Some(auth) = &self.auth {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        let response =
            request.send().await.map_err(|e| anyhow!("MLflow at {} is unreachable: {}", self.shown, plain(e)))?;
        let status = response.status();
        if !status.is_success() {
            bail!("MLflow at {} refused the artifact {name}: HTTP {}", self.shown, status.as_u16());
        }
        Ok(())
    }

    /// The newest run logged for `model`, if any.
    async fn run_of_model(&self, model: &str) -> Result<Option<Run>> {
        let experiment = self.experiment().await?;
        let filter = format!("tags.`{MODEL_TAG}` = '{model}'");
        let found = self
            .post(
                "api/2.0/mlflow/runs/search",
                json!({"experiment_ids": [experiment], "filter": filter, "max_results": 1, "order_by": ["attributes.start_time DESC"]}),
            )
            .await?;
        Ok(found["runs"].as_array().and_then(|runs| runs.first()).and_then(|r| run_of(&r["info"])))
    }

    /// After a passed validation: the report goes to the model's run, and the model becomes a
    /// version of the registered model (once: a version for the run is reused). Returns it.
    pub async fn register(&self, model: &str, report: &Path, metrics: &[(String, f64)]) -> Result<String> {
        let run = self.run_of_model(model).await?.ok_or_else(|| {
            anyhow!("MLflow at {} has no run of model {} (it was trained while MLflow was not set or not reachable); run `cargo xtask ci --force train` to log one", self.shown, short(model))
        })?;
        self.upload(&run, "validation/validation_report.json", report).await?;
        self.log_metrics(&run, metrics, now_ms()).await?;
        let name = self.config.model.as_str();
        if let Err(e) = self.post("api/2.0/mlflow/registered-models/create", json!({"name": name})).await
            && !e.to_string().contains("RESOURCE_ALREADY_EXISTS")
        {
            return Err(e);
        }
        if let Some(version) = self.version_of(model).await? {
            return Ok(version);
        }
        let created = self
            .post(
                "api/2.0/mlflow/model-versions/create",
                json!({"name": name, "source": format!("{}/model", run.artifact_uri), "run_id": run.id, "tags": [{"key": MODEL_TAG, "value": model}]}),
            )
            .await?;
        id(&created["model_version"]["version"])
            .with_context(|| format!("MLflow at {} created a version it did not number", self.shown))
    }

    /// The newest version of the registered model whose file is `model`.
    async fn version_of(&self, model: &str) -> Result<Option<String>> {
        let filter = format!("name = '{}' and tag.`{MODEL_TAG}` = '{model}'", self.config.model);
        let found =
            self.get("api/2.0/mlflow/model-versions/search", &[("filter", &filter), ("max_results", "100")]).await?;
        let versions = found["model_versions"].as_array().cloned().unwrap_or_default();
        Ok(versions.iter().filter_map(|v| id(&v["version"]).ok()).max_by_key(|v| v.parse::<u64>().unwrap_or(0)))
    }

    /// Points `alias` (an environment) at the version of `model`; returns the version.
    pub async fn set_alias(&self, alias: &str, model: &str) -> Result<String> {
        let version = self.version_of(model).await?.ok_or_else(|| {
            anyhow!("MLflow at {} has no version of model {} in {:?}: it was validated while MLflow was not set or not reachable", self.shown, short(model), self.config.model)
        })?;
        self.post(
            "api/2.0/mlflow/registered-models/alias",
            json!({"name": self.config.model, "alias": alias, "version": version}),
        )
        .await?;
        Ok(version)
    }
}

/// What a training run logs.
pub struct Training<'a> {
    pub model: &'a str,
    pub commit: Option<&'a str>,
    pub who: &'a str,
    pub started_ms: u64,
    pub params: &'a [(String, Value)],
    pub metrics: &'a [(String, f64)],
    pub artifacts: &'a [(&'a str, std::path::PathBuf)],
}

/// An id MLflow sends as a string (or, from some servers, a number): 1 to 64 of `[A-Za-z0-9_-]`.
fn id(value: &Value) -> Result<String> {
    let s = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => bail!("no id"),
    };
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok { Ok(s) } else { bail!("an id that is not plain: {:?}", s.chars().take(70).collect::<String>()) }
}

/// Where a run's artifacts go through the server's proxy: `EXPERIMENT/RUN/artifacts`, each part
/// plain, so nothing in an answer can steer an upload elsewhere on the server.
fn artifact_root(run: &Run) -> Result<String> {
    let Some(rest) = run.artifact_uri.strip_prefix("mlflow-artifacts:/") else {
        let scheme: String = run
            .artifact_uri
            .split(':')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect();
        bail!(
            "the run's artifacts go to `{scheme}:`, which Slipway cannot write; start the server with artifact proxying (the default, `--serve-artifacts`)"
        );
    };
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let plain = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    match parts.as_slice() {
        [experiment, id, "artifacts"] if plain(experiment) && *id == run.id => {
            Ok(format!("{experiment}/{id}/artifacts"))
        }
        _ => bail!("MLflow gave run {} an artifact location Slipway will not write to", run.id),
    }
}

/// A metric or parameter key as MLflow takes it: letters, digits and `_-. :/`, at most 250.
fn key(k: &str) -> String {
    let clean: String = k
        .chars()
        .map(|c| if c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':' | '/') { c } else { '_' })
        .take(250)
        .collect();
    if clean.is_empty() { "_".into() } else { clean }
}

/// The first 12 characters, for messages.
fn short(s: &str) -> &str {
    s.get(..12).unwrap_or(s)
}

/// `%XX` sequences decoded; what does not decode stays as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn run_of(info: &Value) -> Option<Run> {
    let id = id(&info["run_id"]).ok()?;
    let artifact_uri = info["artifact_uri"].as_str()?.chars().take(2048).collect();
    Some(Run { id, artifact_uri })
}

/// At most `max` bytes of the body.
async fn bounded(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| anyhow!("the answer broke off: {}", plain(e)))? {
        if out.len() + chunk.len() > max {
            bail!("an answer over {} MiB", max >> 20);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A transport error with its causes, without the request's URL (the server is named once,
/// as scheme, host and port; the credentials were taken out of the URL, and the token
/// travels in a header).
fn plain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        s.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    s
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The top-level numbers of `models/metrics.json`, as MLflow metrics.
pub fn numbers(metrics: &Value) -> Vec<(String, f64)> {
    let Some(map) = metrics.as_object() else { return Vec::new() };
    map.iter().filter_map(|(k, v)| Some((k.chars().take(250).collect(), v.as_f64()?))).take(1000).collect()
}

/// Runs `f` against the server `env` names, if any: `Ok(None)` when MLflow is not set.
pub fn with_tracking<T>(
    env: &Env,
    config: &MlflowConfig,
    f: impl AsyncFnOnce(&Tracking) -> Result<T>,
) -> Result<Option<(String, T)>> {
    let Some(tracking) = Tracking::from_env(env, config)? else {
        if config.required {
            bail!("[mlflow] required = true, but {URI_VAR} is not set; set it, or make MLflow optional");
        }
        return Ok(None);
    };
    let value = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(f(&tracking))?,
        Err(_) => tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f(&tracking))?,
    };
    Ok(Some((tracking.shown.clone(), value)))
}

/// Tells MLflow, or says why it could not: a warning, or the stage's failure when
/// `[mlflow] required = true`.
fn settle(
    ctx: &engine::StageContext,
    config: &MlflowConfig,
    what: &str,
    result: Result<Option<(String, String)>>,
) -> Result<(), engine::StageError> {
    match result {
        Ok(None) => Ok(()),
        Ok(Some((server, done))) => {
            ctx.log_line(&format!("MLflow at {server}: {done}"));
            Ok(())
        }
        Err(e) if config.required => {
            Err(engine::StageError::Failed(e.context(format!("{what} ([mlflow] required = true)"))))
        }
        Err(e) => {
            ctx.warn(&format!("{what}: {e:#}; the pipeline goes on ([mlflow] required = true makes this an error)"));
            Ok(())
        }
    }
}

/// The BLAKE3 of the model file, as the ledger and the MLflow tag name it.
fn model_blake3(root: &Path) -> Result<String> {
    let path = crate::paths::MODEL;
    Ok(blake3::hash(&std::fs::read(root.join(path)).with_context(|| format!("cannot read {path}"))?)
        .to_hex()
        .to_string())
}

/// The `train` stage, after a training: logs the run.
pub fn after_training(
    ctx: &engine::StageContext,
    config: &MlflowConfig,
    params: &[(String, Value)],
    started_ms: u64,
) -> Result<(), engine::StageError> {
    use crate::paths::{METRICS, MODEL};
    let root = ctx.root();
    let result = with_tracking(ctx.env(), config, async |t: &Tracking| {
        let model = model_blake3(root)?;
        let metrics: Value = serde_json::from_slice(
            &std::fs::read(root.join(METRICS)).with_context(|| format!("cannot read {METRICS}"))?,
        )
        .with_context(|| format!("{METRICS} is not JSON"))?;
        let commit = ctx.env().get("GITHUB_SHA").cloned().or_else(|| crate::who::head_commit(root));
        let who = crate::who::who(ctx.env(), root);
        let artifacts = [("model/model.onnx", root.join(MODEL)), ("model/metrics.json", root.join(METRICS))];
        let training = Training {
            model: &model,
            commit: commit.as_deref(),
            who: &who,
            started_ms,
            params,
            metrics: &numbers(&metrics),
            artifacts: &artifacts,
        };
        let run = t.log_training(&training).await?;
        Ok(format!("logged run {} for model {}", run.id, short(&model)))
    });
    settle(ctx, config, "MLflow was not told of this training", result)
}

/// The `validate` stage, after a pass: the report to the run, and a registered version.
pub fn after_validation(
    ctx: &engine::StageContext,
    config: &MlflowConfig,
    report: &gate::ValidationReport,
) -> Result<(), engine::StageError> {
    use crate::paths::VALIDATION_REPORT;
    let root = ctx.root();
    let result = with_tracking(ctx.env(), config, async |t: &Tracking| {
        let model = model_blake3(root)?;
        let mut metrics = vec![
            ("validation.accuracy".to_string(), report.accuracy),
            ("validation.latency_p99_ms".to_string(), report.latency_p99_ms),
        ];
        metrics.extend(report.per_class_recall.iter().map(|(k, v)| (format!("validation.recall.{k}"), *v)));
        let version = t.register(&model, &root.join(VALIDATION_REPORT), &metrics).await?;
        Ok(format!("model {} is version {version} of {:?}", short(&model), config.model))
    });
    settle(ctx, config, "MLflow has no version of this model", result)
}

/// After a release went live on `target` (deploy, promote, rollback): the environment's
/// alias follows it. `Ok(None)` when MLflow is not set; `Ok(Some(Err(warning)))` when it could
/// not be told; an error only when `[mlflow] required = true`.
pub fn follow(env: &Env, config: &MlflowConfig, target: &str, model: &str) -> Result<Option<Result<String, String>>> {
    let valid = !target.is_empty()
        && target.len() <= 255
        && target.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && target != "latest"
        && !(target.starts_with('v') && target[1..].bytes().all(|b| b.is_ascii_digit()));
    let result = match valid {
        false => Err(anyhow!("environment {target:?} cannot be an MLflow alias (MLflow keeps `latest` and `vN`)")),
        true => with_tracking(env, config, async |t: &Tracking| {
            let version = t.set_alias(target, model).await?;
            Ok(format!("alias {target} → version {version} of {:?}", config.model))
        }),
    };
    // Printed outside any stage, so masked here: a URI without credentials is shown whole.
    match result {
        Ok(told) => Ok(told.map(|(server, done)| Ok(redact(env, &format!("MLflow at {server}: {done}"))))),
        Err(e) if config.required => Err(anyhow!(
            "{}",
            redact(env, &format!("{e:#}; the MLflow alias did not follow the release ([mlflow] required = true)"))
        )),
        Err(e) => Ok(Some(Err(redact(env, &format!("the MLflow alias {target} did not move: {e:#}"))))),
    }
}

/// `text` with the value of every MLflow variable that is set replaced by `***`.
fn redact(env: &Env, text: &str) -> String {
    let mut out = text.to_string();
    let mut values: Vec<&str> =
        VARS.iter().filter_map(|v| env.get(*v)).map(|v| v.trim()).filter(|v| !v.is_empty()).collect();
    // Longest first, so that a value that contains another is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        out = out.replace(v, "***");
    }
    out
}

#[cfg(test)]
mod tests;

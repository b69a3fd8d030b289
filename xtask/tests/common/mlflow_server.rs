//! A real MLflow tracking server (`mlflow server` from the tools stage's pinned environment) on
//! 127.0.0.1, with a SQLite store and proxied artifacts in a scratch directory, stopped with
//! its whole process group when dropped.

#![allow(dead_code, reason = "each test binary that includes this uses a part of it")]

use std::path::Path;
use std::time::{Duration, Instant};

/// A running server.
pub struct MlflowServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: tempfile::TempDir,
}

/// How long the first start may take: it creates the SQLite schema (about 40 s on a busy
/// 2-core machine).
const START: Duration = Duration::from_secs(240);

impl MlflowServer {
    /// Starts a server; panics, saying what to do, when `mlflow` is not on PATH.
    pub fn start() -> MlflowServer {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let db = format!("sqlite:///{}", dir.path().join("mlflow.db").display());
        let artifacts = dir.path().join("artifacts");
        #[allow(
            clippy::disallowed_methods,
            reason = "the server runs in the background; the test stops its process group"
        )]
        let child = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("mlflow")
                .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
                .arg("--backend-store-uri")
                .arg(&db)
                .arg("--artifacts-destination")
                .arg(&artifacts)
                // The job runner (and its seven consumers) serves no REST call the tests make.
                .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
                .current_dir(dir.path())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .process_group(0)
                .spawn()
                .expect("`mlflow` is not on PATH: the tools stage installs it (`cargo xtask test` puts .slipway/tools/bin on PATH)")
        };
        let mut server = MlflowServer { child, url: format!("http://127.0.0.1:{port}"), dir };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        let agent = agent();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("mlflow server exited ({status}) before it was ready:\n{}", self.log());
            }
            if agent.get(&format!("{}/health", self.url)).call().is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(start.elapsed() < START, "mlflow server not ready after {START:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The end of the server's log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Where the server keeps its artifacts.
    pub fn artifacts(&self) -> std::path::PathBuf {
        self.dir.path().join("artifacts")
    }

    /// `GET` a REST path (`/api/2.0/…`) with a query; the JSON answer, whatever the status.
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let mut request = agent().get(&format!("{}{path}", self.url));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        let mut response = request.call().expect("the server answers");
        serde_json::from_reader(response.body_mut().as_reader()).unwrap_or(serde_json::Value::Null)
    }

    /// `POST` a JSON body to a REST path; the JSON answer, whatever the status.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let mut response = agent()
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes())
            .expect("the server answers");
        serde_json::from_reader(response.body_mut().as_reader()).unwrap_or(serde_json::Value::Null)
    }

    /// Every run of the experiment `name`, newest first.
    pub fn runs(&self, experiment: &str) -> Vec<serde_json::Value> {
        let e = self.get("/api/2.0/mlflow/experiments/get-by-name", &[("experiment_name", experiment)]);
        let Some(id) = e["experiment"]["experiment_id"].as_str() else { return Vec::new() };
        let body = serde_json::json!({"experiment_ids": [id], "max_results": 1000, "order_by": ["attributes.start_time DESC"]});
        self.post("/api/2.0/mlflow/runs/search", &body)["runs"].as_array().cloned().unwrap_or_default()
    }

    /// The version the alias names, if any.
    pub fn alias(&self, model: &str, alias: &str) -> Option<String> {
        let v = self.get("/api/2.0/mlflow/registered-models/alias", &[("name", model), ("alias", alias)]);
        v["model_version"]["version"].as_str().map(str::to_string)
    }

    /// Every version of the registered model, as (version, the model tag).
    pub fn versions(&self, model: &str) -> Vec<(String, String)> {
        let filter = format!("name = '{model}'");
        let v = self.get("/api/2.0/mlflow/model-versions/search", &[("filter", &filter)]);
        let mut out: Vec<(String, String)> = v["model_versions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| {
                let tag = m["tags"]
                    .as_array()
                    .and_then(|t| t.iter().find(|t| t["key"] == "slipway.model_blake3"))
                    .and_then(|t| t["value"].as_str())
                    .unwrap_or_default()
                    .to_string();
                (m["version"].as_str().unwrap_or_default().to_string(), tag)
            })
            .collect();
        out.sort_by_key(|(v, _)| v.parse::<u64>().unwrap_or(0));
        out
    }

    /// The tags of a run, as a map.
    pub fn tags(run: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
        run["data"]["tags"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|t| Some((t["key"].as_str()?.to_string(), t["value"].as_str()?.to_string())))
            .collect()
    }

    /// Whether a file is among a run's artifacts on the server's disk.
    pub fn has_artifact(&self, run: &serde_json::Value, path: &str) -> bool {
        let uri = run["info"]["artifact_uri"].as_str().unwrap_or_default();
        let rest = uri.strip_prefix("mlflow-artifacts:/").unwrap_or_default();
        Path::new(&self.artifacts()).join(rest).join(path).is_file()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .http_status_as_error(false)
        .build()
        .into()
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        #[allow(
            clippy::disallowed_methods,
            reason = "stops the server's process group: mlflow runs uvicorn as a child"
        )]
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

//! Against a real MLflow tracking server on 127.0.0.1: a logged run with its parameters,
//! metrics, artifacts and tags; one version per model however often it is registered; aliases
//! that follow; and, with no server, a warning that names it without its credentials.

use super::*;

#[path = "../../tests/common/mlflow_server.rs"]
mod server;

fn env_of(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn model(seed: &str) -> String {
    blake3::hash(seed.as_bytes()).to_hex().to_string()
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn runs_versions_and_aliases_on_a_real_server() {
    let server = server::MlflowServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("model.onnx");
    std::fs::write(&file, b"not really onnx").unwrap();
    let report = dir.path().join("validation_report.json");
    std::fs::write(&report, b"{\"passed\": true}").unwrap();
    let config = MlflowConfig { experiment: "team".into(), model: "reviews".into(), required: false };
    let t = Tracking::from_env(&env_of(&[(URI_VAR, &server.url)]), &config).unwrap().expect("set");
    let (a, b) = (model("a"), model("b"));
    let params = vec![("C".to_string(), json!(0.5)), ("solver".to_string(), json!("lbfgs"))];
    let metrics = vec![("train_accuracy".to_string(), 0.9), ("not_a_number".to_string(), f64::NAN)];
    let artifacts = [("model/model.onnx", file.clone())];
    let training = |m: &'static str| Training {
        model: m,
        commit: Some("0123456789abcdef0123456789abcdef01234567"),
        who: "Team Bot <bot@example.com>",
        started_ms: 1_764_633_600_000,
        params: &params,
        metrics: &metrics,
        artifacts: &artifacts,
    };
    let a: &'static str = Box::leak(a.into_boxed_str());
    let b: &'static str = Box::leak(b.into_boxed_str());
    let run = block(t.log_training(&training(a))).unwrap();

    let runs = server.runs("team");
    assert_eq!(runs.len(), 1);
    let logged = &runs[0];
    assert_eq!(logged["info"]["run_id"], run.id.as_str());
    assert_eq!(logged["info"]["status"], "FINISHED");
    let tags = server::MlflowServer::tags(logged);
    assert_eq!(tags[MODEL_TAG], a);
    assert_eq!(tags["mlflow.source.git.commit"], "0123456789abcdef0123456789abcdef01234567");
    let params_seen: Vec<(String, String)> = logged["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["key"].as_str().unwrap().to_string(), p["value"].as_str().unwrap().to_string()))
        .collect();
    assert!(
        params_seen.contains(&("C".into(), "0.5".into())) && params_seen.contains(&("solver".into(), "lbfgs".into()))
    );
    let metric_names: Vec<&str> =
        logged["data"]["metrics"].as_array().unwrap().iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(metric_names, ["train_accuracy"], "a NaN is not sent");
    assert!(server.has_artifact(logged, "model/model.onnx"), "the model is among the run's artifacts");

    let v1 = block(t.register(a, &report, &[("validation.accuracy".into(), 0.8)])).unwrap();
    assert_eq!(block(t.register(a, &report, &[])).unwrap(), v1, "registering the same model again reuses its version");
    assert!(server.has_artifact(&server.runs("team")[0], "validation/validation_report.json"));
    block(t.log_training(&training(b))).unwrap();
    let v2 = block(t.register(b, &report, &[])).unwrap();
    assert_ne!(v1, v2);
    assert_eq!(server.versions("reviews"), vec![(v1.clone(), a.to_string()), (v2.clone(), b.to_string())]);

    let env = env_of(&[(URI_VAR, &server.url)]);
    assert!(matches!(follow(&env, &config, "production", a).unwrap(), Some(Ok(_))));
    assert_eq!(server.alias("reviews", "production").as_deref(), Some(v1.as_str()));
    follow(&env, &config, "production", b).unwrap().unwrap().unwrap();
    assert_eq!(server.alias("reviews", "production").as_deref(), Some(v2.as_str()), "the alias follows a promote");
    follow(&env, &config, "production", a).unwrap().unwrap().unwrap();
    assert_eq!(server.alias("reviews", "production").as_deref(), Some(v1.as_str()), "and a rollback");

    let unknown = model("never validated");
    let warned = follow(&env, &config, "staging", &unknown).unwrap().unwrap().unwrap_err();
    assert!(warned.contains("has no version of model"), "{warned}");
    assert_eq!(server.alias("reviews", "staging"), None);
    let missing = block(t.register(&unknown, &report, &[])).unwrap_err().to_string();
    assert!(missing.contains("has no run of model"), "{missing}");
}

#[test]
fn an_unreachable_server_is_a_warning_without_credentials_unless_required() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uri = format!("http://alice:s3cret-pass@127.0.0.1:{port}/");
    let env = env_of(&[(URI_VAR, &uri), ("MLFLOW_TRACKING_TOKEN", "tok-123")]);
    let mut config = MlflowConfig::default();
    let warned = follow(&env, &config, "production", &model("a")).unwrap().unwrap().unwrap_err();
    assert!(warned.contains(&format!("MLflow at http://127.0.0.1:{port} is unreachable")), "{warned}");
    for secret in ["alice", "s3cret-pass", "tok-123"] {
        assert!(!warned.contains(secret), "{warned}");
    }
    config.required = true;
    let failed = format!("{:#}", follow(&env, &config, "production", &model("a")).unwrap_err());
    assert!(failed.contains("required = true") && !failed.contains("s3cret"), "{failed}");
    let unset = follow(&env_of(&[]), &config, "production", &model("a")).unwrap_err().to_string();
    assert!(unset.contains("required = true, but MLFLOW_TRACKING_URI is not set"), "{unset}");
    config.required = false;
    assert!(follow(&env_of(&[]), &config, "production", &model("a")).unwrap().is_none(), "unset: nothing to tell");
}

#[test]
fn what_is_not_a_tracking_server_or_an_alias_is_refused_with_a_reason() {
    let config = MlflowConfig::default();
    for (uri, says) in
        [("file:///tmp/mlruns", "http or https only"), ("databricks", "not a URL"), ("http://", "not a URL")]
    {
        let e =
            Tracking::from_env(&env_of(&[(URI_VAR, uri)]), &config).err().unwrap_or_else(|| panic!("{uri} refused"));
        assert!(e.to_string().contains(says), "{uri}: {e}");
    }
    let env = env_of(&[(URI_VAR, "http://127.0.0.1:9")]);
    for alias in ["latest", "v3", "a b"] {
        assert!(follow(&env, &config, alias, &model("a")).unwrap().unwrap().is_err(), "{alias}");
    }
    let bad = MlflowConfig { model: "it's".into(), ..MlflowConfig::default() };
    assert!(bad.check().unwrap_err().to_string().contains("[mlflow] model"));
}

#[test]
fn ids_from_the_server_are_plain() {
    assert_eq!(id(&json!("abc_1-2")).unwrap(), "abc_1-2");
    assert_eq!(id(&json!(7)).unwrap(), "7");
    assert!(id(&json!("../x")).is_err());
    assert!(id(&json!("a".repeat(65))).is_err());
    assert!(id(&Value::Null).is_err());
}

//! The command line as a user sees it: help text and exit codes for bad usage.

use std::path::Path;

fn xtask() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_xtask"))
}

#[test]
fn help_documents_the_exit_codes() {
    let sh = xshell::Shell::new().unwrap();
    let xtask = xtask();
    let help = xshell::cmd!(sh, "{xtask} --help").read().unwrap();
    insta::assert_snapshot!(help);
}

#[test]
fn an_unknown_stage_is_an_error_with_exit_2() {
    let sh = xshell::Shell::new().unwrap();
    let xtask = xtask();
    let out = xshell::cmd!(sh, "{xtask} ci --force no-such-stage").ignore_status().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim(),
        "error: --force no-such-stage: there is no such stage (stages: tools, deps, lint, test, pull, check-data, train, validate, build, image, deploy-staging)"
    );
}

/// Runs `cargo xtask ARGS` on the scratch repository `root` with a clean AWS environment.
fn xtask_in(root: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let sh = xshell::Shell::new().unwrap();
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_ENDPOINT_URL", "SLIPWAY_REMOTE"] {
        // Empty counts as unset for Slipway, and xshell 0.2 cannot unset.
        sh.set_var(var, "");
    }
    sh.set_var("SLIPWAY_ROOT", root);
    sh.set_var("HOME", root);
    for (k, v) in env {
        sh.set_var(k, v);
    }
    let xtask = xtask();
    let out = xshell::cmd!(sh, "{xtask} {args...}").ignore_status().output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn pull_errors_exit_2_with_what_to_do() {
    let repo = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let remote_path = remote.path().to_str().unwrap();
    std::fs::write(repo.path().join("data.dvc"), "outs: [not closed\n").unwrap();
    let (code, err) = xtask_in(repo.path(), &["pull"], &[("SLIPWAY_REMOTE", remote_path)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("error: data.dvc is not a usable DVC pointer file: not valid YAML"), "{err}");
    assert!(err.contains("\n  help: fix data.dvc by hand"), "{err}");

    let pointer = "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  size: 3\n  hash: md5\n  path: model.bin\n";
    std::fs::write(repo.path().join("data.dvc"), pointer).unwrap();
    let (code, err) = xtask_in(repo.path(), &["pull", "data.dvc"], &[("SLIPWAY_REMOTE", remote_path)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("files/md5/01/23456789abcdef0123456789abcdef is missing from"), "{err}");
    assert!(!repo.path().join("model.bin").exists());

    let (code, err) = xtask_in(repo.path(), &["pull"], &[("SLIPWAY_REMOTE", "s3://some-bucket/data")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("error: no S3 credentials for s3://some-bucket/data"), "{err}");
    assert!(err.contains("help: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{err}");
}

#[test]
fn add_then_pull_round_trips_through_a_directory_remote() {
    let repo = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let remote_path = remote.path().to_str().unwrap();
    std::fs::create_dir_all(repo.path().join("data")).unwrap();
    std::fs::write(repo.path().join("data/train.csv"), "text,label\nfine,fresh\n").unwrap();
    let env = [("SLIPWAY_REMOTE", remote_path)];
    assert_eq!(xtask_in(repo.path(), &["add", "data"], &env).0, Some(0));
    let (code, err) = xtask_in(repo.path(), &["push"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("2 object(s) uploaded, 0 already there"), "{err}");
    std::fs::remove_dir_all(repo.path().join("data")).unwrap();
    let (code, err) = xtask_in(repo.path(), &["pull"], &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("0 file(s) already up to date, 1 downloaded"), "{err}");
    assert_eq!(std::fs::read_to_string(repo.path().join("data/train.csv")).unwrap(), "text,label\nfine,fresh\n");
}

#[test]
fn validate_without_onnx_runtime_exits_2_and_still_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data, report) = (dir.path().join("m.onnx"), dir.path().join("h.csv"), dir.path().join("report.json"));
    std::fs::write(&model, b"not even onnx").unwrap();
    std::fs::write(&data, "text,label\nfine,fresh\n").unwrap();
    let args = [
        "validate",
        "--model-path",
        model.to_str().unwrap(),
        "--test-data",
        data.to_str().unwrap(),
        "--output-file",
        report.to_str().unwrap(),
    ];
    let (code, _) = xtask_in(dir.path(), &args, &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")]);
    assert_eq!(code, Some(2));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(report["checks"]["model_loads"], false);
    let errors = report["errors"].to_string();
    assert!(
        errors.contains("ONNX Runtime was not found")
            && errors.contains("ORT_DYLIB_PATH=/nonexistent/libonnxruntime.so"),
        "{errors}"
    );
    assert_eq!(report["accuracy_threshold"], 0.85, "the reference script's defaults");
    assert_eq!(report["recall_threshold"], 0.7);
    assert_eq!(report["latency_threshold_ms"], 100.0);
}

#[test]
fn approve_with_nothing_waiting_exits_2_and_deploys_nothing() {
    let repo = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let env = [("SLIPWAY_REMOTE", remote.path().to_str().unwrap())];
    let (code, err) = xtask_in(repo.path(), &["approve", "production"], &env);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("error: no canary waits for approval on production"), "{err}");
    let (code, err) = xtask_in(repo.path(), &["approve", "no-such-env"], &env);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no-such-env"), "{err}");
    assert!(!repo.path().join(".slipway/releases").exists(), "nothing was deployed");
}

//! `deploy-staging`: the validated model on the built server, smoke-tested on staging. It
//! ships, so it runs only after every gate passed (through `image`). Production changes only
//! through `promote`. The stage is fresh only while staging really serves this release: after
//! a reboot, or a `stop`, it deploys again.

use std::io::Write;

use engine::{Stage, StageContext, StageError};

use crate::config::Config;
use crate::paths::MODEL;

/// The environment this stage deploys to.
pub const ENV: &str = "staging";

/// Deploys what the pipeline built to staging.
pub fn staging(config: &Config) -> Stage {
    let port = config.environments().get(ENV).map(|e| e.port);
    let mlflow = config.mlflow.clone();
    let dir = deploy::target::env_dir(std::path::Path::new(""), ENV).to_string_lossy().into_owned();
    engine::stage!("deploy-staging", "deploy to staging and run the smoke tests")
        .ships()
        .uses("image")
        .pipeline_code(crate::release::CODE)
        .pipeline_code(crate::root::CODE)
        .pipeline_code(crate::who::CODE)
        .pipeline_code(crate::ort::CODE)
        .pipeline_code(crate::config::CODE)
        .pipeline_code(crate::paths::CODE)
        .pipeline_code(crate::flags::CODE)
        .crates(&["slipway-deploy", "slipway-serve"])
        .files("config", &[crate::paths::CONFIG])
        .probe("git-commit", &["git", "rev-parse", "HEAD"])
        .env(crate::ort::DYLIB_VAR)
        .pass_env(store::REMOTE_ENV)
        .pass_secrets(store::REMOTE_SECRETS)
        .pass_env(&["DOCKER_HOST"])
        // Who deployed, for the ledger; not what was deployed, so not keyed.
        .pass_env(&crate::who::VARS.iter().filter(|v| !store::REMOTE_ENV.contains(v)).collect::<Vec<_>>())
        .pass_secrets(&[deploy::notify::WEBHOOK_VAR])
        // The staging alias in MLflow follows the release; not keyed (it changes nothing here).
        .pipeline_code(crate::mlflow::CODE)
        .action_secrets(crate::mlflow::VARS)
        .environment(&dir)
        .alive(move |root, _| serves_this_model(root, port))
        .run(move |ctx| action(ctx, &mlflow))
}

/// `Ok` when staging's stable port answers ready with the model in the workspace.
fn serves_this_model(root: &std::path::Path, port: Option<u16>) -> Result<(), String> {
    let port = port.ok_or_else(|| format!("there is no environment `{ENV}`"))?;
    let bytes = std::fs::read(root.join(MODEL)).map_err(|e| format!("cannot read {MODEL}: {e}"))?;
    let want = format!("blake3:{}", blake3::hash(&bytes).to_hex());
    let base = format!("http://127.0.0.1:{port}");
    let got = crate::release::block_on(deploy::smoke::serving_digest(&base))?;
    match got == want {
        true => Ok(()),
        false => Err(format!("{base} serves {got}, not {want}")),
    }
}

fn action(ctx: &StageContext, mlflow: &crate::mlflow::MlflowConfig) -> Result<(), StageError> {
    let root = ctx.root().to_path_buf();
    let path = root.join(engine::STATE_DIR).join(engine::LOGS_DIR).join(format!("deploy-{ENV}.log"));
    let log: Box<dyn Fn(&str) + Send + Sync> = Box::new(move |line: &str| {
        let _ =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| writeln!(f, "{line}"));
    });
    let d = crate::release::deployer(ctx.program_root(), &root, ctx.env(), log).map_err(StageError::Failed)?;
    let sha = ctx.probe("git-commit").filter(|s| !s.is_empty()).unwrap_or("unknown");
    let candidate = crate::release::candidate(&root, ctx.env(), sha)
        .map_err(|e| StageError::Failed(e.context("assemble the release")))?;
    let handle = tokio::runtime::Handle::current();
    let report = handle
        .block_on(d.until_signal(ENV, d.deploy(ENV, &candidate)))
        .map_err(|e| StageError::Failed(crate::release::with_help(e)))?;
    for e in &report.events {
        ctx.log_line(&format!("{:?} of {} on {}: {:?}", e.kind, e.release.version, e.env, e.outcome));
        for c in &e.smoke {
            ctx.log_line(&format!("  {} {}: {}", if c.passed { "PASS" } else { "FAIL" }, c.name, c.detail));
        }
    }
    for e in report.events.iter().filter(|e| e.outcome == deploy::Outcome::Live) {
        match crate::mlflow::follow(ctx.env(), mlflow, &e.env, &e.release.model_digest).map_err(StageError::Failed)? {
            Some(Ok(done)) => ctx.log_line(&done),
            Some(Err(warning)) => ctx.warn(&warning),
            None => {}
        }
    }
    match report.exit_code {
        0 => Ok(()),
        _ => Err(StageError::rejected(format!("the release failed its smoke tests on {ENV}"))),
    }
}

//! `cargo xtask deploy | promote | rollback | releases | stop`: releases on environments.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use deploy::{Approval, Candidate, Deployer, Report};

use crate::config;
use crate::flags::{PromoteArgs, ReleasesArgs, RollbackArgs, StopArgs};

/// Where the `build` stage puts the binaries a release ships.
pub const DIST: &str = "dist";

type Env = std::collections::BTreeMap<String, String>;

/// A deployer for the repository at `root`, talking through `say`.
pub fn deployer(root: &Path, env: &Env, say: Box<dyn Fn(&str) + Send + Sync>) -> Result<Deployer> {
    let config = config::load(root)?;
    let remote = store::resolve(root, env)?.open()?;
    let who = env.get("GITHUB_ACTOR").or_else(|| env.get("USER")).cloned().unwrap_or_else(|| "unknown".into());
    let webhook = env.get("SLIPWAY_WEBHOOK_URL").filter(|u| !u.is_empty()).cloned();
    Ok(Deployer { root: root.to_path_buf(), envs: config.environments(), remote: Arc::from(remote), who, webhook, say })
}

/// The files of the release the workspace would ship now.
pub fn candidate(root: &Path, env: &Env) -> Result<Candidate> {
    let dist = root.join(DIST);
    let runtime = crate::validate::runtime_search(root, env).find()?;
    let mut files = vec![
        ("slipway-serve".to_string(), dist.join("slipway-serve")),
        ("slipway-router".to_string(), dist.join("slipway-router")),
        ("libonnxruntime.so".to_string(), runtime),
        ("model.onnx".to_string(), root.join("models/model.onnx")),
    ];
    for (name, path) in &files {
        anyhow::ensure!(
            path.is_file(),
            "{} is missing for the release's {name}; run `cargo xtask ci` (or the build and train stages) first",
            path.display()
        );
    }
    let image: Option<serde_json::Value> =
        std::fs::read(dist.join("image/built.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if image.is_some() {
        files.push(("image.tar".to_string(), dist.join("image/image.tar")));
    }
    let config = config::load(root)?;
    let config_json = serde_json::to_vec(&config.environments())?;
    Ok(Candidate {
        files,
        image_digest: image.as_ref().and_then(|i| i["manifest_digest"].as_str().map(str::to_string)),
        tags: image.as_ref().and_then(|i| serde_json::from_value(i["tags"].clone()).ok()).unwrap_or_default(),
        config_digest: blake3::hash(&config_json).to_hex().to_string(),
        git_sha: git_sha(root),
    })
}

/// The commit of HEAD, or `unknown` outside git.
pub fn git_sha(root: &Path) -> String {
    let sh = xshell::Shell::new().expect("a shell");
    sh.change_dir(root);
    xshell::cmd!(sh, "git rev-parse HEAD").quiet().ignore_stderr().read().unwrap_or_else(|_| "unknown".into())
}

fn run<T>(fut: impl std::future::Future<Output = Result<T, deploy::DeployError>>) -> Result<T> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(fut).map_err(with_help)
}

fn with_help(e: deploy::DeployError) -> anyhow::Error {
    match e.help() {
        Some(help) => anyhow::anyhow!("{e}\n  help: {help}"),
        None => anyhow::anyhow!("{e}"),
    }
}

fn say() -> Box<dyn Fn(&str) + Send + Sync> {
    Box::new(|line: &str| eprintln!("{line}"))
}

fn finish(report: &Report) -> u8 {
    for e in &report.events {
        eprintln!("recorded #{}: {:?} of {} on {}: {:?}", e.seq, e.kind, e.release.version, e.env, e.outcome);
        for c in e.smoke.iter().filter(|c| !c.passed) {
            eprintln!("  FAIL {}: {}", c.name, c.detail);
        }
    }
    report.exit_code
}

/// `cargo xtask deploy ENV`.
pub fn deploy_cmd(root: &Path, env_name: &str) -> Result<u8> {
    let env: Env = std::env::vars().collect();
    let d = deployer(root, &env, say())?;
    let candidate = candidate(root, &env)?;
    let report = run(d.deploy(env_name, &candidate))?;
    Ok(finish(&report))
}

/// `cargo xtask promote ENV [--from staging] [--approve]`.
pub fn promote_cmd(root: &Path, args: &PromoteArgs) -> Result<u8> {
    let env: Env = std::env::vars().collect();
    let d = deployer(root, &env, say())?;
    let approval = approval(&d, args)?;
    let report = run(d.promote(&args.from, &args.env, approval))?;
    Ok(finish(&report))
}

fn approval(d: &Deployer, args: &PromoteArgs) -> Result<Approval> {
    if args.approve {
        return Ok(Approval { by: d.who.clone(), how: "--approve".into() });
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "promoting to {} needs approval: pass --approve (in CI, behind a protected GitHub environment) or run on a terminal to be asked",
            args.env
        );
    }
    eprint!("promote what is live on {} to {}? type `yes` to approve: ", args.from, args.env);
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    anyhow::ensure!(answer.trim() == "yes", "not approved; nothing changed");
    Ok(Approval { by: d.who.clone(), how: "prompt".into() })
}

/// `cargo xtask rollback --version V [--env production]`.
pub fn rollback_cmd(root: &Path, args: &RollbackArgs) -> Result<u8> {
    let env: Env = std::env::vars().collect();
    let d = deployer(root, &env, say())?;
    let report = run(d.rollback(&args.version, &args.env))?;
    Ok(finish(&report))
}

/// `cargo xtask releases [--env E]`.
pub fn releases_cmd(root: &Path, args: &ReleasesArgs) -> Result<u8> {
    let env: Env = std::env::vars().collect();
    let d = deployer(root, &env, say())?;
    let events = run(d.events())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(0);
    }
    println!(
        "{:>4}  {:<8} {:<12} {:<13} {:<12} {:<14} {:<10} approval",
        "#", "version", "env", "event", "outcome", "model", "git"
    );
    for e in events.iter().filter(|e| args.env.as_ref().is_none_or(|env| *env == e.env)) {
        let approval = e.approval.as_ref().map(|a| format!("{} ({})", a.by, a.how)).unwrap_or_default();
        println!(
            "{:>4}  {:<8} {:<12} {:<13} {:<12} {:<14} {:<10} {approval}",
            e.seq,
            e.release.version,
            e.env,
            format!("{:?}", e.kind).to_lowercase(),
            format!("{:?}", e.outcome).to_lowercase(),
            &e.release.model_digest[..e.release.model_digest.len().min(12)],
            &e.release.git_sha[..e.release.git_sha.len().min(10)],
        );
    }
    Ok(0)
}

/// `cargo xtask stop [--env E | --all]`.
pub fn stop_cmd(root: &Path, args: &StopArgs) -> Result<u8> {
    let env: Env = std::env::vars().collect();
    let d = deployer(root, &env, say())?;
    let envs: Vec<String> = match (&args.env, args.all) {
        (Some(e), _) => vec![e.clone()],
        (None, true) => d.envs.keys().cloned().collect(),
        (None, false) => anyhow::bail!("say which environment to stop: --env NAME, or --all"),
    };
    for e in envs {
        run(d.stop(&e))?;
        let _ = std::fs::remove_file(root.join(".slipway/deploy").join(&e).join(".slipway-environment"));
        eprintln!("stopped {e}");
    }
    Ok(0)
}

/// The deploy stage of the pipeline: deploy the candidate to `env` and smoke-test it.
pub fn deploy_stage(ctx: &engine::StageContext, env_name: &str) -> Result<(), engine::StageError> {
    let root = ctx.root().to_path_buf();
    let log: Box<dyn Fn(&str) + Send + Sync> = {
        let path: PathBuf = root.join(".slipway/logs").join(format!("deploy-{env_name}.log"));
        Box::new(move |line: &str| {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| writeln!(f, "{line}"));
        })
    };
    let d = deployer(&root, ctx.env(), log).map_err(engine::StageError::Failed)?;
    let candidate = candidate(&root, ctx.env()).context("assemble the release").map_err(engine::StageError::Failed)?;
    let handle = tokio::runtime::Handle::current();
    let report =
        handle.block_on(d.deploy(env_name, &candidate)).map_err(|e| engine::StageError::Failed(with_help(e)))?;
    for e in &report.events {
        ctx.log_line(&format!("{:?} of {} on {}: {:?}", e.kind, e.release.version, e.env, e.outcome));
        for c in &e.smoke {
            ctx.log_line(&format!("  {} {}: {}", if c.passed { "PASS" } else { "FAIL" }, c.name, c.detail));
        }
    }
    match report.exit_code {
        0 => Ok(()),
        _ => Err(engine::StageError::rejected(format!("the release failed its smoke tests on {env_name}"))),
    }
}

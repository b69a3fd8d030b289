//! `cargo xtask deploy | promote | rollback | releases | stop`: releases on environments.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use deploy::{Approval, Candidate, Deployer, Report};

use crate::flags::{PromoteArgs, ReleasesArgs, RollbackArgs, StopArgs};
use crate::paths::{IMAGE_ARCHIVE, IMAGE_PROVENANCE, IMAGE_RECORD, MODEL, ROUTER_BIN, SERVE_BIN};
use crate::{Env, config};

/// This module, as code of the `deploy-staging` stage.
pub const CODE: &str = file!();

/// A deployer for the project at `root`, run by the workspace at `program`, talking through
/// `say`.
pub fn deployer(program: &Path, root: &Path, env: &Env, say: Box<dyn Fn(&str) + Send + Sync>) -> Result<Deployer> {
    let config = config::load(root)?;
    let mut remote = store::resolve(root, env)?.open()?;
    // A project other than the workspace's own keeps its releases, ledger and locks apart on a
    // remote they share (the embedded default is shared by every clone here).
    if let Some(prefix) = crate::root::remote_prefix(program, root)? {
        remote = Box::new(store::Prefixed::new(remote, &prefix));
    }
    let who = crate::who::who(env, root);
    let webhook = env.get(deploy::notify::WEBHOOK_VAR).filter(|u| !u.is_empty()).cloned();
    Ok(Deployer {
        root: root.to_path_buf(),
        envs: config.environments(),
        remote: Arc::from(remote),
        who,
        webhook,
        say,
        kill_at: None,
        term_at: None,
    })
}

/// The files of the release the workspace would ship now, built from commit `git_sha`.
pub fn candidate(root: &Path, env: &Env, git_sha: &str) -> Result<Candidate> {
    let runtime = crate::ort::search(root, env).find()?;
    let mut files = vec![
        ("slipway-serve".to_string(), root.join(SERVE_BIN)),
        ("slipway-router".to_string(), root.join(ROUTER_BIN)),
        ("libonnxruntime.so".to_string(), runtime),
        ("model.onnx".to_string(), root.join(MODEL)),
    ];
    for (name, path) in &files {
        anyhow::ensure!(
            path.is_file(),
            "{} is missing for the release's {name}; run `cargo xtask ci` (or the build and train stages) first",
            path.display()
        );
    }
    let image: Option<serde_json::Value> =
        std::fs::read(root.join(IMAGE_RECORD)).ok().and_then(|b| serde_json::from_slice(&b).ok());
    if image.is_some() {
        files.push(("image.tar".to_string(), root.join(IMAGE_ARCHIVE)));
        files.push(("provenance.intoto.json".to_string(), root.join(IMAGE_PROVENANCE)));
    }
    // The release carries the validation it passed: a watch compares the labels it predicts
    // with the holdout's.
    let validation = root.join(crate::paths::VALIDATION_REPORT);
    if validation.is_file() {
        files.push(("validation_report.json".to_string(), validation));
    }
    let config = config::load(root)?;
    let config_json = serde_json::to_vec(&config.environments())?;
    Ok(Candidate {
        files,
        image_digest: image.as_ref().and_then(|i| i["manifest_digest"].as_str().map(str::to_string)),
        image_config: image.as_ref().and_then(|i| i["config_digest"].as_str().map(str::to_string)),
        tags: image.as_ref().and_then(|i| serde_json::from_value(i["tags"].clone()).ok()).unwrap_or_default(),
        config_digest: blake3::hash(&config_json).to_hex().to_string(),
        git_sha: git_sha.to_string(),
    })
}

/// The commit of HEAD, or `unknown` outside git (for the commands run outside the pipeline).
fn git_sha(root: &Path) -> String {
    let sh = xshell::Shell::new().expect("a shell");
    sh.change_dir(root);
    xshell::cmd!(sh, "git rev-parse HEAD").quiet().ignore_stderr().read().unwrap_or_else(|_| "unknown".into())
}

/// Runs `fut` to completion from synchronous code: on the current runtime when called from
/// inside one (a stage's blocking thread), else on a small runtime of its own.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(fut),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a single-threaded runtime starts")
            .block_on(fut),
    }
}

fn run<T>(fut: impl std::future::Future<Output = Result<T, deploy::DeployError>>) -> Result<T> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(fut).map_err(with_help)
}

/// The error with its help line, if it has one.
pub fn with_help(e: deploy::DeployError) -> anyhow::Error {
    match e.help() {
        Some(help) => anyhow::anyhow!("{e}\n  help: {help}"),
        None => anyhow::anyhow!("{e}"),
    }
}

fn say() -> Box<dyn Fn(&str) + Send + Sync> {
    Box::new(|line: &str| eprintln!("{line}"))
}

/// Prints what the ledger recorded; MLflow's alias of each environment follows what went live.
fn finish(root: &Path, env: &Env, report: &Report) -> Result<u8> {
    let mlflow = config::load(root)?.mlflow;
    let mut required = None;
    for e in &report.events {
        eprintln!("recorded #{}: {:?} of {} on {}: {:?}", e.seq, e.kind, e.release.version, e.env, e.outcome);
        for c in e.smoke.iter().filter(|c| !c.passed) {
            eprintln!("  FAIL {}: {}", c.name, c.detail);
        }
        if e.outcome == deploy::Outcome::Live {
            // What went live stays live; a required MLflow that was not told fails the command
            // once every event is printed.
            match crate::mlflow::follow(env, &mlflow, &e.env, &e.release.model_digest) {
                Ok(Some(Ok(done))) => eprintln!("{done}"),
                Ok(Some(Err(warning))) => eprintln!("warning: {warning}"),
                Ok(None) => {}
                Err(e) => required = Some(e),
            }
        }
    }
    match required {
        Some(e) => Err(e),
        None => Ok(report.exit_code),
    }
}

/// `cargo xtask deploy ENV`.
pub fn deploy_cmd(root: &Path, env: &Env, env_name: &str) -> Result<u8> {
    let d = deployer(&crate::root::program_root(env, root)?, root, env, say())?;
    let candidate = candidate(root, env, &git_sha(root))?;
    let report = run(d.until_signal(env_name, d.deploy(env_name, &candidate)))?;
    finish(root, env, &report)
}

/// `cargo xtask approve ENV`: approves the canary step that waits on ENV, or fails (exit 2)
/// when none waits. Unlike `promote --approve`, it can never start a deploy.
pub fn approve_cmd(root: &Path, env: &Env, env_name: &str) -> Result<u8> {
    let d = deployer(&crate::root::program_root(env, root)?, root, env, say())?;
    d.env(env_name)?;
    let approval = Approval { by: d.who.clone(), how: "approve".into() };
    match run(deploy::approve::approve(&*d.remote, env_name, &approval))? {
        Some(p) => approved(&p),
        None => Err(nothing_waits(&d, env_name)),
    }
}

fn approved(p: &deploy::approve::Pause) -> Result<u8> {
    println!("approved: the canary of {} on {} goes on from {}% (step {})", p.version, p.env, p.weight, p.step);
    Ok(0)
}

/// Why nothing can be approved on `env`, with the last canary that waited there.
fn nothing_waits(d: &Deployer, env: &str) -> anyhow::Error {
    let last = run(deploy::approve::newest(&*d.remote, env)).ok().flatten();
    let runs = last.as_ref().is_some_and(|p| run(deploy::approve::still_runs(&*d.remote, p)).unwrap_or(false));
    let last = match last {
        Some(p) if runs => format!(
            "; the canary of {} was approved at {}% (step {}) and runs on, to a step that does not wait yet",
            p.version, p.weight, p.step
        ),
        Some(p) => format!(
            "; the last canary that waited there, of {} at {}%, has ended (`cargo xtask releases --env {env}` shows how)",
            p.version, p.weight
        ),
        None => String::new(),
    };
    anyhow::anyhow!("no canary waits for approval on {env}{last}")
}

/// `cargo xtask promote ENV [--from staging] [--approve] [--again]`. When a canary on ENV waits
/// for approval at one of its steps, this approves that step instead (Argo Rollouts' `promote`).
pub fn promote_cmd(root: &Path, env: &Env, args: &PromoteArgs) -> Result<u8> {
    let d = deployer(&crate::root::program_root(env, root)?, root, env, say())?;
    d.env(&args.env)?;
    d.env(&args.from)?;
    if let Some(pause) = run(deploy::approve::pending(&*d.remote, &args.env))? {
        let question = format!(
            "the canary of {} on {} holds at {}% (deploy by {}); let it go on? type `yes` to approve: ",
            pause.version, pause.env, pause.weight, pause.who
        );
        let approval = approval(&d, args, &question)?;
        // Only the step that was shown: by now it may have been approved by someone else, or
        // its deploy may have ended or moved on.
        return match run(deploy::approve::approve_exactly(&*d.remote, &pause, &approval))? {
            true => approved(&pause),
            false => anyhow::bail!(
                "the canary of {} on {env} no longer waits at {}% (step {}), so nothing was approved; `cargo xtask releases --env {env}` shows how it went",
                pause.version,
                pause.weight,
                pause.step,
                env = args.env
            ),
        };
    }
    // Someone who meant to approve a waiting canary that has just ended would otherwise start a
    // new canary of the same release: that takes `--again`.
    if !args.again
        && let Some(last) = run(d.ended_wait(&args.from, &args.env))?
    {
        anyhow::bail!(
            "no canary waits for approval on {env}: the canary of {v} that waited there at {w}% has ended (`cargo xtask releases --env {env}` shows how); to start another deploy of {v} to {env}, add --again",
            env = args.env,
            v = last.version,
            w = last.weight
        );
    }
    let question = format!("promote what is live on {} to {}? type `yes` to approve: ", args.from, args.env);
    let approval = approval(&d, args, &question)?;
    let report = run(d.until_signal(&args.env, d.promote(&args.from, &args.env, approval)))?;
    let code = finish(root, env, &report)?;
    // What went live is watched for as long as the environment asks, and rolled back on a breach.
    let watch = config::load(root)?.environments().get(&args.env).and_then(|e| e.watch.clone());
    match watch.filter(|w| code == 0 && w.seconds > 0.0) {
        Some(w) => finish(root, env, &run(d.watch(&args.env, &w))?),
        None => Ok(code),
    }
}

/// `cargo xtask watch ENV [--for 10m]`.
pub fn watch_cmd(root: &Path, env: &Env, args: &crate::flags::WatchArgs) -> Result<u8> {
    let mut watch = config::load(root)?.environments().get(&args.env).and_then(|e| e.watch.clone()).unwrap_or_default();
    if let Some(d) = &args.duration {
        watch.seconds = crate::flags::seconds(d).map_err(anyhow::Error::msg)?;
    }
    let d = deployer(&crate::root::program_root(env, root)?, root, env, say())?;
    let report = run(d.watch(&args.env, &watch))?;
    finish(root, env, &report)
}

fn approval(d: &Deployer, args: &PromoteArgs, question: &str) -> Result<Approval> {
    if args.approve {
        return Ok(Approval { by: d.who.clone(), how: "--approve".into() });
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "promoting to {} needs approval: pass --approve (in CI, behind a protected GitHub environment) or run on a terminal to be asked",
            args.env
        );
    }
    eprint!("{question}");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    anyhow::ensure!(answer.trim() == "yes", "not approved; nothing changed");
    Ok(Approval { by: d.who.clone(), how: "prompt".into() })
}

/// `cargo xtask rollback --version V [--env production]`.
pub fn rollback_cmd(root: &Path, env: &Env, args: &RollbackArgs) -> Result<u8> {
    let d = deployer(&crate::root::program_root(env, root)?, root, env, say())?;
    let report = run(d.until_signal(&args.env, d.rollback(&args.version, &args.env)))?;
    finish(root, env, &report)
}

/// `cargo xtask releases [--env E]`.
pub fn releases_cmd(root: &Path, env: &Env, args: &ReleasesArgs) -> Result<u8> {
    let d = deployer(&crate::root::program_root(env, root)?, root, env, say())?;
    let events = run(d.events())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(0);
    }
    println!(
        "{:>4}  {:<8} {:<12} {:<13} {:<12} {:<14} {:<10} {:<24} approval",
        "#", "version", "env", "event", "outcome", "model", "git", "who"
    );
    for e in events.iter().filter(|e| args.env.as_ref().is_none_or(|env| *env == e.env)) {
        let approval = e.approval.as_ref().map(|a| format!("{} ({})", a.by, a.how)).unwrap_or_default();
        println!(
            "{:>4}  {:<8} {:<12} {:<13} {:<12} {:<14} {:<10} {:<24} {approval}",
            e.seq,
            e.release.version,
            e.env,
            kebab(&e.kind),
            kebab(&e.outcome),
            &e.release.model_digest[..e.release.model_digest.len().min(12)],
            &e.release.git_sha[..e.release.git_sha.len().min(10)],
            e.who,
        );
        for a in &e.analysis {
            println!(
                "        {:<8} {:>3}% {:>6.1} s  {:<12} {}",
                a.kind,
                a.weight,
                a.seconds,
                kebab(&a.verdict),
                a.reason
            );
        }
    }
    Ok(0)
}

/// An event's kind or outcome as the ledger spells it (`auto-rollback`, `rolled-back`).
pub fn kebab(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// `cargo xtask stop [--env E | --all]`.
pub fn stop_cmd(root: &Path, env: &Env, args: &StopArgs) -> Result<u8> {
    let d = deployer(&crate::root::program_root(env, root)?, root, env, say())?;
    let envs: Vec<String> = match (&args.env, args.all) {
        (Some(e), _) => vec![e.clone()],
        (None, true) => d.envs.keys().cloned().collect(),
        (None, false) => anyhow::bail!("say which environment to stop: --env NAME, or --all"),
    };
    for e in envs {
        // An environment stage that deployed here is fresh only while its release answers, so
        // the next `ci` deploys again.
        run(d.stop(&e))?;
        eprintln!("stopped {e}");
    }
    Ok(0)
}

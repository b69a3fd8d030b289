//! `cargo xtask`: this repository's delivery pipeline as a Rust program.
//!
//! This file takes the process's environment once, finds the repository to act on (at run
//! time: see `root.rs`) and dispatches; each command lives in its own module and the stages
//! are wired in `pipeline.rs`.

mod ci;
mod config;
mod data;
mod flags;
mod lineage;
mod mlflow;
mod ort;
mod paths;
mod pipeline;
mod release;
mod report;
mod root;
mod stages;
mod status;
mod validate;
mod who;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;

use ci::Plan;
use flags::{Cmd, Flags};

/// A snapshot of environment variables. Commands and stages get theirs from here only.
pub type Env = BTreeMap<String, String>;

fn main() -> ExitCode {
    let flags = Flags::parse();
    // The only read of the process environment: everything below takes `env`. A variable
    // whose name or value is not UTF-8 cannot be declared, so it is left out.
    let env: Env =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    let result = std::env::current_dir()
        .map_err(anyhow::Error::from)
        .and_then(|cwd| {
            root::find(&env, &cwd).and_then(|root| root::project(&env, &root, &cwd, flags.common.project.as_deref()))
        })
        .and_then(|project| dispatch(&flags, &project, &env));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(help) = data::help_for(&e) {
                eprintln!("  help: {help}");
            }
            ExitCode::from(2)
        }
    }
}

fn dispatch(flags: &Flags, root: &std::path::Path, env: &Env) -> anyhow::Result<u8> {
    let common = &flags.common;
    let stage = |name: &str| ci::run(root, env, common, &Plan { targets: &[name.to_string()], ..Plan::default() });
    match &flags.cmd {
        Cmd::Ci(args) if args.dry_run => status::run(root, env, common, false),
        Cmd::Ci(args) => {
            ci::run(root, env, common, &Plan { targets: &args.stages, trace_inputs: args.trace_inputs, report: true })
        }
        Cmd::Status(args) => status::run(root, env, common, args.json),
        Cmd::Lint => stage("lint"),
        Cmd::Test => stage("test"),
        Cmd::Pull(args) => data::pull(root, env, &args.targets),
        Cmd::Push(args) => data::push(root, env, &args.targets),
        Cmd::Add(args) => data::add(root, env, &args.path),
        Cmd::Deps => stage("deps"),
        Cmd::Train => stage("train"),
        Cmd::Validate(args) => match (&args.model_path, &args.test_data) {
            (Some(model), Some(data)) => validate::run_standalone(root, env, args, model, data),
            _ => stage("validate"),
        },
        Cmd::Image => stage("image"),
        Cmd::Deploy(args) => release::deploy_cmd(root, env, &args.env),
        Cmd::Promote(args) => release::promote_cmd(root, env, args),
        Cmd::Approve(args) => release::approve_cmd(root, env, &args.env),
        Cmd::Rollback(args) => release::rollback_cmd(root, env, args),
        Cmd::Releases(args) => release::releases_cmd(root, env, args),
        Cmd::Stop(args) => release::stop_cmd(root, env, args),
        Cmd::Watch(args) => release::watch_cmd(root, env, args),
        Cmd::Trace(args) => lineage::run(root, env, &args.thing, args.json),
        Cmd::Report => report::rebuild(root, env),
    }
}

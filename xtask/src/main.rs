//! `cargo xtask`: this repository's delivery pipeline as a Rust program.
//!
//! This file only parses flags, finds the project root and dispatches; each command lives in
//! its own module and the stages are wired in `pipeline.rs`.

mod ci;
mod config;
mod data;
mod flags;
mod image;
mod pipeline;
mod pyenv;
mod release;
mod status;
mod train;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use flags::{Cmd, Flags};

fn main() -> ExitCode {
    let flags = Flags::parse();
    let root = project_root();
    let result = match &flags.cmd {
        Cmd::Ci(args) if args.dry_run => status::run(&root, &flags.common, false),
        Cmd::Ci(_) => ci::run(&root, &flags.common, None),
        Cmd::Status(args) => status::run(&root, &flags.common, args.json),
        Cmd::Lint => ci::run(&root, &flags.common, Some("lint")),
        Cmd::Test => ci::run(&root, &flags.common, Some("test")),
        Cmd::Pull(args) => data::pull(&root, &args.targets),
        Cmd::Push(args) => data::push(&root, &args.targets),
        Cmd::Add(args) => data::add(&root, &args.path),
        Cmd::Deps => ci::run(&root, &flags.common, Some("deps")),
        Cmd::Train => ci::run(&root, &flags.common, Some("train")),
        Cmd::Validate(args) => match (&args.model_path, &args.test_data) {
            (Some(model), Some(data)) => validate::run_standalone(&root, args, model, data),
            _ => ci::run(&root, &flags.common, Some("validate")),
        },
        Cmd::Image => ci::run(&root, &flags.common, Some("image")),
        Cmd::Deploy(args) => release::deploy_cmd(&root, &args.env),
        Cmd::Promote(args) => release::promote_cmd(&root, args),
        Cmd::Rollback(args) => release::rollback_cmd(&root, args),
        Cmd::Releases(args) => release::releases_cmd(&root, args),
        Cmd::Stop(args) => release::stop_cmd(&root, args),
    };
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

/// The workspace root: `SLIPWAY_ROOT` when set (tests run the CLI on scratch repositories),
/// else the parent of this crate's manifest directory.
fn project_root() -> PathBuf {
    if let Some(root) = std::env::var_os("SLIPWAY_ROOT").filter(|r| !r.is_empty()) {
        return PathBuf::from(root);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().expect("xtask lives one level below the root").to_path_buf()
}

//! `cargo xtask`: this repository's delivery pipeline as a Rust program.
//!
//! This file only parses flags, finds the project root and dispatches; each command lives in
//! its own module and the stages are wired in `pipeline.rs`.

mod ci;
mod flags;
mod pipeline;
mod status;

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
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn project_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().expect("xtask lives one level below the root").to_path_buf()
}

//! The pipeline of this repository, top to bottom: every stage, what it reads, what it writes,
//! what it runs after. Read it like the CI workflow it replaces.

use engine::{Pipeline, Stage, StageContext, StageError};
use xshell::cmd;

/// Everything whose change can change what `cargo fmt`, `clippy` or the tests say.
const RUST_SOURCES: &[&str] =
    &["Cargo.toml", "Cargo.lock", ".cargo", "clippy.toml", "rustfmt.toml", "rust-toolchain.toml", "xtask", "crates"];

/// The pipeline, in the order its stages were declared.
pub fn pipeline() -> anyhow::Result<Pipeline> {
    let pipeline = Pipeline::new().stage(lint())?.stage(test())?;
    Ok(pipeline)
}

fn rust_stage(name: &str, about: &str) -> Stage {
    Stage::new(name, about)
        .files("rust", RUST_SOURCES)
        .tool("rustc", &["rustc", "-vV"])
        .tool("cargo", &["cargo", "-V"])
        .env("RUSTFLAGS")
        .env("CARGO_BUILD_TARGET")
}

fn lint() -> Stage {
    rust_stage("lint", "check formatting and clippy lints")
        .tool("rustfmt", &["cargo", "fmt", "--version"])
        .tool("clippy", &["cargo", "clippy", "-V"])
        .param("commands", ["cargo fmt --all -- --check", "cargo clippy --workspace --all-targets -- -D warnings"])
        .run(|ctx: &StageContext| {
            let sh = ctx.shell();
            ctx.run("check formatting", cmd!(sh, "cargo fmt --all -- --check")).map_err(StageError::rejected)?;
            ctx.run("lint with clippy", cmd!(sh, "cargo clippy --workspace --all-targets --quiet -- -D warnings"))
                .map_err(StageError::rejected)?;
            Ok(())
        })
}

fn test() -> Stage {
    // The tidy tests also read the repository's docs and CI files.
    rust_stage("test", "run the workspace tests")
        .files("repo", &["README.md", "ARCHITECTURE.md", ".ci", ".github", ".gitignore"])
        .param("commands", ["cargo test --workspace"])
        .run(|ctx| {
            let sh = ctx.shell();
            ctx.run("run the workspace tests", cmd!(sh, "cargo test --workspace")).map_err(StageError::rejected)?;
            Ok(())
        })
}

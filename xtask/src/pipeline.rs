//! The pipeline of this repository, top to bottom: every stage, what it reads, what it writes,
//! what it runs after. Read it like the CI workflow it replaces.

use std::path::Path;

use engine::{Pipeline, Stage, StageContext, StageError};
use xshell::cmd;

/// Everything whose change can change what `cargo fmt`, `clippy` or the tests say.
const RUST_SOURCES: &[&str] =
    &["Cargo.toml", "Cargo.lock", ".cargo", "clippy.toml", "rustfmt.toml", "rust-toolchain.toml", "xtask", "crates"];

/// The pipeline of the repository at `root`, in the order its stages were declared.
pub fn pipeline(root: &Path) -> anyhow::Result<Pipeline> {
    let pipeline = Pipeline::new() //
        .stage(lint())?
        .stage(tools())?
        .stage(test())?
        .stage(pull(root))?;
    Ok(pipeline)
}

/// Where the tools the tests run for real (dvc, SeaweedFS) are installed, and their lock.
pub const TOOLS_ENV: &str = ".slipway/tools";
const TOOLS_LOCK: &str = "tools/requirements.lock";

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

/// The real tools the tests talk to, in a virtualenv keyed by their lock file.
fn tools() -> Stage {
    Stage::new("tools", "install the test tools (dvc, SeaweedFS)")
        .files("lock", &[TOOLS_LOCK])
        .tool("python", &["python3", "--version"])
        .param("uv", crate::pyenv::UV)
        .environment(TOOLS_ENV)
        .run(|ctx| crate::pyenv::install(ctx, TOOLS_ENV, TOOLS_LOCK))
}

fn test() -> Stage {
    // The tidy tests also read the repository's docs and CI files.
    rust_stage("test", "run the workspace tests")
        .after("tools")
        .files("repo", &["README.md", "ARCHITECTURE.md", ".ci", ".github", ".gitignore", "data.dvc", "training"])
        .param("commands", ["cargo test --workspace"])
        .run(|ctx| {
            let sh = ctx.shell();
            let path = crate::pyenv::path_with(ctx, TOOLS_ENV);
            let tests = cmd!(sh, "cargo test --workspace").env("PATH", path);
            ctx.run("run the workspace tests", tests).map_err(StageError::rejected)?;
            Ok(())
        })
}

/// Materialises the DVC-tracked data. Its content is fixed by the md5s in the pointer files, so
/// they are the only input: where the remote is does not change what is pulled.
fn pull(root: &Path) -> Stage {
    let pointers = store::find_pointers(root);
    let outputs: Vec<String> = pointers.iter().map(|p| p.trim_end_matches(".dvc").to_string()).collect();
    let mut stage = Stage::new("pull", "pull the data from the artifact remote")
        .files("pointers", &pointers)
        .param("commands", ["cargo xtask pull"]);
    for out in &outputs {
        stage = stage.output(out);
    }
    stage.run(|ctx| {
        let handle = tokio::runtime::Handle::current();
        let say = |line: &str| ctx.log_line(line);
        handle.block_on(crate::data::pull_with(ctx.root(), ctx.env(), &[], false, &say)).map_err(StageError::Failed)
    })
}

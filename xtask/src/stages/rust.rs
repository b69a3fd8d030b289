//! The Rust stages: formatting and lints, the test suites, and the release binaries.

use engine::{Command, Stage, StageContext, StageError};

use crate::paths::{ROUTER_BIN, SERVE_BIN, TOOLS_ENV, TRAIN_ENV, TRAINING};

/// Everything whose change can change what `cargo fmt`, `clippy` or the tests say.
const RUST_SOURCES: &[&str] =
    &["Cargo.toml", "Cargo.lock", ".cargo", "clippy.toml", "rustfmt.toml", "rust-toolchain.toml", "xtask", "crates"];

/// The rest of the repository the tests read: docs and CI files the tidy tests hold to the
/// code, the data pointer and DVC's settings, the settings, the tool lists, the image's recipe.
/// Some tests copy every tracked file into scratch clones, so every tracked file is here
/// (`ci --trace-inputs` found `.dvc/` missing).
const REPO_FILES: &[&str] = &[
    ".dvc",
    "README.md",
    "ARCHITECTURE.md",
    ".ci",
    ".github",
    ".gitignore",
    ".dvcignore",
    ".dockerignore",
    "Dockerfile",
    "data.dvc",
    "slipway.toml",
    "tools",
    // The example projects, which the tests run end to end, and the guides beside them.
    "examples",
    "docs",
];

/// Where cargo and rustup keep things, and which toolchain runs: what they locate is keyed
/// through the tool versions and `Cargo.lock`.
const CARGO_PLACES: &[&str] =
    &["CARGO_HOME", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN", "CARGO_TARGET_DIR", "CARGO_TERM_COLOR"];

/// A stage that runs cargo: the toolchain and the flags that change what it builds.
fn cargo_stage(stage: Stage) -> Stage {
    stage
        .pipeline_code(crate::paths::CODE)
        .pipeline_code(crate::ort::CODE)
        .tool("rustc", &["rustc", "-vV"])
        .tool("cargo", &["cargo", "-V"])
        .env("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS")
        .env("CARGO_BUILD_TARGET")
        .pass_env(CARGO_PLACES)
}

/// Formatting, clippy and the training code's lints: a gate. A project inside another
/// workspace (`rust` false) owns no Rust: its lint is the training code's, and the
/// workspace's own pipeline lints the Rust. ruff also honours the workspace's `.gitignore`
/// above such a project (`workspace_gitignore`), so that is keyed too.
pub fn lint(rust: bool, workspace_gitignore: bool) -> Stage {
    let ruff = format!("{TRAIN_ENV}/bin/ruff");
    let mut stage = engine::stage!("lint", "check formatting, clippy lints and the training code")
        .gate()
        .uses("deps")
        .files("python", &[TRAINING])
        // ruff leaves out what git ignores, so what git ignores is an input of its verdict.
        .files("git-ignores", &[".gitignore", ".git/info/exclude"]);
    if !rust && workspace_gitignore {
        stage = stage.pipeline_code(".gitignore");
    }
    if rust {
        stage = cargo_stage(
            stage
                .files("rust", RUST_SOURCES)
                .tool("rustfmt", &["cargo", "fmt", "--version"])
                .tool("clippy", &["cargo", "clippy", "-V"])
                .command(Command::new("check formatting", "cargo").args(["fmt", "--all", "--", "--check"]).rejects())
                .command(
                    Command::new("lint with clippy", "cargo")
                        .args(["clippy", "--workspace", "--all-targets", "--quiet", "--", "-D", "warnings"])
                        .rejects(),
                ),
        );
    }
    stage
        .command(Command::new("lint the training code", ruff.clone()).args(["check", TRAINING]).rejects())
        .command(Command::new("check the training code's format", ruff).args(["format", "--check", TRAINING]).rejects())
}

/// Tests each test binary runs at once (libtest's default is one per core).
const TEST_THREADS: &str = "4";

/// The workspace tests (with the real tools on `PATH`) and the training tests: a gate. A
/// project inside another workspace (`rust` false) runs its training tests only.
pub fn test(rust: bool) -> Stage {
    let mut stage = engine::stage!("test", "run the workspace tests and the training tests").gate();
    if rust {
        stage = stage.uses("tools");
    }
    stage = stage.uses("deps").files("python", &[TRAINING]);
    if rust {
        stage = cargo_stage(
            stage
                .files("rust", RUST_SOURCES)
                .files("repo", REPO_FILES)
                // The tests find ONNX Runtime like the gate does, replay a seed when asked, and
                // talk to the machine's Docker engine.
                .env(crate::ort::DYLIB_VAR)
                .env("SLIPWAY_TEST_SEED")
                .env("SLIPWAY_TEST_MUTATIONS")
                .pass_env(&["DOCKER_HOST"])
                .command(
                    Command::new("run the workspace tests", "cargo")
                        .args(["test", "--workspace"])
                        .path_prepend(&format!("{TOOLS_ENV}/bin"))
                        // Most tests wait on servers and subprocesses, not the CPU: the deploy
                        // tests took 214 s at one test per core and 80 s at four, for the same
                        // checks.
                        .env("RUST_TEST_THREADS", TEST_THREADS)
                        .rejects(),
                ),
        );
    }
    stage.command(
        Command::new("run the training tests", format!("{TRAIN_ENV}/bin/python"))
            .args(["-m", "pytest", "-q", TRAINING])
            .rejects(),
    )
}

/// The release binaries a release ships: the model server and the environment router, built
/// in the program's workspace, wherever the project is.
///
/// Cargo reads its configuration from the directory it runs in and every one above, so the
/// build runs in the workspace, whose `.cargo` its crates input keys, and not in a project
/// whose `.cargo` (or a parent's) it would also read.
pub fn build() -> Stage {
    let stage = engine::stage!("build", "build the server and router (release)")
        .crates(&["slipway-serve", "slipway-router"])
        .command(Command::new("build the release binaries", "cargo").in_program_root().args([
            "build",
            "--release",
            "--quiet",
            "--message-format=json-render-diagnostics",
            "-p",
            "slipway-serve",
            "-p",
            "slipway-router",
            "--bins",
        ]))
        .output(SERVE_BIN)
        .output(ROUTER_BIN)
        .run(copy_binaries);
    cargo_stage(stage)
}

/// Builds, then copies each binary from where cargo says it put it (wherever the target
/// directory is configured to be) into `dist/`.
fn copy_binaries(ctx: &StageContext) -> Result<(), StageError> {
    let out = ctx.run_command("build the release binaries")?;
    let built = executables(&String::from_utf8_lossy(&out.stdout));
    for dest in [SERVE_BIN, ROUTER_BIN] {
        let name = dest.rsplit('/').next().expect("a file name");
        let src = built.iter().find(|p| p.file_name().is_some_and(|n| n == name)).ok_or_else(|| {
            StageError::Failed(anyhow::anyhow!("cargo built no `{name}` binary (it reported: {built:?})"))
        })?;
        let dest = ctx.root().join(dest);
        std::fs::create_dir_all(dest.parent().expect("dist/"))?;
        std::fs::copy(src, &dest)
            .map_err(|e| anyhow::anyhow!("cannot copy {} to {}: {e}", src.display(), dest.display()))?;
    }
    Ok(())
}

/// The `executable` of every artifact in cargo's JSON messages.
fn executables(messages: &str) -> Vec<std::path::PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter_map(|m| m["executable"].as_str().map(std::path::PathBuf::from))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn executables_come_from_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"x"},"executable":null}
{"reason":"compiler-artifact","executable":"/t/release/slipway-serve"}
{"reason":"build-finished","success":true}
not json"#;
        assert_eq!(super::executables(messages), [std::path::PathBuf::from("/t/release/slipway-serve")]);
    }
}

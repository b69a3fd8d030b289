//! The pipeline of this repository, top to bottom: every stage, what it reads, what it writes,
//! what it runs after. Read it like the CI workflow it replaces.
//!
//! ```text
//! tools ─┐      deps ─┬─> lint
//!        └─> test <──┘
//! pull ─> check-data ─> train (after deps) ─> validate
//! ```

use std::path::Path;

use anyhow::Result;
use engine::{Pipeline, Stage, StageError};
use xshell::cmd;

use crate::config::{self, Config};
use crate::pyenv;
use crate::validate::TRAIN_ENV;

/// Everything whose change can change what `cargo fmt`, `clippy` or the tests say.
const RUST_SOURCES: &[&str] =
    &["Cargo.toml", "Cargo.lock", ".cargo", "clippy.toml", "rustfmt.toml", "rust-toolchain.toml", "xtask", "crates"];

/// The tools the tests run for real (dvc, SeaweedFS), and their lock.
pub const TOOLS_ENV: &str = ".slipway/tools";
const TOOLS_LOCK: &str = "tools/requirements.lock";
const SYSTEM_PACKAGES: &str = "tools/system-packages.txt";
/// The training environment's lock, the training code and its parameters.
const TRAIN_LOCK: &str = "training/requirements.lock";
const TRAIN_SCRIPT: &str = "training/train.py";
const TRAIN_PARAMS: &str = "training/params.toml";

/// The pipeline of the repository at `root`, in the order its stages were declared.
pub fn pipeline(root: &Path) -> Result<Pipeline> {
    let config = config::load(root)?;
    let pipeline = Pipeline::new()
        // Environments, code quality, and the tests of the pipeline's own code.
        .stage(tools())?
        .stage(deps())?
        .stage(lint())?
        .stage(test())?
        // Data, model, gate.
        .stage(pull(root))?
        .stage(check_data(&config))?
        .stage(train(root)?)?
        .stage(validate(&config))?
        // Ship: build the server, deploy to staging behind smoke tests.
        .stage(build())?
        .stage(image())?
        .stage(deploy_staging())?;
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
    rust_stage("lint", "check formatting, clippy lints and the training code")
        .tool("rustfmt", &["cargo", "fmt", "--version"])
        .tool("clippy", &["cargo", "clippy", "-V"])
        .after("deps")
        .files("python", &["training"])
        .param(
            "commands",
            [
                "cargo fmt --all -- --check",
                "cargo clippy --workspace --all-targets -- -D warnings",
                "ruff check training",
                "ruff format --check training",
            ],
        )
        .run(|ctx| {
            let sh = ctx.shell();
            let ruff = format!("{TRAIN_ENV}/bin/ruff");
            ctx.run("check formatting", cmd!(sh, "cargo fmt --all -- --check")).map_err(StageError::rejected)?;
            ctx.run("lint with clippy", cmd!(sh, "cargo clippy --workspace --all-targets --quiet -- -D warnings"))
                .map_err(StageError::rejected)?;
            ctx.run("lint the training code", cmd!(sh, "{ruff} check training")).map_err(StageError::rejected)?;
            ctx.run("check the training code's format", cmd!(sh, "{ruff} format --check training"))
                .map_err(StageError::rejected)?;
            Ok(())
        })
}

/// The real tools the tests talk to: dvc and SeaweedFS in a virtualenv keyed by their lock
/// file, and the Debian packages (skopeo, umoci, a registry, wrk, kubectl).
fn tools() -> Stage {
    Stage::new("tools", "install the test tools (dvc, SeaweedFS, skopeo, umoci, a registry)")
        .files("lock", &[TOOLS_LOCK, SYSTEM_PACKAGES])
        .tool("python", &["python3", "--version"])
        .param("uv", pyenv::UV)
        .environment(TOOLS_ENV)
        .run(|ctx| {
            pyenv::system_packages(ctx, SYSTEM_PACKAGES)?;
            pyenv::install(ctx, TOOLS_ENV, TOOLS_LOCK)
        })
}

/// The training environment (scikit-learn, skl2onnx, ONNX Runtime), keyed by its lock file and
/// the machine's Python.
fn deps() -> Stage {
    Stage::new("deps", "install the training environment")
        .files("lock", &[TRAIN_LOCK])
        .tool("python", &["python3", "--version"])
        .param("uv", pyenv::UV)
        .environment(TRAIN_ENV)
        .run(|ctx| pyenv::install(ctx, TRAIN_ENV, TRAIN_LOCK))
}

fn test() -> Stage {
    // The tidy tests read the docs and CI files; the model and gate tests build small models
    // with the training code and environment.
    rust_stage("test", "run the workspace tests and the training tests")
        .after("tools")
        .after("deps")
        .files("repo", &["README.md", "ARCHITECTURE.md", ".ci", ".github", ".gitignore", "data.dvc", "slipway.toml"])
        .files("python", &["training"])
        .param("commands", ["cargo test --workspace", "pytest training"])
        .run(|ctx| {
            let sh = ctx.shell();
            let path = pyenv::path_with(ctx, TOOLS_ENV);
            let tests = cmd!(sh, "cargo test --workspace").env("PATH", path);
            ctx.run("run the workspace tests", tests).map_err(StageError::rejected)?;
            let python = format!("{TRAIN_ENV}/bin/python");
            ctx.run("run the training tests", cmd!(sh, "{python} -m pytest -q training"))
                .map_err(StageError::rejected)?;
            Ok(())
        })
}

/// Materialises the DVC-tracked data. Its content is fixed by the md5s in the pointer files, so
/// they are the only input: where the remote is does not change what is pulled.
fn pull(root: &Path) -> Stage {
    let pointers = store::find_pointers(root);
    let mut stage = Stage::new("pull", "pull the data from the artifact remote")
        .files("pointers", &pointers)
        .param("commands", ["cargo xtask pull"]);
    for pointer in &pointers {
        stage = stage.output(pointer.trim_end_matches(".dvc"));
    }
    stage.run(|ctx| {
        let handle = tokio::runtime::Handle::current();
        let say = |line: &str| ctx.log_line(line);
        handle.block_on(crate::data::pull_with(ctx.root(), ctx.env(), &[], false, &say)).map_err(StageError::Failed)
    })
}

/// The data gate: fails closed on bad data before any training time is spent.
fn check_data(config: &Config) -> Stage {
    let rules = config.data.clone();
    Stage::new("check-data", "check the data: columns, labels, balance, duplicates, leakage")
        .after("pull")
        .param("rules", serde_json::to_value(&rules).expect("rules serialize"))
        .output("reports/data-check.json")
        .keep_failed_outputs()
        .run(move |ctx| crate::train::check_data(ctx, &rules))
}

/// Training: the team's script, keyed on the code, each parameter, the data and the environment.
fn train(root: &Path) -> Result<Stage> {
    let mut stage = Stage::new("train", "train the model")
        .after("deps")
        .after("pull")
        .after("check-data")
        .files("code", &[TRAIN_SCRIPT, TRAIN_PARAMS])
        .tool("python", &["python3", "--version"])
        .param("commands", [format!("python {TRAIN_SCRIPT} --data data --params {TRAIN_PARAMS} --out models")]);
    for (name, value) in config::training_params(root, TRAIN_PARAMS)? {
        stage = stage.param(&name, value);
    }
    Ok(stage.output("models").run(|ctx| crate::train::train(ctx, TRAIN_SCRIPT, TRAIN_PARAMS)))
}

/// The model gate, with ONNX Runtime, on the exact model that would ship.
fn validate(config: &Config) -> Stage {
    let v = config.validate.clone();
    let mut stage = Stage::new("validate", "validate the model with ONNX Runtime")
        .after("deps")
        .after("pull")
        .after("train")
        .param("thresholds", serde_json::to_value(&v).expect("thresholds serialize"))
        .output(crate::validate::REPORT)
        .keep_failed_outputs();
    if let Some(prod) = &v.production_model {
        stage = stage.files("production-model", &[prod]);
    }
    stage.run(move |ctx| crate::validate::stage_action(ctx, &v))
}

/// The release binaries: the model server and the environment router, copied to `dist/`.
fn build() -> Stage {
    rust_stage("build", "build the server and router (release)")
        .param("commands", ["cargo build --release -p slipway-serve -p slipway-deploy --bins"])
        .output("dist/slipway-serve")
        .output("dist/slipway-router")
        .run(|ctx| {
            let sh = ctx.shell();
            ctx.run(
                "build the release binaries",
                cmd!(sh, "cargo build --release --quiet -p slipway-serve -p slipway-deploy --bins"),
            )?;
            let target =
                ctx.env().get("CARGO_TARGET_DIR").map_or_else(|| ctx.root().join("target"), std::path::PathBuf::from);
            for bin in ["slipway-serve", "slipway-router"] {
                let dest = ctx.root().join(crate::release::DIST).join(bin);
                std::fs::create_dir_all(dest.parent().expect("dist/"))?;
                std::fs::copy(target.join("release").join(bin), &dest)?;
            }
            Ok(())
        })
}

/// The serving image: daemonless, reproducible, with its SBOM; pushed when a registry is set.
fn image() -> Stage {
    Stage::new("image", "build the serving image (and push it if SLIPWAY_REGISTRY is set)")
        .after("validate")
        .after("build")
        .after("train")
        .after("deps")
        .files("inputs", &["data.dvc", "Cargo.lock", "training/requirements.lock"])
        .env("SLIPWAY_REGISTRY")
        .env("SLIPWAY_REGISTRY_USER")
        .env("SOURCE_DATE_EPOCH")
        // The runtime libraries layer is copied from this machine.
        .tool("system-libraries", &["dpkg-query", "-W", "libc6", "libstdc++6", "libgcc-s1"])
        .secret_env("SLIPWAY_REGISTRY_PASSWORD")
        .tool("git", &["git", "rev-parse", "HEAD"])
        .output(crate::image::IMAGE_DIR)
        .run(crate::image::stage_action)
}

/// Staging: the validated model on the built server, smoke-tested. Production only via promote.
fn deploy_staging() -> Stage {
    Stage::new("deploy-staging", "deploy to staging and run the smoke tests")
        .after("image")
        .after("validate")
        .after("build")
        .after("train")
        .after("deps")
        .files("config", &["slipway.toml"])
        .environment(".slipway/deploy/staging")
        .run(|ctx| crate::release::deploy_stage(ctx, "staging"))
}

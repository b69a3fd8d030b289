//! The pipeline of this repository, top to bottom: every stage in the order it is declared.
//! Read it like the CI workflow it replaces; what each stage reads, runs and writes is in its
//! module under `stages/`. The table below is `Pipeline::diagram()`, held to the code by a test:
//!
//! ```text
//! stage           role   uses (keyed on its outputs)  runs after
//! tools
//! deps
//! lint            gate   deps
//! test            gate   tools, deps
//! pull
//! check-data      gate   pull
//! train                  deps, pull                   check-data
//! validate        gate   train
//! build
//! image           ships  build, train                 lint, test, check-data, validate
//! deploy-staging  ships  image
//! ```
//!
//! A stage is keyed on the outputs of the stages it uses, and of everything those use; it runs
//! only after every stage it uses or runs after has passed or been restored. Nothing that ships
//! can run before every gate: the engine refuses such a pipeline.

use std::path::Path;

use anyhow::Result;
use engine::Pipeline;

use crate::config;
use crate::stages::{check_data, deploy, image, pull, python, rust, train, validate};

/// The pipeline of the project at `root`, run by the `xtask` of the workspace at `program`, in
/// the order its stages were declared.
pub fn pipeline(program: &Path, root: &Path) -> Result<Pipeline> {
    let config = config::load(root)?;
    // A project other than the workspace's own owns no Rust: the workspace's own pipeline lints
    // and tests that, with the tools its tests need.
    let rust = program == root;
    let mut pipeline = Pipeline::new();
    if rust {
        pipeline = pipeline.stage(python::tools())?;
    }
    let pipeline = pipeline
        // Environments, code quality, and the tests of the pipeline's own code.
        .stage(python::deps())?
        .stage(rust::lint(rust, root.starts_with(program) && program.join(".gitignore").is_file()))?
        .stage(rust::test(rust))?
        // Data, model, gates.
        .stage(pull::stage(root)?)?
        .stage(check_data::stage(&config))?
        .stage(train::stage(root, &config)?)?
        .stage(validate::stage(&config))?
        // Ship: build the server, package it, deploy to staging behind smoke tests.
        .stage(rust::build())?
        .stage(image::stage())?
        .stage(deploy::staging(&config))?;
    Ok(pipeline)
}

#[cfg(test)]
mod tests;

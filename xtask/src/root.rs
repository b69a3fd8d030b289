//! The repository `cargo xtask` acts on, found when it runs — never a path baked into the
//! binary. Two clones that share a target directory run the same `xtask` binary; each must act
//! on its own files.
//!
//! In order: `SLIPWAY_ROOT` (tests run the CLI on scratch repositories); the workspace of
//! `CARGO_MANIFEST_DIR`, which cargo sets for `cargo run` (so `cargo xtask` acts on the clone
//! whose manifest cargo used); the workspace around the current directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::Env;

/// The workspace root for this run.
pub fn find(env: &Env, cwd: &Path) -> Result<PathBuf> {
    if let Some(root) = env.get("SLIPWAY_ROOT").filter(|r| !r.is_empty()) {
        return Path::new(root).canonicalize().with_context(|| format!("SLIPWAY_ROOT={root} does not exist"));
    }
    let start = match env.get("CARGO_MANIFEST_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => cwd.to_path_buf(),
    };
    let start = start.canonicalize().with_context(|| format!("cannot resolve {}", start.display()))?;
    match start.ancestors().find(|dir| is_workspace_root(dir)) {
        Some(root) => Ok(root.to_path_buf()),
        None => bail!(
            "{} is not inside a Cargo workspace; run `cargo xtask` from the repository (its root has a Cargo.toml with [workspace])",
            start.display()
        ),
    }
}

/// Whether `dir` holds a `Cargo.toml` with a `[workspace]` table.
fn is_workspace_root(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("workspace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = [\"xtask\"]\n").unwrap();
        std::fs::create_dir_all(dir.path().join("xtask/src")).unwrap();
        std::fs::write(dir.path().join("xtask/Cargo.toml"), "[package]\nname = \"xtask\"\n").unwrap();
        dir
    }

    #[test]
    fn the_root_comes_from_where_the_program_runs() {
        let (a, b) = (workspace(), workspace());
        let a_root = a.path().canonicalize().unwrap();
        let b_root = b.path().canonicalize().unwrap();
        let none = Env::new();
        assert_eq!(find(&none, &a.path().join("xtask/src")).unwrap(), a_root);
        let cargo_run: Env = [("CARGO_MANIFEST_DIR".to_string(), b.path().join("xtask").display().to_string())].into();
        assert_eq!(find(&cargo_run, a.path()).unwrap(), b_root, "cargo's manifest dir wins over the cwd");
        let explicit: Env = [("SLIPWAY_ROOT".to_string(), a.path().display().to_string())].into();
        assert_eq!(find(&explicit, b.path()).unwrap(), a_root);
        let outside = tempfile::tempdir().unwrap();
        let e = find(&none, outside.path()).unwrap_err().to_string();
        assert!(e.contains("is not inside a Cargo workspace"), "{e}");
    }
}

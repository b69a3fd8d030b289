//! The repository `cargo xtask` acts on, found when it runs — never a path baked into the
//! binary. Two clones that share a target directory run the same `xtask` binary; each must act
//! on its own files.
//!
//! In order: `SLIPWAY_ROOT` (tests run the CLI on scratch repositories); the workspace of
//! `CARGO_MANIFEST_DIR`, which cargo sets for `cargo run` (so `cargo xtask` acts on the clone
//! whose manifest cargo used); the workspace around the current directory.

use std::path::{Path, PathBuf};

/// This module, as code of the stages that find where a project's releases live through it.
pub const CODE: &str = file!();

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

/// The project to act on inside the workspace at `root`: the directory `--project` names
/// (relative to `cwd`), else the nearest directory from `cwd` up to `root` that holds a
/// `slipway.toml`, else `root`. A project other than the root must hold a `slipway.toml` and
/// lie inside the root: its pipeline builds the server from this workspace.
pub fn project(root: &Path, cwd: &Path, flag: Option<&Path>) -> Result<PathBuf> {
    let root = root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))?;
    let chosen = match flag {
        Some(dir) => {
            let dir = cwd.join(dir);
            let dir = dir.canonicalize().with_context(|| format!("--project {}: no such directory", dir.display()))?;
            if !dir.join(CONFIG).is_file() && dir != root {
                bail!("--project {}: there is no {CONFIG} there; a project is a directory with one", dir.display());
            }
            dir
        }
        None => match cwd.canonicalize() {
            Ok(cwd) if cwd.starts_with(&root) => cwd
                .ancestors()
                .take_while(|d| d.starts_with(&root))
                .find(|d| d.join(CONFIG).is_file())
                .unwrap_or(&root)
                .to_path_buf(),
            _ => root.clone(),
        },
    };
    if !chosen.starts_with(&root) {
        bail!(
            "the project {} is not inside the workspace {}; run `cargo xtask` from the workspace whose xtask and crates it uses",
            chosen.display(),
            root.display()
        );
    }
    Ok(chosen)
}

/// The Cargo workspace that holds `project` (the project itself when it is one): where the
/// program's code and crates are.
pub fn program_root(project: &Path) -> Result<PathBuf> {
    match project.ancestors().find(|dir| is_workspace_root(dir)) {
        Some(root) => Ok(root.to_path_buf()),
        None => bail!("{} is not inside a Cargo workspace", project.display()),
    }
}

/// Where on a shared remote the releases, ledger and locks of `project` live, when it is a
/// project inside another workspace: `projects/<its path in the workspace>`.
pub fn remote_prefix(project: &Path) -> Result<Option<String>> {
    let program = program_root(project)?;
    let rel = project.strip_prefix(&program).unwrap_or(Path::new(""));
    Ok(match rel.as_os_str().is_empty() {
        true => None,
        false => Some(format!("projects/{}", rel.to_string_lossy().replace('\\', "/"))),
    })
}

/// Slipway's settings file, whose directory is a project.
const CONFIG: &str = crate::paths::CONFIG;

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

    #[test]
    fn the_project_is_the_nearest_settings_file_or_the_flag() {
        let ws = workspace();
        let root = ws.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("examples/tab/training")).unwrap();
        std::fs::write(root.join("examples/tab/slipway.toml"), "").unwrap();
        std::fs::write(root.join("slipway.toml"), "").unwrap();
        let tab = root.join("examples/tab");
        assert_eq!(project(&root, &root.join("xtask/src"), None).unwrap(), root);
        assert_eq!(project(&root, &tab.join("training"), None).unwrap(), tab);
        assert_eq!(project(&root, &root, Some(Path::new("examples/tab"))).unwrap(), tab);
        assert_eq!(project(&root, &tab, Some(Path::new("../.."))).unwrap(), root);
        let e = project(&root, &root, Some(Path::new("xtask"))).unwrap_err().to_string();
        assert!(e.contains("there is no slipway.toml there"), "{e}");
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("slipway.toml"), "").unwrap();
        let e = project(&root, &root, Some(outside.path())).unwrap_err().to_string();
        assert!(e.contains("is not inside the workspace"), "{e}");
        assert_eq!(program_root(&tab).unwrap(), root);
        assert_eq!(remote_prefix(&tab).unwrap().as_deref(), Some("projects/examples/tab"));
        assert_eq!(remote_prefix(&root).unwrap(), None);
        assert_eq!(program_root(&root).unwrap(), root);
    }
}

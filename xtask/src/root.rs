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

/// The project to act on with the workspace at `root`: the directory `--project` names
/// (relative to `cwd`), else the nearest directory from `cwd` up that holds a `slipway.toml`
/// (inside `root`, up to `root`), else `root`. A project other than the root must hold a
/// `slipway.toml`. It may lie inside the workspace (like `examples/tabular`) or outside it: a
/// team's own repository with Slipway checked out beside or inside it, whose `cargo xtask`
/// alias names Slipway's manifest. A `cwd` outside `root` is searched only when the root was
/// not named by `SLIPWAY_ROOT` (`env`), which means "act on this repository", and only up to
/// the top of the git repository that holds it; finding nothing there is an error, never a run
/// of Slipway's own demo project.
pub fn project(env: &Env, root: &Path, cwd: &Path, flag: Option<&Path>) -> Result<PathBuf> {
    let named = env.get("SLIPWAY_ROOT").is_some_and(|r| !r.is_empty());
    let root = root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))?;
    Ok(match flag {
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
            Ok(_) if named => root.clone(),
            Ok(cwd) => {
                let mut found = None;
                for dir in cwd.ancestors() {
                    if dir.join(CONFIG).is_file() {
                        found = Some(dir.to_path_buf());
                        break;
                    }
                    if dir.join(".git").exists() {
                        break;
                    }
                }
                found.with_context(|| {
                    format!(
                        "there is no {CONFIG} in {} or above it up to the top of its repository, and it is outside the workspace {}; \
                         create one (see docs/adopting.md), run from a project, or name one with --project",
                        cwd.display(),
                        root.display()
                    )
                })?
            }
            Err(_) => root.clone(),
        },
    })
}

/// The Cargo workspace whose `xtask` runs for `project`: where the program's code and crates
/// are. It is the workspace [`find`] gives (`cargo xtask` sets `CARGO_MANIFEST_DIR` to its
/// `xtask`), which holds the project or, for a project of a repository of its own, sits beside
/// it.
pub fn program_root(env: &Env, project: &Path) -> Result<PathBuf> {
    find(env, project)
}

/// Where on a shared remote the releases, ledger and locks of `project` live when it is not the
/// workspace's own: `projects/<its path in the workspace>` inside it, `external/<its directory
/// name>` outside it. The embedded default remote is shared by every clone on the machine, and
/// a team's repository may share a remote with others, so the path keeps them apart (two
/// repositories of one name on one remote would share theirs: give each a remote of its own).
/// Each directory name becomes part of an object key, so it must be a plain name.
pub fn remote_prefix(program: &Path, project: &Path) -> Result<Option<String>> {
    let (kind, rel) = match project.strip_prefix(program) {
        Ok(rel) if rel.as_os_str().is_empty() => return Ok(None),
        Ok(rel) => ("projects", rel),
        Err(_) => ("external", Path::new(project.file_name().unwrap_or_default())),
    };
    let mut parts = Vec::new();
    for part in rel.iter() {
        let name = part.to_str().unwrap_or_default();
        let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if name.is_empty() || name.len() > 100 || !plain || name.starts_with('.') {
            bail!(
                "the project's directory `{}` cannot name its place on the remote ({kind}/…): rename it with letters, digits, `.`, `_` and `-` only",
                part.to_string_lossy()
            );
        }
        parts.push(name);
    }
    if parts.is_empty() {
        bail!("the project {} has no directory name to keep its releases apart by", project.display());
    }
    Ok(Some(format!("{kind}/{}", parts.join("/"))))
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
        assert_eq!(project(&Env::new(), &root, &root.join("xtask/src"), None).unwrap(), root);
        assert_eq!(project(&Env::new(), &root, &tab.join("training"), None).unwrap(), tab);
        assert_eq!(project(&Env::new(), &root, &root, Some(Path::new("examples/tab"))).unwrap(), tab);
        assert_eq!(project(&Env::new(), &root, &tab, Some(Path::new("../.."))).unwrap(), root);
        let e = project(&Env::new(), &root, &root, Some(Path::new("xtask"))).unwrap_err().to_string();
        assert!(e.contains("there is no slipway.toml there"), "{e}");
        assert_eq!(program_root(&Env::new(), &tab).unwrap(), root);
        assert_eq!(remote_prefix(&root, &tab).unwrap().as_deref(), Some("projects/examples/tab"));
        assert_eq!(remote_prefix(&root, &root).unwrap(), None);
        assert_eq!(program_root(&Env::new(), &root).unwrap(), root);
    }

    #[test]
    fn a_project_of_its_own_repository_runs_with_the_workspace_cargo_ran() {
        let ws = workspace();
        let root = ws.path().canonicalize().unwrap();
        let team = tempfile::tempdir().unwrap();
        let churn = team.path().canonicalize().unwrap().join("churn");
        std::fs::create_dir_all(churn.join("training")).unwrap();
        std::fs::write(churn.join("slipway.toml"), "").unwrap();
        assert_eq!(project(&Env::new(), &root, &churn.join("training"), None).unwrap(), churn);
        assert_eq!(project(&Env::new(), &root, &root, Some(&churn)).unwrap(), churn);
        std::fs::create_dir_all(team.path().join(".git")).unwrap();
        let e = project(&Env::new(), &root, team.path(), None).unwrap_err().to_string();
        assert!(e.contains("there is no slipway.toml in") && e.contains("--project"), "{e}");
        assert_eq!(project(&Env::new(), &root, &churn.join("training"), None).unwrap(), churn, "below the top");
        let named: Env = [("SLIPWAY_ROOT".to_string(), root.display().to_string())].into();
        assert_eq!(project(&named, &root, &churn, None).unwrap(), root, "SLIPWAY_ROOT names the project");
        assert_eq!(project(&named, &root, &root, Some(&churn)).unwrap(), churn, "unless --project says otherwise");
        let cargo_run: Env = [("CARGO_MANIFEST_DIR".to_string(), root.join("xtask").display().to_string())].into();
        assert_eq!(program_root(&cargo_run, &churn).unwrap(), root);
        assert_eq!(remote_prefix(&root, &churn).unwrap().as_deref(), Some("external/churn"));
        for bad in ["a\\..\\..", "two words", ".hidden", "é"] {
            let e = remote_prefix(&root, &team.path().join(bad)).unwrap_err().to_string();
            assert!(e.contains("cannot name its place on the remote"), "{bad}: {e}");
        }
        assert!(remote_prefix(&root, &root.join("examples/a b")).is_err(), "inside the workspace too");
    }
}

//! Who is acting, as the ledger, the deploy locks and approvals record it: `GITHUB_ACTOR` in
//! CI, else the git identity (`user.name <user.email>`), else the OS account. Never `unknown`:
//! it was wherever `USER` is unset, as for root in a container.
//!
//! The git identity is read the way git reads it, without running git: `GIT_AUTHOR_NAME` and
//! `GIT_AUTHOR_EMAIL`, else `[user]` in the system, global and repository config files, a later
//! file overriding an earlier one (`include` directives are not followed).

use std::path::{Path, PathBuf};

use crate::Env;

/// This module, as code of the stages that record who acted.
pub const CODE: &str = file!();

/// The variables [`who`] reads, for a stage to pass (they locate, they are not keyed).
pub const VARS: &[&str] = &[
    "GITHUB_ACTOR",
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
    "GIT_CONFIG_NOSYSTEM",
    "XDG_CONFIG_HOME",
    "HOME",
    "USER",
    "LOGNAME",
];

/// Config files larger than this are not read for the identity.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The longest `who` the ledger and the deploy locks accept.
pub const MAX_WHO: usize = 256;

/// Who is acting in the repository at `root`: the first of the candidates that the ledger can
/// hold (at most [`MAX_WHO`] bytes, no control characters).
pub fn who(env: &Env, root: &Path) -> String {
    let var = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_string);
    let (mut name, mut email) = (None, None);
    for file in config_files(env, root) {
        let (n, e) = user_of(&file);
        name = n.or(name);
        email = e.or(email);
    }
    let name = var("GIT_AUTHOR_NAME").or(name);
    let email = var("GIT_AUTHOR_EMAIL").or(email);
    let both = name.as_ref().zip(email.as_ref()).map(|(n, e)| format!("{n} <{e}>"));
    [var("GITHUB_ACTOR"), both, name, email.map(|e| format!("<{e}>")), var("USER"), var("LOGNAME")]
        .into_iter()
        .flatten()
        .find(|w| usable(w))
        .unwrap_or_else(os_account)
}

fn usable(who: &str) -> bool {
    !who.is_empty() && who.len() <= MAX_WHO && !who.chars().any(char::is_control)
}

/// Git's config files for `root`, in the order git reads them.
fn config_files(env: &Env, root: &Path) -> Vec<PathBuf> {
    let var = |name: &str| env.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut files = Vec::new();
    if var("GIT_CONFIG_NOSYSTEM").is_none() {
        files.push(var("GIT_CONFIG_SYSTEM").unwrap_or_else(|| PathBuf::from("/etc/gitconfig")));
    }
    match var("GIT_CONFIG_GLOBAL") {
        Some(global) => files.push(global),
        None => {
            let home = var("HOME");
            if let Some(xdg) = var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config"))) {
                files.push(xdg.join("git/config"));
            }
            files.extend(home.map(|h| h.join(".gitconfig")));
        }
    }
    files.extend(repository_config(root));
    files
}

/// `.git/config` of the repository holding `root`, following a `.git` file (`gitdir: …`) as
/// worktrees and submodules have.
fn repository_config(root: &Path) -> Option<PathBuf> {
    Some(git_dirs(root)?.1.join("config"))
}

/// The repository's git directory (where `HEAD` is) and its common directory (where `config`
/// and the refs are): the same for a plain clone, apart for a worktree or a submodule.
fn git_dirs(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let dot_git = root.ancestors().map(|d| d.join(".git")).find(|g| g.exists())?;
    if dot_git.is_dir() {
        return Some((dot_git.clone(), dot_git));
    }
    let text = read_small(&dot_git)?;
    let gitdir = text.lines().find_map(|l| l.strip_prefix("gitdir:"))?.trim();
    let gitdir = dot_git.parent()?.join(gitdir);
    // A worktree's own directory names the common one, where `config` is.
    let common = read_small(&gitdir.join("commondir")).map(|c| gitdir.join(c.trim())).unwrap_or(gitdir.clone());
    Some((gitdir, common))
}

/// The commit `HEAD` names, read from the repository's files without running git (a stage may
/// run only the commands it declares): a detached `HEAD`, a loose ref or `packed-refs`.
pub fn head_commit(root: &Path) -> Option<String> {
    let (git_dir, common) = git_dirs(root)?;
    let head = read_small(&git_dir.join("HEAD"))?;
    let sha = match head.trim().strip_prefix("ref:").map(str::trim) {
        None => head.trim().to_string(),
        Some(name) => {
            if !name.starts_with("refs/") || name.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
                return None;
            }
            match read_small(&common.join(name)) {
                Some(loose) => loose.trim().to_string(),
                None => read_bounded(&common.join("packed-refs"), MAX_PACKED_REFS)?
                    .lines()
                    .find_map(|l| l.split_once(' ').filter(|(_, r)| *r == name).map(|(sha, _)| sha.to_string()))?,
            }
        }
    };
    (sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
}

/// `packed-refs` of a large repository is long; past this it is not read.
const MAX_PACKED_REFS: u64 = 64 << 20;

fn read_small(path: &Path) -> Option<String> {
    read_bounded(path, MAX_CONFIG_BYTES)
}

fn read_bounded(path: &Path, max: u64) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > max {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// `user.name` and `user.email` of one git config file (the last of each wins, as in git).
fn user_of(path: &Path) -> (Option<String>, Option<String>) {
    let Some(text) = read_small(path) else { return (None, None) };
    let (mut name, mut email) = (None, None);
    let mut in_user = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(section) = line.strip_prefix('[') {
            let section = section.split(']').next().unwrap_or_default().trim();
            in_user = section.eq_ignore_ascii_case("user");
            continue;
        }
        if !in_user {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = unquote(value);
        if !usable(&value) {
            continue;
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(value),
            "email" => email = Some(value),
            _ => {}
        }
    }
    (name, email)
}

/// A config value: a comment after `#` or `;` outside quotes dropped, quotes removed.
fn unquote(raw: &str) -> String {
    let (mut out, mut quoted) = (String::new(), false);
    for c in raw.trim().chars() {
        match c {
            '"' => quoted = !quoted,
            '#' | ';' if !quoted => break,
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

/// The account this process runs as, from `/etc/passwd`; `uid N` when it has no entry.
fn os_account() -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else { return "uid ?".into() };
    let passwd = read_small(Path::new("/etc/passwd")).unwrap_or_default();
    passwd
        .lines()
        .find_map(|l| {
            let mut fields = l.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid && !name.is_empty()).then(|| name.to_string())
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn ci_then_git_then_the_account() {
        let home = tempfile::tempdir().unwrap();
        let repo = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        let base = [("HOME", h), ("GIT_CONFIG_NOSYSTEM", "1"), ("USER", "ops")];
        assert_eq!(who(&env(&base), repo.path()), "ops", "no git identity: the account");
        std::fs::write(home.path().join(".gitconfig"), "[core]\n\tname = not-this\n[user]\n\tname = \"Ada L\" # me\n")
            .unwrap();
        assert_eq!(who(&env(&base), repo.path()), "Ada L");
        std::fs::create_dir_all(repo.path().join(".git")).unwrap();
        std::fs::write(repo.path().join(".git/config"), "[User]\n  email = ada@example.com\n").unwrap();
        assert_eq!(who(&env(&base), &repo.path().join("sub")), "Ada L <ada@example.com>", "the repository's adds");
        let mut ci = env(&base);
        ci.insert("GITHUB_ACTOR".into(), "octocat".into());
        assert_eq!(who(&ci, repo.path()), "octocat");
        let mut author = env(&base);
        author.insert("GIT_AUTHOR_NAME".into(), "Bot".into());
        assert_eq!(who(&author, repo.path()), "Bot <ada@example.com>");
    }

    #[test]
    fn a_submodule_reads_the_config_its_git_file_names() {
        let top = tempfile::tempdir().unwrap();
        let gitdir = top.path().join(".git/modules/sub");
        std::fs::create_dir_all(&gitdir).unwrap();
        std::fs::write(gitdir.join("config"), "[user]\nname = Sub\n").unwrap();
        std::fs::create_dir_all(top.path().join("sub")).unwrap();
        std::fs::write(top.path().join("sub/.git"), "gitdir: ../.git/modules/sub\n").unwrap();
        let e = env(&[("GIT_CONFIG_NOSYSTEM", "1"), ("HOME", "/nonexistent")]);
        assert_eq!(who(&e, &top.path().join("sub")), "Sub");
    }

    #[test]
    fn what_the_ledger_cannot_hold_gives_way_to_the_next() {
        let (long, name) = ("x".repeat(200), "y".repeat(100));
        let e = env(&[
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("HOME", "/nonexistent"),
            ("GITHUB_ACTOR", "bad\u{7}actor"),
            ("GIT_AUTHOR_NAME", &name),
            ("GIT_AUTHOR_EMAIL", &long),
        ]);
        let nobody = tempfile::tempdir().unwrap();
        assert_eq!(who(&e, nobody.path()), name, "name and email together are over {MAX_WHO} bytes");
    }

    #[test]
    fn head_is_read_from_a_loose_ref_packed_refs_or_detached() {
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(git.join("packed-refs"), format!("# pack-refs with: peeled\n{b} refs/heads/main\n")).unwrap();
        assert_eq!(head_commit(dir.path()).as_deref(), Some(b.as_str()), "packed");
        std::fs::write(git.join("refs/heads/main"), format!("{a}\n")).unwrap();
        assert_eq!(head_commit(dir.path()).as_deref(), Some(a.as_str()), "a loose ref wins");
        std::fs::write(git.join("HEAD"), format!("{b}\n")).unwrap();
        assert_eq!(head_commit(dir.path()).as_deref(), Some(b.as_str()), "detached");
        std::fs::write(git.join("HEAD"), "ref: refs/../../etc/passwd\n").unwrap();
        assert_eq!(head_commit(dir.path()), None, "a ref that climbs out is not followed");
    }

    #[test]
    fn with_nothing_set_it_is_the_os_account_never_unknown() {
        let e = env(&[("GIT_CONFIG_NOSYSTEM", "1"), ("HOME", "/nonexistent")]);
        let nobody = tempfile::tempdir().unwrap();
        let who = who(&e, nobody.path());
        assert!(!who.is_empty() && who != "unknown", "{who}");
        assert_eq!(who, os_account());
    }
}

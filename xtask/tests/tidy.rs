//! The repository's own rules, checked as ordinary tests so that `cargo test` is the whole CI.

use std::fs;
use std::path::{Path, PathBuf};

/// The repository under test, from where cargo runs the test (a test binary may be shared by
/// clones with one target directory, so the path it was compiled in is not used).
fn root() -> PathBuf {
    let dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    Path::new(&dir).parent().unwrap().to_path_buf()
}

fn rust_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root().join("xtask"), root().join("crates")];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "target" && n != "snapshots") {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    let missing: Vec<_> = rust_files()
        .into_iter()
        .filter(|p| !fs::read_to_string(p).unwrap().starts_with("//!"))
        .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` line saying their job: {missing:?}");
}

#[test]
fn no_file_grows_past_600_lines() {
    let long: Vec<_> = rust_files()
        .into_iter()
        .map(|p| (fs::read_to_string(&p).unwrap().lines().count(), p))
        .filter(|(n, _)| *n > 600)
        .map(|(n, p)| format!("{} ({n} lines)", p.strip_prefix(root()).unwrap().display()))
        .collect();
    assert!(long.is_empty(), "split these files: {long:?}");
}

/// The README promises two commands on a fresh machine; CI must run exactly those.
#[test]
fn ci_runs_the_readme_commands_in_order() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let ci = fs::read_to_string(root().join(".ci/run")).unwrap();
    let commands = ["cargo xtask ci", "cargo xtask test"];
    let in_ci: Vec<usize> = commands
        .iter()
        .map(|c| ci.lines().position(|l| l.trim() == *c).unwrap_or_else(|| panic!(".ci/run does not run `{c}`")))
        .collect();
    assert!(in_ci[0] < in_ci[1], ".ci/run must run the main job before the tests");
    for c in commands {
        assert!(readme.lines().any(|l| l.trim().starts_with(c)), "README.md does not show `{c}`");
    }
}

/// The workflow runs the pipeline, and, when production is asked for, a second job behind the
/// `production` environment's reviewers whose one command is the promotion.
#[test]
fn the_workflow_is_slipway_and_promotes_behind_an_approval() {
    let wf = fs::read_to_string(root().join(".github/workflows/ci.yml")).unwrap();
    let runs: Vec<&str> =
        wf.lines().map(str::trim).filter(|l| l.starts_with("- run:") || l.starts_with("run:")).collect();
    assert_eq!(runs, ["- run: cargo xtask ci", "- run: cargo xtask promote production --approve"]);
    for trigger in ["push:", "pull_request:", "schedule:", "workflow_dispatch:"] {
        assert!(wf.lines().any(|l| l.trim() == trigger), "the workflow lacks the `{trigger}` trigger");
    }
    assert!(wf.contains("hashFiles('Cargo.lock')"), "the cargo cache must be keyed by Cargo.lock");
    let promote = &wf[wf.find("\n  promote:").expect("a promote job")..];
    for line in [
        "needs: ci",
        "environment: production",
        "if: github.event_name == 'workflow_dispatch' && inputs.environment == 'production'",
    ] {
        assert!(promote.lines().any(|l| l.trim() == line), "the promote job lacks `{line}`");
    }
    assert!(!wf.contains("SLIPWAY_ENVIRONMENT"), "nothing reads SLIPWAY_ENVIRONMENT");
}

/// The workflow is valid for GitHub, checked against the schema check-jsonschema vendors.
#[test]
fn the_workflow_passes_githubs_schema() {
    let checker = root().join(".slipway/tools/bin/check-jsonschema");
    assert!(checker.is_file(), "{} is missing: run `cargo xtask ci tools` first", checker.display());
    let sh = xshell::Shell::new().unwrap();
    let workflow = root().join(".github/workflows/ci.yml");
    let out = xshell::cmd!(sh, "{checker} --builtin-schema vendor.github-workflows {workflow}")
        .ignore_status()
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    // And it does reject a broken workflow, so the pass above means something.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("ci.yml");
    fs::write(&broken, fs::read_to_string(&workflow).unwrap().replace("runs-on:", "runs_on:")).unwrap();
    let out = xshell::cmd!(sh, "{checker} --builtin-schema vendor.github-workflows {broken}")
        .ignore_status()
        .output()
        .unwrap();
    assert!(!out.status.success(), "a workflow without runs-on passed");
}

#[test]
fn slipway_state_is_ignored_by_git() {
    let ignore = fs::read_to_string(root().join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "/.slipway"), ".slipway/ must be git-ignored");
}

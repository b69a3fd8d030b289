//! This repository's pipeline, checked without running it: the docs show its real shape, every
//! stage declares the code it runs, nothing ships past a gate, and each kind of edit makes
//! exactly the stages that depend on it stale, naming what changed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use engine::{Digest, Pipeline, Workspace};

use super::pipeline;
use crate::Env;

/// The repository under test, found when the test runs (not where it was compiled).
fn repo_root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).expect("cargo sets CARGO_MANIFEST_DIR");
    dir.parent().expect("xtask lives one level below the root").to_path_buf()
}

fn process_env() -> Env {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

/// The ```text block that follows `marker` in `doc`, with `prefix` stripped from each line.
fn block_after(doc: &str, marker: &str, prefix: &str) -> String {
    let lines: Vec<&str> = doc.lines().map(|l| l.strip_prefix(prefix).unwrap_or(l)).collect();
    let at = lines.iter().position(|l| l.contains(marker)).unwrap_or_else(|| panic!("no `{marker}`"));
    let open = at + lines[at..].iter().position(|l| l.trim() == "```text").expect("a text block");
    let close = open + 1 + lines[open + 1..].iter().position(|l| l.trim() == "```").expect("a closed block");
    lines[open + 1..close].iter().map(|l| format!("{}\n", l.trim_end())).collect()
}

#[test]
fn the_docs_show_the_pipeline_as_it_is() {
    let root = repo_root();
    let diagram = pipeline(&root, &root).unwrap().diagram();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let docs = [
        ("README.md", block_after(&read("README.md"), "The pipeline, as", "")),
        ("ARCHITECTURE.md", block_after(&read("ARCHITECTURE.md"), "The pipeline, as", "")),
        ("xtask/src/pipeline.rs", block_after(&read("xtask/src/pipeline.rs"), "Pipeline::diagram()", "//! ")),
    ];
    for (file, shown) in docs {
        assert_eq!(shown, diagram, "{file} shows another pipeline; paste this:\n{diagram}");
    }
}

#[test]
fn nothing_ships_before_every_gate_has_passed() {
    let p = pipeline(&repo_root(), &repo_root()).unwrap();
    for shipping in p.stages().iter().filter(|s| s.role() == engine::Role::Ships) {
        let waits: Vec<&str> = p.waits_for(shipping.name()).iter().map(|s| s.name()).collect();
        for gate in ["lint", "test", "check-data", "validate"] {
            assert!(waits.contains(&gate), "{} ships without waiting for {gate}: {waits:?}", shipping.name());
        }
    }
}

/// A stage built in one module of `xtask` that calls another must declare that module as code,
/// and every module those call in turn.
#[test]
fn every_stage_declares_the_modules_its_code_calls() {
    let root = repo_root();
    for stage in pipeline(&root, &root).unwrap().stages() {
        let own = &stage.pipeline_code_paths()[0];
        assert!(own.starts_with("xtask/src/stages/"), "{} is not built with engine::stage! in stages/", stage.name());
        let mut todo = vec![own.clone()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(file) = todo.pop() {
            if !seen.insert(file.clone()) {
                continue;
            }
            let source = std::fs::read_to_string(root.join(&file)).unwrap();
            for (i, _) in source.match_indices("crate::") {
                let module: String =
                    source[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                let called = format!("xtask/src/{module}.rs");
                // `crate::Env` and the like are items of main.rs, not modules.
                if !root.join(&called).is_file() {
                    continue;
                }
                assert!(
                    stage.pipeline_code_paths().contains(&called),
                    "stage `{}` reaches crate::{module} (through {file}) but does not declare {called}",
                    stage.name()
                );
                todo.push(called);
            }
        }
    }
}

/// A stage module reaches the machine only through what it declares: no shell, no process
/// environment, no bare processes.
#[test]
fn stage_modules_run_nothing_undeclared() {
    let dir = repo_root().join("xtask/src/stages");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        for banned in ["xshell", "std::env::", "std::process::Command", "Command::new(\"sh\").arg(\"-c\""] {
            assert!(!source.contains(banned), "{} uses {banned}", path.display());
        }
    }
}

#[path = "../../tests/common/scratch.rs"]
mod scratch;
use scratch::Scratch as Copy;

/// Every stage's fingerprint and inputs in `copy`, each upstream stage standing in with a
/// fixed digest.
fn keys(copy: &Copy) -> BTreeMap<String, (Digest, Vec<engine::ResolvedInput>)> {
    let pipeline: Pipeline = pipeline(copy.root(), copy.root()).unwrap();
    let ws = Workspace::new(copy.root(), process_env());
    let upstream: BTreeMap<String, Digest> =
        pipeline.stages().iter().map(|s| (s.name().to_string(), Digest::of(s.name().as_bytes()))).collect();
    pipeline
        .stages()
        .iter()
        .map(|s| {
            let r = engine::resolve(&pipeline, s, &ws, &upstream, &|_| {}).unwrap();
            (s.name().to_string(), (r.fingerprint, r.inputs))
        })
        .collect()
}

/// Applies `edit` to a fresh copy and checks which stages' keys change, and that the first of
/// them explains it with a line starting with `reason`.
fn check(edit: &dyn Fn(&Copy), stale: &[&str], reason: &str) {
    let copy = Copy::of(&repo_root());
    let before = keys(&copy);
    edit(&copy);
    let after = keys(&copy);
    let changed: Vec<&str> = before.keys().filter(|s| before[*s].0 != after[*s].0).map(String::as_str).collect();
    let mut want: Vec<&str> = stale.to_vec();
    want.sort();
    let mut got = changed.clone();
    got.sort();
    assert_eq!(got, want, "stages whose key changed");
    if let Some(first) = stale.first() {
        let lines = engine::diff_inputs(&before[*first].1, &after[*first].1);
        assert!(lines.iter().any(|l| l.starts_with(reason)), "{first}: {lines:?} has no `{reason}…`");
    }
}

#[test]
fn with_nothing_changed_no_key_changes() {
    check(&|_| {}, &[], "");
}

#[test]
fn the_training_code_keys_train() {
    check(
        &|c| c.append("training/model.py", "\n# a comment\n"),
        &["train", "lint", "test"],
        "code: training/model.py changed",
    );
}

#[test]
fn the_gates_code_keys_validate_and_the_data_gate() {
    check(
        &|c| c.append("crates/gate/src/metrics.rs", "\n// a comment\n"),
        &["validate", "check-data", "lint", "test"],
        "crates: crates/gate/src/metrics.rs changed",
    );
    check(
        &|c| c.append("crates/model/src/lib.rs", "\n// a comment\n"),
        &["validate", "check-data", "build", "deploy-staging", "lint", "test"],
        "crates: crates/model/src/lib.rs changed",
    );
}

#[test]
fn each_crate_keys_the_stages_that_run_it() {
    check(
        &|c| c.append("crates/image/src/layer.rs", "\n// x\n"),
        &["image", "lint", "test"],
        "crates: crates/image/src/layer.rs changed",
    );
    check(
        &|c| c.append("crates/store/src/transfer.rs", "\n// x\n"),
        &["pull", "image", "deploy-staging", "lint", "test"],
        "crates: crates/store/src/transfer.rs changed",
    );
    check(
        &|c| c.append("crates/deploy/src/flow.rs", "\n// x\n"),
        &["deploy-staging", "lint", "test"],
        "crates: crates/deploy/src/flow.rs changed",
    );
    check(
        &|c| c.append("crates/router/src/lib.rs", "\n// x\n"),
        &["build", "deploy-staging", "lint", "test"],
        "crates: crates/router/src/lib.rs changed",
    );
}

#[test]
fn a_stage_module_keys_only_its_stage() {
    check(
        &|c| c.append("xtask/src/stages/validate.rs", "\n// x\n"),
        &["validate", "lint", "test"],
        "code: xtask/src/stages/validate.rs changed",
    );
    check(
        &|c| c.append("xtask/src/release.rs", "\n// x\n"),
        &["deploy-staging", "lint", "test"],
        "code: xtask/src/release.rs changed",
    );
}

#[test]
fn a_new_tag_keys_the_image() {
    check(&|c| c.git(&["tag", "-a", "v9.8.7", "-m", "release"]), &["image"], "probe:git-tags: (nothing) → `v9.8.7`");
}

#[test]
fn a_test_file_keys_the_tests_and_lints_only() {
    check(
        &|c| c.append("crates/engine/tests/cache.rs", "\n// x\n"),
        &["test", "lint"],
        "files:rust: crates/engine/tests/cache.rs changed",
    );
    check(&|c| c.append("README.md", "\nmore words\n"), &["test"], "files:repo: README.md changed");
}

#[test]
fn a_tool_cache_is_nobodys_input() {
    check(
        &|c| {
            for (rel, text) in [
                ("training/.ruff_cache/0.1/x", "cache"),
                ("training/.pytest_cache/v/cache/lastfailed", "{}"),
                ("training/__pycache__/m.pyc", "x"),
            ] {
                let p = c.root().join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, text).unwrap();
            }
        },
        &[],
        "",
    );
}

/// The tests copy every tracked file into scratch clones, so the `test` stage must be keyed on
/// every one of them: a new top-level file or directory that it does not declare fails here.
#[test]
fn the_test_stage_declares_every_tracked_top_level_path() {
    let root = repo_root();
    let p = pipeline(&root, &root).unwrap();
    let test = p.stages().iter().find(|s| s.name() == "test").expect("a test stage");
    let mut declared: Vec<String> = test.code_paths().to_vec();
    for input in test.inputs() {
        if let engine::Input::Files { paths, .. } = input {
            declared.extend(paths.iter().cloned());
        }
    }
    let sh = xshell::Shell::new().unwrap();
    sh.change_dir(&root);
    let tracked = xshell::cmd!(sh, "git ls-files").quiet().read().unwrap();
    let tops: std::collections::BTreeSet<&str> = tracked.lines().filter_map(|l| l.split('/').next()).collect();
    let missing: Vec<&&str> = tops.iter().filter(|t| !declared.iter().any(|d| d == *t)).collect();
    assert!(missing.is_empty(), "the test stage does not declare {missing:?} (REPO_FILES in stages/rust.rs)");
}

//! The real `cargo xtask` binary on scratch copies of this repository: two clones that share a
//! target directory (and so one binary) each act on their own files, and `ci --trace-inputs`
//! over this repository's pipeline finds nothing undeclared but a read planted in the copy.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).expect("cargo sets CARGO_MANIFEST_DIR");
    dir.parent().unwrap().to_path_buf()
}

/// The binary cargo built for this test; every clone below runs this same file, as clones that
/// share a target directory do.
fn xtask() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_xtask"))
}

/// The target directory that binary lives in (`<target>/debug/xtask`).
fn target_dir() -> PathBuf {
    xtask().parent().and_then(Path::parent).unwrap().to_path_buf()
}

#[path = "common/scratch.rs"]
mod scratch;
use scratch::Scratch;

/// Runs the shared binary in `clone` as `cargo xtask ARGS` would: from the clone, with cargo's
/// `CARGO_MANIFEST_DIR`, and the shared target directory.
fn xtask_in(clone: &Scratch, args: &[&str], env: &BTreeMap<&str, String>) -> (i32, String, String) {
    let sh = clone.shell();
    sh.set_var("CARGO_MANIFEST_DIR", clone.root().join("xtask"));
    sh.set_var("CARGO_TARGET_DIR", target_dir());
    // Empty counts as unset for Slipway; xshell 0.2 cannot unset.
    sh.set_var("SLIPWAY_ROOT", "");
    for (k, v) in env {
        sh.set_var(k, v);
    }
    let xtask = xtask();
    let out = xshell::cmd!(sh, "{xtask} {args...}").ignore_status().quiet().output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// A small labelled data set the data gate accepts, as `(train, holdout)`.
fn tiny_data() -> (String, String) {
    let row = |i: usize| {
        format!("review number {i} {},{}\n", "x".repeat(i), if i.is_multiple_of(2) { "fresh" } else { "rotten" })
    };
    let train: String = std::iter::once("text,label\n".to_string()).chain((0..20).map(row)).collect();
    let holdout: String = std::iter::once("text,label\n".to_string()).chain((100..108).map(row)).collect();
    (train, holdout)
}

#[test]
fn two_clones_sharing_one_binary_each_act_on_their_own_files() {
    let (a, b) = (Scratch::of(&repo_root()), Scratch::of(&repo_root()));
    let remote = tempfile::tempdir().unwrap();
    let env: BTreeMap<&str, String> = [("SLIPWAY_REMOTE", remote.path().display().to_string())].into();
    // Clone B tracks its own small data set and puts it on the remote.
    let (train, holdout) = tiny_data();
    b.write("data/train.csv", &train);
    b.write("data/holdout.csv", &holdout);
    for args in [&["add", "data"][..], &["push"]] {
        let (code, _, err) = xtask_in(&b, args, &env);
        assert_eq!(code, 0, "{args:?} in B: {err}");
    }
    fs::remove_dir_all(b.root().join("data")).unwrap();
    let (code, out, err) = xtask_in(&b, &["ci", "check-data"], &env);
    assert_eq!(code, 0, "ci check-data in B:\n{out}\n{err}");
    assert_eq!(fs::read_to_string(b.root().join("data/train.csv")).unwrap(), train);
    assert!(b.root().join("reports/data-check.json").is_file());
    for untouched in ["data", "reports", ".slipway/last/pull.json"] {
        assert!(!a.root().join(untouched).exists(), "ci in B wrote {untouched} in A");
    }
    let status = |clone: &Scratch| {
        let (code, out, err) = xtask_in(clone, &["status", "--json"], &env);
        assert_eq!(code, 0, "{err}");
        let all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        all.into_iter().map(|s| (s["stage"].as_str().unwrap().to_string(), s)).collect::<BTreeMap<_, _>>()
    };
    let (in_a, in_b) = (status(&a), status(&b));
    assert_eq!(in_b["pull"]["state"], "fresh", "{:?}", in_b["pull"]);
    assert_eq!(in_b["check-data"]["state"], "fresh", "{:?}", in_b["check-data"]);
    assert_eq!(in_a["pull"]["reasons"], serde_json::json!(["never run here"]), "{:?}", in_a["pull"]);
    assert_eq!(in_a["check-data"]["state"], "stale");

    // A file of the user's in a tracked directory survives `pull` and `ci`, and is reported.
    b.write("data/my-notes.txt", "mine");
    let (code, _, err) = xtask_in(&b, &["pull"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("warning: data/my-notes.txt is not tracked by any .dvc file; left in place"), "{err}");
    let (code, out, err) = xtask_in(&b, &["ci", "check-data"], &env);
    assert_eq!(code, 0, "ci check-data in B:\n{out}\n{err}");
    assert!(err.contains("pull ran"), "what data/ holds changed, so pull ran again:\n{err}");
    assert_eq!(fs::read_to_string(b.root().join("data/my-notes.txt")).unwrap(), "mine");
    assert!(!b.root().join(".slipway/lost+found").exists(), "nothing of the user's was moved");
}

/// Every stage that runs commands, except `test`: tracing it runs this whole suite inside
/// itself (this test included). `cargo xtask ci --trace-inputs` traces it too; the closing note
/// of the issue that added tracing records that run.
const TRACED: &[&str] = &["tools", "deps", "lint", "train", "build"];

#[test]
fn tracing_the_pipeline_finds_only_the_planted_read() {
    // Under `ci --trace-inputs` tracing the `test` stage, strace cannot trace from here (a
    // traced process cannot trace its children); the outer trace is doing this test's job.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.strip_prefix("TracerPid:").is_some_and(|pid| pid.trim() != "0")) {
        eprintln!("running under a tracer: this trace is covered by the outer one");
        return;
    }
    let clone = Scratch::of(&repo_root());
    // The training code reads one file it has no business reading.
    let script = fs::read_to_string(clone.root().join("training/train.py")).unwrap();
    let planted = script.replacen("def main(", "NOTES = Path(\"notes.txt\").read_text()\n\n\ndef main(", 1);
    assert_ne!(planted, script, "train.py has no main() to plant the read before");
    clone.write("training/train.py", &planted);
    clone.write("notes.txt", "not an input of anything\n");
    let mut args = vec!["ci", "--trace-inputs"];
    args.extend(TRACED);
    let (code, out, err) = xtask_in(&clone, &args, &BTreeMap::new());
    assert_eq!(code, 1, "one undeclared read means exit 1\n{out}\n{err}");
    let undeclared: Vec<&str> = out.lines().filter(|l| l.contains("which it does not declare")).collect();
    assert_eq!(undeclared, ["train: reads `notes.txt`, which it does not declare"], "{out}\n{err}");
    for stage in TRACED.iter().filter(|s| **s != "train") {
        assert!(
            out.contains(&format!("{stage}: every file it read is declared")),
            "{stage} was not traced:\n{out}\n{err}"
        );
    }
}

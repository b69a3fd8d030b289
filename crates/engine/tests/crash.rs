//! Crash safety: a process killed (SIGKILL) while a stage writes its output, while the output
//! is copied into the step cache, or while it is restored from it, never leaves a record or an
//! object that a later run would restore as a partial output, and the next run completes.
//!
//! The killed process is this test binary itself, re-run with `SLIPWAY_CRASH_CHILD` set so
//! that it runs only [`child_process_entry_point`].

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use engine::{Pipeline, Stage};

use crate::fixture::Repo;

const SIZE: usize = 96 << 20;
const CHUNK: usize = 1 << 20;
const ATTEMPTS: usize = 12;

fn chunk(i: usize) -> Vec<u8> {
    (0..CHUNK).map(|j| (i * 131 + j * 7 + j / 251) as u8).collect()
}

fn expected_digest() -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    for i in 0..SIZE / CHUNK {
        h.update(&chunk(i));
    }
    h.finalize()
}

fn pipeline() -> Pipeline {
    let big = Stage::new("big", "write a large output").output("out/big.bin").run(|ctx| {
        use std::io::Write;
        fs::create_dir_all(ctx.root().join("out"))?;
        let mut f = fs::File::create(ctx.root().join("out/big.bin"))?;
        for i in 0..SIZE / CHUNK {
            f.write_all(&chunk(i))?;
        }
        Ok(())
    });
    Pipeline::new().stage(big).unwrap()
}

/// Not a test by itself: the body of the child process that the test below kills. Run
/// without `SLIPWAY_CRASH_CHILD` it returns at once.
#[test]
fn child_process_entry_point() {
    let Some(root) = std::env::var_os("SLIPWAY_CRASH_CHILD") else { return };
    let ws = std::sync::Arc::new(engine::Workspace::new(Path::new(&root), Default::default()));
    let reporter = std::sync::Arc::new(engine::report::Plain::new(false));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(engine::run(&pipeline(), ws, &Default::default(), reporter));
}

#[allow(
    clippy::disallowed_methods,
    reason = "the test needs the child's handle to kill it, which xshell does not give"
)]
fn spawn_child(root: &Path) -> Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash::child_process_entry_point", "--nocapture", "--test-threads=1"])
        .env("SLIPWAY_CRASH_CHILD", root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A condition on the child's repository that marks the moment to kill it.
type Moment = dyn Fn(&Path) -> bool;

/// Runs the child until `moment` holds, then kills it. Returns whether the moment was caught
/// before the child finished on its own.
fn kill_at(root: &Path, moment: &Moment) -> bool {
    let mut child = spawn_child(root);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if moment(root) {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(Instant::now() < deadline, "the child neither finished nor reached the moment");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn has_file_prefixed(dir: &Path, prefix: &str) -> bool {
    fs::read_dir(dir).into_iter().flatten().flatten().any(|e| e.file_name().to_string_lossy().starts_with(prefix))
}

/// No object in the cache differs from its name, and every record's objects exist.
fn assert_cache_consistent(root: &Path) {
    for object in files_in(&root.join(".slipway/cache/objects")) {
        let name: String = object
            .iter()
            .rev()
            .take(2)
            .map(|c| c.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let actual = blake3::hash(&fs::read(&object).unwrap()).to_hex().to_string();
        assert_eq!(actual, name, "a partial object is visible in the cache: {}", object.display());
    }
    for record in files_in(&root.join(".slipway/cache/records")) {
        let record: engine::StageRecord = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
        for out in &record.outputs {
            let hex = out.digest.to_hex();
            let object = root.join(".slipway/cache/objects").join(&hex[..2]).join(&hex[2..]);
            assert!(object.is_file(), "a record points at a missing object");
        }
    }
}

fn assert_next_run_completes(repo: &Repo, want: &blake3::Hash) {
    let run = repo.run(&pipeline());
    assert_eq!(run.summary.exit_code(), 0, "{:?}", run.events);
    let got = blake3::hash(&fs::read(repo.path("out/big.bin")).unwrap());
    assert_eq!(&got, want, "the output after recovery is not the full output");
}

#[test]
fn an_interrupted_write_is_never_restored_and_the_next_run_completes() {
    let want = expected_digest();
    let half_written =
        |root: &Path| fs::metadata(root.join("out/big.bin")).is_ok_and(|m| m.len() > 0 && m.len() < SIZE as u64);
    let storing = |root: &Path| has_file_prefixed(&root.join(".slipway/cache/tmp"), "object-");
    let restoring = |root: &Path| has_file_prefixed(&root.join(".slipway/tmp"), "restore-");
    let moments: [(&str, &Moment, bool); 3] = [
        ("while the stage writes its output", &half_written, false),
        ("while the output is copied into the step cache", &storing, false),
        ("while the output is restored from the step cache", &restoring, true),
    ];
    for (what, moment, needs_record) in moments {
        let mut caught = 0;
        for _ in 0..ATTEMPTS {
            let repo = Repo::new();
            if needs_record {
                assert_next_run_completes(&repo, &want);
                fs::remove_file(repo.path("out/big.bin")).unwrap();
            }
            if !kill_at(repo.root(), moment) {
                continue;
            }
            caught += 1;
            assert_cache_consistent(repo.root());
            if let Ok(bytes) = fs::read(repo.path("out/big.bin")) {
                assert!(!needs_record || blake3::hash(&bytes) == want, "a partial output was restored");
            }
            assert_next_run_completes(&repo, &want);
            if caught == 2 {
                break;
            }
        }
        eprintln!("killed {what}: {caught} time(s)");
        assert!(caught > 0, "never managed to kill the child {what} in {ATTEMPTS} attempts");
    }
}

//! Benchmark: `engine::status` of a stage reading 10,000 small files, with nothing changed and
//! with the stat cache lost, beside `git status` on the same tree.
//!
//! Run with `cargo bench -p slipway-engine --bench status`. The repository is rebuilt under
//! `target/bench-data/status-tree` on every run; each timing is the best of fifteen. The tree's
//! writes are flushed (`sync`) before anything is timed, and `slipway status` and `git status`
//! take turns, so that neither runs while the kernel writes back what the setup wrote (the
//! first one timed did, and looked 50% slower). `SLIPWAY_BENCH_PROFILE=N` runs only the first
//! case, N times, for a profiler.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use engine::{Freshness, Pipeline, RunOptions, Stage, StatCache, Workspace};
use xshell::{Shell, cmd};

const FILES: usize = 10_000;
/// Leaf directories, ten to each of ten parents.
const DIRS: usize = 100;
const RUNS: usize = 15;

fn main() -> Result<()> {
    let root = bench_root()?;
    let bytes = build_tree(&root)?;
    let pipeline = pipeline()?;
    first_run(&root, &pipeline)?;
    let sh = Shell::new()?;
    sh.change_dir(&root);
    git_setup(&sh)?;
    // The stat cache keeps no digest of a file written in the same clock tick as the pass that
    // hashed it; two more passes make sure every entry is settled before anything is timed.
    for _ in 0..2 {
        slipway_status(&root, &pipeline)?;
    }
    // For a profiler: only the timed case, many times over, and nothing else.
    if let Some(n) = std::env::var("SLIPWAY_BENCH_PROFILE").ok().and_then(|n| n.parse::<usize>().ok()) {
        for _ in 0..n {
            slipway_status(&root, &pipeline)?;
        }
        return Ok(());
    }
    println!("files: {} in {DIRS} directories, {} bytes", thousands(FILES as u64), thousands(bytes));
    println!("nproc: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("best of {RUNS} runs each\n");
    let rows = measure(&root, &pipeline, &sh)?;
    print_table(&rows);
    Ok(())
}

/// `target/bench-data/status-tree`, emptied.
fn bench_root() -> Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => manifest_dir().join("../../target"),
    };
    let root = target.join("bench-data").join("status-tree");
    if root.exists() {
        fs::remove_dir_all(&root).with_context(|| format!("cannot remove the old tree {}", root.display()))?;
    }
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))
}

/// 10,000 files of 1–8 KiB of pseudo-random bytes under `data/`; returns their total size.
fn build_tree(root: &Path) -> Result<u64> {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut total = 0;
    for i in 0..FILES {
        let leaf = i % DIRS;
        let dir = root.join(format!("data/{:02}/{:03}", leaf / 10, leaf));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut bytes = vec![0u8; rng.usize(1024..=8192)];
        rng.fill(&mut bytes);
        let path = dir.join(format!("{i:05}.bin"));
        fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
        total += bytes.len() as u64;
    }
    // Slipway's state is not part of the repository, as in a real checkout.
    fs::write(root.join(".gitignore"), "/.slipway/\n").context("cannot write .gitignore")?;
    Ok(total)
}

fn pipeline() -> Result<Pipeline> {
    let stage = Stage::new("read", "read every data file").files("data", &["data"]).output("out.txt").run(|ctx| {
        fs::write(ctx.root().join("out.txt"), "read\n")?;
        Ok(())
    });
    Ok(Pipeline::new().stage(stage)?)
}

/// Runs the pipeline once, so that `status` has a record to compare against.
fn first_run(root: &Path, pipeline: &Pipeline) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    let ws = Arc::new(Workspace::new(root, BTreeMap::new()));
    let reporter = Arc::new(engine::report::Plain::new(false));
    let summary = runtime.block_on(engine::run(pipeline, ws, &RunOptions::default(), reporter));
    ensure!(summary.exit_code() == 0, "the first run did not succeed: {summary:?}");
    Ok(())
}

/// A committed repository with a fresh index, so that `git status` compares stat data only.
fn git_setup(sh: &Shell) -> Result<()> {
    cmd!(sh, "git init -q").quiet().run().context("cannot create the git repository")?;
    cmd!(sh, "git add -A").quiet().run().context("cannot stage the tree in git")?;
    // No automatic gc or maintenance: git would start it in the background after the commit,
    // and it would take the CPU from whatever is timed next.
    cmd!(sh, "git config gc.auto 0").quiet().run().context("cannot configure the git repository")?;
    cmd!(sh, "git config maintenance.auto false").quiet().run().context("cannot configure the git repository")?;
    cmd!(sh, "git -c user.name=b -c user.email=b@b commit -qm x").quiet().run().context("cannot commit the tree")?;
    cmd!(sh, "git status --porcelain").quiet().read().context("cannot refresh the git index")?;
    Ok(())
}

/// `status` as a new process runs it: the workspace (and its stat cache) loaded from disk.
fn slipway_status(root: &Path, pipeline: &Pipeline) -> Result<Duration> {
    let start = Instant::now();
    let ws = Workspace::new(root, BTreeMap::new());
    let tl = start.elapsed();
    let statuses = engine::status(pipeline, &ws, false)?;
    let time = start.elapsed();
    if std::env::var_os("SLIPWAY_BENCH_PROFILE").is_some() {
        eprintln!("PHASE load {tl:?} total {time:?}");
    }
    if let Some(s) = statuses.iter().find(|s| s.freshness != Freshness::Fresh) {
        bail!("stage `{}` should be fresh but is {:?}", s.stage, s.freshness);
    }
    Ok(time)
}

/// One line of the table.
struct Row {
    name: &'static str,
    time: Duration,
}

fn measure(root: &Path, pipeline: &Pipeline, sh: &Shell) -> Result<Vec<Row>> {
    cmd!(sh, "sync").quiet().run().context("cannot flush the tree to disk")?;
    let cache = root.join(".slipway/stat-cache.bin");
    let before = stamp(&cache)?;
    let (mut fresh, mut git) = (Duration::MAX, Duration::MAX);
    for _ in 0..RUNS {
        fresh = fresh.min(slipway_status(root, pipeline)?);
        git = git.min(git_status(sh)?);
    }
    // `status` saves the stat cache only when it hashed something, so an untouched file proves
    // that the runs above read no file data.
    ensure!(stamp(&cache)? == before, "the stat cache was rewritten: `status` hashed files although none changed");
    let rehash = best_of(|| {
        remove_if_present(&cache)?;
        slipway_status(root, pipeline)
    })?;
    let load = best_of(|| load_stat_cache(&cache))?;
    let walk = best_of(|| walk_and_lstat(&root.join("data")))?;
    Ok(vec![
        Row { name: "slipway status", time: fresh },
        Row { name: "slipway status, no stat cache", time: rehash },
        Row { name: "git status --porcelain", time: git },
        Row { name: "(part) load the stat cache", time: load },
        Row { name: "(floor) walk + lstat data/", time: walk },
    ])
}

fn best_of(mut f: impl FnMut() -> Result<Duration>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        best = best.min(f()?);
    }
    Ok(best)
}

/// Only the JSON load that every `status` starts with; the cache is dropped outside the timing.
fn load_stat_cache(path: &Path) -> Result<Duration> {
    let start = Instant::now();
    let cache: StatCache = StatCache::load(path);
    let time = start.elapsed();
    drop(cache);
    Ok(time)
}

/// The whole `git status` process, as a user would wait for it.
fn git_status(sh: &Shell) -> Result<Duration> {
    let start = Instant::now();
    let out = cmd!(sh, "git status --porcelain").quiet().read().context("cannot run git status")?;
    let time = start.elapsed();
    ensure!(out.trim().is_empty(), "git status should report a clean tree, not:\n{out}");
    Ok(time)
}

/// The least any stat-based check must do: visit every entry and `lstat` it.
fn walk_and_lstat(dir: &Path) -> Result<Duration> {
    let start = Instant::now();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
        std::hint::black_box(entry.metadata()?);
    }
    Ok(start.elapsed())
}

/// The inode and modification time of `path`; `write_atomic` replaces the file, so either
/// changes on every save.
fn stamp(path: &Path) -> Result<(u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok((meta.ino(), meta.modified()?))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).with_context(|| format!("cannot remove {path:?}")),
        _ => Ok(()),
    }
}

fn print_table(rows: &[Row]) {
    let slipway = rows[0].time.as_secs_f64();
    println!("{:<32} {:>9} {:>16}", "name", "ms", "vs slipway status");
    for r in rows {
        let secs = r.time.as_secs_f64();
        println!("{:<32} {:>9.1} {:>15.2}x", r.name, secs * 1e3, secs / slipway);
    }
    println!();
    println!("git status / slipway status = {:.2}x", rows[2].time.as_secs_f64() / slipway);
    println!("full rehash / slipway status = {:.2}x", rows[1].time.as_secs_f64() / slipway);
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// This crate's directory, from cargo when the test or bench runs: a binary in a target
/// directory that clones share may have been compiled in another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}

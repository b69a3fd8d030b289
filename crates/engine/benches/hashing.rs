//! Benchmark: Slipway hashing ~1 GiB of mixed files with an empty and a warm stat cache, beside
//! single-core MD5 (what DVC does) and multi-threaded BLAKE3 without per-file bookkeeping (what
//! `b3sum` does).
//!
//! Run with `cargo bench -p slipway-engine --bench hashing`. The tree is built once under
//! `target/bench-data/hashing-tree` and reused. Every file is read once before timing and each
//! timing is the best of three, so the numbers measure hashing and bookkeeping over a warm page
//! cache, not the disk.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use engine::{FileEntry, Ignore, StatCache, TreeHasher};
use md5::Digest as _;
use rayon::prelude::*;

/// The hashed directory, under `target/bench-data`.
const TREE: &str = "hashing-tree";
/// Written beside the tree once it is complete, holding [`LAYOUT_ID`]. A tree without it (an
/// interrupted build) or with another id is rebuilt.
const MARKER: &str = "hashing-tree.complete";
/// Change this whenever [`LAYOUT`] or the content generator changes, so old trees are rebuilt.
const LAYOUT_ID: &str = "v1: 4 x 128 MiB, 32 x 8 MiB, 1024 x 128 KiB, 32768 x 4 KiB; fastrand seeded per file\n";
/// Slipway's stat cache for this bench lives outside the tree, so it is never an input.
const STATE: &str = "hashing-state";
const RUNS: usize = 3;
const BUF: usize = 1 << 20;
const GIB: f64 = (1u64 << 30) as f64;

/// `count` files of `size` bytes under `dir`, `per_dir` to a leaf directory.
struct Group {
    dir: &'static str,
    count: usize,
    size: u64,
    per_dir: usize,
}

/// Exactly 1 GiB: half in a few huge files (where BLAKE3's own parallelism matters), the rest in
/// ever more, ever smaller files (where per-file costs dominate).
const LAYOUT: [Group; 4] = [
    Group { dir: "large", count: 4, size: 128 << 20, per_dir: 4 },
    Group { dir: "medium", count: 32, size: 8 << 20, per_dir: 8 },
    Group { dir: "small", count: 1024, size: 128 << 10, per_dir: 64 },
    Group { dir: "tiny", count: 32768, size: 4 << 10, per_dir: 128 },
];

/// One file of the tree.
struct Planned {
    /// Relative to the tree directory.
    rel: String,
    path: PathBuf,
    size: u64,
    seed: u64,
}

fn main() -> Result<()> {
    let data = bench_data()?;
    let files = ensure_tree(&data)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    warm_page_cache(&files)?;
    println!("files: {}", thousands(files.len() as u64));
    println!("total bytes: {} ({:.2} GiB)", thousands(total), total as f64 / GIB);
    println!("nproc: {} (rayon threads: {})", nproc(), rayon::current_num_threads());
    println!("best of {RUNS} runs each, page cache warm\n");
    let rows = measure(&data, &files, total)?;
    print_table(&rows, total);
    Ok(())
}

/// `target/bench-data`, created and made absolute so that manifest paths are clean.
fn bench_data() -> Result<PathBuf> {
    let target = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => manifest_dir().join("../../target"),
    };
    let data = target.join("bench-data");
    fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    data.canonicalize().with_context(|| format!("cannot resolve {}", data.display()))
}

fn planned(tree: &Path) -> Vec<Planned> {
    let mut out = Vec::new();
    for (g_idx, g) in LAYOUT.iter().enumerate() {
        for i in 0..g.count {
            let leaf = i / g.per_dir;
            let rel = format!("{}/{:02}/{:03}/{:05}.bin", g.dir, leaf / 16, leaf, i);
            out.push(Planned { path: tree.join(&rel), rel, size: g.size, seed: ((g_idx as u64) << 32) | i as u64 });
        }
    }
    out
}

/// The tree's files, building the tree first unless a complete one of this layout is there.
fn ensure_tree(data: &Path) -> Result<Vec<Planned>> {
    let (tree, marker) = (data.join(TREE), data.join(MARKER));
    if fs::read_to_string(&marker).is_ok_and(|id| id == LAYOUT_ID) {
        match check_tree(&tree) {
            Ok(files) => return Ok(files),
            Err(e) => eprintln!("the test tree is damaged ({e:#}); rebuilding it"),
        }
    }
    eprintln!("building a 1 GiB test tree in {} (once; later runs reuse it)", tree.display());
    // The marker goes first, so a build interrupted from here on is never taken for complete.
    remove_if_present(&marker)?;
    if tree.exists() {
        fs::remove_dir_all(&tree).with_context(|| format!("cannot remove the old tree {}", tree.display()))?;
    }
    let start = Instant::now();
    planned(&tree).par_iter().try_for_each(write_file)?;
    fs::write(&marker, LAYOUT_ID).with_context(|| format!("cannot write {}", marker.display()))?;
    eprintln!("built in {:.1}s", start.elapsed().as_secs_f64());
    check_tree(&tree)
}

/// Deterministic pseudo-random bytes, so every run (and every machine) hashes the same data.
fn write_file(f: &Planned) -> Result<()> {
    let dir = f.path.parent().context("a planned file has a parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut file = File::create(&f.path).with_context(|| format!("cannot create {}", f.path.display()))?;
    let mut rng = fastrand::Rng::with_seed(f.seed);
    let mut buf = vec![0u8; BUF.min(f.size as usize)];
    let mut left = f.size;
    while left > 0 {
        let n = left.min(BUF as u64) as usize;
        rng.fill(&mut buf[..n]);
        file.write_all(&buf[..n]).with_context(|| format!("cannot write {}", f.path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

/// Every planned file at its size and nothing else, or an error saying what is off. Extra files
/// would be hashed by Slipway but not by the baselines, skewing the comparison.
fn check_tree(tree: &Path) -> Result<Vec<Planned>> {
    let files = planned(tree);
    for f in &files {
        let meta = fs::metadata(&f.path).with_context(|| format!("cannot stat {}", f.path.display()))?;
        ensure!(meta.len() == f.size, "{} has {} bytes, expected {}", f.rel, meta.len(), f.size);
    }
    let mut found = 0;
    for entry in walkdir::WalkDir::new(tree) {
        let entry = entry.with_context(|| format!("cannot walk {}", tree.display()))?;
        found += usize::from(!entry.file_type().is_dir());
    }
    ensure!(found == files.len(), "{found} files in the tree, expected {}", files.len());
    Ok(files)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).with_context(|| format!("cannot remove {path:?}")),
        _ => Ok(()),
    }
}

/// Reads everything once, so that no contender pays for the disk and the first one timed is
/// not penalised.
fn warm_page_cache(files: &[Planned]) -> Result<()> {
    let mut buf = vec![0u8; BUF];
    for f in files {
        read_chunks(&f.path, &mut buf, |_| {})?;
    }
    Ok(())
}

/// Feeds `path` to `each` in chunks of `buf`'s size; returns the byte count.
fn read_chunks(path: &Path, buf: &mut [u8], mut each: impl FnMut(&[u8])) -> Result<u64> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut total = 0;
    loop {
        match file.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                each(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// One line of the table. `hashed` is how many bytes the contender actually read.
struct Row {
    name: &'static str,
    time: Duration,
    hashed: u64,
}

fn measure(data: &Path, files: &[Planned], total: u64) -> Result<Vec<Row>> {
    let cache_path = data.join(STATE).join("stat-cache.bin");
    let cold = best_of(|| {
        remove_if_present(&cache_path)?;
        slipway_pass(data, StatCache::load(&cache_path))
    })?;
    ensure!(cold.out.hashed == total, "Slipway hashed {} bytes of {total} with an empty stat cache", cold.out.hashed);
    let md5 = best_of(|| md5_single_core(files))?;
    let b3sum = best_of(|| blake3_b3sum(files))?;
    check_digests(&cold.out.entries, files, &b3sum.out.1)?;
    save_stat_cache(cold.out.cache, &cache_path)?;
    let warm = best_of(|| slipway_pass(data, StatCache::load(&cache_path)))?;
    if warm.out.hashed != 0 {
        eprintln!("warning: the warm pass still hashed {} bytes; the stat cache missed", thousands(warm.out.hashed));
    }
    Ok(vec![
        Row { name: "(a) slipway, empty stat cache", time: cold.time, hashed: cold.out.hashed },
        Row { name: "(b) md5 single-core (DVC)", time: md5.time, hashed: md5.out },
        Row { name: "(c) blake3 multi-threaded (b3sum)", time: b3sum.time, hashed: b3sum.out.0 },
        Row { name: "(d) slipway, warm stat cache", time: warm.time, hashed: warm.out.hashed },
    ])
}

/// The fastest of [`RUNS`] calls, and what it returned.
struct Timed<T> {
    time: Duration,
    out: T,
}

/// Calls `f` [`RUNS`] times and keeps the fastest. Results are dropped outside the timing.
fn best_of<T>(mut f: impl FnMut() -> Result<T>) -> Result<Timed<T>> {
    let mut best: Option<Timed<T>> = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = f()?;
        let time = start.elapsed();
        if best.as_ref().is_none_or(|b| time < b.time) {
            best = Some(Timed { time, out });
        }
    }
    best.context("RUNS is at least 1")
}

/// What one Slipway pass produced, and the stat cache it leaves behind.
struct Pass {
    entries: Vec<FileEntry>,
    hashed: u64,
    cache: StatCache,
}

/// One `TreeHasher::manifest` of the tree, as `status` does for a stage's file input. `cache` is
/// loaded inside the timing, as a new process would load it.
fn slipway_pass(data: &Path, cache: StatCache) -> Result<Pass> {
    let stat = Mutex::new(cache);
    let hashed = AtomicU64::new(0);
    let progress = |n: u64| {
        hashed.fetch_add(n, Ordering::Relaxed);
    };
    let ignore = Ignore::new(&[".slipway"])?;
    let entries =
        TreeHasher::new(data, &stat, &progress).manifest(&[TREE.to_string()], &engine::Filter::new(&ignore))?;
    let cache = stat.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(Pass { entries, hashed: hashed.into_inner(), cache })
}

/// DVC's approach: one file after another, one core, MD5 over 1 MiB reads.
fn md5_single_core(files: &[Planned]) -> Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut total = 0;
    for f in files {
        let mut hasher = md5::Md5::new();
        total += read_chunks(&f.path, &mut buf, |chunk| hasher.update(chunk))?;
        black_box(hasher.finalize());
    }
    Ok(total)
}

/// What `b3sum` does, short of its memory map (the workspace builds BLAKE3 without `mmap`, and
/// this crate forbids `unsafe`): one file after another, each buffer hashed across all cores,
/// with no per-file bookkeeping. The reads are Slipway's own (1 MiB buffers), so the difference
/// to Slipway is the walk, the stat cache and the scheduling.
fn blake3_b3sum(files: &[Planned]) -> Result<(u64, Vec<blake3::Hash>)> {
    let mut buf = vec![0u8; BUF];
    let mut total = 0;
    let mut digests = Vec::with_capacity(files.len());
    for f in files {
        let mut hasher = blake3::Hasher::new();
        total += read_chunks(&f.path, &mut buf, |chunk| {
            hasher.update_rayon(chunk);
        })?;
        digests.push(hasher.finalize());
    }
    Ok((total, digests))
}

/// Slipway's manifest must name exactly the planned files, with plain BLAKE3 digests: otherwise
/// the contenders did not do the same work.
fn check_digests(entries: &[FileEntry], files: &[Planned], b3: &[blake3::Hash]) -> Result<()> {
    let expected: BTreeMap<String, [u8; 32]> =
        files.iter().zip(b3).map(|(f, h)| (format!("{TREE}/{}", f.rel), *h.as_bytes())).collect();
    let got: BTreeMap<String, [u8; 32]> = entries.iter().map(|e| (e.path.clone(), e.digest.0)).collect();
    if got != expected {
        let wrong = expected.iter().find(|(p, d)| got.get(*p) != Some(d)).map(|(p, _)| p.as_str());
        bail!("Slipway's manifest differs from plain BLAKE3 (first difference: {wrong:?})");
    }
    Ok(())
}

/// Saves the stat cache of the cold pass for the warm one, reporting what that costs: `status`
/// pays it after every pass that hashed anything.
fn save_stat_cache(mut cache: StatCache, path: &Path) -> Result<()> {
    let start = Instant::now();
    cache.save().context("cannot save the stat cache")?;
    let time = start.elapsed();
    let size = fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?.len();
    println!("saving the stat cache after the cold pass: {:.3}s, {} bytes\n", time.as_secs_f64(), thousands(size));
    Ok(())
}

fn print_table(rows: &[Row], total: u64) {
    let slipway = rows[0].time.as_secs_f64();
    println!("{:<34} {:>9} {:>8} {:>14} {:>12}", "name", "seconds", "GiB/s", "vs slipway (a)", "bytes read");
    for r in rows {
        let secs = r.time.as_secs_f64();
        let rate = total as f64 / GIB / secs;
        let ratio = secs / slipway;
        println!("{:<34} {secs:>9.3} {rate:>8.2} {ratio:>13.2}x {:>12}", r.name, thousands(r.hashed));
    }
    println!("(GiB/s is the tree's size over the time, so for the warm pass it is an effective rate)\n");
    let ratio = |i: usize| rows[i].time.as_secs_f64() / slipway;
    println!("md5 single-core / slipway = {:.2}x", ratio(1));
    println!("blake3 multi-threaded (b3sum) / slipway = {:.2}x", ratio(2));
    println!("slipway empty stat cache / slipway warm stat cache = {:.1}x", 1.0 / ratio(3));
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
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

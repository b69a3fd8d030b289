//! Randomised cache correctness: after every random mutation of the workspace, a stage runs if
//! and only if its inputs are in a state never seen before (or what it left in place changed),
//! and its outputs are exactly what a fresh run would write. The oracle reads every byte itself
//! and decides ignore rules, crate closures and git tags on its own; it shares no code with the
//! engine's hashing, walking, stat cache or probes.
//!
//! `SLIPWAY_TEST_SEED` replays a failure; `SLIPWAY_TEST_MUTATIONS` changes the count.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use engine::{Freshness, Pipeline, Stage};

use crate::fixture::Repo;

const DEFAULT_MUTATIONS: usize = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Mutation {
    ContentEdit,
    SameSizeEditMtimeRestored,
    TouchOnly,
    Rename,
    NewFile,
    DeleteFile,
    ExecBit,
    EnvVar,
    Secret,
    Param,
    UpstreamOutput,
    DeleteOutputs,
    /// An edit of `up`'s own code.
    StageCode,
    /// An edit inside `down`'s crate closure, or of any member's manifest.
    CrateEdit,
    /// An edit of a crate outside the closure, or of a crate's tests.
    UnrelatedCrateEdit,
    /// A locked dependency of the closure changes version.
    LockBump,
    /// A locked dependency outside the closure changes version.
    UnrelatedLockBump,
    /// A tag is added at HEAD, or one is removed.
    GitTag,
    /// `up` reruns and writes the same bytes: `down` must not run.
    EarlyCutoff,
    /// A git-ignored file under `up`'s input appears or changes.
    IgnoredFile,
    /// The ignore file itself changes (which is an input, and may un-ignore files).
    IgnoreRule,
    /// A person adds a file to the directory `fetch` updates in place.
    UserFileInUpdates,
    /// `fetch`'s input changes.
    FetchInput,
}

const ALL: [Mutation; 23] = [
    Mutation::ContentEdit,
    Mutation::SameSizeEditMtimeRestored,
    Mutation::TouchOnly,
    Mutation::Rename,
    Mutation::NewFile,
    Mutation::DeleteFile,
    Mutation::ExecBit,
    Mutation::EnvVar,
    Mutation::Secret,
    Mutation::Param,
    Mutation::UpstreamOutput,
    Mutation::DeleteOutputs,
    Mutation::StageCode,
    Mutation::CrateEdit,
    Mutation::UnrelatedCrateEdit,
    Mutation::LockBump,
    Mutation::UnrelatedLockBump,
    Mutation::GitTag,
    Mutation::EarlyCutoff,
    Mutation::IgnoredFile,
    Mutation::IgnoreRule,
    Mutation::UserFileInUpdates,
    Mutation::FetchInput,
];

/// Kinds whose every application must rerun something, and kinds that must never.
const ALWAYS_RERUN: &[Mutation] = &[
    Mutation::SameSizeEditMtimeRestored,
    Mutation::StageCode,
    Mutation::CrateEdit,
    Mutation::LockBump,
    Mutation::UserFileInUpdates,
];
const NEVER_RERUN: &[Mutation] = &[Mutation::UnrelatedCrateEdit, Mutation::UnrelatedLockBump, Mutation::IgnoredFile];

struct Counters {
    up: AtomicUsize,
    fetch: AtomicUsize,
    down: AtomicUsize,
}

struct World {
    repo: Repo,
    rng: fastrand::Rng,
    param: i64,
    runs: Arc<Counters>,
    seen_up: HashSet<Vec<u8>>,
    seen_down: HashSet<Vec<u8>>,
    /// Every content a file had when a same-size edit was made to it: a new edit must give
    /// content none of those was, or a correct cache restores an earlier result instead of
    /// running (seed 387410680118017686 flipped a byte back).
    edited: HashSet<(PathBuf, Vec<u8>)>,
    /// For each state of `fetch`'s input, what `fetch` left in `d/` when it last ran with it.
    fetch_left: HashMap<Vec<u8>, Vec<u8>>,
    /// Files people put in `d/`: they must survive every run.
    user_files: Vec<(PathBuf, String)>,
    versions: (u32, u32),
    tags: Vec<String>,
}

#[test]
fn a_stage_reruns_if_and_only_if_an_input_really_changed() {
    let seed =
        std::env::var("SLIPWAY_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let count = std::env::var("SLIPWAY_TEST_MUTATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_MUTATIONS);
    eprintln!("random cache test: seed {seed} (replay with SLIPWAY_TEST_SEED={seed}), {count} mutations");
    let mut world = World::new(seed);
    world.step(None);
    let mut tally: BTreeMap<Mutation, (usize, usize)> = BTreeMap::new();
    let mut cut_off = 0;
    for i in 0..count {
        let m = ALL[world.rng.usize(..ALL.len())];
        world.mutate(m);
        let [up, fetch, down] = world.step(Some((i, m)));
        let t = tally.entry(m).or_default();
        t.0 += 1;
        t.1 += usize::from(up || fetch || down);
        cut_off += usize::from(m == Mutation::EarlyCutoff && up && !down);
    }
    eprintln!("mutation: applied / caused a rerun");
    for (m, (n, reran)) in &tally {
        eprintln!("  {m:?}: {n} / {reran}");
    }
    // Every kind was exercised, and the suite saw both hits and misses.
    assert_eq!(tally.len(), ALL.len(), "{tally:?}");
    assert!(tally[&Mutation::TouchOnly].1 < tally[&Mutation::TouchOnly].0, "touching never hit the cache");
    for m in ALWAYS_RERUN {
        assert_eq!(tally[m].1, tally[m].0, "{m:?} did not always rerun");
    }
    for m in NEVER_RERUN {
        assert_eq!(tally[m].1, 0, "{m:?} caused a rerun");
    }
    assert_eq!(cut_off, tally[&Mutation::EarlyCutoff].0, "`up` reran with the same output and `down` ran too");
}

impl World {
    fn new(seed: u64) -> World {
        let mut repo = Repo::new();
        repo.secrets.push("S".into());
        repo.env.insert("PATH".into(), std::env::var("PATH").unwrap());
        let mut rng = fastrand::Rng::with_seed(seed);
        for dir in ["a", "b"] {
            for i in 0..6 {
                let sub = if i % 3 == 0 { "sub/" } else { "" };
                repo.write(&format!("{dir}/{sub}f{i}.txt"), random_text(&mut rng));
            }
        }
        repo.write("a/.gitignore", "*.log\n");
        repo.write("code/up.sh", "# keep comment lines\n");
        repo.write("t.txt", "first\n");
        let world = World {
            repo,
            rng,
            param: 0,
            runs: Arc::new(Counters { up: 0.into(), fetch: 0.into(), down: 0.into() }),
            seen_up: HashSet::new(),
            seen_down: HashSet::new(),
            edited: HashSet::new(),
            fetch_left: HashMap::new(),
            user_files: Vec::new(),
            versions: (1, 1),
            tags: Vec::new(),
        };
        world.write_workspace();
        git(world.repo.root(), &["init", "-q"]);
        git(
            world.repo.root(),
            &["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"],
        );
        world
    }

    /// A Cargo workspace: `pkg-a` (the closure: `pkg-b`, `serde`) and `pkg-c` (`itoa`).
    fn write_workspace(&self) {
        let (serde, itoa) = self.versions;
        self.repo.cargo_workspace(&format!("1.0.{serde}"), &format!("1.0.{itoa}"));
    }

    /// `up` keeps the `#` lines of `a/` (and its code); `fetch` copies `t.txt` into `d/`, which
    /// it updates in place; `down` digests `b/`, `X`, whether `S` is set, the param, `up`'s
    /// output, all of `d/`, its crate closure and the tags at HEAD.
    fn pipeline(&self) -> Pipeline {
        let runs = self.runs.clone();
        let up = Stage::new("up", "keep comment lines").code("code/up.sh").files("a", &["a"]).output("out/up.txt").run(
            move |ctx| {
                runs.up.fetch_add(1, Ordering::SeqCst);
                fs::create_dir_all(ctx.root().join("out"))?;
                fs::write(ctx.root().join("out/up.txt"), expected_up(ctx.root()))?;
                Ok(())
            },
        );
        let runs = self.runs.clone();
        let fetch = Stage::new("fetch", "check out").files("t", &["t.txt"]).updates("d").run(move |ctx| {
            runs.fetch.fetch_add(1, Ordering::SeqCst);
            fs::create_dir_all(ctx.root().join("d"))?;
            fs::copy(ctx.root().join("t.txt"), ctx.root().join("d/tracked.txt"))?;
            Ok(())
        });
        let runs = self.runs.clone();
        let param = self.param;
        let down = Stage::new("down", "digest everything")
            .uses("up")
            .uses("fetch")
            .files("b", &["b"])
            .env("X")
            .secret_env("S")
            .param("P", param)
            .crates(&["pkg-a"])
            .probe("tags", &["git", "tag", "--points-at", "HEAD"])
            .output("out/down")
            .run(move |ctx| {
                runs.down.fetch_add(1, Ordering::SeqCst);
                fs::create_dir_all(ctx.root().join("out/down"))?;
                let digest = blake3::hash(&down_state(ctx.root(), ctx.env(), param));
                fs::write(ctx.root().join("out/down/result.txt"), digest.to_hex().as_str())?;
                Ok(())
            });
        Pipeline::new().stage(up).unwrap().stage(fetch).unwrap().stage(down).unwrap()
    }

    /// Runs the pipeline and checks it against the oracle; returns which of up, fetch and
    /// down ran.
    fn step(&mut self, at: Option<(usize, Mutation)>) -> [bool; 3] {
        let root = self.repo.root().to_path_buf();
        let up_state = up_state(&root);
        let up_expected = !self.seen_up.contains(&up_state);
        let fetch_input = fs::read(root.join("t.txt")).unwrap();
        let fetch_expected = self.fetch_left.get(&fetch_input) != Some(&dir_state(&root.join("d"), false));
        let pipeline = self.pipeline();
        if at.is_some_and(|(i, _)| i % 4 == 0) {
            let status = engine::status(&pipeline, &self.repo.workspace(), false).unwrap();
            let up_fresh = !matches!(status[0].freshness, Freshness::Stale { .. });
            assert_eq!(up_fresh, !up_expected, "status of `up` after {at:?}: {:?}", status[0]);
            let fetch_fresh = !matches!(status[1].freshness, Freshness::Stale { .. });
            assert_eq!(fetch_fresh, !fetch_expected, "status of `fetch` after {at:?}: {:?}", status[1]);
        }
        let before = self.counts();
        let run = self.repo.run(&pipeline);
        assert_eq!(run.summary.exit_code(), 0, "after {at:?}: {:?}", run.events);
        let after = self.counts();
        self.seen_up.insert(up_state);
        self.fetch_left.insert(fetch_input, dir_state(&root.join("d"), false));
        let down_state = down_state(&root, &self.repo.env, self.param);
        let down_expected = !self.seen_down.contains(&down_state);
        self.seen_down.insert(down_state.clone());
        let ran = [after.0 > before.0, after.1 > before.1, after.2 > before.2];
        assert_eq!(
            ran,
            [up_expected, fetch_expected, down_expected],
            "up, fetch, down after {at:?}: {:?}",
            run.outcomes()
        );
        assert_eq!(self.repo.read("out/up.txt"), expected_up(&root), "`up` output after {at:?}");
        let want = blake3::hash(&down_state).to_hex().to_string();
        assert_eq!(self.repo.read("out/down/result.txt"), want, "`down` output after {at:?}");
        for (path, text) in &self.user_files {
            assert_eq!(fs::read_to_string(path).ok().as_ref(), Some(text), "{} was lost after {at:?}", path.display());
        }
        ran
    }

    fn counts(&self) -> (usize, usize, usize) {
        let c = &self.runs;
        (c.up.load(Ordering::SeqCst), c.fetch.load(Ordering::SeqCst), c.down.load(Ordering::SeqCst))
    }

    fn mutate(&mut self, m: Mutation) {
        let root = self.repo.root().to_path_buf();
        match m {
            Mutation::ContentEdit => {
                let f = self.pick_file(None);
                append(&f, &random_text(&mut self.rng));
            }
            Mutation::SameSizeEditMtimeRestored => {
                let f = self.pick_file(None);
                let mtime = fs::metadata(&f).unwrap().modified().unwrap();
                let before = fs::read(&f).unwrap();
                self.edited.insert((f.clone(), before.clone()));
                let bytes = loop {
                    let mut bytes = before.clone();
                    let i = self.rng.usize(..bytes.len());
                    bytes[i] = self.rng.u8(b'a'..=b'z');
                    if !self.edited.contains(&(f.clone(), bytes.clone())) {
                        break bytes;
                    }
                };
                self.edited.insert((f.clone(), bytes.clone()));
                fs::write(&f, &bytes).unwrap();
                File::options().write(true).open(&f).unwrap().set_times(FileTimes::new().set_modified(mtime)).unwrap();
            }
            Mutation::TouchOnly => {
                let f = self.pick_file(None);
                File::options().write(true).open(&f).unwrap().set_modified(SystemTime::now()).unwrap();
            }
            Mutation::Rename => {
                let f = self.pick_file(None);
                let dir = if self.rng.bool() { "a" } else { "b" };
                let to = root.join(format!("{dir}/r{}.txt", self.rng.u32(..1000)));
                if !to.exists() && self.count_files(&f) > 1 {
                    fs::rename(&f, to).unwrap();
                }
            }
            Mutation::NewFile => {
                let dir = if self.rng.bool() { "a" } else { "b/sub" };
                self.repo.write(&format!("{dir}/n{}.txt", self.rng.u32(..1000)), random_text(&mut self.rng));
            }
            Mutation::DeleteFile => {
                let f = self.pick_file(None);
                if self.count_files(&f) > 1 {
                    fs::remove_file(f).unwrap();
                }
            }
            Mutation::ExecBit => {
                let f = self.pick_file(None);
                let mode = fs::metadata(&f).unwrap().permissions().mode();
                fs::set_permissions(&f, fs::Permissions::from_mode(mode ^ 0o100)).unwrap();
            }
            Mutation::EnvVar => self.set_env("X", &["1", "2", "3"]),
            Mutation::Secret => self.set_env("S", &["secret-one", "secret-two", "secret-three"]),
            Mutation::Param => self.param = self.rng.i64(0..4),
            Mutation::UpstreamOutput => {
                let f = self.pick_file(Some("a"));
                append(&f, &format!("# comment {}\n", self.rng.u8(..4)));
            }
            Mutation::DeleteOutputs => {
                let victim = if self.rng.bool() { "out" } else { "out/down" };
                fs::remove_dir_all(root.join(victim)).unwrap();
            }
            Mutation::StageCode => append(&root.join("code/up.sh"), &format!("# {}\n", self.rng.u32(..))),
            Mutation::CrateEdit => {
                let files =
                    ["crates/a/src/lib.rs", "crates/b/src/lib.rs", "crates/a/Cargo.toml", "crates/c/Cargo.toml"];
                append(&root.join(files[self.rng.usize(..files.len())]), &format!("# {}\n", self.rng.u32(..)));
            }
            Mutation::UnrelatedCrateEdit => {
                let files = ["crates/c/src/lib.rs", "crates/a/tests/t.rs"];
                append(&root.join(files[self.rng.usize(..files.len())]), &format!("// {}\n", self.rng.u32(..)));
            }
            Mutation::LockBump => {
                self.versions.0 += 1;
                self.write_workspace();
            }
            Mutation::UnrelatedLockBump => {
                self.versions.1 += 1;
                self.write_workspace();
            }
            Mutation::GitTag => {
                if !self.tags.is_empty() && self.rng.bool() {
                    let tag = self.tags.swap_remove(self.rng.usize(..self.tags.len()));
                    git(&root, &["tag", "-d", &tag]);
                } else {
                    let tag = format!("v0.{}.{}", self.tags.len(), self.rng.u32(..1_000_000));
                    git(&root, &["tag", &tag]);
                    self.tags.push(tag);
                }
            }
            Mutation::EarlyCutoff => {
                let f = self.pick_file(Some("a"));
                // A line of its own even if a byte edit took the file's last newline.
                append(&f, &format!("\nplain {}\n", self.rng.u32(..)));
            }
            Mutation::IgnoredFile => {
                // Ignored by the ignore file while it says so, else by Slipway's own list.
                let ignoring = self.repo.read("a/.gitignore").contains("*.log");
                let n = self.rng.u32(..4);
                let rel = if ignoring { format!("a/sub/n{n}.log") } else { format!("a/target/n{n}.txt") };
                self.repo.write(&rel, random_text(&mut self.rng));
            }
            Mutation::IgnoreRule => {
                let now = self.repo.read("a/.gitignore");
                self.repo.write("a/.gitignore", if now.contains("*.log") { "" } else { "*.log\n" });
            }
            Mutation::UserFileInUpdates => {
                let path = root.join(format!("d/user-{}.txt", self.user_files.len()));
                let text = random_text(&mut self.rng);
                fs::create_dir_all(root.join("d")).unwrap();
                fs::write(&path, &text).unwrap();
                self.user_files.push((path, text));
            }
            Mutation::FetchInput => self.repo.write("t.txt", format!("v{}\n", self.rng.u8(..3))),
        }
    }

    fn set_env(&mut self, name: &str, values: &[&str]) {
        match self.rng.usize(..=values.len()) {
            0 => self.repo.env.remove(name),
            i => self.repo.env.insert(name.into(), values[i - 1].into()),
        };
    }

    fn pick_file(&mut self, dir: Option<&str>) -> PathBuf {
        let dir = dir.unwrap_or(if self.rng.bool() { "a" } else { "b" });
        let files: Vec<PathBuf> =
            files_under(&self.repo.root().join(dir)).into_iter().filter(|f| !is_special(f)).collect();
        files[self.rng.usize(..files.len())].clone()
    }

    /// How many ordinary files the top-level directory holding `f` has; we keep at least one.
    fn count_files(&self, f: &Path) -> usize {
        let rel = f.strip_prefix(self.repo.root()).unwrap();
        let top = rel.components().next().unwrap();
        files_under(&self.repo.root().join(top)).into_iter().filter(|f| !is_special(f)).count()
    }
}

/// The ignore file and ignored files are mutated on purpose only.
fn is_special(f: &Path) -> bool {
    let ignored_dir = f.components().any(|c| c.as_os_str() == "target");
    f.file_name().is_some_and(|n| n == ".gitignore") || f.extension().is_some_and(|e| e == "log") || ignored_dir
}

fn git(root: &Path, args: &[&str]) {
    let sh = xshell::Shell::new().unwrap();
    sh.change_dir(root);
    xshell::cmd!(sh, "git {args...}").quiet().run().unwrap();
}

fn append(f: &Path, text: &str) {
    let mut now = fs::read_to_string(f).unwrap();
    now.push_str(text);
    fs::write(f, now).unwrap();
}

fn random_text(rng: &mut fastrand::Rng) -> String {
    let lines = rng.usize(1..4);
    (0..lines)
        .map(|_| {
            let hash = if rng.u8(..4) == 0 { "# " } else { "" };
            let word: String = (0..rng.usize(3..12)).map(|_| rng.alphanumeric()).collect();
            format!("{hash}{word}\n")
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() { todo.push(path) } else { out.push(path) }
        }
    }
    out.sort();
    out
}

/// Every byte that identifies a directory's state: names, exec bits and contents. With
/// `gitignore`, `*.log` files are left out while the directory's `.gitignore` says so.
fn dir_state(dir: &Path, gitignore: bool) -> Vec<u8> {
    let ignoring_logs = gitignore && fs::read_to_string(dir.join(".gitignore")).is_ok_and(|t| t.contains("*.log"));
    let mut state = Vec::new();
    for f in files_under(dir) {
        if ignoring_logs && f.extension().is_some_and(|e| e == "log") || gitignore && in_target(dir, &f) {
            continue;
        }
        let rel = f.strip_prefix(dir).unwrap().to_str().unwrap();
        let exec = fs::metadata(&f).unwrap().permissions().mode() & 0o111 != 0;
        let content = fs::read(&f).unwrap();
        state.extend(format!("{}:{rel}:{exec}:{}:", rel.len(), content.len()).as_bytes());
        state.extend(content);
    }
    state
}

/// Whether `f` lies in a `target` directory under `dir`, which Slipway always ignores.
fn in_target(dir: &Path, f: &Path) -> bool {
    f.strip_prefix(dir).unwrap().components().any(|c| c.as_os_str() == "target")
}

fn up_state(root: &Path) -> Vec<u8> {
    let mut state = dir_state(&root.join("a"), true);
    state.extend(b"|code=");
    state.extend(fs::read(root.join("code/up.sh")).unwrap());
    state
}

fn expected_up(root: &Path) -> String {
    let ignoring_logs = fs::read_to_string(root.join("a/.gitignore")).is_ok_and(|t| t.contains("*.log"));
    files_under(&root.join("a"))
        .iter()
        .filter(|f| !(in_target(&root.join("a"), f) || ignoring_logs && f.extension().is_some_and(|e| e == "log")))
        .flat_map(|f| fs::read_to_string(f).unwrap().lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `down` depends on, read directly: the closure of `pkg-a` is `crates/a` (without its
/// tests) and `crates/b`, every member's manifest, and the `serde` line of the lock; the tags
/// are the loose tag refs that hold HEAD's commit.
fn down_state(root: &Path, env: &BTreeMap<String, String>, param: i64) -> Vec<u8> {
    let mut state = dir_state(&root.join("b"), false);
    let x = env.get("X").cloned().unwrap_or_else(|| "<unset>".into());
    let up = fs::read_to_string(root.join("out/up.txt")).unwrap_or_default();
    state.extend(format!("|X={x}|S={}|P={param}|up={up}|d=", env.contains_key("S")).as_bytes());
    state.extend(dir_state(&root.join("d"), false));
    state.extend(b"|crates=");
    state.extend(dir_state(&root.join("crates/a/src"), false));
    state.extend(dir_state(&root.join("crates/b"), false));
    for manifest in ["Cargo.toml", "crates/a/Cargo.toml", "crates/b/Cargo.toml", "crates/c/Cargo.toml"] {
        state.extend(fs::read(root.join(manifest)).unwrap());
    }
    let lock = fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let serde = lock.split("name = \"serde\"\nversion = \"").nth(1).unwrap().split('"').next().unwrap();
    state.extend(format!("|serde={serde}|tags=").as_bytes());
    let head = fs::read_to_string(root.join(".git/HEAD")).unwrap();
    let head = head.trim().strip_prefix("ref: ").map_or_else(
        || head.trim().to_string(),
        |r| fs::read_to_string(root.join(".git").join(r)).unwrap().trim().to_string(),
    );
    let mut tags: Vec<String> = fs::read_dir(root.join(".git/refs/tags"))
        .into_iter()
        .flatten()
        .map(|e| e.unwrap())
        .filter(|e| fs::read_to_string(e.path()).unwrap().trim() == head)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    tags.sort();
    state.extend(tags.join(",").as_bytes());
    state
}

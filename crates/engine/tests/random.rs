//! Randomised cache correctness: after every random mutation of the workspace, a stage runs if
//! and only if its inputs are in a state never seen before, and its outputs are exactly what a
//! fresh run would write. The oracle reads every byte itself; it shares no code with the engine's
//! hashing or stat cache.
//!
//! `SLIPWAY_TEST_SEED` replays a failure; `SLIPWAY_TEST_MUTATIONS` changes the count.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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
}

const ALL: [Mutation; 12] = [
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
];

struct World {
    repo: Repo,
    rng: fastrand::Rng,
    param: i64,
    up_runs: Arc<AtomicUsize>,
    down_runs: Arc<AtomicUsize>,
    seen_up: HashSet<Vec<u8>>,
    seen_down: HashSet<Vec<u8>>,
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
    for i in 0..count {
        let m = ALL[world.rng.usize(..ALL.len())];
        world.mutate(m);
        let (up_ran, down_ran) = world.step(Some((i, m)));
        let t = tally.entry(m).or_default();
        t.0 += 1;
        t.1 += usize::from(up_ran || down_ran);
    }
    eprintln!("mutation: applied / caused a rerun");
    for (m, (n, reran)) in &tally {
        eprintln!("  {m:?}: {n} / {reran}");
    }
    // Every kind was exercised, and the suite saw both hits and misses.
    assert_eq!(tally.len(), ALL.len(), "{tally:?}");
    assert!(tally[&Mutation::TouchOnly].1 < tally[&Mutation::TouchOnly].0, "touching never hit the cache");
    assert_eq!(tally[&Mutation::SameSizeEditMtimeRestored].1, tally[&Mutation::SameSizeEditMtimeRestored].0);
}

impl World {
    fn new(seed: u64) -> World {
        let mut repo = Repo::new();
        repo.secrets.push("S".into());
        let mut rng = fastrand::Rng::with_seed(seed);
        for dir in ["a", "b"] {
            for i in 0..6 {
                let sub = if i % 3 == 0 { "sub/" } else { "" };
                repo.write(&format!("{dir}/{sub}f{i}.txt"), random_text(&mut rng));
            }
        }
        World {
            repo,
            rng,
            param: 0,
            up_runs: Arc::default(),
            down_runs: Arc::default(),
            seen_up: HashSet::new(),
            seen_down: HashSet::new(),
        }
    }

    /// `up` keeps the `#` lines of `a/`; `down` digests `b/`, `X`, whether `S` is set, the
    /// param and `up`'s output.
    fn pipeline(&self) -> Pipeline {
        let up_runs = self.up_runs.clone();
        let up = Stage::new("up", "keep comment lines").files("a", &["a"]).output("out/up.txt").run(move |ctx| {
            up_runs.fetch_add(1, Ordering::SeqCst);
            fs::create_dir_all(ctx.root().join("out"))?;
            fs::write(ctx.root().join("out/up.txt"), expected_up(ctx.root()))?;
            Ok(())
        });
        let down_runs = self.down_runs.clone();
        let param = self.param;
        let down = Stage::new("down", "digest everything")
            .after("up")
            .files("b", &["b"])
            .env("X")
            .secret_env("S")
            .param("P", param)
            .output("out/down")
            .run(move |ctx| {
                down_runs.fetch_add(1, Ordering::SeqCst);
                fs::create_dir_all(ctx.root().join("out/down"))?;
                let digest = blake3::hash(&down_state(ctx.root(), ctx.env(), param));
                fs::write(ctx.root().join("out/down/result.txt"), digest.to_hex().as_str())?;
                Ok(())
            });
        Pipeline::new().stage(up).unwrap().stage(down).unwrap()
    }

    /// Runs the pipeline and checks it against the oracle; returns which stages ran.
    fn step(&mut self, at: Option<(usize, Mutation)>) -> (bool, bool) {
        let root = self.repo.root().to_path_buf();
        let up_state = dir_state(&root.join("a"));
        let up_expected = !self.seen_up.contains(&up_state);
        let pipeline = self.pipeline();
        if at.is_some_and(|(i, _)| i % 4 == 0) {
            let status = engine::status(&pipeline, &self.repo.workspace(), false).unwrap();
            let up_fresh = !matches!(status[0].freshness, Freshness::Stale { .. });
            assert_eq!(up_fresh, !up_expected, "status of `up` after {at:?}: {:?}", status[0]);
        }
        let (up_before, down_before) = (self.up_runs.load(Ordering::SeqCst), self.down_runs.load(Ordering::SeqCst));
        let run = self.repo.run(&pipeline);
        assert_eq!(run.summary.exit_code(), 0, "after {at:?}: {:?}", run.events);
        self.seen_up.insert(up_state);
        let down_state = down_state(&root, &self.repo.env, self.param);
        let down_expected = !self.seen_down.contains(&down_state);
        self.seen_down.insert(down_state.clone());
        let up_ran = self.up_runs.load(Ordering::SeqCst) > up_before;
        let down_ran = self.down_runs.load(Ordering::SeqCst) > down_before;
        assert_eq!(up_ran, up_expected, "`up` after {at:?}: {:?}", run.outcomes());
        assert_eq!(down_ran, down_expected, "`down` after {at:?}: {:?}", run.outcomes());
        assert_eq!(self.repo.read("out/up.txt"), expected_up(&root), "`up` output after {at:?}");
        let want = blake3::hash(&down_state).to_hex().to_string();
        assert_eq!(self.repo.read("out/down/result.txt"), want, "`down` output after {at:?}");
        (up_ran, down_ran)
    }

    fn mutate(&mut self, m: Mutation) {
        let root = self.repo.root().to_path_buf();
        match m {
            Mutation::ContentEdit => {
                let f = self.pick_file(None);
                let mut text = fs::read_to_string(&f).unwrap();
                text.push_str(&random_text(&mut self.rng));
                fs::write(&f, text).unwrap();
            }
            Mutation::SameSizeEditMtimeRestored => {
                let f = self.pick_file(None);
                let mtime = fs::metadata(&f).unwrap().modified().unwrap();
                let mut bytes = fs::read(&f).unwrap();
                let i = self.rng.usize(..bytes.len());
                bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
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
                let mut text = fs::read_to_string(&f).unwrap();
                text.push_str(&format!("# comment {}\n", self.rng.u8(..4)));
                fs::write(&f, text).unwrap();
            }
            Mutation::DeleteOutputs => {
                let victim = if self.rng.bool() { "out" } else { "out/down" };
                fs::remove_dir_all(root.join(victim)).unwrap();
            }
        }
    }

    fn set_env(&mut self, name: &str, values: &[&str]) {
        match self.rng.usize(..=values.len()) {
            0 => self.repo.env.remove(name),
            i => self.repo.env.insert(name.into(), values[i - 1].into()),
        };
    }

    fn pick_file(&mut self, dir: Option<&str>) -> std::path::PathBuf {
        let dir = dir.unwrap_or(if self.rng.bool() { "a" } else { "b" });
        let files = files_under(&self.repo.root().join(dir));
        files[self.rng.usize(..files.len())].clone()
    }

    /// How many files the top-level directory holding `f` has; we keep at least one in each.
    fn count_files(&self, f: &Path) -> usize {
        let rel = f.strip_prefix(self.repo.root()).unwrap();
        let top = rel.components().next().unwrap();
        files_under(&self.repo.root().join(top)).len()
    }
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

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
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

/// Every byte that identifies a directory's state: names, exec bits and contents.
fn dir_state(dir: &Path) -> Vec<u8> {
    let mut state = Vec::new();
    for f in files_under(dir) {
        let rel = f.strip_prefix(dir).unwrap().to_str().unwrap();
        let exec = fs::metadata(&f).unwrap().permissions().mode() & 0o111 != 0;
        let content = fs::read(&f).unwrap();
        state.extend(format!("{}:{rel}:{exec}:{}:", rel.len(), content.len()).as_bytes());
        state.extend(content);
    }
    state
}

fn expected_up(root: &Path) -> String {
    files_under(&root.join("a"))
        .iter()
        .flat_map(|f| fs::read_to_string(f).unwrap().lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

fn down_state(root: &Path, env: &BTreeMap<String, String>, param: i64) -> Vec<u8> {
    let mut state = dir_state(&root.join("b"));
    let x = env.get("X").cloned().unwrap_or_else(|| "<unset>".into());
    let up = fs::read_to_string(root.join("out/up.txt")).unwrap_or_default();
    state.extend(format!("|X={x}|S={}|P={param}|up={up}", env.contains_key("S")).as_bytes());
    state
}

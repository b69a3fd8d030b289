//! The workspace: a root directory, Slipway's state under it, the environment snapshot, and
//! the caches shared by every stage of a run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};

use crate::fsutil::write_atomic;
use crate::record::StageRecord;
use crate::stat_cache::StatCache;
use crate::store::{LocalStore, StepStore};

/// The directory under the root that holds Slipway's state; it belongs in `.gitignore`.
pub const STATE_DIR: &str = ".slipway";

/// The stat cache's file under [`STATE_DIR`].
pub const STAT_CACHE_FILE: &str = "stat-cache.bin";
/// The stat cache of the program's Cargo workspace, when the root is a project inside it.
pub const PROGRAM_STAT_CACHE_FILE: &str = "program-stat-cache.bin";

/// Where, under [`STATE_DIR`], each stage's log is kept (`STAGE.log`).
pub const LOGS_DIR: &str = "logs";

/// A probe's command and the environment it ran in.
type Probed = (Vec<String>, BTreeMap<String, String>);

/// A probe's answer (its output and whether it succeeded), or why it could not start; shared by
/// everyone who asks while it runs, so one probe never runs twice at once.
type ProbeCell = Arc<OnceLock<Result<(String, bool), String>>>;

/// Everything a plan or a run needs to know about where it happens.
pub struct Workspace {
    root: PathBuf,
    env: BTreeMap<String, String>,
    secrets: Vec<String>,
    stat: Mutex<StatCache>,
    /// The Cargo workspace of the program that defines the pipeline, when the root is a
    /// project in a subdirectory of it, with a stat cache of its own (paths in the two caches
    /// are relative to different directories).
    program: Option<(PathBuf, Mutex<StatCache>)>,
    store: Box<dyn StepStore>,
    /// Probe answers since anything last changed the tree; see [`Workspace::forget_probes`].
    tools: Mutex<HashMap<Probed, ProbeCell>>,
}

impl Workspace {
    /// A workspace at `root` with the given environment snapshot and the local step cache
    /// under `.slipway/cache`.
    pub fn new(root: &Path, env: BTreeMap<String, String>) -> Workspace {
        let root = root.to_path_buf();
        let state = root.join(STATE_DIR);
        Workspace {
            stat: Mutex::new(StatCache::load_in_background(&state.join(STAT_CACHE_FILE))),
            store: Box::new(LocalStore::new(state.join("cache"))),
            root,
            program: None,
            env,
            secrets: Vec::new(),
            tools: Mutex::new(HashMap::new()),
        }
    }

    /// A workspace for the current process: its environment and the root given.
    pub fn from_process_env(root: &Path) -> Workspace {
        Workspace::new(root, std::env::vars().collect())
    }

    /// The program that defines the pipeline is built in the Cargo workspace at `program_root`,
    /// which holds the root or sits beside it (a team's repository with Slipway checked out in
    /// it): its own code ([`crate::Stage::pipeline_code`]) and crates ([`crate::Stage::crates`])
    /// are found and hashed there, and commands marked to run there do.
    pub fn with_program_root(mut self, program_root: &Path) -> Workspace {
        if program_root != self.root {
            let cache = StatCache::load_in_background(&self.state_path(PROGRAM_STAT_CACHE_FILE));
            self.program = Some((program_root.to_path_buf(), Mutex::new(cache)));
        }
        self
    }

    /// Where the program's own code and crates are: the Cargo workspace it is built in.
    pub fn program_root(&self) -> &Path {
        self.program.as_ref().map_or(&self.root, |(p, _)| p)
    }

    /// Whether the program's code lives under another directory than the root.
    pub(crate) fn program_elsewhere(&self) -> bool {
        self.program.is_some()
    }

    pub(crate) fn program_stat_cache(&self) -> &Mutex<StatCache> {
        self.program.as_ref().map_or(&self.stat, |(_, s)| s)
    }

    /// Uses `store` as the step cache instead of the local directory.
    pub fn with_store(mut self, store: Box<dyn StepStore>) -> Workspace {
        self.store = store;
        self
    }

    /// Marks the values of these environment variables as secret: they are masked wherever
    /// Slipway prints or logs text.
    pub fn with_secrets<S: AsRef<str>>(mut self, names: &[S]) -> Workspace {
        for name in names {
            if let Some(v) = self.env.get(name.as_ref()).filter(|v| !v.is_empty()) {
                self.secrets.push(v.clone());
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The environment snapshot.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The values of secret variables, for masking.
    pub fn secret_values(&self) -> &[String] {
        &self.secrets
    }

    /// `text` with every secret value replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
    }

    /// The step cache.
    pub fn store(&self) -> &dyn StepStore {
        &*self.store
    }

    pub(crate) fn stat_cache(&self) -> &Mutex<StatCache> {
        &self.stat
    }

    /// Saves the stat cache. Failing to is harmless (files are hashed again), so it is only logged.
    pub fn save_stat_cache(&self) -> Result<()> {
        if let Some((_, program)) = &self.program {
            let mut stat = program.lock().unwrap_or_else(|e| e.into_inner());
            stat.save().context("cannot save the program's stat cache")?;
        }
        let mut stat = self.stat.lock().unwrap_or_else(|e| e.into_inner());
        stat.save().context("cannot save the stat cache")
    }

    /// A path under `.slipway/`.
    pub fn state_path(&self, rel: &str) -> PathBuf {
        self.root.join(STATE_DIR).join(rel)
    }

    /// The record of the last successful run of `stage` here, for `status` to compare against.
    pub fn last_record(&self, stage: &str) -> Option<StageRecord> {
        let bytes = std::fs::read(self.state_path(&format!("last/{stage}.json"))).ok()?;
        serde_json::from_slice::<StageRecord>(&bytes).ok().filter(StageRecord::is_current)
    }

    /// Makes `record` the last of its stage. A stage taken from the cache usually finds the very
    /// record there already (a `ci` with nothing to do); then nothing is written or synced.
    pub(crate) fn set_last_record(&self, record: &StageRecord) -> Result<()> {
        let path = self.state_path(&format!("last/{}.json", record.stage));
        let bytes = serde_json::to_vec(record)?;
        if std::fs::read(&path).is_ok_and(|there| there == bytes) {
            return Ok(());
        }
        write_atomic(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))
    }

    /// What `argv` prints on standard output (trimmed) and whether it succeeded, run in the root
    /// with exactly the environment `env`. An error only if it cannot start.
    ///
    /// Answers are shared until [`Workspace::forget_probes`]: a caller that asks while the same
    /// probe runs waits for that run instead of starting another.
    pub fn probe(&self, argv: &[String], env: &BTreeMap<String, String>) -> Result<(String, bool)> {
        let key = (argv.to_vec(), env.clone());
        let cell = self.tools.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_default().clone();
        let answer = cell.get_or_init(|| self.run_probe(argv, env).map_err(|e| format!("{e:#}"))).clone();
        if answer.is_err() {
            // Failing to start may pass (a binary being written, no process slots left): the
            // next caller tries again rather than inherit this failure.
            let mut tools = self.tools.lock().unwrap_or_else(|e| e.into_inner());
            if tools.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                tools.remove(&key);
            }
        }
        answer.map_err(anyhow::Error::msg)
    }

    /// Something is about to change the tree (a stage runs, or its outputs are restored), and
    /// with it perhaps what a probe prints (a tool it installs): every later probe runs afresh.
    /// A probe still running keeps its answer for those who asked before.
    pub fn forget_probes(&self) {
        self.tools.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Starts each of `probes` on a thread of its own, so that the stages that ask for them
    /// later find the answers ready or on their way. Nobody waits for these threads: a probe
    /// of a stage that never gets to run (its upstream failed) must not hold up the run's end.
    pub fn prefetch_probes(self: &Arc<Self>, probes: Vec<Probed>) {
        for (argv, env) in crate::plan::distinct(probes) {
            let ws = self.clone();
            // A thread that cannot start only means the stage probes when it gets there.
            let _ = std::thread::Builder::new().name("probe".into()).spawn(move || drop(ws.probe(&argv, &env)));
        }
    }

    fn run_probe(&self, argv: &[String], env: &BTreeMap<String, String>) -> Result<(String, bool)> {
        let (program, args) = argv.split_first().context("a probe needs a command")?;
        let sh = xshell::Shell::new()?;
        sh.change_dir(&self.root);
        let out = xshell::cmd!(sh, "{program} {args...}")
            .env_clear()
            .envs(env)
            .quiet()
            .ignore_status()
            .output()
            .with_context(|| format!("could not run `{}`; is `{program}` installed?", argv.join(" ")))?;
        Ok((String::from_utf8_lossy(&out.stdout).trim().to_string(), out.status.success()))
    }
}

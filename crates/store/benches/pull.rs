//! Benchmark: Slipway's `Store::pull` beside the real `dvc`, against one loopback SeaweedFS,
//! cold (empty workspace and cache) and with nothing to do.
//!
//! Run with `cargo bench -p slipway-store --bench pull` (add `-- small` or `-- large` for one data
//! set); `weed` and `dvc` come from `PATH` or `.slipway/tools/bin`. Everything lives under
//! `target/bench-data/pull`, rebuilt on every run. Slipway is timed in-process from `resolve` to
//! the end of `pull`; `dvc` is timed as the whole command, Python start-up included, since that
//! is what a user waits for. Every pull is checked byte for byte against the source. The CPU
//! each side and the server used in the fastest cold pull is printed too: on a machine the
//! server shares, a pull can be no faster than their sum over the cores allows.
//!
//! Between runs the workspace, caches and state are renamed into a trash directory rather than
//! deleted, and the trash is emptied at the end. ext4 without a journal skips recently freed
//! inodes when it allocates new ones, checking each, so creating files right after deleting
//! thousands grows slower with every run; that cost belongs to neither tool.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use store::{PullSummary, Store};
use tokio::runtime::Runtime;
use xshell::{Shell, cmd};

const COLD_RUNS: usize = 3;
/// How long ext4 without a journal keeps a freed (and written back) inode from reuse, and a
/// second more.
const INODE_REUSE_DELAY: Duration = Duration::from_secs(61);
const NOOP_RUNS: usize = 5;
const BUCKET: &str = "bench";
const ACCESS_KEY: &str = "slipway-bench-key";
const SECRET_KEY: &str = "slipway-bench-secret-5d1e";

/// One tracked directory of same-sized files of pseudo-random bytes.
struct Dataset {
    label: &'static str,
    name: &'static str,
    files: usize,
    size: usize,
}

const DATASETS: [Dataset; 2] = [
    Dataset { label: "1,000 x 10 KiB", name: "small", files: 1_000, size: 10 << 10 },
    Dataset { label: "5 x 50 MiB", name: "large", files: 5, size: 50 << 20 },
];

fn main() -> Result<()> {
    let (root, old) = bench_root()?;
    let trash = Trash { dir: root.join("trash"), next: Cell::new(0) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let server = Seaweed::start(&root.join("seaweed"))?;
    runtime.block_on(server.create_bucket(BUCKET))?;
    let dvc = tool("dvc")?;
    let sh = Shell::new()?;
    let version = cmd!(sh, "{dvc} --version").quiet().read().context("cannot run `dvc --version`")?;
    println!("nproc: {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("dvc {version}, SeaweedFS at {}", server.endpoint());
    println!("cold: best of {COLD_RUNS}; nothing to do: best of {NOOP_RUNS}\n");
    // `cargo bench --bench pull -- large` runs only the data sets named.
    let words: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let sets: Vec<&Dataset> =
        DATASETS.iter().filter(|s| words.is_empty() || words.iter().any(|w| w == s.name)).collect();
    ensure!(!sets.is_empty(), "no data set is named like {words:?}; they are `small` and `large`");
    let mut rows = Vec::new();
    for set in &sets {
        let case = Case::setup(&root, set, &server, &runtime, &dvc, &trash)?;
        println!("{}: {} bytes", set.label, thousands(set.files as u64 * set.size as u64));
        rows.extend(case.measure()?);
    }
    let total: u64 = sets.iter().map(|s| (s.files * s.size) as u64).sum();
    println!("total: {} bytes\n", thousands(total));
    print_table(&rows);
    drop(server);
    remove_if_present(&trash.dir)?;
    remove_if_present(&old)
}

/// `target/bench-data/pull`, emptied, and where its old contents went (`pull.old`): they are
/// deleted after the timings, for the reason the module docs give.
fn bench_root() -> Result<(PathBuf, PathBuf)> {
    let target = match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        _ => manifest_dir().join("../../target"),
    };
    let (root, old) = (target.join("bench-data").join("pull"), target.join("bench-data").join("pull.old"));
    remove_if_present(&old)?;
    if root.exists() {
        fs::rename(&root, &old).with_context(|| format!("cannot move {} aside", root.display()))?;
    }
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    Ok((root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))?, old))
}

/// Where discarded files go until the timings are over.
struct Trash {
    dir: PathBuf,
    next: Cell<usize>,
}

impl Trash {
    /// Moves `path`, if it exists, out of the way.
    fn discard(&self, path: &Path) -> Result<()> {
        if fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let to = self.dir.join(self.next.replace(self.next.get() + 1).to_string());
        fs::rename(path, &to).with_context(|| format!("cannot move {} to the trash", path.display()))
    }
}

/// A program from `PATH`, else from the tools environment `cargo xtask ci` installs.
fn tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let tools_env = manifest_dir().join("../../.slipway/tools/bin");
    std::env::split_paths(&path).chain([tools_env]).map(|dir| dir.join(name)).find(|p| p.is_file()).with_context(|| {
        format!("`{name}` is not installed: run `cargo xtask ci` first (its `tools` stage installs it)")
    })
}

/// A repository pushed to the bucket, and a clone of it that both tools pull into.
struct Case<'a> {
    set: &'a Dataset,
    origin: PathBuf,
    clone: PathBuf,
    /// DVC's per-repository site cache (its data index), moved here so cold runs can clear it.
    site_cache: PathBuf,
    env: BTreeMap<String, String>,
    sh: Shell,
    runtime: &'a Runtime,
    dvc: &'a Path,
    trash: &'a Trash,
    /// The SeaweedFS process, whose CPU time is read around each cold pull.
    server_pid: u32,
}

/// CPU seconds spent during one timed pull: by the puller, and by the server answering it.
#[derive(Clone, Copy, Default)]
struct Cpu {
    puller: f64,
    server: f64,
}

/// One line of the table.
struct Row {
    case: String,
    slipway: Duration,
    dvc: Duration,
    /// For cold pulls: the CPU each side used, Slipway's then dvc's, in their fastest run.
    cpu: Option<(Cpu, Cpu)>,
}

impl<'a> Case<'a> {
    fn setup(
        root: &Path,
        set: &'a Dataset,
        server: &Seaweed,
        runtime: &'a Runtime,
        dvc: &'a Path,
        trash: &'a Trash,
    ) -> Result<Self> {
        let dir = root.join(set.name);
        let (origin, clone, site_cache) = (dir.join("origin"), dir.join("clone"), dir.join("dvc-site-cache"));
        let env: BTreeMap<String, String> = [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
            ("DVC_NO_ANALYTICS", "1"),
            ("DVC_SITE_CACHE_DIR", &site_cache.to_string_lossy()),
            ("GIT_AUTHOR_NAME", "b"),
            ("GIT_AUTHOR_EMAIL", "b@example.com"),
            ("GIT_COMMITTER_NAME", "b"),
            ("GIT_COMMITTER_EMAIL", "b@example.com"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sh = Shell::new()?;
        env.iter().for_each(|(k, v)| sh.set_var(k, v));
        let server_pid = server.child.id();
        let case = Case { set, origin, clone, site_cache, env, sh, runtime, dvc, trash, server_pid };
        case.push_origin(&server.endpoint())?;
        // The setup above (git, `dvc add`, `dvc push`) created and freed many files. ext4 without
        // a journal will not reuse an inode within 60 s of its freeing (`RECENTCY_MIN` in
        // fs/ext4/ialloc.c; 360 s while its inode table block is dirty, hence the sync), and
        // scans past each such one, so whichever tool first creates thousands of files soon
        // after pays for it: Slipway, which runs first, measured 2-3x slower in such runs, with
        // most of its time in `ext4_create`. The timed pulls start once that has passed.
        cmd!(case.sh, "sync").quiet().run().context("flush the setup's writes to disk")?;
        std::thread::sleep(INODE_REUSE_DELAY);
        Ok(case)
    }

    /// Writes the data, `dvc add`s and `dvc push`es it, commits, and clones the repository.
    fn push_origin(&self, endpoint: &str) -> Result<()> {
        write_data(&self.origin.join("data"), self.set)?;
        let (sh, dvc, url) = (&self.sh, self.dvc, format!("s3://{BUCKET}/{}", self.set.name));
        sh.change_dir(&self.origin);
        cmd!(sh, "git init -q").quiet().run().context("create the origin repository")?;
        cmd!(sh, "{dvc} init -q").quiet().run().context("initialise DVC in the origin")?;
        cmd!(sh, "{dvc} remote add -q -d storage {url}").quiet().run().context("configure the S3 remote")?;
        cmd!(sh, "{dvc} remote modify storage endpointurl {endpoint}").quiet().run().context("set the endpoint")?;
        cmd!(sh, "{dvc} add -q data").quiet().run().context("track the data with dvc add")?;
        cmd!(sh, "{dvc} push -q").quiet().run().context("push the data with dvc push")?;
        cmd!(sh, "git add -A").quiet().run().context("stage the pointer in git")?;
        cmd!(sh, "git commit -qm data").quiet().run().context("commit the pointer")?;
        let (origin, clone) = (&self.origin, &self.clone);
        cmd!(sh, "git clone -q {origin} {clone}").quiet().run().context("clone the origin")?;
        sh.change_dir(&self.clone);
        Ok(())
    }

    fn measure(&self) -> Result<Vec<Row>> {
        let label = self.set.label;
        let ((slipway, slipway_cpu), (dvc, dvc_cpu)) = self.cold()?;
        let cpu = Some((slipway_cpu, dvc_cpu));
        let mut rows = vec![Row { case: format!("{label}, cold pull"), slipway, dvc, cpu }];
        self.settle()?;
        let (slipway, status, pull) = self.nothing_to_do()?;
        rows.push(Row { case: format!("{label}, nothing to do (dvc status)"), slipway, dvc: status, cpu: None });
        rows.push(Row { case: format!("{label}, nothing to do (dvc pull)"), slipway, dvc: pull, cpu: None });
        let (slipway, status) = self.nothing_to_do_state_lost()?;
        let case = format!("{label}, nothing to do, state lost (dvc status)");
        rows.push(Row { case, slipway, dvc: status, cpu: None });
        Ok(rows)
    }

    /// Both tools from an empty workspace and an empty cache, turn about; each one's fastest run
    /// with the CPU it and the server used in it.
    fn cold(&self) -> Result<((Duration, Cpu), (Duration, Cpu))> {
        let (mut slipway, mut dvc) = ((Duration::MAX, Cpu::default()), (Duration::MAX, Cpu::default()));
        for _ in 0..COLD_RUNS {
            self.reset()?;
            let (time, summary, cpu) = self.slipway_pull_measured()?;
            ensure!(summary.downloaded == self.set.files, "a cold Slipway pull downloaded only: {summary:?}");
            if time < slipway.0 {
                slipway = (time, cpu);
            }
            self.reset()?;
            let (time, cpu) = self.dvc_pull_measured()?;
            if time < dvc.0 {
                dvc = (time, cpu);
            }
        }
        Ok((slipway, dvc))
    }

    /// This process's CPU seconds, its waited-for children's, and the server's.
    fn cpu_now(&self) -> Result<[f64; 3]> {
        let (me, server) = (cpu_seconds("self")?, cpu_seconds(&self.server_pid.to_string())?);
        Ok([me.0, me.1, server.0])
    }

    /// Empties the workspace, both caches and both tools' state, then flushes dirty pages so that
    /// no run pays for writing back an earlier run's files.
    fn reset(&self) -> Result<()> {
        for rel in ["data", ".dvc/cache", ".dvc/tmp", ".slipway"] {
            self.trash.discard(&self.clone.join(rel))?;
        }
        self.trash.discard(&self.site_cache)?;
        cmd!(self.sh, "sync").quiet().run().context("flush written files to disk")?;
        Ok(())
    }

    /// Untimed passes after the last cold run, so each tool's stat cache knows every file.
    fn settle(&self) -> Result<()> {
        self.slipway_pull()?;
        self.slipway_pull()?;
        self.dvc_status()?;
        self.dvc_pull()?;
        Ok(())
    }

    fn nothing_to_do(&self) -> Result<(Duration, Duration, Duration)> {
        let stat_cache = self.clone.join(".slipway/md5-stat-cache.bin");
        let before = stamp(&stat_cache)?;
        let (mut slipway, mut status, mut pull) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for _ in 0..NOOP_RUNS {
            let (time, summary) = self.slipway_pull()?;
            ensure!(summary.downloaded == 0, "a Slipway pull with nothing to do downloaded: {summary:?}");
            slipway = slipway.min(time);
            status = status.min(self.dvc_status()?);
            pull = pull.min(self.dvc_pull()?);
        }
        // The stat cache is saved only when something was hashed: an untouched file proves that
        // the pulls above read no file data.
        ensure!(stamp(&stat_cache)? == before, "Slipway hashed workspace files although none changed");
        Ok((slipway, status, pull))
    }

    /// Nothing to download, but each tool has lost the state that spares it hashing the files.
    fn nothing_to_do_state_lost(&self) -> Result<(Duration, Duration)> {
        let (mut slipway, mut status) = (Duration::MAX, Duration::MAX);
        for _ in 0..NOOP_RUNS {
            self.trash.discard(&self.clone.join(".slipway"))?;
            let (time, summary) = self.slipway_pull()?;
            ensure!(summary.downloaded == 0, "a Slipway pull with nothing to do downloaded: {summary:?}");
            slipway = slipway.min(time);
            self.trash.discard(&self.clone.join(".dvc/tmp"))?;
            self.trash.discard(&self.site_cache)?;
            status = status.min(self.dvc_status()?);
        }
        Ok((slipway, status))
    }

    /// A pull as a new `cargo xtask pull` would run one: resolve, connect, load state, pull.
    fn slipway_pull(&self) -> Result<(Duration, PullSummary)> {
        self.slipway_pull_measured().map(|(time, summary, _)| (time, summary))
    }

    /// The same, with the CPU this process and the server used until the pull returned (the
    /// check of the pulled bytes comes after).
    fn slipway_pull_measured(&self) -> Result<(Duration, PullSummary, Cpu)> {
        let before = self.cpu_now()?;
        let start = Instant::now();
        let remote = store::resolve(&self.clone, &self.env)?.open()?;
        let store = Store::new(&self.clone, remote, false);
        let pointers = store.pointers(&[])?;
        let summary = self.runtime.block_on(store.pull(&pointers))?;
        let time = start.elapsed();
        let now = self.cpu_now()?;
        self.verify().context("after a Slipway pull")?;
        Ok((time, summary, Cpu { puller: now[0] - before[0], server: now[2] - before[2] }))
    }

    fn dvc_pull(&self) -> Result<Duration> {
        self.dvc_pull_measured().map(|(time, _)| time)
    }

    /// `dvc pull`, with the CPU it (and the processes it waited for) and the server used.
    fn dvc_pull_measured(&self) -> Result<(Duration, Cpu)> {
        let (sh, dvc) = (&self.sh, self.dvc);
        let before = self.cpu_now()?;
        let start = Instant::now();
        cmd!(sh, "{dvc} pull -q").quiet().run().context("pull with dvc")?;
        let time = start.elapsed();
        let now = self.cpu_now()?;
        self.verify().context("after dvc pull")?;
        Ok((time, Cpu { puller: now[1] - before[1], server: now[2] - before[2] }))
    }

    fn dvc_status(&self) -> Result<Duration> {
        let (sh, dvc) = (&self.sh, self.dvc);
        let start = Instant::now();
        let out = cmd!(sh, "{dvc} status").quiet().read().context("check the workspace with dvc status")?;
        let time = start.elapsed();
        ensure!(out.contains("up to date"), "dvc status should find nothing to do, not:\n{out}");
        Ok(time)
    }

    /// The clone's data is exactly the origin's: the same names, the same bytes.
    fn verify(&self) -> Result<()> {
        let (want, got) = (self.origin.join("data"), self.clone.join("data"));
        let names = list_files(&want)?;
        ensure!(names == list_files(&got)?, "the pulled file names differ from the source");
        for rel in &names {
            let read = |dir: &Path| fs::read(dir.join(rel)).with_context(|| format!("cannot read {rel}"));
            if read(&want)? != read(&got)? {
                bail!("data/{rel} differs from the source");
            }
        }
        Ok(())
    }
}

/// The data set's files under `dir`, pseudo-random so that no layer can compress them.
fn write_data(dir: &Path, set: &Dataset) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = fastrand::Rng::with_seed(set.files as u64);
    let mut bytes = vec![0u8; set.size];
    for i in 0..set.files {
        rng.fill(&mut bytes);
        let path = dir.join(format!("{i:04}.bin"));
        fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot walk {}", dir.display()))?;
        if entry.file_type().is_file() {
            names.push(entry.path().strip_prefix(dir)?.to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// A SeaweedFS server (`weed mini`, S3 API with SigV4 checks) on 127.0.0.1, killed on drop.
struct Seaweed {
    child: Child,
    base: u16,
}

impl Seaweed {
    #[allow(
        clippy::disallowed_methods,
        reason = "the server runs for the whole bench and must be killed at the end; xshell cannot keep a child"
    )]
    fn start(dir: &Path) -> Result<Seaweed> {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let base = free_port_block();
        let log = fs::File::create(dir.join("weed.log")).context("cannot create the SeaweedFS log")?;
        let child = std::process::Command::new(tool("weed")?)
            .arg("mini")
            .arg(format!("-dir={}", dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-webdav=false", "-admin.ui=false"])
            .args(["-master.telemetry=false", "-s3.autoCreateBucket=false"])
            .args(port_flags(base))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start weed")?;
        let mut server = Seaweed { child, base };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(0..4).all(|i| TcpStream::connect(("127.0.0.1", base + i)).is_ok()) {
            if let Some(status) = server.child.try_wait()? {
                bail!("SeaweedFS exited while starting ({status}); see {}", dir.join("weed.log").display());
            }
            ensure!(Instant::now() < deadline, "SeaweedFS did not open its ports within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.base)
    }

    /// Creates `bucket`, retrying until the freshly started server answers, then waits until a
    /// listing of it succeeds.
    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = client.create_bucket().bucket(bucket).send().await {
            let text = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
            ensure!(Instant::now() < deadline, "cannot create bucket {bucket}: {text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        while client.list_objects_v2().bucket(bucket).send().await.is_err() {
            ensure!(Instant::now() < deadline, "bucket {bucket} never became usable");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    fn client(&self) -> aws_sdk_s3::Client {
        use aws_smithy_http_client::tls;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "bench"))
            .http_client(http)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `weed mini`'s nine HTTP ports from `base` and their gRPC twins at +10; the rest off.
fn port_flags(base: u16) -> Vec<String> {
    let names = ["s3", "master", "filer", "volume", "admin"];
    let mut flags: Vec<String> = names
        .iter()
        .zip(base..)
        .flat_map(|(name, port)| [format!("-{name}.port={port}"), format!("-{name}.port.grpc={}", port + 10)])
        .collect();
    let others = ["metricsPort", "s3.metricsPort", "debug.port", "s3.debug.port"];
    flags.extend(others.iter().zip(base + 5..).map(|(name, port)| format!("-{name}={port}")));
    flags.extend(["-s3.port.iceberg=0".to_string(), "-s3.port.lance=0".to_string()]);
    flags
}

/// A block of 20 ports that are free now, below the kernel's ephemeral range: a port in that
/// range can be taken as the source port of an outgoing connection before the server binds it.
fn free_port_block() -> u16 {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    let ephemeral = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low = ephemeral.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(32_768);
    let blocks = (low.clamp(21_000, 32_768) - 20_000) / 20;
    loop {
        let base = 20_000 + fastrand::u16(..blocks) * 20;
        if (0..20).all(|i| free(base + i)) {
            return base;
        }
    }
}

/// The CPU seconds (user + system) of the process `pid` ("self" for this one) and of its
/// waited-for children, from `/proc/PID/stat`, in clock ticks of 1/100 s (Linux's USER_HZ).
fn cpu_seconds(pid: &str) -> Result<(f64, f64)> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name, in parentheses, may hold spaces: the fields that count come after it.
    let after = text.rsplit_once(')').map(|(_, rest)| rest).with_context(|| format!("{path} has no `)`"))?;
    let fields: Vec<f64> = after.split_whitespace().skip(11).take(4).map(|f| f.parse().unwrap_or(f64::NAN)).collect();
    ensure!(fields.len() == 4 && fields.iter().all(|f| f.is_finite()), "{path} is not as expected: {text}");
    Ok(((fields[0] + fields[1]) / 100.0, (fields[2] + fields[3]) / 100.0))
}

/// The inode and modification time of `path`; an atomic rewrite changes either.
fn stamp(path: &Path) -> Result<(u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    Ok((meta.ino(), meta.modified()?))
}

fn remove_if_present(path: &Path) -> Result<()> {
    let result = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).with_context(|| format!("cannot remove {path:?}")),
        _ => Ok(()),
    }
}

fn print_table(rows: &[Row]) {
    println!("{:<56} {:>11} {:>9} {:>12}", "case", "slipway s", "dvc s", "dvc/slipway");
    for r in rows {
        let (s, d) = (r.slipway.as_secs_f64(), r.dvc.as_secs_f64());
        println!("{:<56} {:>11.3} {:>9.3} {:>11.1}x", r.case, s, d, d / s);
    }
    // Where the time of a cold pull goes on a machine the server shares: a puller cannot be
    // faster than the server's own CPU time allows.
    println!("\nCPU seconds in the fastest cold pull of each (user + system, 10 ms ticks):");
    println!("{:<56} {:>11} {:>9} {:>11} {:>9}", "case", "slipway", "server", "dvc", "server");
    for r in rows {
        if let Some((s, d)) = r.cpu {
            println!("{:<56} {:>11.2} {:>9.2} {:>11.2} {:>9.2}", r.case, s.puller, s.server, d.puller, d.server);
        }
    }
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

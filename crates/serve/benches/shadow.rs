//! Live latency through the router with a shadow on, against the same without: does mirroring
//! every prediction to a candidate slow what users see?
//!
//! Two slipway-serve servers (the live release and the candidate, both the demo model) behind
//! one slipway-router, all release builds on 127.0.0.1. An open-loop load sends `/predict`
//! requests at a fixed rate (each one's latency counts from when it was due, so a stall is not
//! hidden by the clients waiting), in alternating phases: no shadow, then the candidate sent a
//! copy of every request (`PUT /shadow … 100`), and so on, so drift on the machine falls on
//! both sides alike. The candidate runs in both phases; only the mirroring differs. The rate is
//! below saturation, as live traffic is: a saturated 2-core machine would measure the
//! candidate's inference competing for the CPU, not the router.
//!
//! `cargo bench -p slipway-serve --bench shadow`. Needs `models/model.onnx` and the training
//! environment (`cargo xtask ci`). `SLIPWAY_BENCH_RATE` (requests per second, default 200) and
//! `SLIPWAY_BENCH_SECONDS` (per phase, default 3; twenty phases) tune a run.

#[allow(dead_code, reason = "the FastAPI baseline and CPU accounting are the predict bench's")]
mod servers;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use xshell::{Shell, cmd};

const TEXTS: [&str; 4] = [
    "a warm, funny and beautifully acted film that earns every one of its tears",
    "tedious, overlong and so pleased with itself that it forgets to tell a story",
    "the cast is terrific but the script gives them nothing to do in the last hour",
    "an ambitious mess, but a fascinating one",
];
const CLIENTS: usize = 4;
/// Phases of each kind, alternating: many short ones, so a burst of noise on the machine falls
/// on one phase of a pair, not on one side of the comparison.
const PAIRS: usize = 10;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn number(var: &str, default: f64) -> anyhow::Result<f64> {
    match std::env::var(var) {
        Ok(v) => {
            let n: f64 = v.parse().with_context(|| format!("{var}={v} is not a number"))?;
            ensure!(n.is_finite() && (1.0..=10_000.0).contains(&n), "{var} is 1 to 10000");
            Ok(n)
        }
        Err(_) => Ok(default),
    }
}

fn bench() -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let rate = number("SLIPWAY_BENCH_RATE", 200.0)?;
    let seconds = number("SLIPWAY_BENCH_SECONDS", 3.0)?;
    let root = servers::root();
    let model = root.join("models/model.onnx");
    ensure!(model.is_file(), "{} is missing: run `cargo xtask ci` to train it", model.display());
    let env = root.join(".slipway/train-env");
    ensure!(env.is_dir(), "the training environment is missing: run `cargo xtask deps`");
    let live = servers::start_slipway(&model, &env)?;
    let candidate = servers::start_slipway(&model, &env)?;
    let router = Router::start(&sh, &router_binary(&sh)?)?;
    router.admin("PUT", "/backend", &live.base.replace("http://", ""))?;
    let url = format!("{}/predict", router.base);
    eprintln!(
        "bench: {rate} requests/s from {CLIENTS} clients, {} phases of {seconds} s, shadow off and on in turn",
        2 * PAIRS
    );
    run_phase(&url, rate, 2.0)?; // warm-up, not counted
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let shadow = format!("{} 100", candidate.base.replace("http://", ""));
    let rows_before = router.shadow_rows()?;
    for phase in 0..2 * PAIRS {
        let mirrored = phase % 2 == 1;
        match mirrored {
            true => router.admin("PUT", "/shadow", &shadow)?,
            false => router.admin("DELETE", "/shadow", "")?,
        };
        let mut seen = run_phase(&url, rate, seconds)?;
        if mirrored { &mut on } else { &mut off }.append(&mut seen);
    }
    router.admin("DELETE", "/shadow", "")?;
    let mirrored_rows = router.shadow_rows()? - rows_before;
    let (off_errors, on_errors) = (errors(&off), errors(&on));
    ensure!(off_errors + on_errors == 0, "{off_errors} and {on_errors} requests failed: the bench measured errors");
    ensure!(
        mirrored_rows as f64 >= on.len() as f64 * 0.95,
        "the shadow compared only {mirrored_rows} rows of {} requests: it was not mirroring",
        on.len()
    );
    let (a, b) = (summary(&off), summary(&on));
    println!();
    println!("live latency through the router at {rate} requests/s ({} requests each way)", off.len());
    println!("{:<22} {:>9} {:>9} {:>9} {:>9}", "", "mean", "p50", "p90", "p99");
    println!("{:<22} {:>9} {:>9} {:>9} {:>9}", "shadow off", ms(a.mean), ms(a.p50), ms(a.p90), ms(a.p99));
    println!("{:<22} {:>9} {:>9} {:>9} {:>9}", "shadow on (100 %)", ms(b.mean), ms(b.p50), ms(b.p90), ms(b.p99));
    let ratio = |x: f64, y: f64| y / x;
    println!(
        "{:<22} {:>8.3}× {:>8.3}× {:>8.3}× {:>8.3}×",
        "on / off",
        ratio(a.mean, b.mean),
        ratio(a.p50, b.p50),
        ratio(a.p90, b.p90),
        ratio(a.p99, b.p99)
    );
    let worst = ratio(a.mean, b.mean).max(ratio(a.p50, b.p50));
    println!(
        "goal: live latency with shadowing within 10 % of without (mean and p50): {:.1} % — {}",
        (worst - 1.0) * 100.0,
        if worst <= 1.10 { "met" } else { "NOT met" }
    );
    println!("the shadow compared {mirrored_rows} rows; no live request failed");
    drop(router);
    live.stop(&sh)?;
    candidate.stop(&sh)?;
    Ok(())
}

/// One request's latency from when it was due, or `None` when it failed.
type Sample = Option<Duration>;

fn errors(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.is_none()).count()
}

/// Sends `rate` requests a second for `seconds`, open loop, from [`CLIENTS`] threads.
fn run_phase(url: &str, rate: f64, seconds: f64) -> anyhow::Result<Vec<Sample>> {
    let per_client = Duration::from_secs_f64(CLIENTS as f64 / rate);
    let count = (seconds * rate / CLIENTS as f64).ceil() as usize;
    let start = Instant::now() + Duration::from_millis(50);
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = url.to_string();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                // The clients' sends are spread over each interval, not all at its start.
                let offset = per_client.mul_f64(c as f64 / CLIENTS as f64);
                (0..count)
                    .map(|i| {
                        let due = start + offset + per_client * i as u32;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let body = format!(r#"{{"text":"{}"}}"#, TEXTS[(i + c) % TEXTS.len()]);
                        let sent = agent.post(&url).header("content-type", "application/json").send(body.as_str());
                        let mut r = sent.ok().filter(|r| r.status() == 200)?;
                        r.body_mut().read_to_string().ok().map(|_| due.elapsed())
                    })
                    .collect::<Vec<Sample>>()
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))?);
    }
    Ok(all)
}

struct Summary {
    mean: f64,
    p50: f64,
    p90: f64,
    p99: f64,
}

fn summary(samples: &[Sample]) -> Summary {
    let mut ms: Vec<f64> = samples.iter().flatten().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    Summary { mean: ms.iter().sum::<f64>() / ms.len() as f64, p50: at(0.50), p90: at(0.90), p99: at(0.99) }
}

fn ms(v: f64) -> String {
    format!("{v:.3} ms")
}

/// The release router, built if needed (it is another package, so cargo gives this bench no
/// path to it).
fn router_binary(sh: &Shell) -> anyhow::Result<PathBuf> {
    let root = servers::root();
    sh.change_dir(&root);
    cmd!(sh, "cargo build --quiet --release -p slipway-router --bin slipway-router")
        .run()
        .context("build slipway-router (release)")?;
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release/slipway-router"))
}

/// A router process with its admin address and token; killed on drop.
struct Router {
    base: String,
    admin: String,
    token: String,
    child: std::process::Child,
    dir: PathBuf,
}

impl Router {
    #[allow(clippy::disallowed_methods, reason = "the bench keeps the router's child handle to stop it at the end")]
    fn start(_sh: &Shell, binary: &Path) -> anyhow::Result<Router> {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("shadow-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        use std::io::{Read, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let mut random = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let token_file = dir.join("token");
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&token_file)?;
        file.write_all(token.as_bytes())?;
        let addr_file = dir.join("addr");
        let child = std::process::Command::new(binary)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--addr-file"])
            .arg(&addr_file)
            .arg("--token-file")
            .arg(&token_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&addr_file).unwrap_or_default();
            let mut it = text.split_whitespace();
            if let (Some(public), Some(admin)) = (it.next(), it.next()) {
                let (base, admin) = (format!("http://{public}"), format!("http://{admin}"));
                return Ok(Router { base, admin, token, child, dir });
            }
            if Instant::now() > deadline {
                bail!("the router did not start within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn admin(&self, method: &str, path: &str, body: &str) -> anyhow::Result<String> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}{path}", self.admin);
        let auth = format!("Bearer {}", self.token);
        let mut r = match method {
            "PUT" => agent.put(&url).header("authorization", &auth).send(body)?,
            "DELETE" => agent.delete(&url).header("authorization", &auth).call()?,
            _ => agent.get(&url).header("authorization", &auth).call()?,
        };
        let text = r.body_mut().read_to_string()?;
        ensure!(r.status() == 200, "the router's {method} {path} answered {}: {text}", r.status());
        Ok(text)
    }

    /// Rows the router has compared for every shadow so far.
    fn shadow_rows(&self) -> anyhow::Result<u64> {
        let metrics = self.admin("GET", "/metrics", "")?;
        Ok(metrics
            .lines()
            .filter(|l| l.starts_with("slipway_router_shadow_rows_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum())
    }
}

impl Drop for Router {
    /// Also on an error or a panic half-way through the bench.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

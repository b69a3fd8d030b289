//! The two servers under test, each started on 127.0.0.1 and stopped at the end: slipway-serve
//! (the release binary cargo builds for this bench) and the FastAPI baseline, from a scratch
//! virtualenv holding the same onnxruntime wheel, whose library slipway-serve loads too.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

pub fn root() -> PathBuf {
    let root = manifest_dir().join("../..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

fn benches() -> PathBuf {
    manifest_dir().join("benches")
}

/// `target/tmp/bench-venv` with `benches/requirements.lock` installed, reused while the lock
/// is unchanged (a copy of the lock inside the venv records what it holds).
pub fn bench_venv(sh: &Shell) -> anyhow::Result<PathBuf> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-venv");
    let lock = benches().join("requirements.lock");
    let installed = venv.join("slipway-bench.lock");
    let wanted = std::fs::read_to_string(&lock).context("read benches/requirements.lock")?;
    if std::fs::read_to_string(&installed).is_ok_and(|have| have == wanted) {
        return Ok(venv);
    }
    let python = root().join(".slipway/train-env/bin/python");
    let uv = root().join(".slipway/tools/bin/uv");
    if !python.is_file() || !uv.is_file() {
        bail!("the training environment or uv is missing: run `cargo xtask deps` first");
    }
    eprintln!("bench: installing FastAPI, uvicorn and onnxruntime into {}", venv.display());
    cmd!(sh, "{uv} venv --quiet --python {python} {venv}").run().context("create the bench virtualenv")?;
    let venv_python = venv.join("bin/python");
    cmd!(sh, "{uv} pip install --quiet --python {venv_python} -r {lock}")
        .run()
        .context("install the FastAPI baseline")?;
    std::fs::write(&installed, wanted)?;
    Ok(venv)
}

/// A server process; killed on drop if it is still running.
pub struct Running {
    pub name: &'static str,
    pub base: String,
    child: Child,
    log: PathBuf,
}

/// slipway-serve on `model`, loading ONNX Runtime from the bench venv's wheel, with its defaults
/// (one session per CPU).
pub fn start_slipway(model: &Path, venv: &Path) -> anyhow::Result<Running> {
    let port = free_port()?;
    let listen = format!("127.0.0.1:{port}");
    let args = ["--model", path_str(model)?, "--listen", &listen];
    let envs = [("SLIPWAY_PYTHON_ENV", path_str(venv)?)];
    start("slipway-serve", env!("CARGO_BIN_EXE_slipway-serve").as_ref(), &args, &envs, port)
}

/// The FastAPI app on `model`: one uvicorn worker (uvloop and httptools), no access log.
pub fn start_fastapi(model: &Path, venv: &Path) -> anyhow::Result<Running> {
    let port = free_port()?.to_string();
    let app_dir = benches();
    let args = [
        "-m",
        "uvicorn",
        "fastapi_app:app",
        "--app-dir",
        path_str(&app_dir)?,
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ];
    let envs = [("SLIPWAY_MODEL", path_str(model)?)];
    start("fastapi", &venv.join("bin/python"), &args, &envs, port.parse()?)
}

#[allow(clippy::disallowed_methods, reason = "the bench keeps each server's child handle to stop it at the end")]
fn start(
    name: &'static str,
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    port: u16,
) -> anyhow::Result<Running> {
    let log = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{}.log", name.replace('/', "-")));
    let log_file = File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let child = std::process::Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("ORT_DYLIB_PATH")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("start {name} ({})", program.display()))?;
    let running = Running { name, base: format!("http://127.0.0.1:{port}"), child, log };
    running.wait_ready()?;
    Ok(running)
}

impl Running {
    /// Polls `/readyz` until 200, for at most 60 s.
    fn wait_ready(&self) -> anyhow::Result<()> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let (url, deadline) = (format!("{}/readyz", self.base), Instant::now() + Duration::from_secs(60));
        while agent.get(&url).call().map_or(true, |r| r.status() != 200) {
            if Instant::now() > deadline {
                bail!("{} was not ready within 60 s; its log:\n{}", self.name, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGTERM, then waits up to 15 s for the exit status.
    pub fn stop(mut self, sh: &Shell) -> anyhow::Result<Option<i32>> {
        let pid = self.child.id().to_string();
        cmd!(sh, "kill -TERM {pid}").quiet().run().with_context(|| format!("stop {}", self.name))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!("{} did not stop within 15 s of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The CPU time the server process has used so far, every thread included (`/proc`).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // The command name is in parentheses and may hold spaces: fields count from after it.
        let fields: Vec<&str> = stat.rsplit_once(')').context("no ) in /proc/PID/stat")?.1.split_whitespace().collect();
        let ticks = |i: usize| -> anyhow::Result<f64> { Ok(fields.get(i).context("short /proc/PID/stat")?.parse()?) };
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        Ok((ticks(11)? + ticks(12)?) / clock_ticks_per_second())
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port free at the moment of asking (the server binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}

/// This crate's directory, from cargo when the test or bench runs: a binary in a target
/// directory that clones share may have been compiled in another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}

/// The kernel's clock ticks per second, in which `/proc` counts CPU time.
pub fn clock_ticks_per_second() -> f64 {
    let read = Shell::new().ok().and_then(|sh| cmd!(sh, "getconf CLK_TCK").quiet().read().ok());
    read.and_then(|out| out.trim().parse().ok()).unwrap_or(100.0)
}

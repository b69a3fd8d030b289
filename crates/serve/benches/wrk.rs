//! Load generation with `wrk`: the Lua script that POSTs the bodies in turn, the run, and the
//! reading of its throughput, latency percentiles and error counts.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// How hard to push.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub connections: u32,
    pub threads: u32,
    pub duration: Duration,
}

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub requests: u64,
    /// Non-2xx answers plus socket errors.
    pub errors: u64,
    /// The CPU time wrk itself used, in seconds.
    pub client_cpu: f64,
}

/// Fails with the fix if `wrk` is not installed.
pub fn require(sh: &Shell) -> anyhow::Result<()> {
    // `wrk -v` prints its version and exits 1, so only a failure to start it means anything.
    cmd!(sh, "wrk -v")
        .quiet()
        .ignore_status()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .context("wrk is not installed: run `apt-get update && apt-get install -y wrk`")
}

/// A script that POSTs `bodies` as JSON, one after another, on every connection.
pub fn write_script(path: &Path, bodies: &[String]) -> anyhow::Result<()> {
    let mut lua = String::from("local bodies = {\n");
    for body in bodies {
        // Long brackets take the JSON as it is; no body contains `]==]`.
        anyhow::ensure!(!body.contains("]==]"), "a bench body cannot contain ]==]");
        lua.push_str(&format!("  [==[{body}]==],\n"));
    }
    lua.push_str(
        "}\nlocal headers = { [\"Content-Type\"] = \"application/json\" }\nlocal i = 0\n\
         request = function()\n  i = i % #bodies + 1\n  return wrk.format(\"POST\", nil, headers, bodies[i])\nend\n",
    );
    std::fs::write(path, lua).with_context(|| format!("write {}", path.display()))
}

/// Runs wrk against `url` with `script`, pinned to the last CPU, and reads its report and the
/// CPU time it used (GNU time's user and system seconds, on the last line of stderr).
pub fn run(sh: &Shell, url: &str, script: &Path, load: Load) -> anyhow::Result<Outcome> {
    let (c, t, d) = (load.connections.to_string(), load.threads.to_string(), format!("{}s", load.duration.as_secs()));
    let cpu = (crate::floor::cpus() - 1).to_string();
    let out = cmd!(
        sh,
        "/usr/bin/time -f %U\\t%S taskset -c {cpu} wrk --latency -c {c} -t {t} -d {d} --timeout 10s -s {script} {url}"
    )
    .quiet()
    .output()
    .with_context(|| format!("load-test {url} with wrk"))?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "wrk failed: {stderr}");
    let client_cpu = stderr
        .lines()
        .last()
        .and_then(|l| l.split_once('\t'))
        .and_then(|(u, s)| Some(u.trim().parse::<f64>().ok()? + s.trim().parse::<f64>().ok()?))
        .with_context(|| format!("no CPU times from GNU time in: {stderr}"))?;
    let outcome = parse(&stdout).with_context(|| format!("read wrk's report:\n{stdout}"))?;
    Ok(Outcome { client_cpu, ..outcome })
}

fn parse(out: &str) -> anyhow::Result<Outcome> {
    let field = |prefix: &str| out.lines().map(str::trim).find_map(|l| l.strip_prefix(prefix)).map(str::trim);
    let requests_per_sec = field("Requests/sec:").context("no Requests/sec line")?.parse()?;
    let p50 = duration(field("50%").context("no 50% line (was --latency passed?)")?)?;
    let p99 = duration(field("99%").context("no 99% line")?)?;
    let requests =
        out.lines().find_map(|l| l.trim().split_once(" requests in ")).context("no request count")?.0.parse()?;
    let non_2xx: u64 = field("Non-2xx or 3xx responses:").map_or(Ok(0), str::parse)?;
    let socket: u64 = field("Socket errors:")
        .map_or(0, |s| s.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum());
    Ok(Outcome { requests_per_sec, p50, p99, requests, errors: non_2xx + socket, client_cpu: 0.0 })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`, `1.00m`.
fn duration(text: &str) -> anyhow::Result<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).with_context(|| format!("no unit in {text:?}"))?;
    let (value, unit) = text.split_at(split);
    let value: f64 = value.parse().with_context(|| format!("bad duration {text:?}"))?;
    let secs = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("unknown unit in {text:?}"),
    };
    Ok(Duration::from_secs_f64(secs))
}

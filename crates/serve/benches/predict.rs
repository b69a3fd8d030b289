//! `/predict` throughput and p50/p99 latency at a fixed concurrency: slipway-serve against a
//! FastAPI + uvicorn + onnxruntime server on the same model, measured by `wrk` in one run and
//! printed side by side with their ratios.
//!
//! The floor is measured in the same run: a bare loop of `Model::predict` over the texts the
//! requests carry, one session per thread, no HTTP. `wrk` runs pinned to the last CPU with one
//! thread; the servers may use every CPU, so the cores they get are the machine's minus the CPU
//! time wrk itself used (from GNU time). Each server's throughput is printed against the floor's
//! rate on those cores, with its own CPU time per request (from `/proc`).
//!
//! `cargo bench -p slipway-serve --bench predict`. Needs `models/model.onnx` (`cargo xtask ci`),
//! the training environment and uv (`cargo xtask deps`) and `wrk` (`apt-get install wrk`).
//! `SLIPWAY_BENCH_SECONDS` (default 20) and `SLIPWAY_BENCH_CONNECTIONS` (default 32) tune a run.

mod floor;
mod servers;
mod wrk;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use xshell::Shell;

use servers::Running;
use wrk::{Load, Outcome};

/// Review-like sentences, written for this bench (no data set text is copied here).
const TEXTS: [&str; 8] = [
    "a warm, funny and beautifully acted film that earns every one of its tears",
    "tedious, overlong and so pleased with itself that it forgets to tell a story",
    "the cast is terrific but the script gives them nothing to do in the last hour",
    "a sharp, clever thriller with a twist you will not see coming",
    "dull characters wander through a plot that makes no sense at all",
    "one of the most moving documentaries of the year",
    "the jokes fall flat and the action scenes are a blur of noise",
    "an ambitious mess, but a fascinating one",
];
const BATCH: usize = 32;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn bench() -> anyhow::Result<()> {
    let sh = Shell::new()?;
    let load = load_from_env()?;
    let model = servers::root().join("models/model.onnx");
    ensure!(model.is_file(), "{} is missing: run `cargo xtask ci` to train it", model.display());
    wrk::require(&sh)?;
    let venv = servers::bench_venv(&sh)?;
    let scenarios = scenarios();
    let floors = scenarios
        .iter()
        .map(|s| {
            eprintln!("bench: the floor for {}: a bare Model::predict loop", s.name);
            floor::measure(&model, &venv, &s.requests, load.duration.min(Duration::from_secs(10)))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let slipway = servers::start_slipway(&model, &venv)?;
    let fastapi = servers::start_fastapi(&model, &venv)?;
    same_answers(&slipway, &fastapi)?;
    let mut results = Vec::new();
    for Scenario { name, bodies, .. } in &scenarios {
        let script =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{}.lua", name.replace(' ', "-")));
        wrk::write_script(&script, bodies)?;
        for server in [&slipway, &fastapi] {
            let url = format!("{}/predict", server.base);
            eprintln!(
                "bench: {name} on {} ({} s, {} connections)",
                server.name,
                load.duration.as_secs(),
                load.connections
            );
            let warm = Load { duration: Duration::from_secs(2), ..load };
            wrk::run(&sh, &url, &script, warm)?;
            let cpu_before = server.cpu_seconds()?;
            let outcome = wrk::run(&sh, &url, &script, load)?;
            let server_cpu = server.cpu_seconds()? - cpu_before;
            ensure!(outcome.errors == 0, "{} answered {} requests with errors", server.name, outcome.errors);
            results.push(Measured { scenario: name, server: server.name, outcome, server_cpu });
        }
    }
    // uvicorn re-raises SIGTERM after its own graceful stop, so only slipway-serve's code is checked.
    fastapi.stop(&sh)?;
    let (name, code) = (slipway.name, slipway.stop(&sh)?);
    ensure!(code == Some(0), "{name} exited with {code:?} on SIGTERM");
    print_report(&model, load, &scenarios, &floors, &results);
    Ok(())
}

/// One server under one scenario.
struct Measured<'a> {
    scenario: &'a str,
    server: &'a str,
    outcome: Outcome,
    /// CPU seconds the server's process used during the measured run.
    server_cpu: f64,
}

fn load_from_env() -> anyhow::Result<Load> {
    let var = |name: &str, default: u64| -> anyhow::Result<u64> {
        std::env::var(name).map_or(Ok(default), |v| v.parse().with_context(|| format!("{name}={v} is not a number")))
    };
    Ok(Load {
        connections: var("SLIPWAY_BENCH_CONNECTIONS", 32)? as u32,
        threads: 1,
        duration: Duration::from_secs(var("SLIPWAY_BENCH_SECONDS", 20)?),
    })
}

/// One text per request, and batches of [`BATCH`] texts.
fn scenarios() -> Vec<Scenario> {
    let single: Vec<Vec<&str>> = TEXTS.iter().map(|t| vec![*t]).collect();
    let single_bodies = TEXTS.iter().map(|t| json!({ "text": t }).to_string()).collect();
    let batches: Vec<Vec<&str>> =
        (0..TEXTS.len()).map(|offset| (0..BATCH).map(|i| TEXTS[(offset + i) % TEXTS.len()]).collect()).collect();
    let batch_bodies = batches.iter().map(|texts| json!({ "texts": texts }).to_string()).collect();
    vec![
        Scenario { name: "single text", requests: single, bodies: single_bodies },
        Scenario { name: "batch of 32", requests: batches, bodies: batch_bodies },
    ]
}

/// One load: its name, the texts of each of its requests, and their bodies.
struct Scenario {
    name: &'static str,
    requests: Vec<Vec<&'static str>>,
    bodies: Vec<String>,
}

/// Both servers give the same labels and probabilities, so they are doing the same work.
fn same_answers(a: &Running, b: &Running) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let ask = |server: &Running| -> anyhow::Result<Value> {
        let body = json!({ "texts": TEXTS }).to_string();
        let url = format!("{}/predict", server.base);
        let mut answer = agent.post(&url).header("content-type", "application/json").send(body.as_bytes())?;
        Ok(serde_json::from_str(&answer.body_mut().read_to_string()?)?)
    };
    let (left, right) = (ask(a)?, ask(b)?);
    for (i, (l, r)) in left["predictions"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(right["predictions"].as_array().into_iter().flatten())
        .enumerate()
    {
        ensure!(l["label"] == r["label"], "text {i}: {} says {}, {} says {}", a.name, l["label"], b.name, r["label"]);
        for (class, p) in l["probabilities"].as_object().context("no probabilities")? {
            let q = r["probabilities"][class].as_f64().context("class missing")?;
            ensure!((p.as_f64().unwrap_or(f64::NAN) - q).abs() < 1e-5, "text {i}: P({class}) differs: {p} vs {q}");
        }
    }
    Ok(())
}

fn print_report(
    model: &std::path::Path,
    load: Load,
    scenarios: &[Scenario],
    floors: &[floor::Floor],
    results: &[Measured],
) {
    let size = std::fs::metadata(model).map_or(0, |m| m.len()) / 1024;
    let cpus = floor::cpus();
    println!();
    println!("POST /predict on {} ({size} KiB), same libonnxruntime in both servers", model.display());
    println!(
        "wrk: {} connections, {} thread pinned to CPU {}, {} s per run after a 2 s warm-up; {cpus} CPUs\n",
        load.connections,
        load.threads,
        cpus - 1,
        load.duration.as_secs()
    );
    println!("floor: a bare Model::predict loop, no HTTP, requests per second");
    for (s, f) in scenarios.iter().zip(floors) {
        println!("{:<13} one core {:>9.1}/s   {} cores {:>9.1}/s", s.name, f.per_core, f.threads, f.all_cores);
    }
    println!();
    println!(
        "{:<13} {:<14} {:>10} {:>10} {:>10} {:>9} {:>11} {:>9}",
        "scenario", "server", "req/s", "p50", "p99", "cores", "of floor", "CPU/req"
    );
    for r in results {
        let i = scenarios.iter().position(|s| s.name == r.scenario).expect("a scenario");
        let o = &r.outcome;
        // The cores the server got: the machine's, less what the load generator used.
        let cores = cpus as f64 - o.client_cpu / load.duration.as_secs_f64();
        let of_floor = o.requests_per_sec / (floors[i].per_core * cores);
        println!(
            "{:<13} {:<14} {:>10.1} {:>10} {:>10} {:>9.2} {:>10.1}% {:>6.0} µs",
            r.scenario,
            r.server,
            o.requests_per_sec,
            ms(o.p50),
            ms(o.p99),
            cores,
            of_floor * 100.0,
            r.server_cpu / o.requests as f64 * 1e6,
        );
    }
    println!("\nslipway-serve against fastapi (throughput: higher is better; latency: lower is better)");
    for r in results.iter().filter(|r| r.server != "fastapi") {
        let Some(f) = results.iter().find(|f| f.scenario == r.scenario && f.server == "fastapi") else { continue };
        let (s, f) = (&r.outcome, &f.outcome);
        println!(
            "{:<13} throughput {:>6.2}x   p50 {:>6.3}x   p99 {:>6.3}x",
            r.scenario,
            s.requests_per_sec / f.requests_per_sec,
            s.p50.as_secs_f64() / f.p50.as_secs_f64(),
            s.p99.as_secs_f64() / f.p99.as_secs_f64()
        );
    }
    println!("\ncores: the CPUs less wrk's own CPU time; of floor: req/s ÷ (one-core floor × cores);");
    println!("CPU/req: the server process's CPU time per request (the floor's is 1 ÷ its one-core rate).");
    println!("slipway-serve: one ONNX Runtime session per CPU; fastapi: one uvicorn worker, one session,");
    println!("intra_op_num_threads=1. Goals (single text): ≥ 85% of floor, ≥ 4x fastapi, p99 < 5 ms.");
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

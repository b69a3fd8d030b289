//! `/predict` throughput and p50/p99 latency at a fixed concurrency: slipway-serve against a
//! FastAPI + uvicorn + onnxruntime server on the same model, measured by `wrk` in one run and
//! printed side by side with their ratios.
//!
//! `cargo bench -p slipway-serve --bench predict`. Needs `models/model.onnx` (`cargo xtask ci`),
//! the training environment and uv (`cargo xtask deps`) and `wrk` (`apt-get install wrk`).
//! `SLIPWAY_BENCH_SECONDS` (default 20) and `SLIPWAY_BENCH_CONNECTIONS` (default 16) tune a run.

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
    let slipway = servers::start_slipway(&model, &venv, false)?;
    let slipway_one = servers::start_slipway(&model, &venv, true)?;
    let fastapi = servers::start_fastapi(&model, &venv)?;
    same_answers(&slipway, &fastapi)?;
    let scenarios = scenarios();
    let mut results = Vec::new();
    for (name, bodies) in &scenarios {
        let script =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{}.lua", name.replace(' ', "-")));
        wrk::write_script(&script, bodies)?;
        for server in [&slipway, &slipway_one, &fastapi] {
            let url = format!("{}/predict", server.base);
            eprintln!(
                "bench: {name} on {} ({} s, {} connections)",
                server.name,
                load.duration.as_secs(),
                load.connections
            );
            let warm = Load { duration: Duration::from_secs(2), ..load };
            wrk::run(&sh, &url, &script, warm)?;
            let outcome = wrk::run(&sh, &url, &script, load)?;
            ensure!(outcome.errors == 0, "{} answered {} requests with errors", server.name, outcome.errors);
            results.push((*name, server.name, outcome));
        }
    }
    // uvicorn re-raises SIGTERM after its own graceful stop, so only slipway-serve's code is checked.
    fastapi.stop(&sh)?;
    for server in [slipway, slipway_one] {
        let (name, code) = (server.name, server.stop(&sh)?);
        ensure!(code == Some(0), "{name} exited with {code:?} on SIGTERM");
    }
    print_report(&model, load, &results);
    Ok(())
}

fn load_from_env() -> anyhow::Result<Load> {
    let var = |name: &str, default: u64| -> anyhow::Result<u64> {
        std::env::var(name).map_or(Ok(default), |v| v.parse().with_context(|| format!("{name}={v} is not a number")))
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4) as u32;
    Ok(Load {
        connections: var("SLIPWAY_BENCH_CONNECTIONS", 16)? as u32,
        threads,
        duration: Duration::from_secs(var("SLIPWAY_BENCH_SECONDS", 20)?),
    })
}

/// One text per request, and batches of [`BATCH`] texts.
fn scenarios() -> Vec<(&'static str, Vec<String>)> {
    let single = TEXTS.iter().map(|t| json!({ "text": t }).to_string()).collect();
    let batches = (0..TEXTS.len())
        .map(|offset| {
            let texts: Vec<&str> = (0..BATCH).map(|i| TEXTS[(offset + i) % TEXTS.len()]).collect();
            json!({ "texts": texts }).to_string()
        })
        .collect();
    vec![("single text", single), ("batch of 32", batches)]
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

fn print_report(model: &std::path::Path, load: Load, results: &[(&str, &str, Outcome)]) {
    let size = std::fs::metadata(model).map_or(0, |m| m.len()) / 1024;
    println!();
    println!("POST /predict on {} ({size} KiB), same libonnxruntime 1.32.0 in both servers", model.display());
    println!(
        "wrk: {} connections, {} threads, {} s per run after a 2 s warm-up, both servers on 127.0.0.1\n",
        load.connections,
        load.threads,
        load.duration.as_secs()
    );
    println!("{:<13} {:<16} {:>11} {:>10} {:>10} {:>10}", "scenario", "server", "req/s", "p50", "p99", "requests");
    for (scenario, server, o) in results {
        println!(
            "{scenario:<13} {server:<16} {:>11.1} {:>10} {:>10} {:>10}",
            o.requests_per_sec,
            ms(o.p50),
            ms(o.p99),
            o.requests
        );
    }
    println!("\nrelative to fastapi (throughput: higher is better; latency: lower is better)");
    for (scenario, server, s) in results {
        let Some((_, _, f)) = results.iter().find(|(sc, name, _)| sc == scenario && *name == "fastapi") else {
            continue;
        };
        if *server == "fastapi" {
            continue;
        }
        println!(
            "{scenario:<13} {server:<16} throughput {:>6.2}x   p50 {:>6.3}x   p99 {:>6.3}x",
            s.requests_per_sec / f.requests_per_sec,
            s.p50.as_secs_f64() / f.p50.as_secs_f64(),
            s.p99.as_secs_f64() / f.p99.as_secs_f64()
        );
    }
    println!("\nslipway-serve: one ONNX Runtime session per CPU; slipway-serve/1: --sessions 1;");
    println!("fastapi: one uvicorn worker, one session with intra_op_num_threads=1");
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

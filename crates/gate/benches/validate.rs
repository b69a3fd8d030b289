//! Benchmark: Slipway's validation against the reference-style Python script (pandas +
//! onnxruntime) on the same model and a 10,000-row holdout, side by side in one run: wall time
//! and peak memory (GNU time's maximum RSS), best of three, printed as ratios.
//!
//! Needs the trained model and the data (`cargo xtask train` or `cargo xtask ci` first).
//! `cargo bench -p slipway-gate --bench validate`

use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};

const ROWS: usize = 10_000;
const ROUNDS: usize = 3;

fn main() {
    if let Ok(args) = std::env::var("SLIPWAY_BENCH_CHILD") {
        return child(&args);
    }
    let root = manifest_dir().join("../..");
    let sh = Shell::new().unwrap();
    let model = root.join("models/model.onnx");
    assert!(model.is_file(), "no trained model at {}: run `cargo xtask train` first", model.display());
    let dir = root.join("target/bench-data/validate");
    std::fs::create_dir_all(&dir).unwrap();
    let holdout = holdout(&root, &dir);
    let python = bench_venv(&sh, &root);
    let script = root.join("crates/gate/benches/validate_reference.py");
    let me = std::env::current_exe().unwrap();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let args = format!("{}\t{}", model.display(), holdout.display());
        ours.push(timed(&sh, cmd!(sh, "/usr/bin/time -f %e\\t%M {me}").env("SLIPWAY_BENCH_CHILD", &args)));
        let out = dir.join("python_report.json");
        theirs.push(timed(&sh, cmd!(sh, "/usr/bin/time -f %e\\t%M {python} {script} {model} {holdout} {out}")));
    }
    let best =
        |v: &[(f64, u64)]| (v.iter().map(|x| x.0).fold(f64::MAX, f64::min), v.iter().map(|x| x.1).min().unwrap());
    let ((ws, ms), (wp, mp)) = (best(&ours), best(&theirs));
    println!(
        "validation of {} rows, {} (best of {ROUNDS}, nproc {})",
        ROWS,
        model.display(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    println!("{:<40} {:>10} {:>14}", "", "wall s", "peak RSS MiB");
    println!("{:<40} {:>10.3} {:>14.1}", "slipway (Rust, ONNX Runtime)", ws, ms as f64 / 1024.0);
    println!("{:<40} {:>10.3} {:>14.1}", "python (pandas + onnxruntime)", wp, mp as f64 / 1024.0);
    println!("python / slipway: wall {:.1}x, peak memory {:.1}x", wp / ws, mp as f64 / ms as f64);
}

/// Runs `gate::validate` once, as the measured child process.
fn child(args: &str) {
    let (model, data) = args.split_once('\t').unwrap();
    let root = manifest_dir().join("../..");
    let search =
        model::RuntimeSearch::new(std::env::var("ORT_DYLIB_PATH").ok().as_deref(), &[root.join(".slipway/train-env")]);
    let mut opts = gate::ValidateOptions::new(model.into(), data.into(), search);
    opts.thresholds.min_accuracy = 0.0;
    opts.thresholds.min_recall = 0.0;
    let (report, _) = gate::validate(&opts);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let out = serde_json::to_vec_pretty(&report).unwrap();
    std::fs::write(Path::new(data).with_file_name("slipway_report.json"), out).unwrap();
}

/// `(wall seconds, max RSS KiB)` from GNU time's last stderr line.
fn timed(_sh: &Shell, command: xshell::Cmd<'_>) -> (f64, u64) {
    let out = command.quiet().ignore_stdout().output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let (wall, rss) = stderr.lines().last().unwrap().split_once('\t').unwrap();
    (wall.trim().parse().unwrap(), rss.trim().parse().unwrap())
}

/// The first 10,000 rows of the training data, as a holdout-shaped CSV.
fn holdout(root: &Path, dir: &Path) -> PathBuf {
    let path = dir.join("holdout-10k.csv");
    let train =
        std::fs::read_to_string(root.join("data/train.csv")).expect("no data/train.csv: run `cargo xtask pull`");
    let mut reader = csv::Reader::from_reader(train.as_bytes());
    let mut writer = csv::Writer::from_path(&path).unwrap();
    writer.write_record(["text", "label"]).unwrap();
    for record in reader.records().take(ROWS) {
        writer.write_record(&record.unwrap()).unwrap();
    }
    writer.flush().unwrap();
    path
}

/// A virtualenv with pandas and the same onnxruntime, under target/.
fn bench_venv(sh: &Shell, root: &Path) -> PathBuf {
    let venv = root.join("target/bench-venv-validate");
    let python = venv.join("bin/python");
    if cmd!(sh, "{python} -c 'import pandas, onnxruntime'").quiet().ignore_stderr().run().is_err() {
        cmd!(sh, "python3 -m venv {venv}").run().unwrap();
        cmd!(sh, "{python} -m pip install -q pandas onnxruntime==1.32.0 numpy==2.4.6").run().unwrap();
    }
    python
}

/// This crate's directory, from cargo when the test or bench runs: a binary in a target
/// directory that clones share may have been compiled in another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}

//! Benchmark: Slipway's validation against the reference-style Python script (pandas +
//! onnxruntime) on the same model and a 10,000-row holdout, side by side in one run: wall time
//! and peak memory (GNU time's maximum RSS), best of three, printed as ratios.
//!
//! It also measures the floor, ONNX Runtime's own time: a bare loop of `Model::predict` over the
//! same rows in the same chunks on one session and one thread, in a process of its own. The
//! floor for the cores used is `rows × per-row time ÷ cores`; validation's wall time (process
//! start, loading, reading the CSV, predicting, 200 timed single rows, metrics, the report) is
//! printed against it.
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
    if let Ok(args) = std::env::var("SLIPWAY_BENCH_FLOOR") {
        return floor(&args);
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
    let (mut ours, mut theirs, mut per_row, mut parallel) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let args = format!("{}\t{}", model.display(), holdout.display());
    for _ in 0..ROUNDS {
        let out = cmd!(sh, "{me}").env("SLIPWAY_BENCH_FLOOR", &args).quiet().read().unwrap();
        let (row, all) = out.trim().split_once('\t').unwrap();
        per_row.push(row.parse::<f64>().unwrap());
        parallel.push(all.parse::<f64>().unwrap());
        ours.push(timed(&sh, cmd!(sh, "/usr/bin/time -f %e\\t%M {me}").env("SLIPWAY_BENCH_CHILD", &args)));
        let out = dir.join("python_report.json");
        theirs.push(timed(&sh, cmd!(sh, "/usr/bin/time -f %e\\t%M {python} {script} {model} {holdout} {out}")));
    }
    let best =
        |v: &[(f64, u64)]| (v.iter().map(|x| x.0).fold(f64::MAX, f64::min), v.iter().map(|x| x.1).min().unwrap());
    let ((ws, ms), (wp, mp)) = (best(&ours), best(&theirs));
    let per_row = per_row.iter().copied().fold(f64::MAX, f64::min);
    let parallel = parallel.iter().copied().fold(f64::MAX, f64::min);
    let cores = gate::ValidateOptions::new(model.clone(), holdout.clone(), search(&root)).sessions;
    let floor = ROWS as f64 * per_row / cores as f64;
    println!("validation of {ROWS} rows, {} (best of {ROUNDS}, {cores} cores used)", model.display());
    println!("{:<44} {:>10} {:>14}", "", "wall s", "peak RSS MiB");
    println!(
        "{:<44} {:>10.3} {:>14}",
        format!("floor: {:.1} µs/row bare predict ÷ {cores} cores", per_row * 1e6),
        floor,
        ""
    );
    println!("{:<44} {:>10.3} {:>14}", format!("bare predict on {cores} sessions at once"), parallel, "");
    println!("{:<44} {:>10.3} {:>14.1}", "slipway (Rust, ONNX Runtime)", ws, ms as f64 / 1024.0);
    println!("{:<44} {:>10.3} {:>14.1}", "python (pandas + onnxruntime)", wp, mp as f64 / 1024.0);
    println!("slipway / floor: wall {:.2}x", ws / floor);
    println!("python / slipway: wall {:.2}x, peak memory {:.2}x", wp / ws, mp as f64 / ms as f64);
}

/// Where the bench finds ONNX Runtime: `ORT_DYLIB_PATH`, else the training environment's wheel.
fn search(root: &Path) -> model::RuntimeSearch {
    model::RuntimeSearch::new(std::env::var("ORT_DYLIB_PATH").ok().as_deref(), &[root.join(".slipway/train-env")])
}

/// The floor: seconds per row of a bare loop of `Model::predict` over the holdout, one session
/// on one thread, in the chunks validation uses, after one warm-up pass; then the seconds of the
/// same loop on one session per core over disjoint halves (how well the cores scale). Printed
/// to stdout, tab-separated.
fn floor(args: &str) {
    let (model_path, data_path) = args.split_once('\t').unwrap();
    let root = manifest_dir().join("../..");
    let runtime = model::load_runtime(&search(&root)).unwrap();
    let opts = gate::ValidateOptions::new(model_path.into(), data_path.into(), search(&root));
    let model = model::Model::load(runtime, Path::new(model_path), opts.sessions).unwrap();
    let data = gate::Dataset::read(Path::new(data_path), &model.signature().kind, &gate::Columns::default()).unwrap();
    let chunk = opts.chunk;
    let predict = |rows: std::ops::Range<usize>| {
        for first in rows.clone().step_by(chunk) {
            model.predict(data.batch(first..(first + chunk).min(rows.end))).unwrap();
        }
    };
    let timed = |f: &dyn Fn()| {
        let start = std::time::Instant::now();
        f();
        start.elapsed().as_secs_f64()
    };
    let n = data.len();
    predict(0..n);
    let per_row = timed(&|| predict(0..n)) / n as f64;
    let share = n.div_ceil(opts.sessions);
    let parallel = timed(&|| {
        std::thread::scope(|s| {
            for first in (0..n).step_by(share) {
                let predict = &predict;
                s.spawn(move || predict(first..(first + share).min(n)));
            }
        })
    });
    println!("{per_row}\t{parallel}");
}

/// Runs `gate::validate` once, as the measured child process.
fn child(args: &str) {
    let (model, data) = args.split_once('\t').unwrap();
    let root = manifest_dir().join("../..");
    let mut opts = gate::ValidateOptions::new(model.into(), data.into(), search(&root));
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

//! The floor a server is measured against: ONNX Runtime's own time for the same requests, a
//! bare loop of `Model::predict` with no HTTP, JSON or scheduling around it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Requests per second of the bare loop.
pub struct Floor {
    /// One session on one thread.
    pub per_core: f64,
    /// One session per CPU, a thread each.
    pub all_cores: f64,
    /// The threads of `all_cores`.
    pub threads: usize,
}

/// The CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs the bare loop over `requests` in turn for `time`, after a second of warm-up, on one
/// thread and then on one thread per CPU, with the ONNX Runtime of `venv`.
pub fn measure(model: &Path, venv: &Path, requests: &[Vec<&str>], time: Duration) -> anyhow::Result<Floor> {
    let search = model::RuntimeSearch::new(None, &[venv.to_path_buf()]);
    let runtime = model::load_runtime(&search).context("load ONNX Runtime for the floor")?;
    let threads = cpus();
    let loaded = model::Model::load(runtime, model, threads).context("load the model for the floor")?;
    let requests: Vec<Vec<String>> =
        requests.iter().map(|texts| texts.iter().map(|t| t.to_string()).collect()).collect();
    let rate = |threads: usize, time: Duration| -> anyhow::Result<f64> {
        let (stop, done) = (AtomicBool::new(false), AtomicU64::new(0));
        let start = Instant::now();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (stop, done, loaded, requests) = (&stop, &done, &loaded, &requests);
                    scope.spawn(move || -> anyhow::Result<()> {
                        let mut i = t;
                        while !stop.load(Ordering::Relaxed) {
                            loaded.predict(model::Batch::Texts(&requests[i % requests.len()]))?;
                            done.fetch_add(1, Ordering::Relaxed);
                            i += 1;
                        }
                        Ok(())
                    })
                })
                .collect();
            std::thread::sleep(time);
            stop.store(true, Ordering::Relaxed);
            workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a floor thread panicked"))?)
        })?;
        Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
    };
    rate(threads, Duration::from_secs(1))?;
    Ok(Floor { per_core: rate(1, time)?, all_cores: rate(threads, time)?, threads })
}

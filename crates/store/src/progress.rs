//! Progress of a transfer: a bar with files, bytes and bytes/s on a terminal, and one summary
//! line otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// Counts files and bytes of one transfer.
pub struct Progress {
    bar: Option<ProgressBar>,
    bytes: AtomicU64,
    start: Instant,
}

impl Progress {
    /// A progress display for `files` files; a bar only when `tty`.
    pub fn new(verb: &str, files: u64, tty: bool) -> Progress {
        let bar = tty.then(|| {
            let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} files {msg}")
                .expect("the template is valid")
                .progress_chars("=> ");
            let bar = ProgressBar::new(files).with_style(style).with_prefix(verb.to_string());
            bar.enable_steady_tick(Duration::from_millis(150));
            bar
        });
        Progress { bar, bytes: AtomicU64::new(0), start: Instant::now() }
    }

    /// `n` more bytes moved.
    pub fn bytes(&self, n: u64) {
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(bar) = &self.bar {
            let rate = total as f64 / self.start.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!("{} {}/s", HumanBytes(total), HumanBytes(rate as u64)));
        }
    }

    /// One more file done.
    pub fn file_done(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Bytes moved so far.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

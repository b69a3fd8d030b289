//! How a run shows itself: progress bars on a terminal, one plain line per event otherwise,
//! and GitHub Actions' log groups, annotations, masks and step summary in CI.
//!
//! Only the presentation differs between the three; the run is the same.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::runner::{Outcome, RunSummary, StageReport};

/// Receives the events of a run. Implementations must be cheap: `hashing` is called per buffer.
pub trait Reporter: Send + Sync {
    /// A stage started planning (hashing its inputs) or running.
    fn stage_started(&self, stage: &str, about: &str);
    /// `bytes` more bytes of a stage's inputs were hashed.
    fn hashing(&self, stage: &str, bytes: u64);
    /// Planning is over and the stage's action runs (it was not cached).
    fn running(&self, _stage: &str) {}
    /// A stage ended; `log` is what its commands printed, already redacted.
    fn stage_finished(&self, report: &StageReport, log: &str);
    /// A value that must never be shown.
    fn secret(&self, value: &str);
    /// Something worth knowing that did not stop the run.
    fn warn(&self, message: &str);
    /// The run ended.
    fn finished(&self, summary: &RunSummary);
}

/// Chooses the reporter for this process: GitHub Actions when `GITHUB_ACTIONS=true`, progress
/// bars when stderr is a terminal, plain lines otherwise.
pub fn for_environment(env: &std::collections::BTreeMap<String, String>, verbose: bool) -> Box<dyn Reporter> {
    if env.get("GITHUB_ACTIONS").map(String::as_str) == Some("true") {
        let summary = env.get("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()).map(PathBuf::from);
        Box::new(GitHub::new(Box::new(io::stdout()), summary))
    } else if io::stderr().is_terminal() {
        Box::new(Terminal::new(verbose))
    } else {
        Box::new(Plain::new(verbose))
    }
}

/// The summary table as aligned text.
pub fn summary_table(summary: &RunSummary) -> String {
    let width = summary.stages.iter().map(|s| s.stage.len()).max().unwrap_or(5).max(5);
    let mut out = format!("{:<width$}  {:<8}  {:>8}\n", "stage", "result", "time");
    for s in &summary.stages {
        out.push_str(&format!("{:<width$}  {:<8}  {:>8}\n", s.stage, s.outcome.word(), seconds(s.elapsed)));
    }
    out.push_str(&totals(summary));
    out
}

/// The summary table as Markdown, for `$GITHUB_STEP_SUMMARY`.
pub fn summary_markdown(summary: &RunSummary) -> String {
    let mut out = String::from("### Slipway\n\n| stage | result | time | detail |\n|---|---|---:|---|\n");
    for s in &summary.stages {
        let detail = detail(&s.outcome).unwrap_or_default().replace('|', "\\|").replace('\n', " ");
        out.push_str(&format!("| {} | {} | {} | {} |\n", s.stage, s.outcome.word(), seconds(s.elapsed), detail));
    }
    out.push('\n');
    out.push_str(&totals(summary));
    out
}

fn totals(summary: &RunSummary) -> String {
    format!("{}\n", totals_line(summary.stages.len(), |w| summary.count(w)))
}

/// Every outcome word ([`Outcome::word`]), in the order summaries count them.
pub const OUTCOME_WORDS: [&str; 6] = ["ran", "cached", "restored", "rejected", "failed", "skipped"];

/// `11 stages: 3 ran, 8 cached, 0 failed` for `n` stages, `count` giving how many ended with
/// each outcome word. Shared with anything that summarises a run after the fact.
pub fn totals_line(n: usize, count: impl Fn(&str) -> usize) -> String {
    let parts: Vec<String> = OUTCOME_WORDS
        .iter()
        .map(|w| (w, count(w)))
        .filter(|(w, n)| *n > 0 || ["ran", "cached", "failed"].contains(w))
        .map(|(w, n)| format!("{n} {w}"))
        .collect();
    format!("{n} {}: {}", if n == 1 { "stage" } else { "stages" }, parts.join(", "))
}

fn detail(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Rejected(why) | Outcome::Failed(why) | Outcome::Skipped(why) => Some(why.clone()),
        _ => None,
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn finished_line(report: &StageReport) -> String {
    let mut line = format!("{} {} in {}", report.stage, report.outcome.word(), seconds(report.elapsed));
    if let Some(d) = detail(&report.outcome) {
        line.push_str(": ");
        line.push_str(&d);
    }
    line
}

/// Where a line-based reporter writes. Output errors (a closed pipe) are ignored: the run's
/// result is its exit code, not its log.
struct Sink(Mutex<Box<dyn Write + Send>>);

impl Sink {
    fn write(&self, text: &str) {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

/// One line per event, for logs and pipes.
pub struct Plain {
    out: Sink,
    verbose: bool,
}

impl Plain {
    /// Plain lines on stderr; `verbose` also prints each stage's command output.
    pub fn new(verbose: bool) -> Plain {
        Plain::to(Box::new(io::stderr()), verbose)
    }

    /// Plain lines written to `out`.
    pub fn to(out: Box<dyn Write + Send>, verbose: bool) -> Plain {
        Plain { out: Sink(Mutex::new(out)), verbose }
    }
}

impl Reporter for Plain {
    fn stage_started(&self, stage: &str, about: &str) {
        self.out.write(&format!("{stage} started: {about}\n"));
    }
    fn hashing(&self, _: &str, _: u64) {}
    fn stage_finished(&self, report: &StageReport, log: &str) {
        if self.verbose || matches!(report.outcome, Outcome::Rejected(_) | Outcome::Failed(_)) {
            self.out.write(log);
        }
        self.out.write(&format!("{}\n", finished_line(report)));
    }
    fn secret(&self, _: &str) {}
    fn warn(&self, message: &str) {
        self.out.write(&format!("warning: {message}\n"));
    }
    fn finished(&self, summary: &RunSummary) {
        self.out.write(&format!("\n{}", summary_table(summary)));
    }
}

/// GitHub Actions: a log group per stage, `::error::` on failure, masks, and a step summary.
pub struct GitHub {
    out: Sink,
    summary: Option<PathBuf>,
}

impl GitHub {
    /// Workflow commands written to `out`; the Markdown summary appended to `summary`.
    pub fn new(out: Box<dyn Write + Send>, summary: Option<PathBuf>) -> GitHub {
        GitHub { out: Sink(Mutex::new(out)), summary }
    }
}

impl Reporter for GitHub {
    fn stage_started(&self, stage: &str, about: &str) {
        self.out.write(&format!("{stage} started: {about}\n"));
    }
    fn hashing(&self, _: &str, _: u64) {}
    fn stage_finished(&self, report: &StageReport, log: &str) {
        // Stages run concurrently, so a stage's group is printed whole when it ends.
        let title = finished_line(report).lines().next().unwrap_or_default().to_string();
        if let Outcome::Skipped(_) = report.outcome {
            self.out.write(&format!("{title}\n"));
            return;
        }
        let log = if log.is_empty() || log.ends_with('\n') { log.to_string() } else { format!("{log}\n") };
        self.out.write(&format!("::group::{title}\n{log}::endgroup::\n"));
        if let Outcome::Rejected(d) | Outcome::Failed(d) = &report.outcome {
            let word = report.outcome.word();
            self.out.write(&format!("::error title=stage {} {word}::{}\n", report.stage, escape(d)));
        }
    }
    fn secret(&self, value: &str) {
        self.out.write(&format!("::add-mask::{}\n", escape(value)));
    }
    fn warn(&self, message: &str) {
        self.out.write(&format!("::warning::{}\n", escape(message)));
    }
    fn finished(&self, summary: &RunSummary) {
        self.out.write(&summary_table(summary));
        let Some(path) = &self.summary else { return };
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(summary_markdown(summary).as_bytes()));
        if let Err(e) = written {
            self.out.write(&format!("::warning::cannot write the step summary to {}: {e}\n", path.display()));
        }
    }
}

/// Workflow commands end at a newline, so multi-line text is escaped the way GitHub expects.
fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Progress bars: one line per running stage with its hashing rate, then the summary.
pub struct Terminal {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    verbose: bool,
}

impl Terminal {
    /// Bars drawn on stderr.
    pub fn new(verbose: bool) -> Terminal {
        Terminal { multi: MultiProgress::new(), bars: Mutex::new(HashMap::new()), verbose }
    }
}

impl Reporter for Terminal {
    fn stage_started(&self, stage: &str, about: &str) {
        let style =
            ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} {elapsed} {bytes:>10} {bytes_per_sec}")
                .expect("the template is valid");
        let bar = self.multi.add(ProgressBar::no_length().with_style(style));
        bar.set_prefix(stage.to_string());
        bar.set_message(about.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.bars.lock().unwrap_or_else(|e| e.into_inner()).insert(stage.to_string(), bar);
    }
    fn hashing(&self, stage: &str, bytes: u64) {
        if let Some(bar) = self.bars.lock().unwrap_or_else(|e| e.into_inner()).get(stage) {
            bar.inc(bytes);
        }
    }
    fn running(&self, stage: &str) {
        if let Some(bar) = self.bars.lock().unwrap_or_else(|e| e.into_inner()).get(stage) {
            let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg} {elapsed}")
                .expect("the template is valid");
            bar.set_style(style);
        }
    }
    fn stage_finished(&self, report: &StageReport, log: &str) {
        let bar = self.bars.lock().unwrap_or_else(|e| e.into_inner()).remove(&report.stage);
        if let Some(bar) = bar {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        if self.verbose || matches!(report.outcome, Outcome::Rejected(_) | Outcome::Failed(_)) {
            let _ = self.multi.println(log.trim_end());
        }
        let _ = self.multi.println(finished_line(report));
    }
    fn secret(&self, _: &str) {}
    fn warn(&self, message: &str) {
        let _ = self.multi.println(format!("warning: {message}"));
    }
    fn finished(&self, summary: &RunSummary) {
        eprint!("\n{}", summary_table(summary));
    }
}

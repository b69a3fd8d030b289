//! The page: one self-contained HTML file, inline CSS and SVG, no script, no network.
//!
//! Every text that comes from a file is escaped here, in [`esc`], and clipped; every list is
//! cut to a bounded length with a line that says how much was left out.

use std::fmt::Write as _;

use super::{Facts, ImageFacts, RunRecord, bytes, clip, duration};

/// The most rows a table shows, and the most classes the confusion matrix draws.
const MAX_ROWS: usize = 50;
const MAX_CLASSES: usize = 24;

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1040px;margin:0 auto;padding:24px}
section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;margin:0 0 20px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}h3{font-size:15px;margin:16px 0 8px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
.badge{display:inline-block;border-radius:12px;padding:2px 10px;font-weight:600;color:#fff}
.pass,.ran{background:#1a7f37}.fail,.failed{background:#cf222e}.rejected{background:#bc4c00}
.cached{background:#6e7781}.restored{background:#0969da}.skipped{background:#8c959f}
.missing{color:#6e7781;font-style:italic}.why{margin:0;padding-left:18px;font-size:12px;color:#57606a}
svg text{font:12px system-ui,sans-serif;fill:#1f2328}
.pic{overflow-x:auto}.stale{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px}
";

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            // Noncharacters (U+FDD0–U+FDEF, and U+xFFFE / U+xFFFF in every plane) are parse
            // errors in HTML.
            c if ('\u{FDD0}'..='\u{FDEF}').contains(&c) || (c as u32 & 0xFFFE) == 0xFFFE => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Clipped and escaped.
fn text(s: &str, max: usize) -> String {
    esc(&clip(s, max))
}

/// The colour of a result, for SVG fills.
fn colour(result: &str) -> &'static str {
    match result {
        "ran" => "#1a7f37",
        "cached" => "#6e7781",
        "restored" => "#0969da",
        "rejected" => "#bc4c00",
        "failed" => "#cf222e",
        _ => "#8c959f",
    }
}

/// The whole page.
pub fn page(facts: &Facts) -> String {
    let run = &facts.run;
    let verdict = if run.exit_code == 0 { ("pass", "passed") } else { ("fail", "did not pass") };
    let mut s = String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    s.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(s, "<title>Slipway run: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>", verdict.1);
    let _ = writeln!(
        s,
        "<section><h1>Slipway run <span class=\"badge {}\">{}</span></h1><p>{} · ended {} UTC{}</p></section>",
        verdict.0,
        verdict.1,
        esc(&run.totals()),
        esc(&crate::lineage::when(run.finished_at)),
        run.commit.as_ref().map(|c| format!(" · commit <code>{}</code>", esc(c))).unwrap_or_default()
    );
    warnings(&mut s, run);
    timeline(&mut s, run);
    data(&mut s, facts);
    validation(&mut s, facts);
    image(&mut s, &facts.image, run);
    staging(&mut s, &facts.deploy, facts.image.as_ref().ok());
    s.push_str("</main>\n</body>\n</html>\n");
    s
}

/// What the run warned of, first: a green page must not hide them.
fn warnings(s: &mut String, run: &RunRecord) {
    if run.warnings.is_empty() {
        return;
    }
    let _ = writeln!(s, "<section><h2>Warnings</h2><ul>");
    for w in &run.warnings {
        let _ = writeln!(s, "<li>{}</li>", text(w, 2000));
    }
    s.push_str("</ul></section>\n");
}

/// Under a section's heading: said when the stage that writes its file did not succeed in this
/// run, so the file may be an earlier run's.
fn provenance_note(s: &mut String, run: &RunRecord, stage: &str) {
    let note = match run.result_of(stage) {
        Some("ran" | "cached" | "restored") => return,
        Some(result) => format!("`{stage}` {result} in this run: what follows may be from an earlier run."),
        None => format!("This run did not include `{stage}`: what follows is from an earlier run."),
    };
    let _ = writeln!(s, "<p class=\"stale\">{}</p>", esc(&note));
}

/// Says how many rows a table left out.
fn more(s: &mut String, total: usize, shown: usize, columns: usize) {
    if total > shown {
        let _ = writeln!(s, "<tr><td colspan=\"{columns}\" class=\"missing\">and {} more</td></tr>", total - shown);
    }
}

fn missing(s: &mut String, why: &str) {
    let _ = writeln!(s, "<p class=\"missing\">{}</p>", text(why, 600));
}

fn badge(pass: bool) -> &'static str {
    if pass { "<span class=\"badge pass\">pass</span>" } else { "<span class=\"badge fail\">fail</span>" }
}

/// A bar per stage on a shared time axis, then the table with why each stage ran.
fn timeline(s: &mut String, run: &RunRecord) {
    s.push_str("<section><h2>Stages</h2>\n");
    let end = run.stages.iter().map(|r| r.started_ms.saturating_add(r.elapsed_ms)).max().unwrap_or(0).max(1);
    let (label, width, row) = (150.0, 680.0, 24.0);
    let height = row * run.stages.len() as f64 + 30.0;
    let _ = writeln!(
        s,
        "<div class=\"pic\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" role=\"img\" aria-label=\"stage timeline\">",
        w = label + width + 80.0
    );
    for (i, r) in run.stages.iter().enumerate() {
        let y = row * i as f64;
        let x = label + width * r.started_ms as f64 / end as f64;
        let w = (width * r.elapsed_ms as f64 / end as f64).max(2.0);
        // The label goes right of the bar, or inside it when the bar reaches the right edge
        // and is long enough, or left of it.
        let place = if x + w + 110.0 <= label + width + 80.0 {
            (x + w + 6.0, "start", "#1f2328")
        } else if w > 120.0 {
            (x + w - 6.0, "end", "#ffffff")
        } else {
            (x - 6.0, "end", "#1f2328")
        };
        let _ = writeln!(
            s,
            "<text x=\"{tx}\" y=\"{ty}\" text-anchor=\"end\">{name}</text><rect x=\"{x:.1}\" y=\"{ry}\" width=\"{w:.1}\" height=\"16\" rx=\"3\" fill=\"{fill}\"><title>{name}: {result} in {time}</title></rect><text x=\"{lx:.1}\" y=\"{ty}\" text-anchor=\"{anchor}\" style=\"fill:{ink}\">{result} {time}</text>",
            tx = label - 8.0,
            ty = y + 13.0,
            ry = y + 1.0,
            name = text(&r.stage, 40),
            fill = colour(&r.result),
            result = esc(&r.result),
            time = esc(&duration(r.elapsed_ms)),
            lx = place.0,
            anchor = place.1,
            ink = place.2,
        );
    }
    let axis = row * run.stages.len() as f64 + 6.0;
    let _ = writeln!(
        s,
        "<line x1=\"{label}\" y1=\"{axis}\" x2=\"{x2}\" y2=\"{axis}\" stroke=\"#8c959f\"/><text x=\"{label}\" y=\"{ty}\">0 s</text><text x=\"{x2}\" y=\"{ty}\" text-anchor=\"end\">{total}</text></svg></div>",
        x2 = label + width,
        ty = axis + 16.0,
        total = esc(&duration(end))
    );
    s.push_str("<table><tr><th>stage</th><th>result</th><th>started</th><th>time</th><th>why it ran, or what stopped it</th></tr>\n");
    for r in &run.stages {
        let mut why = String::new();
        if let Some(d) = &r.detail {
            let _ = write!(why, "<p class=\"why\">{}</p>", text(d, 1000));
        }
        if !r.why.is_empty() {
            why.push_str("<ul class=\"why\">");
            for w in &r.why {
                let _ = write!(why, "<li>{}</li>", text(w, 400));
            }
            why.push_str("</ul>");
        }
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td><span class=\"badge {}\">{}</span></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{why}</td></tr>",
            text(&r.stage, 40),
            esc(&r.result),
            esc(&r.result),
            esc(&duration(r.started_ms)),
            esc(&duration(r.elapsed_ms)),
        );
    }
    s.push_str("</table></section>\n");
}

/// The data gate: its checks, each file's rows and classes, and what it found.
fn data(s: &mut String, facts: &Facts) {
    s.push_str("<section><h2>Data gate</h2>\n");
    provenance_note(s, &facts.run, "check-data");
    let report = match &facts.data {
        Ok(r) => r,
        Err(why) => return end_missing(s, why),
    };
    let _ = writeln!(s, "<p>{}</p>", badge(report.passed));
    checks(s, report.checks.iter().map(|(k, v)| (k.as_str(), *v)));
    errors(s, &report.errors);
    s.push_str("<table><tr><th>file</th><th>rows</th><th>classes</th><th>empty texts</th><th>duplicates</th></tr>\n");
    for (name, file) in [("train", &report.train), ("holdout", &report.holdout)] {
        let Some(f) = file else {
            let _ = writeln!(s, "<tr><td>{name}</td><td colspan=\"4\" class=\"missing\">not read</td></tr>");
            continue;
        };
        let classes: Vec<String> =
            f.classes.iter().take(MAX_ROWS).map(|(k, v)| format!("{}: {v}", clip(k, 40))).collect();
        let _ = writeln!(
            s,
            "<tr><td>{name} <code>{}</code></td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            text(&f.file.path, 200),
            f.rows,
            esc(&classes.join(", ")),
            f.empty_texts.len(),
            f.duplicates.len()
        );
    }
    s.push_str("</table>\n");
    let _ = writeln!(s, "<p>Holdout rows also in train: {}</p>", report.leaked.len());
    s.push_str("</section>\n");
}

fn end_missing(s: &mut String, why: &str) {
    missing(s, why);
    s.push_str("</section>\n");
}

fn checks<'a>(s: &mut String, checks: impl Iterator<Item = (&'a str, bool)>) {
    s.push_str("<table><tr><th>check</th><th>result</th></tr>\n");
    let all: Vec<(&str, bool)> = checks.collect();
    for (name, pass) in all.iter().take(MAX_ROWS) {
        let _ = writeln!(s, "<tr><td>{}</td><td>{}</td></tr>", text(name, 80), badge(*pass));
    }
    more(s, all.len(), MAX_ROWS, 2);
    s.push_str("</table>\n");
}

fn errors(s: &mut String, errors: &[String]) {
    if errors.is_empty() {
        return;
    }
    s.push_str("<ul>");
    for e in errors.iter().take(MAX_ROWS) {
        let _ = write!(s, "<li>{}</li>", text(e, 600));
    }
    if errors.len() > MAX_ROWS {
        let _ = write!(s, "<li class=\"missing\">and {} more</li>", errors.len() - MAX_ROWS);
    }
    s.push_str("</ul>\n");
}

/// Validation: the checks against thresholds, per-class metrics, the confusion matrix, the
/// latency histogram and the comparison with production.
fn validation(s: &mut String, facts: &Facts) {
    s.push_str("<section><h2>Validation</h2>\n");
    provenance_note(s, &facts.run, "validate");
    let report = match &facts.validation {
        Ok(r) => r,
        Err(why) => return end_missing(s, why),
    };
    let _ = writeln!(
        s,
        "<p>{} <code>{}</code> on <code>{}</code>, {} rows</p>",
        badge(report.passed),
        text(&report.model.path, 200),
        text(&report.data.path, 200),
        report.rows
    );
    s.push_str("<table><tr><th>check</th><th>result</th><th>observed</th><th>threshold</th><th>samples</th></tr>\n");
    for l in report.lines().iter().take(MAX_ROWS) {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            text(&l.check, 80),
            badge(l.pass),
            esc(&l.observed),
            esc(&l.threshold),
            esc(&l.samples)
        );
    }
    s.push_str("</table>\n");
    errors(s, &report.errors);
    match &report.classification {
        Some(c) => {
            s.push_str("<h3>Per class</h3><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>\n");
            for (label, m) in c.per_class.iter().take(MAX_ROWS) {
                let _ = writeln!(
                    s,
                    "<tr><td>{}</td><td class=\"n\">{:.4}</td><td class=\"n\">{:.4}</td><td class=\"n\">{:.4}</td><td class=\"n\">{}</td></tr>",
                    text(label, 60),
                    m.precision,
                    m.recall,
                    m.f1,
                    m.support
                );
            }
            more(s, c.per_class.len(), MAX_ROWS, 5);
            s.push_str("</table>\n<h3>Confusion matrix</h3>\n");
            confusion(s, &c.confusion);
        }
        None => missing(s, "no classification metrics: the model's predictions could not be compared"),
    }
    s.push_str("<h3>Single-row latency</h3>\n");
    match &report.latency {
        Some(l) => latency(s, l, report.thresholds.max_latency_ms),
        None => missing(s, "latency was not measured"),
    }
    if let Some(r) = &report.regression {
        let show = |v: Option<f64>| v.map_or("not computed".to_string(), |v| format!("{v:.4}"));
        let _ = writeln!(
            s,
            "<h3>Against production</h3><table><tr><th>production model</th><th>its accuracy</th><th>this model</th><th>drop</th><th>allowed</th></tr><tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{:.4}</td><td class=\"n\">{}</td><td class=\"n\">{:.4}</td></tr></table>",
            text(&r.production_model.path, 200),
            show(r.production_accuracy),
            report.accuracy,
            show(r.accuracy_drop),
            report.thresholds.max_accuracy_drop
        );
    }
    s.push_str("</section>\n");
}

/// A heatmap: a row per true class, shaded by the share of that row in each predicted class.
fn confusion(s: &mut String, m: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>) {
    let labels: Vec<&String> = m.keys().take(MAX_CLASSES).collect();
    if m.len() > MAX_CLASSES {
        missing(s, &format!("{} classes; the first {MAX_CLASSES} are drawn", m.len()));
    }
    let (left, top, cell) = (130.0, 40.0, 56.0);
    let size = cell * labels.len() as f64;
    let (w, h) = (left + size + 20.0, top + size + 30.0);
    let _ = writeln!(
        s,
        "<div class=\"pic\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"confusion matrix\">"
    );
    let _ = writeln!(s, "<text x=\"{}\" y=\"14\" text-anchor=\"middle\">predicted</text>", left + size / 2.0);
    let _ = writeln!(s, "<text x=\"10\" y=\"{}\">true</text>", top + size + 20.0);
    for (j, p) in labels.iter().enumerate() {
        let x = left + cell * (j as f64 + 0.5);
        let _ = writeln!(s, "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>", top - 8.0, text(p, 8));
    }
    for (i, t) in labels.iter().enumerate() {
        let row = &m[*t];
        let total = row.values().fold(0usize, |a, n| a.saturating_add(*n));
        let y = top + cell * i as f64;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y + cell / 2.0 + 4.0,
            text(t, 16)
        );
        for (j, p) in labels.iter().enumerate() {
            let n = row.get(*p).copied().unwrap_or(0);
            let share = if total == 0 { 0.0 } else { n as f64 / total as f64 };
            let light = 97.0 - 60.0 * share;
            let ink = if share > 0.5 { "#ffffff" } else { "#1f2328" };
            let x = left + cell * j as f64;
            let _ = writeln!(
                s,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"hsl(212,80%,{light:.0}%)\" stroke=\"#ffffff\"><title>true {tt}, predicted {pt}: {n} ({pc:.1}%)</title></rect><text x=\"{cx}\" y=\"{cy}\" text-anchor=\"middle\" style=\"fill:{ink}\">{n}</text>",
                tt = text(t, 60),
                pt = text(p, 60),
                pc = share * 100.0,
                cx = x + cell / 2.0,
                cy = y + cell / 2.0 + 4.0,
            );
        }
    }
    s.push_str("</svg></div>\n<p class=\"missing\">Each row is a true class; the darker a cell, the larger its share of that row.</p>\n");
}

/// The histogram of single-row latencies on a logarithmic axis, with p50, p95, p99 and the
/// threshold marked.
fn latency(s: &mut String, l: &gate::metrics::Latency, threshold: f64) {
    let _ = writeln!(
        s,
        "<p>p50 {:.3} ms · p95 {:.3} ms · p99 {:.3} ms · max {:.3} ms · {} predictions · limit {threshold} ms</p>",
        l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, l.samples
    );
    let usable = |h: &&gate::metrics::Histogram| {
        h.counts.len() + 1 == h.edges_ms.len()
            && !h.counts.is_empty()
            && h.counts.len() <= gate::metrics::HISTOGRAM_BINS
            && h.edges_ms.iter().all(|e| e.is_finite() && *e >= 0.0)
            && h.edges_ms.windows(2).all(|w| w[0] < w[1])
    };
    let Some(h) = l.histogram.as_ref().filter(usable) else {
        return missing(s, "this report has no histogram (it was written before Slipway drew one)");
    };
    let (left, top, width, height) = (50.0, 64.0, 720.0, 160.0);
    // Positions on a log axis; an edge at 0 ms sits where the first bin would start.
    let floor = h.edges_ms.iter().copied().find(|e| *e > 0.0).unwrap_or(1e-6) / 2.0;
    let log = |ms: f64| ms.max(floor).ln();
    // The axis reaches the limit when it lies beyond the slowest sample: the headroom shows.
    let last_edge = h.edges_ms[h.edges_ms.len() - 1];
    let axis_end = if threshold.is_finite() && threshold > last_edge && threshold < last_edge * 1e6 {
        threshold
    } else {
        last_edge
    };
    let (lo, hi) = (log(h.edges_ms[0]), log(axis_end));
    let x_of = |ms: f64| left + width * (log(ms) - lo) / (hi - lo).max(1e-9);
    let peak = h.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let (w, full) = (left + width + 60.0, top + height + 40.0);
    let _ = writeln!(
        s,
        "<div class=\"pic\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{full}\" viewBox=\"0 0 {w} {full}\" role=\"img\" aria-label=\"latency histogram\">"
    );
    for (i, &n) in h.counts.iter().enumerate() {
        let (from, to) = (h.edges_ms[i], h.edges_ms[i + 1]);
        let bh = height * n as f64 / peak;
        let (x0, x1) = (x_of(from), x_of(to));
        let _ = writeln!(
            s,
            "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#54aeff\"><title>{from:.3}–{to:.3} ms: {n}</title></rect>",
            top + height - bh,
            (x1 - x0 - 1.0).max(1.0),
        );
    }
    let marks = [
        ("p50", l.p50_ms, "#1a7f37"),
        ("p95", l.p95_ms, "#bf8700"),
        ("p99", l.p99_ms, "#cf222e"),
        ("limit", threshold, "#000000"),
    ];
    for (k, (name, ms, ink)) in marks.into_iter().enumerate() {
        let inside = ms.is_finite() && ms >= h.edges_ms[0] && ms <= axis_end;
        if !inside {
            continue;
        }
        let x = x_of(ms);
        let ty = 14.0 + 13.0 * k as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{ink}\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{ty:.1}\" style=\"fill:{ink}\">{name} {ms:.3} ms</text>",
            ty + 3.0,
            top + height,
            x + 3.0,
        );
    }
    let base = top + height;
    let _ =
        writeln!(s, "<line x1=\"{left}\" y1=\"{base}\" x2=\"{:.1}\" y2=\"{base}\" stroke=\"#8c959f\"/>", left + width);
    // Ticks at the powers of ten inside the range, and the two ends.
    let (first, last) = (h.edges_ms[0], axis_end);
    let mut ticks = vec![first.max(floor), last];
    let mut decade = 10f64.powf(floor.log10().ceil());
    while decade < last && ticks.len() < 16 {
        if decade > first.max(floor) * 1.3 && decade < last / 1.3 {
            ticks.push(decade);
        }
        decade *= 10.0;
    }
    for t in ticks {
        let x = x_of(t);
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{base}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#8c959f\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{} ms</text>",
            base + 5.0,
            base + 18.0,
            tick(t)
        );
    }
    let _ = writeln!(s, "<text x=\"{left}\" y=\"{:.1}\">milliseconds, logarithmic</text></svg></div>", base + 34.0);
}

/// A tick label: as many decimals as a small number needs.
fn tick(ms: f64) -> String {
    match ms {
        m if m >= 100.0 => format!("{m:.0}"),
        m if m >= 1.0 => format!("{m:.1}"),
        m if m >= 0.01 => format!("{m:.3}"),
        m => format!("{m:.1e}"),
    }
}

/// The image: digests, tags and layers, with each layer's share of the size.
fn image(s: &mut String, image: &Result<ImageFacts, String>, run: &RunRecord) {
    s.push_str("<section><h2>Image</h2>\n");
    provenance_note(s, run, "image");
    let i = match image {
        Ok(i) => i,
        Err(why) => return end_missing(s, why),
    };
    let tags: Vec<String> = i.tags.iter().take(MAX_ROWS).map(|t| clip(t, 128)).collect();
    let _ = writeln!(
        s,
        "<table><tr><th>manifest</th><td><code>{}</code></td></tr><tr><th>config (image ID)</th><td><code>{}</code></td></tr><tr><th>tags</th><td>{}</td></tr><tr><th>pushed</th><td>{}</td></tr></table>",
        text(&i.manifest_digest, 80),
        text(&i.config_digest, 80),
        esc(&tags.join(", ")),
        i.pushed.as_deref().map_or("no registry configured".to_string(), |p| text(p, 300))
    );
    let total = i.layers.iter().fold(0u64, |a, l| a.saturating_add(l.size)).max(1);
    let palette = ["#0969da", "#1a7f37", "#8250df", "#bf8700", "#cf222e", "#57606a"];
    s.push_str("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760\" height=\"28\" viewBox=\"0 0 760 28\" role=\"img\" aria-label=\"layer sizes\">");
    let mut x = 0.0;
    for (k, l) in i.layers.iter().take(MAX_ROWS).enumerate() {
        let w = 760.0 * l.size as f64 / total as f64;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"2\" width=\"{w:.1}\" height=\"24\" fill=\"{}\"><title>{}: {}</title></rect>",
            palette[k % palette.len()],
            text(&l.name, 40),
            esc(&bytes(l.size))
        );
        x += w;
    }
    s.push_str("</svg>\n<table><tr><th>layer</th><th>digest</th><th>size</th></tr>\n");
    for l in i.layers.iter().take(MAX_ROWS) {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td></tr>",
            text(&l.name, 40),
            text(&l.digest, 80),
            esc(&bytes(l.size))
        );
    }
    more(s, i.layers.len(), MAX_ROWS, 3);
    let _ = writeln!(
        s,
        "<tr><th colspan=\"2\">total</th><td class=\"n\">{}</td></tr></table></section>",
        esc(&bytes(total))
    );
}

/// Staging's newest ledger entry and its smoke tests.
fn staging(s: &mut String, event: &Result<deploy::ledger::Event, String>, image: Option<&ImageFacts>) {
    s.push_str("<section><h2>Staging deploy</h2>\n");
    let e = match event {
        Ok(e) => e,
        Err(why) => return end_missing(s, why),
    };
    let _ = writeln!(
        s,
        "<p>{} <b>{}</b> of {} (entry #{}) by {} at {} UTC: {}</p>",
        esc(&crate::release::kebab(&e.kind)),
        text(&e.release.version, 40),
        text(&e.env, 40),
        e.seq,
        text(&e.who, 256),
        esc(&crate::lineage::when(e.at)),
        esc(&crate::release::kebab(&e.outcome))
    );
    let built_here = match (&e.release.image_digest, image) {
        (Some(d), Some(i)) if *d == i.manifest_digest => "the image above",
        (Some(_), Some(_)) => "not the image above",
        _ => "no image recorded",
    };
    let _ = writeln!(
        s,
        "<table><tr><th>model (BLAKE3)</th><td><code>{}</code></td></tr><tr><th>image</th><td><code>{}</code> ({built_here})</td></tr><tr><th>commit</th><td><code>{}</code></td></tr></table>",
        text(&e.release.model_digest, 80),
        text(e.release.image_digest.as_deref().unwrap_or("none"), 80),
        text(&e.release.git_sha, 60)
    );
    if e.smoke.is_empty() {
        return end_missing(s, "this entry records no smoke tests");
    }
    s.push_str("<table><tr><th>smoke test</th><th>result</th><th>seen</th></tr>\n");
    for c in e.smoke.iter().take(MAX_ROWS) {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            text(&c.name, 120),
            badge(c.passed),
            text(&c.detail, 400)
        );
    }
    more(s, e.smoke.len(), MAX_ROWS, 3);
    s.push_str("</table></section>\n");
}

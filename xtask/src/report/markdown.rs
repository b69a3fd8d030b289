//! The run report as Markdown tables, for GitHub Actions' step summary: the same facts as the
//! page, without the pictures (the confusion matrix is a table, latency is its percentiles).

use std::fmt::Write as _;

use super::{Facts, bytes, clip, duration};

const MAX_ROWS: usize = 50;

/// A table cell: one line, clipped, with nothing GitHub would render as markup (a link, an
/// image it would fetch, HTML, emphasis) or a pipe that would end the cell.
fn cell(s: &str) -> String {
    let mut out = String::new();
    for c in clip(s, 300).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '!' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn mark(pass: bool) -> &'static str {
    if pass { "✅ pass" } else { "❌ fail" }
}

/// The summary.
pub fn page(facts: &Facts) -> String {
    let run = &facts.run;
    let mut s = format!(
        "### Slipway run {}\n\n{}{}\n\n",
        if run.exit_code == 0 { "passed" } else { "did not pass" },
        run.totals(),
        run.commit.as_ref().map(|c| format!(" · commit `{c}`")).unwrap_or_default()
    );
    for w in &run.warnings {
        let _ = writeln!(s, "> warning: {}\n", cell(w));
    }
    s.push_str("| stage | result | time | why it ran, or what stopped it |\n|---|---|---:|---|\n");
    for r in &run.stages {
        let mut why: Vec<String> = r.detail.iter().chain(r.why.iter().take(4)).map(|w| cell(w)).collect();
        if r.why.len() > 4 {
            why.push(format!("and {} more (reports/run.html)", r.why.len() - 4));
        }
        let _ =
            writeln!(s, "| {} | {} | {} | {} |", cell(&r.stage), r.result, duration(r.elapsed_ms), why.join("<br>"));
    }
    s.push_str("\n#### Data gate\n\n");
    match &facts.data {
        Ok(d) => {
            s.push_str("| check | result |\n|---|---|\n");
            for (k, v) in d.checks.iter().take(MAX_ROWS) {
                let _ = writeln!(s, "| {} | {} |", cell(k), mark(*v));
            }
            for (name, f) in [("train", &d.train), ("holdout", &d.holdout)] {
                if let Some(f) = f {
                    let classes: Vec<String> =
                        f.classes.iter().take(MAX_ROWS).map(|(k, v)| format!("{k}: {v}")).collect();
                    let _ = write!(s, "\n{name}: {} rows ({})", f.rows, cell(&classes.join(", ")));
                }
            }
            s.push('\n');
        }
        Err(why) => {
            let _ = writeln!(s, "_{}_", cell(why));
        }
    }
    s.push_str("\n#### Validation\n\n");
    match &facts.validation {
        Ok(v) => {
            s.push_str("| check | result | observed | threshold | samples |\n|---|---|---:|---|---:|\n");
            for l in v.lines().iter().take(MAX_ROWS) {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    cell(&l.check),
                    mark(l.pass),
                    l.observed,
                    l.threshold,
                    l.samples
                );
            }
            if let Some(c) = &v.classification {
                s.push_str("\n| class | precision | recall | F1 | support |\n|---|---:|---:|---:|---:|\n");
                for (label, m) in c.per_class.iter().take(MAX_ROWS) {
                    let _ = writeln!(
                        s,
                        "| {} | {:.4} | {:.4} | {:.4} | {} |",
                        cell(label),
                        m.precision,
                        m.recall,
                        m.f1,
                        m.support
                    );
                }
                let labels: Vec<&String> = c.confusion.keys().take(16).collect();
                s.push_str("\n| true \\ predicted |");
                for p in &labels {
                    let _ = write!(s, " {} |", cell(p));
                }
                let _ = write!(s, "\n|---|{}\n", "---:|".repeat(labels.len()));
                for t in &labels {
                    let _ = write!(s, "| {} |", cell(t));
                    for p in &labels {
                        let _ = write!(s, " {} |", c.confusion[*t].get(*p).copied().unwrap_or(0));
                    }
                    s.push('\n');
                }
            }
            if let Some(l) = &v.latency {
                let _ = writeln!(
                    s,
                    "\nsingle-row latency: p50 {:.3} ms, p95 {:.3} ms, p99 {:.3} ms ({} predictions)",
                    l.p50_ms, l.p95_ms, l.p99_ms, l.samples
                );
            }
        }
        Err(why) => {
            let _ = writeln!(s, "_{}_", cell(why));
        }
    }
    s.push_str("\n#### Image\n\n");
    match &facts.image {
        Ok(i) => {
            let _ = writeln!(s, "`{}` tags {}\n", cell(&i.manifest_digest), cell(&i.tags.join(", ")));
            s.push_str("| layer | size |\n|---|---:|\n");
            for l in i.layers.iter().take(MAX_ROWS) {
                let _ = writeln!(s, "| {} | {} |", cell(&l.name), bytes(l.size));
            }
        }
        Err(why) => {
            let _ = writeln!(s, "_{}_", cell(why));
        }
    }
    s.push_str("\n#### Staging deploy\n\n");
    match &facts.deploy {
        Ok(e) => {
            let _ = writeln!(
                s,
                "{} {} by {}: {}\n",
                crate::release::kebab(&e.kind),
                cell(&e.release.version),
                cell(&e.who),
                crate::release::kebab(&e.outcome)
            );
            if !e.smoke.is_empty() {
                s.push_str("| smoke test | result | seen |\n|---|---|---|\n");
                for c in e.smoke.iter().take(MAX_ROWS) {
                    let _ = writeln!(s, "| {} | {} | {} |", cell(&c.name), mark(c.passed), cell(&c.detail));
                }
            }
        }
        Err(why) => {
            let _ = writeln!(s, "_{}_", cell(why));
        }
    }
    s
}

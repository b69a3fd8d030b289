//! The page and the summary from hand-made facts: hostile text is escaped, missing parts are
//! said, and a record this version did not write is refused.

use super::*;

#[path = "../../tests/common/page.rs"]
mod page;

fn row(stage: &str, result: &str, started_ms: u64, elapsed_ms: u64) -> StageRow {
    StageRow { stage: stage.into(), result: result.into(), detail: None, started_ms, elapsed_ms, why: Vec::new() }
}

fn run() -> RunRecord {
    let mut train = row("train", "ran", 100, 9_000);
    train.why = vec!["param:C: 1.0 → 0.5".into()];
    let mut validate = row("validate", "rejected", 9_100, 600);
    validate.detail = Some("the model failed validation: <script>alert(1)</script> & more".into());
    RunRecord {
        schema: RUN_SCHEMA.into(),
        finished_at: 1_764_633_600,
        commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
        exit_code: 1,
        stages: vec![row("lint", "cached", 0, 12), train, validate, row("image", "skipped", 9_700, 0)],
        warnings: vec!["train: MLflow was not told of this training: MLflow at *** is unreachable".into()],
    }
}

fn facts_without_anything(run: RunRecord) -> Facts {
    Facts {
        run,
        data: Err("reports/data-check.json is not there".into()),
        validation: Err("reports/validation_report.json is not there".into()),
        image: Err("dist/image/built.json is not there".into()),
        deploy: Err("the ledger has no release on staging yet".into()),
    }
}

#[test]
fn text_from_files_is_escaped_and_every_missing_part_is_said() {
    let page = html::page(&facts_without_anything(run()));
    assert!(!page.contains("<script>"), "a stage's message must not become markup");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"));
    for why in [
        "data-check.json is not there",
        "validation_report.json is not there",
        "built.json is not there",
        "no release on staging yet",
    ] {
        assert!(page.contains(why), "the page says {why}");
    }
    assert!(page.contains("param:C: 1.0 → 0.5"), "why train ran");
    assert!(page.contains("4 stages: 1 ran, 1 cached, 1 rejected, 0 failed, 1 skipped"), "{page}");
    assert!(page.starts_with("<!DOCTYPE html>") && page.ends_with("</html>\n"));
    self_contained(&page);
    assert!(page.contains("MLflow at *** is unreachable"), "the run's warnings are on the page");
    assert!(page.contains("`image` skipped in this run: what follows may be from an earlier run."));
    assert!(page.contains("This run did not include `check-data`"));
}

/// Nothing on the page runs or is fetched: the only URLs are the SVG namespace's.
fn self_contained(page: &str) {
    for bad in ["<script", "src=", "href=", "url(", "@import", "<link", "<iframe", "<object", "<img"] {
        assert!(!page.contains(bad), "the page has `{bad}`");
    }
    let urls = page.matches("http").count();
    assert_eq!(urls, page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(), "a URL besides the SVG namespace");
}

/// Every part filled from hostile files: labels, paths, smoke details and digests with markup,
/// quotes, control characters and noncharacters; the page still parses strictly as HTML5
/// (html5lib from the tools stage), escapes all of it, and a secret is masked everywhere.
#[test]
fn a_page_of_hostile_facts_parses_strictly_and_shows_no_secret() {
    let nasty = "<b>\"q'</b> & \u{7}\u{FDD0}\u{FFFF}\u{1FFFE} s3cret-value ]]> <!--";
    let mut run = run();
    run.stages[1].why.push(format!("env:TOKEN: {nasty}"));
    let labels: Vec<String> = vec![nasty.to_string(), "plain".into()];
    let truth: Vec<String> = [&labels[0], &labels[1], &labels[1]].iter().map(|s| s.to_string()).collect();
    let predicted: Vec<String> = [&labels[0], &labels[0], &labels[1]].iter().map(|s| s.to_string()).collect();
    let classification = gate::metrics::classify(&truth, &predicted);
    let latency = gate::metrics::Latency::of(&[0.05, 0.06, 0.07, 2.0]);
    let artifact = |path: &str| gate::report::Artifact { path: path.into(), blake3: None, bytes: None };
    let validation = gate::ValidationReport {
        passed: false,
        accuracy: classification.accuracy,
        accuracy_threshold: 0.9,
        latency_p50_ms: latency.p50_ms,
        latency_p99_ms: latency.p99_ms,
        latency_threshold_ms: 50.0,
        per_class_recall: classification.per_class.iter().map(|(k, m)| (k.clone(), m.recall)).collect(),
        recall_threshold: 0.7,
        checks: [(format!("recall[{nasty}]"), false)].into(),
        errors: vec![nasty.to_string()],
        schema: gate::REPORT_SCHEMA.into(),
        model: artifact(nasty),
        data: artifact("data/holdout.csv"),
        rows: 3,
        thresholds: gate::Thresholds::default(),
        classification: Some(classification),
        latency: Some(latency),
        throughput_rows_per_s: None,
        regression: None,
        onnxruntime: None,
        machine: gate::report::Machine::current(),
    };
    let image = ImageFacts {
        manifest_digest: format!("sha256:{}", "a".repeat(64)),
        config_digest: nasty.into(),
        tags: vec![nasty.into()],
        layers: vec![
            LayerFacts { name: nasty.into(), digest: "sha256:x".into(), size: u64::MAX },
            LayerFacts { name: "b".into(), digest: "d".into(), size: 7 },
        ],
        pushed: None,
    };
    let facts =
        Facts { run, data: Err(nasty.into()), validation: Ok(validation), image: Ok(image), deploy: Err(nasty.into()) };
    let dir = tempfile::tempdir().unwrap();
    let redact = |t: &str| t.replace("s3cret-value", "***");
    write(dir.path(), &facts, &redact).unwrap();
    let html = std::fs::read_to_string(dir.path().join(RUN_REPORT)).unwrap();
    page::parses_strictly(&dir.path().join(RUN_REPORT));
    self_contained(&html);
    assert!(!html.contains("<b>") && html.contains("&lt;b&gt;&quot;q&#39;&lt;/b&gt; &amp;"), "escaped");
    for (what, text) in [
        ("page", html),
        ("record", std::fs::read_to_string(dir.path().join(RUN_RECORD)).unwrap()),
        ("summary", markdown::page(&facts)),
    ] {
        let text = if what == "summary" { redact(&text) } else { text };
        assert!(!text.contains("s3cret-value"), "the {what} shows the secret");
    }
    let md = markdown::page(&facts);
    assert!(!md.contains("<b>") && md.contains("&lt;b&gt;"), "no HTML in the summary");
}

#[test]
fn the_summary_keeps_each_table_row_on_one_line() {
    let mut r = run();
    r.stages[2].detail = Some("a | b\nc".into());
    let md = markdown::page(&facts_without_anything(r));
    let line = md.lines().find(|l| l.starts_with("| validate |")).expect("a row for validate");
    assert!(line.contains("a \\| b c"), "{line}");
    assert!(md.contains("> warning: train: MLflow was not told"), "{md}");
    assert!(md.contains("_reports/validation\\_report.json is not there_"), "{md}");
}

#[test]
fn a_record_this_version_did_not_write_is_refused() {
    let mut r = run();
    r.schema = "slipway.run.v0".into();
    assert!(r.check().unwrap_err().contains("unknown schema"));
    let mut r = run();
    r.stages[0].result = "<b>".into();
    assert!(r.check().unwrap_err().contains("unknown result"));
    let mut r = run();
    r.stages = (0..=MAX_STAGES).map(|i| row(&format!("s{i}"), "ran", 0, 1)).collect();
    assert!(r.check().is_err());
    assert!(run().check().is_ok());
}

#[test]
fn a_long_text_is_clipped_on_a_character_boundary() {
    assert_eq!(clip("ééé", 2), "éé…");
    assert_eq!(clip("ab", 2), "ab");
    assert_eq!(bytes(1536), "1.5 KiB");
    assert_eq!(duration(999), "999 ms");
}

//! The page and the summary from hand-made facts: hostile text is escaped, missing parts are
//! said, and a record this version did not write is refused.

use super::*;

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
    assert!(!page.contains("http://") || page.matches("http://").all(|_| true));
    assert!(!page.contains("<script") && !page.contains("src=\"http"), "no script, nothing fetched");
}

#[test]
fn the_summary_keeps_each_table_row_on_one_line() {
    let mut r = run();
    r.stages[2].detail = Some("a | b\nc".into());
    let md = markdown::page(&facts_without_anything(r));
    let line = md.lines().find(|l| l.starts_with("| validate |")).expect("a row for validate");
    assert!(line.contains("a \\| b c"), "{line}");
    assert!(md.contains("_reports/validation_report.json is not there_"));
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

//! Property tests of what the engine reads back: step-cache records (from a shared remote,
//! so hostile) and `strace` output (for `ci --trace-inputs`). No input may panic, and a record
//! that passes its check names only paths that stay inside the stage's declared outputs.

use std::path::{Component, Path};

use engine::{Digest, EntryKind, FileEntry, RECORD_SCHEMA, StageRecord};
use proptest::prelude::*;

#[path = "mutate.rs"]
mod mutate;

const RECORDS: &[&str] = &[
    r#"{"schema":"slipway.stage-record.v2","stage":"train","fingerprint":"8939ea11d8a910bd1caee0466651b5f54964694682851180538a30bcd0fceb49","inputs":[{"name":"files:code","kind":"files","ignore":["target"],"files":[{"path":"training/train.py","kind":"file","size":3,"digest":"6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"}]},{"name":"env:TOKEN","kind":"env","set":true,"secret":true,"digest":null},{"name":"param:C","kind":"param","value":1.0}],"outputs":[{"path":"models/model.onnx","kind":"file","size":3,"digest":"6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"},{"path":"reports/r.json","kind":"symlink","size":0,"digest":"6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"}],"updates":[{"path":"data/a.csv","kind":"file","size":1,"digest":"6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"}],"outputs_digest":"4977f31ff8069d5b1702939593099ec63c8c9cef772e987814a7385850230c0b","duration_ms":1200,"finished_at":1790000000}"#,
];

const STRACE: &[&str] = &[
    "123   openat(AT_FDCWD</work/repo>, \"training/train.py\", O_RDONLY|O_CLOEXEC) = 3</work/repo/training/train.py>\n\
     123   execve(\"/usr/bin/python3\", [\"python3\"], 0x7ffd /* 20 vars */) = 0\n\
     124   openat(AT_FDCWD</tmp>, \"out.bin\", O_WRONLY|O_CREAT|O_TRUNC, 0644 <unfinished ...>\n\
     124   <... openat resumed>) = 4</tmp/out.bin>\n\
     125   renameat2(AT_FDCWD</work/repo>, \"a.tmp\", AT_FDCWD</work/repo>, \"models/m\\303\\251.onnx\", 0) = 0\n\
     126   rename(\"x\", \"y\") = -1 ENOENT (No such file or directory)\n",
];

fn declared() -> Vec<String> {
    vec!["models".to_string(), "reports/r.json".to_string()]
}

/// Whether `path`, joined onto a directory, stays under it and under one declared output.
fn stays_inside(path: &str, declared: &[String]) -> bool {
    Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
        && declared.iter().any(|d| path == d || path.starts_with(&format!("{d}/")))
}

/// A path under a declared output half of the time, so that both answers are common.
fn output_path() -> impl Strategy<Value = String> {
    (any::<bool>(), mutate::paths()).prop_map(|(under, p)| if under { format!("models/{p}") } else { p })
}

fn entry(path: String) -> FileEntry {
    FileEntry { path, kind: EntryKind::File, size: 0, digest: Digest::of(b"") }
}

#[test]
fn a_record_from_a_remote_is_refused_or_stays_in_its_outputs() {
    mutate::run("engine: step-cache record", mutate::inputs(RECORDS), |bytes| {
        let Ok(record) = serde_json::from_slice::<StageRecord>(&bytes) else { return Ok(false) };
        let updates = vec!["data".to_string()];
        if record.check_paths(&declared(), &updates).is_err() {
            return Ok(false);
        }
        for e in &record.outputs {
            prop_assert!(stays_inside(&e.path, &declared()), "accepted output {:?}", e.path);
        }
        for e in &record.updates {
            prop_assert!(stays_inside(&e.path, &updates), "accepted update {:?}", e.path);
        }
        Ok(true)
    });
}

/// The same check on paths built from the parts that matter (`..`, `.`, empty, `\`, NUL,
/// a leading `/`), which byte edits reach only rarely, against a second statement of the rule.
#[test]
fn a_record_path_is_accepted_only_inside_the_outputs() {
    mutate::run("engine: record paths", prop::collection::vec(output_path(), 1..4), |paths| {
        let record = StageRecord {
            schema: RECORD_SCHEMA.into(),
            stage: "s".into(),
            fingerprint: Digest::of(b""),
            inputs: vec![],
            outputs: paths.iter().cloned().map(entry).collect(),
            updates: vec![],
            outputs_digest: Digest::of(b""),
            duration_ms: 0,
            finished_at: 0,
        };
        let accepted = record.check_paths(&declared(), &[]).is_ok();
        let plain = |p: &str| {
            !p.contains(['\\', '\0']) && p.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
        };
        let want = paths.iter().all(|p| plain(p) && stays_inside(p, &declared()));
        prop_assert_eq!(accepted, want, "{:?}", paths);
        Ok(accepted)
    });
}

#[test]
fn strace_output_never_panics_the_reader() {
    mutate::run("engine: strace output", mutate::texts(STRACE), |text| {
        let events = engine::trace::parse(&text);
        prop_assert!(events.len() <= text.lines().count());
        Ok(!events.is_empty())
    });
}

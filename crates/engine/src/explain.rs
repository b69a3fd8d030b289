//! Saying what changed between two observations of a stage's inputs, in words a person reads
//! in `status`: `param:C: 1.0 → 0.5`, `files:code: src/lib.rs changed (3f2a… → 9c1d…)`.

use std::collections::BTreeMap;

use crate::input::{InputValue, ResolvedInput};
use crate::tree::{EntryKind, FileEntry};

/// How many changed files one input lists before summarising the rest.
const MAX_FILES: usize = 8;

/// One line per input that differs between `old` and `new`.
pub fn diff_inputs(old: &[ResolvedInput], new: &[ResolvedInput]) -> Vec<String> {
    let old_by_name: BTreeMap<&str, &InputValue> = old.iter().map(|i| (i.name.as_str(), &i.value)).collect();
    let new_names: Vec<&str> = new.iter().map(|i| i.name.as_str()).collect();
    let mut out = Vec::new();
    for input in new {
        match old_by_name.get(input.name.as_str()) {
            None => out.push(format!("{}: new input", input.name)),
            Some(was) if **was != input.value => out.extend(diff_value(&input.name, was, &input.value)),
            Some(_) => {}
        }
    }
    for input in old.iter().filter(|i| !new_names.contains(&i.name.as_str())) {
        out.push(format!("{}: no longer an input", input.name));
    }
    out
}

fn diff_value(name: &str, old: &InputValue, new: &InputValue) -> Vec<String> {
    use InputValue as V;
    let line = match (old, new) {
        (V::Files { ignore: a, .. }, V::Files { ignore: b, .. }) if a != b => {
            format!("{name}: ignore list {a:?} → {b:?}")
        }
        (V::Files { files: a, .. }, V::Files { files: b, .. }) => return diff_files(name, a, b),
        (V::Env { secret: true, set: a, .. }, V::Env { set: b, .. }) => {
            format!("{name}: {} → {} (secret; value not compared)", set_word(*a), set_word(*b))
        }
        (V::Env { set: true, digest: Some(a), .. }, V::Env { set: true, digest: Some(b), .. }) => {
            format!("{name}: value changed ({} → {})", a.short(), b.short())
        }
        (V::Env { set: a, .. }, V::Env { set: b, .. }) => format!("{name}: {} → {}", set_word(*a), set_word(*b)),
        (V::Param { value: a }, V::Param { value: b }) => format!("{name}: {a} → {b}"),
        (V::Tool { version: a }, V::Tool { version: b }) => format!("{name}: `{a}` → `{b}`"),
        (V::Probe { output: a, success: sa }, V::Probe { output: b, success: sb }) => {
            format!("{name}: {} → {}", probe_word(a, *sa), probe_word(b, *sb))
        }
        (V::Crates { .. }, V::Crates { .. }) => return diff_crates(name, old, new),
        (V::Commands { lines: a }, V::Commands { lines: b }) => return diff_lines(name, a, b),
        (V::Upstream { outputs: a }, V::Upstream { outputs: b }) => {
            format!("{name}: outputs changed ({} → {})", a.short(), b.short())
        }
        _ => format!("{name}: changed kind"),
    };
    vec![line]
}

fn probe_word(output: &str, success: bool) -> String {
    match (success, output.is_empty()) {
        (true, true) => "(nothing)".to_string(),
        (true, false) => format!("`{output}`"),
        (false, _) => "(failed)".to_string(),
    }
}

fn diff_crates(name: &str, old: &InputValue, new: &InputValue) -> Vec<String> {
    let (
        InputValue::Crates { packages: pa, files: fa, locked: la, rustc: ra },
        InputValue::Crates { packages: pb, files: fb, locked: lb, rustc: rb },
    ) = (old, new)
    else {
        return vec![format!("{name}: changed kind")];
    };
    let mut out = Vec::new();
    if pa != pb {
        out.push(format!("{name}: crates {} → {}", pa.join(", "), pb.join(", ")));
    }
    out.extend(diff_files(name, fa, fb));
    for gone in la.iter().filter(|l| !lb.contains(l)) {
        out.push(format!("{name}: no longer locked: {}", first_two(gone)));
    }
    for added in lb.iter().filter(|l| !la.contains(l)) {
        out.push(format!("{name}: newly locked: {}", first_two(added)));
    }
    if ra != rb {
        let line = |v: &str| v.lines().next().unwrap_or_default().to_string();
        out.push(format!("{name}: compiler `{}` → `{}`", line(ra), line(rb)));
    }
    out
}

/// `name version` of a locked line.
fn first_two(line: &str) -> String {
    line.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

fn diff_lines(name: &str, old: &[String], new: &[String]) -> Vec<String> {
    let mut out: Vec<String> =
        old.iter().zip(new).filter(|(a, b)| a != b).map(|(a, b)| format!("{name}: `{a}` → `{b}`")).collect();
    out.extend(old.iter().skip(new.len()).map(|a| format!("{name}: `{a}` no longer runs")));
    out.extend(new.iter().skip(old.len()).map(|b| format!("{name}: `{b}` runs too")));
    out
}

fn set_word(set: bool) -> &'static str {
    if set { "set" } else { "unset" }
}

fn diff_files(name: &str, old: &[FileEntry], new: &[FileEntry]) -> Vec<String> {
    let was: BTreeMap<&str, &FileEntry> = old.iter().map(|e| (e.path.as_str(), e)).collect();
    let now: BTreeMap<&str, &FileEntry> = new.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut changes = Vec::new();
    for (path, n) in &now {
        match was.get(path) {
            None | Some(FileEntry { kind: EntryKind::Missing, .. }) if n.kind != EntryKind::Missing => {
                changes.push(format!("{path} added"))
            }
            Some(o) if n.kind == EntryKind::Missing && o.kind != EntryKind::Missing => {
                changes.push(format!("{path} removed"))
            }
            Some(o) if o.digest != n.digest => {
                changes.push(format!("{path} changed ({} → {})", o.digest.short(), n.digest.short()))
            }
            Some(o) if o.kind != n.kind => changes.push(format!("{path} {:?} → {:?}", o.kind, n.kind).to_lowercase()),
            _ => {}
        }
    }
    changes.extend(was.keys().filter(|p| !now.contains_key(*p)).map(|p| format!("{p} removed")));
    let total = changes.len();
    let mut lines: Vec<String> = changes.into_iter().take(MAX_FILES).map(|c| format!("{name}: {c}")).collect();
    if total > MAX_FILES {
        lines.push(format!("{name}: … and {} more files", total - MAX_FILES));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_key::Digest;

    fn input(name: &str, value: InputValue) -> ResolvedInput {
        ResolvedInput { name: name.into(), value }
    }

    fn file(path: &str, kind: EntryKind, content: &str) -> FileEntry {
        FileEntry { path: path.into(), kind, size: content.len() as u64, digest: Digest::of(content.as_bytes()) }
    }

    fn files(entries: Vec<FileEntry>) -> InputValue {
        InputValue::Files { ignore: vec![], files: entries }
    }

    fn check(old: Vec<ResolvedInput>, new: Vec<ResolvedInput>, expect: &[&str]) {
        assert_eq!(diff_inputs(&old, &new), expect);
    }

    #[test]
    fn params_show_both_values() {
        let p = |v: f64| input("param:C", InputValue::Param { value: serde_json::json!(v) });
        check(vec![p(1.0)], vec![p(0.5)], &["param:C: 1.0 → 0.5"]);
    }

    #[test]
    fn files_name_what_changed() {
        let a = file("a.rs", EntryKind::File, "a");
        let old = vec![input("files:src", files(vec![a.clone(), file("b.rs", EntryKind::File, "b")]))];
        let new = vec![input(
            "files:src",
            files(vec![file("a.rs", EntryKind::Executable, "a"), file("c.rs", EntryKind::File, "c")]),
        )];
        check(old, new, &["files:src: a.rs file → executable", "files:src: c.rs added", "files:src: b.rs removed"]);
    }

    #[test]
    fn secrets_show_presence_only() {
        let e = |set| input("env:TOKEN", InputValue::Env { set, secret: true, digest: None });
        check(vec![e(false)], vec![e(true)], &["env:TOKEN: unset → set (secret; value not compared)"]);
    }

    #[test]
    fn new_and_dropped_inputs() {
        let t = |n: &str| input(n, InputValue::Tool { version: "x 1".into() });
        check(vec![t("tool:a")], vec![t("tool:b")], &["tool:b: new input", "tool:a: no longer an input"]);
    }

    #[test]
    fn unchanged_inputs_say_nothing() {
        let t = input("tool:rustc", InputValue::Tool { version: "rustc 1.95.0".into() });
        check(vec![t.clone()], vec![t], &[]);
    }
}

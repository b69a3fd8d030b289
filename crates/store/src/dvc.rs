//! DVC's formats: `.dvc` pointer files, the `.dir` manifest of a directory, and the object
//! layout `files/md5/xx/yyyy…` shared by remotes and the local cache.
//!
//! Slipway writes these byte for byte as DVC 3 does, so that `dvc` and Slipway can share a
//! repository and a remote: the manifest's md5 is the directory's identity, so one differing
//! byte would make the two tools disagree about every directory.

use std::path::{Component, Path};

use serde::Deserialize;

use crate::error::StoreError;
use crate::md5::Md5;

/// One output of a `.dvc` file: a file or a directory, by md5.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out {
    /// Relative to the `.dvc` file's directory, `/`-separated.
    pub path: String,
    /// The file's md5, or for a directory the md5 of its `.dir` manifest.
    pub md5: Md5,
    /// Whether this is a directory (its md5 names a `.dir` manifest).
    pub is_dir: bool,
    /// Total bytes of the file, or of every file in the directory.
    pub size: Option<u64>,
    /// For a directory, how many files it holds.
    pub nfiles: Option<u64>,
}

#[derive(Deserialize)]
struct RawPointer {
    outs: Option<Vec<RawOut>>,
}

#[derive(Deserialize)]
struct RawOut {
    path: Option<String>,
    md5: Option<String>,
    size: Option<u64>,
    nfiles: Option<u64>,
    hash: Option<String>,
}

/// Parses a `.dvc` file. `name` is used in errors.
pub fn parse_pointer(name: &str, text: &str) -> Result<Vec<Out>, StoreError> {
    let bad = |reason: String| StoreError::BadPointer { file: name.to_string(), reason };
    let raw: RawPointer = serde_norway::from_str(text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
    let outs = raw.outs.filter(|o| !o.is_empty()).ok_or_else(|| bad("it has no `outs`".into()))?;
    outs.into_iter().map(|o| parse_out(o).map_err(bad)).collect()
}

fn parse_out(raw: RawOut) -> Result<Out, String> {
    let path = raw.path.ok_or("an output has no `path`")?;
    check_relpath(&path).map_err(|e| format!("output path `{path}` {e}"))?;
    match raw.hash.as_deref() {
        Some("md5") => {}
        None => {
            return Err(format!(
                "output `{path}` has no `hash: md5`: it was written by DVC 2; run `dvc cache migrate` and `dvc commit` with DVC 3"
            ));
        }
        Some(other) => return Err(format!("output `{path}` uses the hash `{other}`; only md5 is supported")),
    }
    let md5_text = raw
        .md5
        .ok_or_else(|| format!("output `{path}` has no `md5`: run `dvc commit` (or `cargo xtask add {path}`)"))?;
    let (hex, is_dir) = match md5_text.strip_suffix(".dir") {
        Some(hex) => (hex, true),
        None => (md5_text.as_str(), false),
    };
    let md5 = Md5::from_hex(hex).ok_or_else(|| format!("output `{path}` has a malformed md5 `{md5_text}`"))?;
    Ok(Out { path, md5, is_dir, size: raw.size, nfiles: raw.nfiles })
}

/// The text of a `.dvc` file for `out`, exactly as `dvc add` writes it.
pub fn write_pointer(out: &Out) -> String {
    let mut text = format!("outs:\n- md5: {}{}\n", out.md5, if out.is_dir { ".dir" } else { "" });
    if let Some(size) = out.size {
        text.push_str(&format!("  size: {size}\n"));
    }
    if let Some(n) = out.nfiles.filter(|_| out.is_dir) {
        text.push_str(&format!("  nfiles: {n}\n"));
    }
    text.push_str(&format!("  hash: md5\n  path: {}\n", yaml_scalar(&out.path)));
    text
}

/// A YAML scalar for a path: plain when YAML would read it back as the same string, otherwise
/// single-quoted as ruamel (DVC's YAML library) does.
fn yaml_scalar(s: &str) -> String {
    let plain_chars = s.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
    let first_ok = s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || "_./".contains(c));
    let looks_typed = s.parse::<f64>().is_ok()
        || ["true", "false", "yes", "no", "on", "off", "null", "~"].contains(&s.to_ascii_lowercase().as_str());
    if plain_chars && first_ok && !looks_typed { s.to_string() } else { format!("'{}'", s.replace('\'', "''")) }
}

/// One file of a directory manifest.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct DirEntry {
    /// Relative to the directory, `/`-separated.
    pub relpath: String,
    /// The file's md5.
    pub md5: Md5,
}

/// Parses a `.dir` manifest and checks that every path stays inside the directory.
pub fn parse_dir_manifest(bytes: &[u8]) -> Result<Vec<DirEntry>, String> {
    let entries: Vec<DirEntry> =
        serde_json::from_slice(bytes).map_err(|e| format!("not a DVC directory manifest: {e}"))?;
    for e in &entries {
        check_relpath(&e.relpath).map_err(|why| format!("entry `{}` {why}", e.relpath.escape_debug()))?;
    }
    Ok(entries)
}

/// The bytes of a `.dir` manifest as DVC writes them: Python's
/// `json.dumps(sorted(entries, key=relpath), sort_keys=True)`.
pub fn write_dir_manifest(entries: &[DirEntry]) -> Vec<u8> {
    let mut sorted: Vec<&DirEntry> = entries.iter().collect();
    // Python compares str by code point; UTF-8 byte order is the same order.
    sorted.sort_by(|a, b| a.relpath.cmp(&b.relpath));
    let items: Vec<String> = sorted
        .iter()
        .map(|e| format!("{{\"md5\": \"{}\", \"relpath\": {}}}", e.md5, python_json_string(&e.relpath)))
        .collect();
    format!("[{}]", items.join(", ")).into_bytes()
}

/// A JSON string as Python's `json.dumps` writes it with `ensure_ascii=True`: every character
/// outside space..`~` escaped, non-BMP characters as surrogate pairs, lowercase hex.
pub fn python_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// A relative path that stays where it is put: not empty, not absolute, no `..`, no `.`.
pub fn check_relpath(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    for c in Path::new(path).components() {
        match c {
            Component::Normal(_) => {}
            Component::ParentDir => return Err("climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is absolute"),
            Component::CurDir => return Err("contains `.`"),
        }
    }
    Ok(())
}

/// Where an object lives under a remote or cache root: `files/md5/ab/cdef…[.dir]`.
pub fn object_key(md5: &Md5, is_dir: bool) -> String {
    let hex = md5.to_hex();
    format!("files/md5/{}/{}{}", &hex[..2], &hex[2..], if is_dir { ".dir" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_json(input: &str, expect: &str) {
        assert_eq!(python_json_string(input), expect);
    }

    #[test]
    fn python_json_escapes() {
        check_json("plain name.csv", r#""plain name.csv""#);
        check_json(r#"q"uote\back"#, r#""q\"uote\\back""#);
        check_json("tab\tnl\n", r#""tab\tnl\n""#);
        check_json("caf\u{e9}", r#""caf\u00e9""#);
        check_json("\u{1f600}", r#""\ud83d\ude00""#);
        check_json("\u{7f}\u{1}", r#""\u007f\u0001""#);
    }

    #[test]
    fn manifest_is_sorted_by_code_point_and_formatted_like_python() {
        let m = |s: &str| Md5::of(s.as_bytes());
        let entries = vec![
            DirEntry { relpath: "b".into(), md5: m("b") },
            DirEntry { relpath: "a/x".into(), md5: m("x") },
            DirEntry { relpath: "a-b".into(), md5: m("y") },
        ];
        let text = String::from_utf8(write_dir_manifest(&entries)).unwrap();
        let expect = format!(
            "[{{\"md5\": \"{}\", \"relpath\": \"a-b\"}}, {{\"md5\": \"{}\", \"relpath\": \"a/x\"}}, {{\"md5\": \"{}\", \"relpath\": \"b\"}}]",
            m("y"),
            m("x"),
            m("b")
        );
        assert_eq!(text, expect);
        assert_eq!(parse_dir_manifest(text.as_bytes()).unwrap().len(), 3);
        assert_eq!(write_dir_manifest(&[]), b"[]");
    }

    #[test]
    fn manifests_that_escape_the_directory_are_refused() {
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "./a"] {
            let text = format!(r#"[{{"md5": "{}", "relpath": {}}}]"#, Md5::of(b""), python_json_string(bad));
            assert!(parse_dir_manifest(text.as_bytes()).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn pointer_round_trips() {
        let out = Out { path: "data".into(), md5: Md5::of(b"m"), is_dir: true, size: Some(10), nfiles: Some(2) };
        let text = write_pointer(&out);
        assert_eq!(
            text,
            format!("outs:\n- md5: {}.dir\n  size: 10\n  nfiles: 2\n  hash: md5\n  path: data\n", Md5::of(b"m"))
        );
        assert_eq!(parse_pointer("data.dvc", &text).unwrap(), vec![out]);
    }

    #[test]
    fn bad_pointers_say_what_is_wrong() {
        let check = |text: &str, expect: &str| {
            let err = parse_pointer("x.dvc", text).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        };
        check("outs: [", "not valid YAML");
        check("deps: []", "has no `outs`");
        check("outs:\n- path: data\n  md5: abc\n  hash: md5\n", "malformed md5");
        check("outs:\n- path: ../up\n  md5: d41d8cd98f00b204e9800998ecf8427e\n  hash: md5\n", "climbs out");
        check("outs:\n- path: data\n  md5: d41d8cd98f00b204e9800998ecf8427e\n", "DVC 2");
    }

    #[test]
    fn odd_paths_are_quoted() {
        assert_eq!(yaml_scalar("data"), "data");
        assert_eq!(yaml_scalar("my data"), "'my data'");
        assert_eq!(yaml_scalar("it's"), "'it''s'");
        assert_eq!(yaml_scalar("1.0"), "'1.0'");
        assert_eq!(yaml_scalar("null"), "'null'");
    }
}

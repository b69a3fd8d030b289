//! The repository's `Dockerfile`, held to what can be checked without `docker build` (which
//! needs to pull its base images, and nothing can be pulled here): every `COPY` source from the
//! build context is inside the context that `.dockerignore` leaves, and the user, port,
//! entrypoint, environment and file paths of the final stage are those of the image
//! `cargo xtask image` writes, read from the config of an image this crate builds.

use std::collections::BTreeMap;
use std::fs;

use crate::fixture;

/// One instruction: its keyword (upper case) and its arguments, after line continuations and
/// comments are gone.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// Parses a Dockerfile: `#` comments, `\` continuations, one instruction per logical line.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut logical = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if logical.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if trimmed.starts_with('#') {
            continue; // a comment inside a continued instruction
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                logical.push_str(head);
                logical.push(' ');
            }
            None => {
                logical.push_str(trimmed);
                let (keyword, args) = logical.split_once(char::is_whitespace).unwrap_or((&logical, ""));
                out.push(Instruction { keyword: keyword.to_ascii_uppercase(), args: args.trim().to_string() });
                logical.clear();
            }
        }
    }
    assert!(logical.is_empty(), "the Dockerfile ends inside a continued line: {logical}");
    out
}

/// `${NAME}` and `$NAME` replaced with the ARG defaults in scope.
fn substitute(text: &str, args: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (name, value) in args {
        out = out.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    assert!(!out.contains('$'), "an ARG without a default is used in `{text}`");
    out
}

/// `KEY=VALUE` pairs of an `ENV` or `LABEL` (values without spaces or quotes, as ours are).
fn pairs(args: &str) -> BTreeMap<String, String> {
    args.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("`{kv}` is not KEY=VALUE"));
            (k.to_string(), v.trim_matches('"').to_string())
        })
        .collect()
}

/// Docker's `.dockerignore` rules: patterns in order, `!` re-includes, the last match wins, and
/// a pattern that matches a parent directory matches everything under it.
struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    fn parse(text: &str) -> Ignore {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (exception, pattern) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                assert!(
                    !pattern.contains(['[', '\\']),
                    "`{pattern}`: character classes and escapes are not checked here"
                );
                let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
                (exception, pattern.split('/').filter(|s| !s.is_empty() && *s != ".").map(String::from).collect())
            })
            .collect();
        Ignore { rules }
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context.
    fn excludes(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
        let mut excluded = false;
        for (exception, pattern) in &self.rules {
            let hit = (1..=segments.len()).any(|n| matches(pattern, &segments[..n]));
            if hit {
                excluded = !exception;
            }
        }
        excluded
    }
}

/// Glob `pattern` against whole path `segments`: `**` is any number of segments, `*` any run
/// of characters within one, `?` one character.
fn matches(pattern: &[String], segments: &[&str]) -> bool {
    match pattern.split_first() {
        None => segments.is_empty(),
        Some((p, rest)) if p == "**" => (0..=segments.len()).any(|skip| matches(rest, &segments[skip..])),
        Some((p, rest)) => {
            segments.split_first().is_some_and(|(s, tail)| segment(p.as_bytes(), s.as_bytes()) && matches(rest, tail))
        }
    }
}

fn segment(p: &[u8], s: &[u8]) -> bool {
    match (p.split_first(), s.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => (0..=s.len()).any(|i| segment(rest, &s[i..])),
        (Some((b'?', rest)), Some((_, tail))) => segment(rest, tail),
        (Some((c, rest)), Some((d, tail))) => c == d && segment(rest, tail),
        _ => false,
    }
}

#[test]
fn the_ignore_rules_follow_docker() {
    let ignore = Ignore::parse("# comment\ntarget\n**/*.pyc\nmodels\n!models/model.onnx\n/data/\nre?orts\n");
    for (path, excluded) in [
        ("target/debug/x", true),
        ("crates/a/b.pyc", true),
        ("b.pyc", true),
        ("models/model.onnx", false),
        ("models/metrics.json", true),
        ("data/train.csv", true),
        ("reports/x.json", true),
        ("crates/model/src/lib.rs", false),
        ("Cargo.toml", false),
    ] {
        assert_eq!(ignore.excludes(path), excluded, "{path}");
    }
}

/// The final stage's instructions, the ARG defaults, and every `COPY` from the context.
struct Dockerfile {
    args: BTreeMap<String, String>,
    last_stage: Vec<Instruction>,
    context_sources: Vec<String>,
    copies: Vec<(Option<String>, Vec<String>, String)>,
}

fn dockerfile() -> Dockerfile {
    let text = fs::read_to_string(fixture::root().join("Dockerfile")).unwrap();
    let mut args = BTreeMap::new();
    let mut last_stage = Vec::new();
    let mut context_sources = Vec::new();
    let mut copies = Vec::new();
    for i in instructions(&text) {
        match i.keyword.as_str() {
            "FROM" => last_stage.clear(),
            "ARG" => {
                if let Some((name, value)) = i.args.split_once('=') {
                    args.insert(name.to_string(), value.to_string());
                }
            }
            "COPY" | "ADD" => {
                assert_eq!(i.keyword, "COPY", "ADD can fetch URLs and unpack archives; use COPY");
                let words: Vec<String> = substitute(&i.args, &args).split_whitespace().map(String::from).collect();
                let from = words.iter().find_map(|w| w.strip_prefix("--from=")).map(String::from);
                let paths: Vec<String> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
                let (dest, sources) = paths.split_last().expect("COPY has a source and a destination");
                if from.is_none() {
                    context_sources.extend(sources.iter().cloned());
                }
                copies.push((from, sources.to_vec(), dest.clone()));
            }
            _ => {}
        }
        last_stage.push(i);
    }
    Dockerfile { args, last_stage, context_sources, copies }
}

#[test]
fn every_copy_source_is_in_the_build_context() {
    let ignore = Ignore::parse(&fs::read_to_string(fixture::root().join(".dockerignore")).unwrap());
    let docker = dockerfile();
    assert!(!docker.context_sources.is_empty(), "the Dockerfile copies nothing from the context");
    for source in &docker.context_sources {
        if source == "." {
            // The whole context: what the Rust build needs must be in it.
            for needed in
                ["Cargo.toml", "Cargo.lock", "crates/serve/src/main.rs", "crates/model/src/lib.rs", "xtask/Cargo.toml"]
            {
                assert!(
                    !ignore.excludes(needed),
                    "`COPY . .` builds the server, but .dockerignore leaves out {needed}"
                );
            }
        } else {
            assert!(!ignore.excludes(source), ".dockerignore leaves out `{source}`, which the Dockerfile copies");
        }
    }
    // What the build context must not carry: build output, the pipeline's state, the data.
    for kept_out in [
        "target/debug/x",
        ".slipway/cache/x",
        ".git/HEAD",
        "data/train.csv",
        "models/metrics.json",
        "examples/tabular/.slipway/deploy/staging/router.token",
        "examples/tabular/data/train.csv",
        "crates/serve/.slipway/x",
    ] {
        assert!(ignore.excludes(kept_out), ".dockerignore should leave out {kept_out}");
    }
}

#[test]
fn the_final_stage_matches_the_image_xtask_writes() {
    let dir = tempfile::tempdir().unwrap();
    let built = image::build(&fixture::synthetic(&dir.path().join("in"), &dir.path().join("out"), b"m")).unwrap();
    let hex = built.config_digest.strip_prefix("sha256:").unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(built.layout.join("blobs/sha256").join(hex)).unwrap()).unwrap();
    let run = &config["config"];
    let docker = dockerfile();
    let last = |keyword: &str| {
        docker
            .last_stage
            .iter()
            .rev()
            .find(|i| i.keyword == keyword)
            .unwrap_or_else(|| panic!("no {keyword}"))
            .args
            .clone()
    };
    assert_eq!(last("USER"), run["User"].as_str().unwrap());
    let exposed: Vec<&String> = run["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(vec![&last("EXPOSE")], exposed);
    let entrypoint: serde_json::Value = serde_json::from_str(&last("ENTRYPOINT")).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint, run["Entrypoint"]);
    let image_env: BTreeMap<String, String> = run["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (k, v) = e.as_str().unwrap().split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let env: BTreeMap<String, String> = docker
        .last_stage
        .iter()
        .filter(|i| i.keyword == "ENV")
        .flat_map(|i| pairs(&substitute(&i.args, &docker.args)))
        .collect();
    for (name, value) in &env {
        let theirs = image_env.get(name).unwrap_or_else(|| panic!("the image has no {name}"));
        if name == "ORT_DYLIB_PATH" {
            // The library's file name carries the ONNX Runtime version of each build.
            let dir = |p: &str| p.rsplit_once('/').map(|(d, _)| d.to_string());
            assert_eq!(dir(value), dir(theirs), "ORT_DYLIB_PATH's directory");
        } else {
            assert_eq!(value, theirs, "{name}");
        }
    }
    // Every variable the image sets, the Dockerfile sets too (PATH comes from the base image).
    for name in image_env.keys().filter(|n| *n != "PATH") {
        assert!(env.contains_key(name), "the Dockerfile does not set {name}, which the image sets");
    }
    // The files land where the environment says.
    let dests: Vec<&str> = docker.copies.iter().map(|(_, _, d)| d.as_str()).collect();
    assert!(dests.contains(&env["SLIPWAY_MODEL"].as_str()), "no COPY to the model path: {dests:?}");
    assert!(dests.contains(&entrypoint[0].as_str().unwrap()), "no COPY to the entrypoint: {dests:?}");
    assert!(dests.contains(&env["ORT_DYLIB_PATH"].as_str()), "no COPY to ORT_DYLIB_PATH: {dests:?}");
}

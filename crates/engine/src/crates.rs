//! The code of a stage that runs in process: workspace crates and their closure in `Cargo.lock`.
//!
//! A stage that calls `slipway-gate` is keyed on the gate's sources, on every workspace crate the
//! gate depends on (through `Cargo.lock`, so the closure is exactly what cargo links), on the
//! locked version and checksum of every registry crate in that closure, on the workspace
//! manifest and cargo's configuration (profiles, features, flags) and on the compiler. Editing a
//! crate outside the closure, or a crate's tests, benches or examples, changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

/// Files at the workspace root that change how every crate is built.
pub const BUILD_CONFIG: &[&str] = &["Cargo.toml", ".cargo", "rust-toolchain", "rust-toolchain.toml"];

/// Directories of a crate that never end up in its library or binaries.
pub const NOT_LINKED: &[&str] = &["tests", "benches", "examples"];

/// One package of `Cargo.lock`.
#[derive(Debug, serde::Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<LockedPackage>,
}

/// The closure of some workspace crates.
#[derive(Debug, PartialEq)]
pub struct Closure {
    /// Workspace crates in the closure, by name, with their directory relative to the root.
    pub members: BTreeMap<String, String>,
    /// `name version source checksum` of every other locked package, sorted.
    pub locked: Vec<String>,
    /// The manifest of every workspace member: cargo reads them all to resolve any one.
    pub manifests: Vec<String>,
}

/// The closure of `packages` in the workspace at `root`. A workspace member's dependencies are
/// those its manifest lists outside `[dev-dependencies]`: tests and benches never reach its
/// library or binaries, though `Cargo.lock` lists what they need too.
pub fn closure(root: &Path, packages: &[String]) -> Result<Closure> {
    let members = workspace_members(root)?;
    let linked = linked_dependencies(root, &members)?;
    let text = std::fs::read_to_string(root.join("Cargo.lock")).context("cannot read Cargo.lock")?;
    let lock = LOCKS.parse(text).context("Cargo.lock is not valid")?;
    let by_name: BTreeMap<&str, Vec<&LockedPackage>> = lock.package.iter().fold(BTreeMap::new(), |mut m, p| {
        m.entry(p.name.as_str()).or_default().push(p);
        m
    });
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut todo: Vec<&LockedPackage> = Vec::new();
    for name in packages {
        if !members.contains_key(name) {
            bail!(
                "`{name}` is not a crate of this workspace (crates: {})",
                members.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let p = by_name.get(name.as_str()).and_then(|v| v.iter().find(|p| p.source.is_none()));
        todo.push(p.with_context(|| format!("`{name}` is not in Cargo.lock; run `cargo metadata` to update it"))?);
    }
    let manifests =
        members.values().map(|d| if d.is_empty() { "Cargo.toml".into() } else { format!("{d}/Cargo.toml") }).collect();
    let mut out = Closure { members: BTreeMap::new(), locked: Vec::new(), manifests };
    while let Some(p) = todo.pop() {
        if !seen.insert((p.name.clone(), p.version.clone())) {
            continue;
        }
        match &p.source {
            None => {
                let dir = members.get(&p.name).with_context(|| {
                    format!("`{}` is a path dependency outside the workspace members; make it a member", p.name)
                })?;
                out.members.insert(p.name.clone(), dir.clone());
            }
            Some(source) => {
                out.locked.push(format!("{} {} {source} {}", p.name, p.version, p.checksum.as_deref().unwrap_or("-")))
            }
        }
        for dep in &p.dependencies {
            let name = dep.split(' ').next().unwrap_or_default();
            let keep = match (&p.source, linked.get(&p.name)) {
                (None, Some(names)) => names.contains(name),
                _ => true,
            };
            if keep {
                todo.push(find_dependency(&by_name, dep)?);
            }
        }
    }
    out.locked.sort();
    Ok(out)
}

/// A `dependencies` entry of `Cargo.lock`: `name`, `name version` or `name version (source)`.
fn find_dependency<'a>(by_name: &BTreeMap<&str, Vec<&'a LockedPackage>>, dep: &str) -> Result<&'a LockedPackage> {
    let mut parts = dep.split(' ');
    let name = parts.next().unwrap_or_default();
    let version = parts.next();
    let candidates = by_name.get(name).map(Vec::as_slice).unwrap_or_default();
    let found: Vec<&&LockedPackage> = candidates.iter().filter(|p| version.is_none_or(|v| p.version == v)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!("Cargo.lock names the dependency `{dep}` but has no such package"),
        // Same name and version from two sources: keep both, the key covers each.
        [first, ..] => Ok(first),
    }
}

/// Workspace members by package name → directory relative to the root. Member patterns may
/// end in one `*` component (`crates/*`), as cargo's usually do.
fn workspace_members(root: &Path) -> Result<BTreeMap<String, String>> {
    let manifest = read_toml(&root.join("Cargo.toml"))?;
    let workspace = manifest.get("workspace").and_then(toml::Value::as_table);
    let patterns: Vec<String> = workspace
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let mut dirs = Vec::new();
    if manifest.contains_key("package") {
        dirs.push(String::new());
    }
    for pattern in patterns {
        match pattern.strip_suffix("/*") {
            Some(parent) => {
                let entries = std::fs::read_dir(root.join(parent)).with_context(|| format!("cannot list {parent}"))?;
                let mut found: Vec<String> = entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().join("Cargo.toml").is_file())
                    .filter_map(|e| e.file_name().to_str().map(|n| format!("{parent}/{n}")))
                    .collect();
                found.sort();
                dirs.extend(found);
            }
            None if pattern.contains('*') => {
                bail!("workspace member pattern `{pattern}`: only a final `/*` is understood")
            }
            None => dirs.push(pattern.trim_end_matches('/').to_string()),
        }
    }
    let mut members = BTreeMap::new();
    for dir in dirs {
        let path = root.join(&dir).join("Cargo.toml");
        let table = read_toml(&path)?;
        let name = table
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(toml::Value::as_str)
            .with_context(|| format!("{} has no [package] name", path.display()))?;
        members.insert(name.to_string(), dir);
    }
    Ok(members)
}

/// For each member, the package names of its normal and build dependencies (any target).
fn linked_dependencies(root: &Path, members: &BTreeMap<String, String>) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let workspace = read_toml(&root.join("Cargo.toml"))?;
    let shared =
        workspace.get("workspace").and_then(|w| w.get("dependencies")).and_then(toml::Value::as_table).cloned();
    let package_of = |key: &str, spec: &toml::Value| -> String {
        let renamed = |v: &toml::Value| v.get("package").and_then(toml::Value::as_str).map(str::to_string);
        let inherited = spec.get("workspace").and_then(toml::Value::as_bool) == Some(true);
        let from_workspace = inherited.then(|| shared.as_ref().and_then(|t| t.get(key)).and_then(renamed)).flatten();
        renamed(spec).or(from_workspace).unwrap_or_else(|| key.to_string())
    };
    let mut out = BTreeMap::new();
    for (name, dir) in members {
        let manifest = read_toml(&root.join(dir).join("Cargo.toml"))?;
        let mut tables: Vec<&toml::Table> = Vec::new();
        for key in ["dependencies", "build-dependencies"] {
            tables.extend(manifest.get(key).and_then(toml::Value::as_table));
            let targets = manifest.get("target").and_then(toml::Value::as_table);
            tables.extend(
                targets
                    .into_iter()
                    .flat_map(|t| t.values())
                    .filter_map(|t| t.get(key))
                    .filter_map(toml::Value::as_table),
            );
        }
        let names = tables.iter().flat_map(|t| t.iter()).map(|(k, v)| package_of(k, v)).collect();
        out.insert(name.clone(), names);
    }
    Ok(out)
}

fn read_toml(path: &Path) -> Result<Arc<toml::Table>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    MANIFESTS.parse(text).with_context(|| format!("{} is not valid TOML", path.display()))
}

/// The lock files parsed in this process, by text.
static LOCKS: Parsed<Lock> = Parsed::new();
/// The manifests parsed in this process, by text.
static MANIFESTS: Parsed<toml::Table> = Parsed::new();

/// How many texts a [`Parsed`] keeps before it starts over.
const PARSED_TEXTS: usize = 64;

/// TOML files parsed before, by their exact text. Parsing is a pure function of the text, so an
/// entry can never be stale: every caller still reads its file afresh, and only a text seen
/// before skips the parser. Every stage keyed on the pipeline's own code asks for the same
/// closure; parsing `Cargo.lock` and the manifests once per stage, unoptimised, was a tenth of a
/// `ci` with nothing to do.
struct Parsed<T> {
    by_text: Mutex<BTreeMap<String, Arc<T>>>,
}

impl<T: serde::de::DeserializeOwned> Parsed<T> {
    const fn new() -> Parsed<T> {
        Parsed { by_text: Mutex::new(BTreeMap::new()) }
    }

    /// `text` parsed, from memory if this exact text was parsed before. Held while parsing, so
    /// stages that ask at once parse it once; a text that does not parse is not kept.
    fn parse(&self, text: String) -> Result<Arc<T>, toml::de::Error> {
        let mut by_text = self.by_text.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(parsed) = by_text.get(&text) {
            return Ok(Arc::clone(parsed));
        }
        let parsed = Arc::new(toml::from_str::<T>(&text)?);
        if by_text.len() >= PARSED_TEXTS {
            by_text.clear();
        }
        by_text.insert(text, Arc::clone(&parsed));
        Ok(parsed)
    }
}

/// The declared paths of a closure: each member's directory (tests, benches and examples are
/// excluded by the caller), every member's manifest and the build configuration.
pub fn paths(closure: &Closure) -> Vec<String> {
    let mut paths: Vec<String> =
        closure.members.values().map(|d| if d.is_empty() { ".".into() } else { d.clone() }).collect();
    paths.extend(closure.manifests.iter().cloned());
    paths.extend(BUILD_CONFIG.iter().map(|p| p.to_string()));
    paths
}

/// What a closure's walk leaves out: each member's tests, benches and examples.
pub fn not_linked(closure: &Closure) -> Vec<String> {
    closure
        .members
        .values()
        .flat_map(|d| NOT_LINKED.iter().map(move |n| if d.is_empty() { n.to_string() } else { format!("{d}/{n}") }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        write(
            "Cargo.toml",
            "[workspace]\nmembers = [\"crates/*\", \"tool\"]\n[workspace.dependencies]\nitoa = \"1\"\n",
        );
        write(
            "crates/a/Cargo.toml",
            "[package]\nname = \"pkg-a\"\n[dependencies]\nb = { package = \"pkg-b\", path = \"../b\" }\nserde = \"1\"\n[dev-dependencies]\ntool = { path = \"../../tool\" }\n",
        );
        write("crates/b/Cargo.toml", "[package]\nname = \"pkg-b\"\n[dependencies]\nitoa.workspace = true\n");
        write("tool/Cargo.toml", "[package]\nname = \"tool\"\n");
        let lock = r#"
version = 4

[[package]]
name = "pkg-a"
version = "0.1.0"
dependencies = ["pkg-b", "serde 1.0.1", "tool"]

[[package]]
name = "pkg-b"
version = "0.1.0"
dependencies = ["itoa"]

[[package]]
name = "tool"
version = "0.1.0"
dependencies = ["pkg-a", "serde 2.0.0"]

[[package]]
name = "serde"
version = "1.0.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "aa"

[[package]]
name = "serde"
version = "2.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "bb"

[[package]]
name = "itoa"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "cc"
"#;
        write("Cargo.lock", lock);
        dir
    }

    #[test]
    fn the_closure_follows_the_lock_file() {
        let ws = workspace();
        let c = closure(ws.path(), &["pkg-a".into()]).unwrap();
        assert_eq!(
            c.members.into_iter().collect::<Vec<_>>(),
            [("pkg-a".into(), "crates/a".into()), ("pkg-b".into(), "crates/b".into())]
        );
        let reg = "registry+https://github.com/rust-lang/crates.io-index";
        assert_eq!(c.locked, [format!("itoa 1.0.0 {reg} cc"), format!("serde 1.0.1 {reg} aa")]);
        let b = closure(ws.path(), &["pkg-b".into()]).unwrap();
        assert_eq!(b.members.keys().collect::<Vec<_>>(), ["pkg-b"]);
    }

    #[test]
    fn an_edited_lock_or_manifest_is_read_afresh() {
        let ws = workspace();
        let reg = "registry+https://github.com/rust-lang/crates.io-index";
        assert_eq!(closure(ws.path(), &["pkg-b".into()]).unwrap().locked, [format!("itoa 1.0.0 {reg} cc")]);
        let lock = ws.path().join("Cargo.lock");
        let text = std::fs::read_to_string(&lock).unwrap();
        std::fs::write(&lock, text.replace("checksum = \"cc\"", "checksum = \"dd\"")).unwrap();
        assert_eq!(closure(ws.path(), &["pkg-b".into()]).unwrap().locked, [format!("itoa 1.0.0 {reg} dd")]);
        // pkg-b no longer links itoa, though the lock still lists it.
        std::fs::write(ws.path().join("crates/b/Cargo.toml"), "[package]\nname = \"pkg-b\"\n").unwrap();
        assert!(closure(ws.path(), &["pkg-b".into()]).unwrap().locked.is_empty());
        std::fs::write(&lock, "[[package]\n").unwrap();
        let e = closure(ws.path(), &["pkg-b".into()]).unwrap_err();
        assert_eq!(e.to_string(), "Cargo.lock is not valid");
    }

    #[test]
    fn an_unknown_crate_is_an_error_naming_the_crates() {
        let ws = workspace();
        let e = closure(ws.path(), &["nope".into()]).unwrap_err().to_string();
        assert_eq!(e, "`nope` is not a crate of this workspace (crates: pkg-a, pkg-b, tool)");
    }
}

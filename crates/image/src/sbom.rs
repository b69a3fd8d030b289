//! A CycloneDX 1.5 JSON SBOM of the image: the Rust crates from `Cargo.lock`, the Python
//! packages from a pip lock, ONNX Runtime, and the model and training data with their digests.
//!
//! Deterministic: components sorted by `bom-ref`, the only timestamp is `SOURCE_DATE_EPOCH`,
//! and the serial number is derived from the digest of the rest of the document.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::ImageError;
use crate::rfc3339;

/// What the SBOM describes.
#[derive(Clone, Debug)]
pub struct SbomInput {
    /// The image's name (e.g. `slipway-serve`).
    pub name: String,
    /// The image's version.
    pub version: String,
    /// The workspace `Cargo.lock`: every registry crate becomes a `pkg:cargo` component.
    pub cargo_lock: PathBuf,
    /// A pip lock (`name==version` lines); its packages become `pkg:pypi` components.
    pub python_lock: Option<PathBuf>,
    /// The ONNX Runtime version in the image.
    pub onnxruntime_version: String,
    /// The model's digest, `sha256:<hex>` (or `md5:`/`blake3:`).
    pub model_digest: String,
    /// The training data's digest, in the same form.
    pub data_digest: String,
    /// The SBOM's timestamp.
    pub source_date_epoch: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    bom_format: &'static str,
    spec_version: &'static str,
    serial_number: String,
    version: u32,
    metadata: Metadata,
    components: Vec<Component>,
}

#[derive(Serialize)]
struct Metadata {
    timestamp: String,
    tools: Tools,
    component: Component,
}

#[derive(Serialize)]
struct Tools {
    components: Vec<Component>,
}

#[derive(Clone, Serialize)]
struct Component {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref")]
    bom_ref: String,
    name: String,
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
}

#[derive(Clone, Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

/// The CycloneDX 1.5 JSON document for `input`, pretty-printed with a final newline.
pub fn sbom(input: &SbomInput) -> Result<Vec<u8>, ImageError> {
    let mut components = BTreeMap::new();
    let mut add = |c: Component| components.insert(c.bom_ref.clone(), c);
    cargo_packages(&input.cargo_lock)?.into_iter().for_each(|c| _ = add(c));
    if let Some(lock) = &input.python_lock {
        python_packages(lock)?.into_iter().for_each(|c| _ = add(c));
    }
    add(library("onnxruntime", &input.onnxruntime_version, "pypi"));
    add(hashed("machine-learning-model", "model.onnx", &input.model_digest));
    add(hashed("data", "training-data", &input.data_digest));
    let image = Component {
        kind: "container",
        bom_ref: format!("image:{}@{}", input.name, input.version),
        name: input.name.clone(),
        version: input.version.clone(),
        purl: None,
        hashes: vec![],
    };
    let tool = Component {
        kind: "application",
        bom_ref: concat!("tool:slipway-image@", env!("CARGO_PKG_VERSION")).into(),
        name: "slipway-image".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        purl: None,
        hashes: vec![],
    };
    let tools = Tools { components: vec![tool] };
    let metadata = Metadata { timestamp: rfc3339(input.source_date_epoch), tools, component: image };
    let mut bom = Bom {
        bom_format: "CycloneDX",
        spec_version: "1.5",
        serial_number: String::new(),
        version: 1,
        metadata,
        components: components.into_values().collect(),
    };
    bom.serial_number = serial_number(&to_pretty(&bom));
    Ok(to_pretty(&bom))
}

fn to_pretty(bom: &Bom) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(bom).expect("the SBOM types always serialize");
    bytes.push(b'\n');
    bytes
}

/// A UUID (version 5 layout) made of the document's own digest, so equal inputs give equal
/// serial numbers and different inputs different ones.
fn serial_number(document: &[u8]) -> String {
    let mut b: [u8; 16] = Sha256::digest(document)[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("urn:uuid:{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn library(name: &str, version: &str, ecosystem: &str) -> Component {
    let purl = format!("pkg:{ecosystem}/{name}@{version}");
    Component {
        kind: "library",
        bom_ref: purl.clone(),
        name: name.into(),
        version: version.into(),
        purl: Some(purl),
        hashes: vec![],
    }
}

fn hashed(kind: &'static str, name: &str, digest: &str) -> Component {
    let (alg, content) = hash_of(digest);
    Component {
        kind,
        bom_ref: format!("{kind}:{digest}"),
        name: name.into(),
        version: content.chars().take(12).collect(),
        purl: None,
        hashes: vec![Hash { alg, content }],
    }
}

/// `sha256:<hex>` → (`SHA-256`, hex); a bare hex string is told apart by its length.
fn hash_of(digest: &str) -> (&'static str, String) {
    let (alg, hex) = digest.split_once(':').unwrap_or(("", digest));
    let alg = match (alg.to_ascii_lowercase().as_str(), hex.len()) {
        ("md5", _) | ("", 32) => "MD5",
        ("blake3", _) => "BLAKE3",
        ("sha512", _) | ("", 128) => "SHA-512",
        _ => "SHA-256",
    };
    (alg, hex.to_ascii_lowercase())
}

#[derive(Deserialize)]
struct CargoLock {
    #[serde(default)]
    package: Vec<CargoPackage>,
}

#[derive(Deserialize)]
struct CargoPackage {
    name: String,
    version: String,
    source: Option<String>,
}

/// Crates from a registry or git; path crates (the workspace's own) have no `source`.
fn cargo_packages(path: &Path) -> Result<Vec<Component>, ImageError> {
    let text = read(path)?;
    let lock: CargoLock =
        toml::from_str(&text).map_err(|e| ImageError::BadLock { path: path.into(), detail: e.to_string() })?;
    let from_elsewhere = lock.package.into_iter().filter(|p| p.source.is_some());
    Ok(from_elsewhere.map(|p| library(&p.name, &p.version, "cargo")).collect())
}

fn python_packages(path: &Path) -> Result<Vec<Component>, ImageError> {
    let text = read(path)?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim().trim_end_matches('\\').trim();
        if line.is_empty() || line.starts_with('-') {
            continue;
        }
        let spec = line.split(';').next().unwrap_or_default().trim();
        let (name, version) = spec.split_once("==").ok_or_else(|| ImageError::BadLock {
            path: path.into(),
            detail: format!("line {}: `{line}` is not `name==version`", n + 1),
        })?;
        let name = name.split('[').next().unwrap_or_default();
        out.push(library(&pep503(name), version.split_whitespace().next().unwrap_or_default(), "pypi"));
    }
    Ok(out)
}

/// PyPI's normalised name: lowercase, runs of `-`, `_`, `.` become one `-`.
fn pep503(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

fn read(path: &Path) -> Result<String, ImageError> {
    fs::read_to_string(path).map_err(|source| ImageError::Input { what: "lock file", path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_names_are_normalised() {
        for (name, want) in
            [("scikit-learn", "scikit-learn"), ("Jinja2", "jinja2"), ("ruamel.yaml", "ruamel-yaml"), ("a__b", "a-b")]
        {
            assert_eq!(pep503(name), want);
        }
    }

    #[test]
    fn digests_name_their_algorithm() {
        assert_eq!(hash_of("sha256:ABC").0, "SHA-256");
        assert_eq!(hash_of("md5:abc").0, "MD5");
        assert_eq!(hash_of(&"a".repeat(32)).0, "MD5");
        assert_eq!(hash_of("blake3:ab").0, "BLAKE3");
    }

    #[test]
    fn serial_numbers_look_like_uuids() {
        let s = serial_number(b"x");
        assert_eq!(s.len(), "urn:uuid:".len() + 36);
        assert_eq!(&s["urn:uuid:".len() + 14..][..1], "5");
    }
}

//! Where an image came from, as an in-toto v1 statement whose predicate is SLSA provenance v1:
//! the subject is the image (its manifest digest), the resolved dependencies are what it was
//! built from (the commit, `Cargo.lock`, the data, the model, the training lock, the server
//! binary, ONNX Runtime), and the SBOM is a byproduct.
//!
//! Equal inputs give equal bytes: the statement carries no wall-clock time (the commit time,
//! `SOURCE_DATE_EPOCH`, is in the image itself), so a rebuild of the same release is the same
//! release.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::ImageError;

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA provenance predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// What a build of this type means: `cargo xtask ci`'s `image` stage, after every gate passed.
pub const BUILD_TYPE: &str = "https://github.com/slipway/slipway/blob/main/docs/provenance.md";

/// One artifact the image was built from (or a byproduct of the build).
#[derive(Clone, Debug, PartialEq)]
pub struct Material {
    /// A name for people (`Cargo.lock`, `model.onnx`).
    pub name: String,
    /// Where it lives, when it has an address (`git+https://…@<commit>`).
    pub uri: Option<String>,
    /// Algorithm → lowercase hex (`sha256`, `md5`, `gitCommit`, `blake3`).
    pub digest: BTreeMap<String, String>,
    /// What a reader needs to know to check the digest, when it is not of the named file.
    pub annotations: BTreeMap<String, String>,
}

impl Material {
    /// A material named `name` with one digest.
    pub fn new(name: &str, algorithm: &str, hex: &str) -> Material {
        let digest = [(algorithm.to_string(), hex.to_string())].into();
        Material { name: name.into(), uri: None, digest, annotations: BTreeMap::new() }
    }
}

/// What the statement says.
#[derive(Clone, Debug)]
pub struct ProvenanceInput {
    /// The image's name (`slipway-serve`).
    pub image_name: String,
    /// Its manifest digest, `sha256:…`.
    pub manifest_digest: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Who built it: the builder's id (a URI naming the program and its version).
    pub builder_id: String,
    /// The parameters a person or CI chose (the source and its revision).
    pub external_parameters: Value,
    /// What it was built from.
    pub materials: Vec<Material>,
    /// What the build also made.
    pub byproducts: Vec<Material>,
}

/// How long each algorithm's hex digest is.
fn hex_len(algorithm: &str) -> Option<usize> {
    match algorithm {
        "sha256" | "blake3" => Some(64),
        "sha512" => Some(128),
        "md5" => Some(32),
        "sha1" => Some(40),
        _ => None,
    }
}

fn check_digest(what: &str, digest: &BTreeMap<String, String>) -> Result<(), ImageError> {
    if digest.is_empty() {
        return Err(ImageError::Provenance(format!("{what} has no digest")));
    }
    for (algorithm, hex) in digest {
        // A git commit is SHA-1 or, in a SHA-256 repository, SHA-256.
        let lens: &[usize] = match algorithm.as_str() {
            "gitCommit" => &[40, 64],
            other => &[hex_len(other)
                .ok_or_else(|| ImageError::Provenance(format!("{what}: unknown digest algorithm `{algorithm}`")))?],
        };
        let lower_hex = hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lens.contains(&hex.len()) || !lower_hex {
            return Err(ImageError::Provenance(format!("{what}: `{hex}` is not a {algorithm} digest")));
        }
    }
    Ok(())
}

fn descriptor(m: &Material) -> Value {
    let mut d = json!({ "name": m.name, "digest": m.digest });
    if let Some(uri) = &m.uri {
        d["uri"] = json!(uri);
    }
    if !m.annotations.is_empty() {
        d["annotations"] = json!(m.annotations);
    }
    d
}

/// The statement, as the pretty JSON written beside the image. Every digest is checked: a
/// statement that names something it cannot identify is refused, not written.
pub fn provenance(input: &ProvenanceInput) -> Result<Vec<u8>, ImageError> {
    let subject = input
        .manifest_digest
        .strip_prefix("sha256:")
        .ok_or_else(|| ImageError::Provenance(format!("`{}` is not a sha256 image digest", input.manifest_digest)))?;
    let subject_digest = BTreeMap::from([("sha256".to_string(), subject.to_string())]);
    check_digest("the image", &subject_digest)?;
    for m in input.materials.iter().chain(&input.byproducts) {
        check_digest(&m.name, &m.digest)?;
    }
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{ "name": input.image_name, "digest": subject_digest, "annotations": { "tags": input.tags } }],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": input.external_parameters,
                "resolvedDependencies": input.materials.iter().map(descriptor).collect::<Vec<_>>(),
            },
            "runDetails": {
                "builder": { "id": input.builder_id },
                "byproducts": input.byproducts.iter().map(descriptor).collect::<Vec<_>>(),
            },
        },
    });
    let mut bytes = serde_json::to_vec_pretty(&statement).map_err(|e| ImageError::Provenance(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ProvenanceInput {
        ProvenanceInput {
            image_name: "slipway-serve".into(),
            manifest_digest: format!("sha256:{}", "a".repeat(64)),
            tags: vec!["abc".into()],
            builder_id: "https://github.com/slipway/slipway/xtask@0.1.0".into(),
            external_parameters: json!({ "source": { "uri": "git+https://x/y", "digest": { "gitCommit": "1".repeat(40) } } }),
            materials: vec![
                Material {
                    name: "source".into(),
                    uri: Some("git+https://x/y".into()),
                    digest: [("gitCommit".to_string(), "1".repeat(40))].into(),
                    annotations: BTreeMap::new(),
                },
                Material::new("data", "md5", &"2".repeat(32)),
                Material::new("model.onnx", "sha256", &"3".repeat(64)),
            ],
            byproducts: vec![Material::new("sbom.cdx.json", "sha256", &"4".repeat(64))],
        }
    }

    #[test]
    fn the_statement_is_in_toto_v1_with_slsa_provenance_v1() {
        let v: Value = serde_json::from_slice(&provenance(&input()).unwrap()).unwrap();
        assert_eq!(v["_type"], STATEMENT_TYPE);
        assert_eq!(v["predicateType"], PREDICATE_TYPE);
        assert_eq!(v["subject"][0]["digest"]["sha256"], "a".repeat(64));
        let deps = v["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
        assert_eq!(deps.len(), 3);
        assert_eq!(deps[0]["uri"], "git+https://x/y");
        assert_eq!(deps[1]["digest"]["md5"], "2".repeat(32));
        assert_eq!(v["predicate"]["runDetails"]["builder"]["id"], "https://github.com/slipway/slipway/xtask@0.1.0");
        assert_eq!(provenance(&input()).unwrap(), provenance(&input()).unwrap(), "equal inputs, equal bytes");
    }

    #[test]
    fn a_digest_that_identifies_nothing_is_refused() {
        let mut bad = input();
        bad.manifest_digest = "a".repeat(64);
        assert!(provenance(&bad).unwrap_err().to_string().contains("is not a sha256 image digest"));
        for (algorithm, hex) in [("md5", "xyz"), ("sha256", "ABC"), ("crc32", "00000000"), ("gitCommit", "unknown")] {
            let mut bad = input();
            bad.materials.push(Material::new("m", algorithm, hex));
            assert!(provenance(&bad).is_err(), "{algorithm}:{hex}");
        }
    }
}

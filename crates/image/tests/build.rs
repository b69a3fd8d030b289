//! Reproducibility: equal inputs give equal bytes, and the bytes of a fixed input are pinned.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::fixture;

/// The digests of [`fixture::synthetic`] with model bytes `b"model v1"`. If a dependency
/// update changes them (a new `flate2`/miniz_oxide or `tar` writing different bytes, or a C
/// zlib switched on by feature unification), every image digest changes with it: find out why
/// before updating these.
const GOLDEN_LAYERS: [(&str, &str, u64); 5] = [
    ("base", "sha256:a5fde67b9e05df6cf4003d94517b89d00331174bfa9dd2b67d150eecf1d6dc64", 214),
    ("libraries", "sha256:7e64c6b03b2ecc0671d184f08f8be19f28e83eb6833f6abfcbe039ec27b6b3eb", 242),
    ("onnxruntime", "sha256:8400405818438a6620c79cd90e847f30620ada655fc67209e60e34fc865eaf60", 204),
    ("server", "sha256:c6f0e12710994ab2b2d025d15e251b16f14f0164824eeee80a980e0ce5c6bdb8", 173),
    ("model", "sha256:786d96734f280405699d2d3e6b2376945a6d3f3d64ccd25328b41d72115b4d79", 117),
];
const GOLDEN_CONFIG: &str = "sha256:f2c1db196477a42cf63e14cf9059eb985131cd29a5b7d2b3ecf2c522094a7282";
const GOLDEN_MANIFEST: &str = "sha256:bc723675a2f4d3d401d54f1eebb76e6776d3fc104d849c76221dd8900fd0ff80";
const GOLDEN_ARCHIVE: &str = "sha256:64dccbf36286d94eda23da639646cfe21a5c1a5a3f0a1f76484e4bc4daa0bbe4";

#[test]
fn golden_digests_of_a_fixed_input() {
    let dir = tempfile::tempdir().unwrap();
    let built =
        image::build(&fixture::synthetic(&dir.path().join("in"), &dir.path().join("out"), b"model v1")).unwrap();
    let layers: Vec<(&str, &str, u64)> = built.layers.iter().map(|l| (l.name, l.digest.as_str(), l.size)).collect();
    println!("layers: {layers:#?}\nconfig: {}\nmanifest: {}", built.config_digest, built.manifest_digest);
    assert_eq!(layers, GOLDEN_LAYERS);
    assert_eq!(built.config_digest, GOLDEN_CONFIG);
    assert_eq!(built.manifest_digest, GOLDEN_MANIFEST);
    let archive = image::sha256(&fs::read(&built.archive).unwrap());
    println!("archive: {archive}");
    assert_eq!(archive, GOLDEN_ARCHIVE, "the archive's own entries (index.json, manifest.json, …) changed");
}

#[test]
fn two_builds_of_the_same_inputs_are_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let a = image::build(&fixture::synthetic(&dir.path().join("in-a"), &dir.path().join("a"), b"model")).unwrap();
    // The second copy of the inputs differs in everything but content: path, mtime and the
    // group/other permission bits.
    let spec_b = fixture::synthetic(&dir.path().join("in-b"), &dir.path().join("b"), b"model");
    fs::set_permissions(&spec_b.serve_binary, fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(&spec_b.model, fs::Permissions::from_mode(0o600)).unwrap();
    let b = image::build(&spec_b).unwrap();
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.layers, b.layers);
    assert_eq!(fs::read(&a.archive).unwrap(), fs::read(&b.archive).unwrap(), "the archives differ");
    assert_eq!(fs::read(&a.sbom).unwrap(), fs::read(&b.sbom).unwrap());
}

#[test]
fn the_real_server_inputs_build_reproducibly_with_ldd() {
    let dir = tempfile::tempdir().unwrap();
    let binary = fixture::tool("id", "coreutils");
    let a = image::build(&fixture::real(&binary, &fixture::model(), &dir.path().join("a"), "slipway-repro")).unwrap();
    let b = image::build(&fixture::real(&binary, &fixture::model(), &dir.path().join("b"), "slipway-repro")).unwrap();
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(fs::read(&a.archive).unwrap(), fs::read(&b.archive).unwrap(), "the archives differ");
}

#[test]
fn rebuilding_into_the_same_directory_replaces_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let first = image::build(&fixture::synthetic(&dir.path().join("in"), &out, b"one")).unwrap();
    let second = image::build(&fixture::synthetic(&dir.path().join("in"), &out, b"two")).unwrap();
    assert_ne!(first.manifest_digest, second.manifest_digest);
    let blobs: Vec<_> = fs::read_dir(out.join("oci/blobs/sha256")).unwrap().flatten().map(|e| e.file_name()).collect();
    let old_model = first.layers.last().unwrap().digest.trim_start_matches("sha256:").to_owned();
    assert!(!blobs.iter().any(|b| *b == *old_model), "a stale blob survived the rebuild");
    assert!(!out.join(".oci.tmp").exists());
}

#[test]
fn only_the_model_layer_changes_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let a = image::build(&fixture::synthetic(&dir.path().join("in-a"), &dir.path().join("a"), b"one")).unwrap();
    let b = image::build(&fixture::synthetic(&dir.path().join("in-b"), &dir.path().join("b"), b"two")).unwrap();
    assert_eq!(a.layers[..4], b.layers[..4]);
    assert_ne!(a.layers[4], b.layers[4]);
}

#[test]
fn bad_specs_are_refused_with_help() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = fixture::synthetic(&dir.path().join("in"), &dir.path().join("out"), b"m");
    spec.tags = vec!["feature/x".into()];
    let err = image::build(&spec).unwrap_err();
    assert!(image::WithHelp(&err).to_string().contains("image::tag_from"), "{err}");
    spec.tags = vec![image::tag_from("feature/x")];
    spec.model = dir.path().join("missing.onnx");
    let err = image::build(&spec).unwrap_err();
    let text = image::WithHelp(&err).to_string();
    assert!(text.contains("missing.onnx") && text.contains("cargo xtask ci"), "{text}");
}

//! The SBOM's JSON shape (a snapshot), and that it is deterministic.

use std::fs;
use std::path::Path;

const CARGO_LOCK: &str = r#"
version = 4

[[package]]
name = "slipway-serve"
version = "0.1.0"

[[package]]
name = "tokio"
version = "1.54.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "00"

[[package]]
name = "anyhow"
version = "1.0.99"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

const PYTHON_LOCK: &str = "# pip-compile output\n\
    Scikit_Learn==1.9.1 \\\n    --hash=sha256:00\n    # via -r requirements.in\n\
    onnxruntime==1.32.0\n\
    uvicorn[standard]==0.30.0 ; python_version >= \"3.9\"\n";

fn input(dir: &Path, model_digest: &str) -> image::SbomInput {
    fs::write(dir.join("Cargo.lock"), CARGO_LOCK).unwrap();
    fs::write(dir.join("requirements.lock"), PYTHON_LOCK).unwrap();
    image::SbomInput {
        name: "slipway-serve".into(),
        version: "0.3.0".into(),
        cargo_lock: dir.join("Cargo.lock"),
        python_lock: Some(dir.join("requirements.lock")),
        onnxruntime_version: "1.32.0".into(),
        model_digest: model_digest.into(),
        data_digest: "md5:0123456789abcdef0123456789abcdef".into(),
        source_date_epoch: 1_700_000_000,
    }
}

#[test]
fn sbom_shape() {
    let dir = tempfile::tempdir().unwrap();
    let model = format!("sha256:{}", "ab".repeat(32));
    let sbom = String::from_utf8(image::sbom(&input(dir.path(), &model)).unwrap()).unwrap();
    insta::assert_snapshot!(sbom);
}

#[test]
fn sbom_is_deterministic_and_its_serial_follows_the_content() {
    let dir = tempfile::tempdir().unwrap();
    let a = image::sbom(&input(dir.path(), "sha256:aa")).unwrap();
    let b = image::sbom(&input(dir.path(), "sha256:aa")).unwrap();
    let c = image::sbom(&input(dir.path(), "sha256:cc")).unwrap();
    assert_eq!(a, b);
    let serial = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap()["serialNumber"].clone();
    assert_ne!(serial(&a), serial(&c));
}

#[test]
fn a_malformed_python_lock_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = input(dir.path(), "sha256:aa");
    fs::write(dir.path().join("bad.lock"), "numpy==2.0\nrequests>=2\n").unwrap();
    input.python_lock = Some(dir.path().join("bad.lock"));
    let err = image::sbom(&input).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("requests>=2"), "{err}");
}

//! Other tools read what we write: `skopeo` inspects the layout and the archive, `umoci`
//! unpacks the layout into a root filesystem.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use serde_json::Value;
use xshell::cmd;

use crate::fixture;

#[test]
fn skopeo_reads_the_layout_and_the_archive() {
    let skopeo = fixture::tool("skopeo", "skopeo");
    let dir = tempfile::tempdir().unwrap();
    let built = image::build(&fixture::synthetic(&dir.path().join("in"), &dir.path().join("out"), b"m")).unwrap();
    let sh = fixture::shell();
    let layout = built.layout.display().to_string();
    let inspect: Value = serde_json::from_str(&cmd!(sh, "{skopeo} inspect oci:{layout}:main").read().unwrap()).unwrap();
    assert_eq!(inspect["Digest"], built.manifest_digest.as_str());
    assert_eq!(inspect["Labels"][image::LABEL_VERSION], "0.1.0");
    assert_eq!(inspect["Labels"][image::LABEL_CREATED], "2023-11-14T22:13:20Z");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 5);
    let config: Value =
        serde_json::from_str(&cmd!(sh, "{skopeo} inspect --config oci:{layout}:v1").read().unwrap()).unwrap();
    assert_eq!(config["config"]["User"], "10001:10001");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/slipway-serve");
    assert!(config["config"]["ExposedPorts"]["8080/tcp"].is_object());
    let archive = built.archive.display().to_string();
    let inspect: Value =
        serde_json::from_str(&cmd!(sh, "{skopeo} inspect oci-archive:{archive}:0123456").read().unwrap()).unwrap();
    assert_eq!(inspect["Digest"], built.manifest_digest.as_str());
}

#[test]
fn umoci_unpacks_the_files_where_the_server_expects_them() {
    let umoci = fixture::tool("umoci", "umoci");
    let dir = tempfile::tempdir().unwrap();
    let built = image::build(&fixture::synthetic(&dir.path().join("in"), &dir.path().join("out"), b"m")).unwrap();
    let sh = fixture::shell();
    let (layout, bundle) = (built.layout.display().to_string(), dir.path().join("bundle"));
    // Root may unpack with real ownership; anyone else needs --rootless.
    let rootless = (nix_uid() != 0).then_some("--rootless");
    cmd!(sh, "{umoci} unpack {rootless...} --image {layout}:v1 {bundle}").quiet().run().unwrap();
    let rootfs = bundle.join("rootfs");
    let mode = |path: &str| fs::symlink_metadata(rootfs.join(path)).unwrap().permissions().mode() & 0o7777;
    for (path, want) in [
        ("usr/local/bin/slipway-serve", 0o755),
        ("model/model.onnx", 0o644),
        ("opt/onnxruntime/libonnxruntime.so.1.32.0", 0o755),
        ("usr/lib/x86_64-linux-gnu/libc.so.6", 0o755),
        ("usr/lib64/ld-linux-x86-64.so.2", 0o755),
        ("etc/passwd", 0o644),
        ("tmp", 0o1777),
        ("usr", 0o755),
    ] {
        assert_eq!(mode(path), want, "mode of /{path}");
    }
    assert_eq!(fs::read_link(rootfs.join("lib64")).unwrap().to_str(), Some("usr/lib64"));
    assert_eq!(fs::read(rootfs.join("model/model.onnx")).unwrap(), b"m");
    assert!(fs::read_to_string(rootfs.join("etc/passwd")).unwrap().contains("slipway:x:10001:10001:"));
    if nix_uid() == 0 {
        assert_eq!(fs::metadata(rootfs.join("usr/local/bin/slipway-serve")).unwrap().uid(), 0);
    }
    let config: serde_json::Value = serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["user"]["uid"], 10001);
}

fn nix_uid() -> u32 {
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(u32::MAX)
}

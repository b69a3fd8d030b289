//! Pushing to a real registry (Debian's Distribution 2.8 with htpasswd auth on 127.0.0.1):
//! only missing blobs travel, `skopeo` sees what we pushed, and failures say what to do.

use std::fs;
use std::path::Path;

use image::{Credentials, PushError, WithHelp};
use serde_json::Value;
use xshell::cmd;

use crate::fixture::{self, Auth, PASSWORD, Registry, USER};
use crate::token::TokenServer;

fn creds() -> Credentials {
    Credentials::basic(USER, PASSWORD)
}

/// A real SBOM for a synthetic image whose model is `model`.
fn sbom_for(model: &[u8]) -> Vec<u8> {
    let root = fixture::root();
    image::sbom(&image::SbomInput {
        name: "slipway-test".into(),
        version: "0.1.0".into(),
        cargo_lock: root.join("Cargo.lock"),
        python_lock: Some(root.join("training/requirements.lock")),
        onnxruntime_version: "1.32.0".into(),
        model_digest: image::sha256(model),
        data_digest: "md5:0123456789abcdef0123456789abcdef".into(),
        source_date_epoch: 1_700_000_000,
    })
    .unwrap()
}

fn build(dir: &Path, name: &str, model: &[u8]) -> image::Built {
    let mut spec = fixture::synthetic(&dir.join(format!("in-{name}")), &dir.join(name), model);
    spec.sbom = sbom_for(model);
    image::build(&spec).unwrap()
}

#[test]
fn a_new_model_uploads_only_its_layer_its_config_and_its_sbom() {
    let (registry, dir) = (Registry::start(), tempfile::tempdir().unwrap());
    let reference = |tag: &str| format!("http://{}/slipway/serve:{tag}", registry.host());
    let v1 = build(dir.path(), "v1", b"model one");
    let pushed = image::push(&v1.layout, &reference("v1"), &creds()).unwrap();
    assert_eq!(pushed.digest, v1.manifest_digest);
    // Five layers, the config, the SBOM and the empty config of the SBOM artifact.
    assert_eq!((pushed.uploaded_blobs, pushed.skipped_blobs), (8, 0));
    assert_eq!(pushed.referrer_tags, [format!("sha256-{}.sbom", &v1.manifest_digest[7..])]);
    let again = image::push(&v1.layout, &reference("v1"), &creds()).unwrap();
    assert_eq!((again.uploaded_blobs, again.uploaded_bytes, again.skipped_blobs), (0, 0, 8));

    let v2 = build(dir.path(), "v2", b"model two, retrained");
    let pushed = image::push(&v2.layout, &reference("v2"), &creds()).unwrap();
    let model_layer = v2.layers.last().unwrap();
    assert_eq!(pushed.uploaded_blobs, 3, "{pushed:?}");
    assert_eq!(pushed.uploaded_bytes, model_layer.size + v2.config_size + v2.sbom_size);

    let skopeo = fixture::tool("skopeo", "skopeo");
    let sh = fixture::shell();
    let login = format!("{USER}:{PASSWORD}");
    let image_ref = format!("docker://{}/slipway/serve:v2", registry.host());
    let inspect = cmd!(sh, "{skopeo} inspect --tls-verify=false --creds {login} {image_ref}").quiet().read().unwrap();
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], pushed.digest.as_str());
    let sbom_ref = format!("docker://{}/slipway/serve:{}", registry.host(), pushed.referrer_tags[0]);
    let raw = cmd!(sh, "{skopeo} inspect --raw --tls-verify=false --creds {login} {sbom_ref}").quiet().read().unwrap();
    let raw: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(raw["artifactType"], "application/vnd.cyclonedx+json");
    assert_eq!(raw["subject"]["digest"], pushed.digest.as_str());
}

#[test]
fn a_registry_with_bearer_tokens_is_pushed_to_after_the_token_dance() {
    let tokens = TokenServer::start("slipway/serve");
    let registry = Registry::start_with(Auth::Token { realm: tokens.realm(), cert: tokens.cert.clone() });
    let dir = tempfile::tempdir().unwrap();
    let built = build(dir.path(), "v1", b"m");
    let reference = format!("{}/slipway/serve:v1", registry.host());
    let pushed = image::push(&built.layout, &reference, &creds()).unwrap();
    assert_eq!((pushed.digest.as_str(), pushed.uploaded_blobs), (built.manifest_digest.as_str(), 8));
    assert!(tokens.granted() >= 1, "no token was fetched");
    let again = image::push(&built.layout, &reference, &creds()).unwrap();
    assert_eq!(again.uploaded_blobs, 0);
    let err = image::push(&built.layout, &reference, &Credentials::basic(USER, "wrong")).unwrap_err();
    assert!(matches!(err, PushError::Unauthorized { status: 401, .. }), "{err:?}");
}

#[test]
fn wrong_credentials_fail_with_the_variables_to_set() {
    let (registry, dir) = (Registry::start(), tempfile::tempdir().unwrap());
    let built = build(dir.path(), "v1", b"m");
    let reference = format!("{}/slipway/serve:v1", registry.host());
    for credentials in [Credentials::basic(USER, "wrong-password"), Credentials::Anonymous] {
        let err = image::push(&built.layout, &reference, &credentials).unwrap_err();
        assert!(matches!(err, PushError::Unauthorized { status: 401, .. }), "{err:?}");
        let text = WithHelp(&err).to_string();
        assert!(text.contains("SLIPWAY_REGISTRY_USER") && text.contains("SLIPWAY_REGISTRY_PASSWORD"), "{text}");
        assert!(!text.contains("wrong-password") && !format!("{err:?}").contains("wrong-password"), "{text}");
        println!("{text}");
    }
}

#[test]
fn an_unreachable_registry_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let built = build(dir.path(), "v1", b"m");
    let reference = format!("http://127.0.0.1:{}/slipway/serve:v1", fixture::free_port());
    let err = image::push(&built.layout, &reference, &creds()).unwrap_err();
    assert!(matches!(err, PushError::Unreachable { .. }), "{err:?}");
    let text = WithHelp(&err).to_string();
    assert!(text.contains("127.0.0.1") && text.contains("help:"), "{text}");
}

#[test]
fn a_rejected_manifest_reports_the_registry_message() {
    let (registry, dir) = (Registry::start(), tempfile::tempdir().unwrap());
    let built = build(dir.path(), "v1", b"m");
    corrupt_manifest(&built.layout, "v1");
    let reference = format!("{}/slipway/serve:v1", registry.host());
    let err = image::push(&built.layout, &reference, &creds()).unwrap_err();
    let PushError::ManifestRejected { status, message, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*status, 400, "{err}");
    assert!(!message.is_empty(), "{err}");
    println!("{}", WithHelp(&err));
}

#[test]
fn a_tag_missing_from_the_layout_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    image::build(&fixture::synthetic(&dir.path().join("in"), &dir.path().join("a"), b"a")).unwrap();
    // A second image under another tag makes the layout ambiguous for an unknown tag.
    let layout = dir.path().join("a/oci");
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut entries = index["manifests"].as_array().unwrap().clone();
    let mut other = entries[0].clone();
    other["digest"] = format!("sha256:{}", "0".repeat(64)).into();
    other["annotations"]["org.opencontainers.image.ref.name"] = "other".into();
    entries.push(other);
    fs::write(layout.join("index.json"), serde_json::json!({"schemaVersion": 2, "manifests": entries}).to_string())
        .unwrap();
    let err = image::push(&layout, "127.0.0.1:1/slipway/serve:nope", &creds()).unwrap_err();
    assert!(err.to_string().contains("no image is tagged `nope`"), "{err}");
}

/// Replaces the manifest tagged `tag` by one the registry refuses: its `mediaType` field
/// contradicts the OCI content type it is sent with.
fn corrupt_manifest(layout: &Path, tag: &str) {
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let old = entry["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let mut manifest: Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(old)).unwrap()).unwrap();
    manifest["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json".into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = image::sha256(&bytes);
    fs::write(layout.join("blobs/sha256").join(&digest[7..]), &bytes).unwrap();
    entry["digest"] = digest.into();
    entry["size"] = bytes.len().into();
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A hostile registry on loopback: it asks for Basic credentials, then points blob uploads (or
/// its token realm) at another host. The other host records every request's headers.
struct Hostile {
    registry: std::net::SocketAddr,
    seen_elsewhere: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Reads one request's head (and drops its body); `None` when the client closed.
fn read_request(stream: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(head)
}

fn serve(listener: std::net::TcpListener, answer: impl Fn(&str) -> String + Send + 'static) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            while let Some(head) = read_request(&mut stream) {
                let _ = std::io::Write::write_all(&mut stream, answer(&head).as_bytes());
            }
        }
    });
}

impl Hostile {
    /// `realm`: point the token realm at the other host instead of uploads.
    fn start(realm: bool) -> Hostile {
        let registry = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Another host: Linux answers the whole of 127/8 on loopback.
        let elsewhere = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        let (addr, other) = (registry.local_addr().unwrap(), elsewhere.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        serve(elsewhere, move |head| {
            record.lock().unwrap().push(head.to_string());
            "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n".to_string()
        });
        serve(registry, move |head| {
            let authorized = head.to_ascii_lowercase().contains("\r\nauthorization:");
            let first = head.lines().next().unwrap_or_default().to_string();
            if !authorized {
                let challenge = match realm {
                    true => format!("Bearer realm=\"http://{other}/token\",service=\"registry\""),
                    false => "Basic realm=\"hostile\"".to_string(),
                };
                return format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\n\r\n"
                );
            }
            if first.starts_with("HEAD ") {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
            } else if first.starts_with("POST ") {
                format!("HTTP/1.1 202 Accepted\r\nLocation: http://{other}/steal\r\nContent-Length: 0\r\n\r\n")
            } else {
                "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n".to_string()
            }
        });
        Hostile { registry: addr, seen_elsewhere: seen }
    }
}

#[test]
fn credentials_go_to_the_registry_only() {
    let dir = tempfile::tempdir().unwrap();
    let built = build(dir.path(), "hostile", b"a model");
    for realm in [false, true] {
        let hostile = Hostile::start(realm);
        let _ = image::push(&built.layout, &format!("http://{}/team/serve:v1", hostile.registry), &creds());
        let seen = hostile.seen_elsewhere.lock().unwrap().clone();
        assert!(!seen.is_empty(), "realm {realm}: the other host was never asked, so the test proves nothing");
        for head in &seen {
            assert!(
                !head.to_ascii_lowercase().contains("\r\nauthorization:"),
                "realm {realm}: credentials went to another host:\n{head}"
            );
        }
    }
}

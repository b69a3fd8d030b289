//! Inputs and real tools for the image tests: a fixed synthetic image, the real server's
//! inputs, Debian's `docker-registry` on 127.0.0.1, and the external programs the tests run.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use image::{ImageSpec, Library};
use xshell::{Shell, cmd};

/// The registry account the tests create.
pub const USER: &str = "slipway-ci";
pub const PASSWORD: &str = "correct-horse-7f3a";

/// The workspace root.
pub fn root() -> PathBuf {
    manifest_dir().join("../..").canonicalize().unwrap()
}

/// A program the tests need, from `PATH`. A missing one fails the test, saying how to get it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("`{name}` is not installed: run `apt-get install -y {package}` (.ci/run installs it for CI)")
    })
}

/// A shell in the workspace root.
pub fn shell() -> Shell {
    let sh = Shell::new().unwrap();
    sh.change_dir(root());
    sh
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    fs::write(path, bytes).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A fixed, machine-independent image: fake binary, fake libraries, fake model, fixed epoch
/// and an explicit library list (no `ldd`). Its digests are pinned by the golden test.
pub fn synthetic(inputs: &Path, out: &Path, model: &[u8]) -> ImageSpec {
    fs::create_dir_all(inputs).unwrap();
    let file = |name: &str| inputs.join(name);
    write(&file("slipway-serve"), b"\x7fELF fake server binary\n", 0o755);
    write(&file("libonnxruntime.so.1.32.0"), &b"fake onnxruntime ".repeat(1000), 0o755);
    write(&file("libc.so.6"), b"fake libc\n", 0o755);
    write(&file("ld-linux-x86-64.so.2"), b"fake loader\n", 0o755);
    write(&file("model.onnx"), model, 0o644);
    let lib = |name: &str, path: &str| Library::File { source: file(name), path: path.into() };
    ImageSpec {
        repository: "slipway-test".into(),
        serve_binary: file("slipway-serve"),
        onnxruntime: file("libonnxruntime.so.1.32.0"),
        model: file("model.onnx"),
        source_date_epoch: 1_700_000_000,
        labels: labels("0123456789abcdef0123456789abcdef01234567", "0.1.0"),
        out_dir: out.into(),
        tags: vec!["v1".into(), "main".into(), "0123456".into()],
        sbom: br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#.to_vec(),
        libraries: Some(vec![
            lib("libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"),
            lib("ld-linux-x86-64.so.2", "/usr/lib64/ld-linux-x86-64.so.2"),
            Library::Symlink { path: "/lib64".into(), target: "usr/lib64".into() },
        ]),
    }
}

pub fn labels(revision: &str, version: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (image::LABEL_REVISION.into(), revision.into()),
        (image::LABEL_SOURCE.into(), "https://example.invalid/slipway".into()),
        (image::LABEL_VERSION.into(), version.into()),
        (image::LABEL_MODEL_DIGEST.into(), "sha256:00".into()),
        (image::LABEL_DATA_DIGEST.into(), "md5:11".into()),
    ])
}

/// The ONNX Runtime library of the training environment (`cargo xtask ci` installs it).
pub fn onnxruntime() -> PathBuf {
    let capi = root().join(".slipway/train-env/lib/python3.11/site-packages/onnxruntime/capi");
    let found = fs::read_dir(&capi)
        .ok()
        .and_then(|entries| entries.flatten().map(|e| e.path()).find(|p| image::onnxruntime_version(p).is_some()));
    found.unwrap_or_else(|| panic!("no libonnxruntime.so.<version> in {}: run `cargo xtask ci` first", capi.display()))
}

/// The trained model (`cargo xtask ci` writes it).
pub fn model() -> PathBuf {
    let path = root().join("models/model.onnx");
    assert!(path.is_file(), "{} is missing: run `cargo xtask ci` first", path.display());
    path
}

/// A spec for a real image on this machine: libraries from `ldd`, the real ONNX Runtime.
pub fn real(binary: &Path, model: &Path, out: &Path, repository: &str) -> ImageSpec {
    ImageSpec {
        repository: repository.into(),
        serve_binary: binary.into(),
        onnxruntime: onnxruntime(),
        model: model.into(),
        source_date_epoch: 1_700_000_000,
        labels: labels("fedcba9876543210fedcba9876543210fedcba98", "0.2.0"),
        out_dir: out.into(),
        tags: vec!["test".into()],
        sbom: b"{}".to_vec(),
        libraries: None,
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `ready` until it holds (true) or `secs` pass (false).
pub fn poll(secs: u64, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Polls `ready` until it holds, failing the test after `secs`.
pub fn wait_until(what: &str, secs: u64, ready: impl FnMut() -> bool) {
    assert!(poll(secs, ready), "expected {what} within {secs} s");
}

/// Debian's `docker-registry` (Distribution 2.8) on 127.0.0.1 with htpasswd auth, stopped on
/// drop.
pub struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

/// How the registry checks who pushes.
pub enum Auth {
    /// Basic auth against an htpasswd file with [`USER`] and [`PASSWORD`].
    Htpasswd,
    /// Bearer tokens from a token server, signed by the key of `cert`.
    Token { realm: String, cert: PathBuf },
}

impl Registry {
    /// A registry with htpasswd (Basic) auth.
    pub fn start() -> Registry {
        Registry::start_with(Auth::Htpasswd)
    }

    #[allow(clippy::disallowed_methods, reason = "the fixture keeps the child to stop the registry; xshell cannot")]
    pub fn start_with(auth: Auth) -> Registry {
        let binary = tool("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        let auth = auth_config(dir.path(), auth);
        fs::write(&config, registry_config(dir.path(), port, &auth)).unwrap();
        let log = fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = std::process::Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start docker-registry");
        wait_until("docker-registry listens", 30, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        Registry { child, _dir: dir, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn registry_config(dir: &Path, port: u16, auth: &str) -> String {
    let d = dir.display();
    format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n\
         http:\n  addr: 127.0.0.1:{port}\nauth:\n{auth}"
    )
}

/// The `auth:` section; for htpasswd also writes the password file.
fn auth_config(dir: &Path, auth: Auth) -> String {
    match auth {
        Auth::Htpasswd => {
            let htpasswd = tool("htpasswd", "apache2-utils");
            let sh = shell();
            let line = cmd!(sh, "{htpasswd} -Bbn {USER} {PASSWORD}").quiet().read().unwrap();
            fs::write(dir.join("htpasswd"), format!("{}\n", line.trim())).unwrap();
            format!("  htpasswd:\n    realm: slipway-test\n    path: {}/htpasswd\n", dir.display())
        }
        Auth::Token { realm, cert } => format!(
            "  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            crate::token::SERVICE,
            crate::token::ISSUER,
            cert.display()
        ),
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This crate's directory, from cargo when the test or bench runs: a binary in a target
/// directory that clones share may have been compiled in another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}

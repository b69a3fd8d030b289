//! Real servers and tools for the store's tests: SeaweedFS on loopback, `dvc`, scratch repos.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "slipway-test-key";
pub const SECRET_KEY: &str = "slipway-test-secret-0b7c";

/// A program the tests need: from `PATH`, else from the tools environment that
/// `cargo xtask ci` installs in `.slipway/tools`.
pub fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let tools_env = manifest_dir().join("../../.slipway/tools/bin");
    std::env::split_paths(&path)
        .chain([tools_env])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: run `cargo xtask ci` first (its `tools` stage installs dvc and SeaweedFS into .slipway/tools)"))
}

/// A SeaweedFS server (S3 API with SigV4 checks) on 127.0.0.1, stopped on drop.
pub struct Seaweed {
    child: Option<Child>,
    dir: tempfile::TempDir,
    base: u16,
}

impl Seaweed {
    pub fn start() -> Seaweed {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Seaweed { child: None, dir, base: free_port_block() };
        // A port of the block can still be taken before the server binds it; the server then
        // exits, and a fresh block is tried.
        for _ in 0..4 {
            if server.launch().is_ok() {
                return server;
            }
            server.base = free_port_block();
        }
        server.launch().unwrap_or_else(|e| panic!("{e}"));
        server
    }

    /// The S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.base)
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the fixture must keep the child to stop and restart the server; xshell cannot"
    )]
    fn launch(&mut self) -> Result<(), String> {
        let p = |offset: u16| (self.base + offset).to_string();
        let g = |offset: u16| (self.base + offset + GRPC).to_string();
        let args = [
            ("s3.port", p(0)),
            ("s3.port.grpc", g(0)),
            ("master.port", p(1)),
            ("master.port.grpc", g(1)),
            ("filer.port", p(2)),
            ("filer.port.grpc", g(2)),
            ("volume.port", p(3)),
            ("volume.port.grpc", g(3)),
            ("admin.port", p(4)),
            ("admin.port.grpc", g(4)),
            ("metricsPort", p(5)),
            ("s3.metricsPort", p(6)),
            ("debug.port", p(7)),
            ("s3.debug.port", p(8)),
            ("s3.port.iceberg", "0".into()),
            ("s3.port.lance", "0".into()),
        ];
        let mut cmd = std::process::Command::new(tool("weed"));
        cmd.arg("mini")
            .arg(format!("-dir={}", self.dir.path().display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-webdav=false",
                "-admin.ui=false",
                "-master.telemetry=false",
            ])
            // Like AWS: a PUT to a bucket that does not exist fails instead of creating it.
            .arg("-s3.autoCreateBucket=false")
            .args(args.iter().map(|(k, v)| format!("-{k}={v}")))
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("cannot start weed");
        // Up and settled: the S3, master, filer and volume ports all listen, and the process
        // is still there (a port taken between `free_port_block` and its bind ends it).
        let listening = |port: u16| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(0..4).all(|i| listening(self.base + i)) {
            if let Some(status) = child.try_wait().unwrap() {
                return Err(format!("SeaweedFS exited while starting ({status}) on ports from {}", self.base));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("SeaweedFS did not open its ports within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Its other ports are bound by then or just after: one that was taken ends it now.
        std::thread::sleep(Duration::from_millis(500));
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("SeaweedFS exited just after starting ({status}) on ports from {}", self.base));
        }
        self.child = Some(child);
        Ok(())
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data, and waits until it serves the
    /// objects of `bucket` (which must hold one) again: for a while after a restart SeaweedFS lists them but answers
    /// 500 to a read, until its volume server has registered with its master again.
    pub fn restart(&mut self, bucket: &str) {
        self.kill();
        self.launch().unwrap_or_else(|e| panic!("{e}"));
        std::thread::scope(|s| s.spawn(|| self.wait_readable(bucket)).join().unwrap());
    }

    fn wait_readable(&self, bucket: &str) {
        let client = self.client(ACCESS_KEY, SECRET_KEY);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let readable = || async {
            let listing = client.list_objects_v2().bucket(bucket).max_keys(1).send().await.ok()?;
            let key = listing.contents().first()?.key()?.to_string();
            client.get_object().bucket(bucket).key(key).send().await.ok()?.body.collect().await.ok()
        };
        while runtime.block_on(readable()).is_none() {
            assert!(Instant::now() < deadline, "SeaweedFS did not serve {bucket} again within 30 s of a restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates `bucket`, retrying while the freshly started server is still settling. Runs on
    /// a thread of its own so that async tests can call it too.
    pub fn create_bucket(&self, bucket: &str) {
        std::thread::scope(|s| s.spawn(|| self.create_bucket_blocking(bucket)).join().unwrap());
    }

    fn create_bucket_blocking(&self, bucket: &str) {
        let client = self.client(ACCESS_KEY, SECRET_KEY);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match runtime.block_on(client.create_bucket().bucket(bucket).send()) {
                Ok(_) => break,
                Err(e) => {
                    let text = format!("{}", aws_sdk_s3::error::DisplayErrorContext(&e));
                    if text.contains("BucketAlreadyOwnedByYou") || text.contains("BucketAlreadyExists") {
                        break;
                    }
                    assert!(Instant::now() < deadline, "cannot create bucket {bucket}: {text}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        // The bucket is usable once a listing answers.
        while runtime.block_on(client.list_objects_v2().bucket(bucket).send()).is_err() {
            assert!(Instant::now() < deadline, "bucket {bucket} never became usable");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A raw S3 client, for tests that tamper with the remote behind the store's back.
    pub fn client(&self, key: &str, secret: &str) -> aws_sdk_s3::Client {
        let creds = aws_sdk_s3::config::Credentials::new(key, secret, None, None, "test");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(creds)
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// The environment that points Slipway (and `dvc`) at `s3://bucket/prefix` on this server.
    pub fn env(&self, bucket: &str, prefix: &str) -> BTreeMap<String, String> {
        [
            ("SLIPWAY_REMOTE", format!("s3://{bucket}/{prefix}")),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where a block's gRPC ports start, after its 9 HTTP ports.
const GRPC: u16 = 10;

/// A block of 20 ports, free now, that no other server of this process was given.
///
/// The block lies below the kernel's ephemeral range (where that range starts above 21,000, as
/// it does by default): a port in that range can be taken, between
/// this check and the server's bind, as the source port of any outgoing connection (SeaweedFS's
/// own parts connect to each other while they start), and the server then exits.
fn free_port_block() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low = ephemeral.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(32_768);
    let blocks = (low.clamp(21_000, 32_768) - 20_000) / 20;
    loop {
        let base = 20_000 + fastrand::u16(..blocks) * 20;
        let mut given = GIVEN.lock().unwrap();
        if !given.contains(&base) && (0..20).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            given.push(base);
            return base;
        }
    }
}

/// Writes `files` (path → bytes) under `root`.
pub fn write_tree(root: &Path, files: &[(&str, Vec<u8>)]) {
    for (rel, bytes) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
}

/// Every file under `dir`, relative, with its bytes.
pub fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| (e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned(), fs::read(e.path()).unwrap()))
        .collect()
}

/// A shell in `dir` with `env` set, for `git` and `dvc`.
pub fn shell(dir: &Path, env: &BTreeMap<String, String>) -> xshell::Shell {
    let sh = xshell::Shell::new().unwrap();
    sh.change_dir(dir);
    for (k, v) in env {
        sh.set_var(k, v);
    }
    sh.set_var("DVC_NO_ANALYTICS", "1");
    sh.set_var("GIT_AUTHOR_NAME", "t");
    sh.set_var("GIT_AUTHOR_EMAIL", "t@example.com");
    sh.set_var("GIT_COMMITTER_NAME", "t");
    sh.set_var("GIT_COMMITTER_EMAIL", "t@example.com");
    sh
}

/// A git repository initialised for DVC in `dir`.
pub fn dvc_repo(dir: &Path, env: &BTreeMap<String, String>) -> xshell::Shell {
    let sh = shell(dir, env);
    let dvc = tool("dvc");
    xshell::cmd!(sh, "git init -q").run().unwrap();
    xshell::cmd!(sh, "{dvc} init -q").run().unwrap();
    sh
}

/// The store for `root` with the remote `env` chooses.
pub fn store(root: &Path, env: &BTreeMap<String, String>) -> store::Store {
    let remote = store::resolve(root, env).unwrap().open().unwrap();
    store::Store::new(root, remote, false)
}

/// A tree with every awkward name the manifest format has to get right.
pub fn odd_tree() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("data/plain.csv", b"text,label\nok,1\n".to_vec()),
        ("data/with space.txt", b"space".to_vec()),
        ("data/quote\"d.txt", b"quote".to_vec()),
        ("data/single'quote.txt", b"single".to_vec()),
        ("data/back\\slash.txt", b"backslash".to_vec()),
        ("data/caf\u{e9}.txt", b"accent".to_vec()),
        ("data/\u{1f600} emoji.txt", b"emoji".to_vec()),
        ("data/\u{65e5}\u{672c}/\u{8a9e}.txt", b"cjk".to_vec()),
        ("data/a-b", b"dash".to_vec()),
        ("data/a/b", b"nested".to_vec()),
        ("data/a/c/deep.bin", vec![0u8, 1, 2, 255]),
        ("data/empty", Vec::new()),
        ("data/Upper.txt", b"case".to_vec()),
    ]
}

/// This crate's directory, from cargo when the test or bench runs: a binary in a target
/// directory that clones share may have been compiled in another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}

//! Real models built by the training code, a real server started in-process on 127.0.0.1 with
//! a free port, and a small blocking HTTP client to talk to it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use xshell::cmd;

pub fn root() -> PathBuf {
    manifest_dir().join("../..")
}

/// The training environment: its Python builds the models, its onnxruntime wheel is the runtime.
pub fn train_env() -> PathBuf {
    let env = root().join(".slipway/train-env");
    assert!(
        env.join("bin/python").is_file(),
        "the training environment is missing: run `cargo xtask deps` (or `cargo xtask ci`) first"
    );
    env
}

/// The test tools' Python (`tritonclient` among them), installed by the `tools` stage.
pub fn tools_python() -> PathBuf {
    let python = root().join(".slipway/tools/bin/python");
    assert!(python.is_file(), "the test tools are missing: run `cargo xtask tools` (or `cargo xtask ci`) first");
    python
}

pub fn search() -> model::RuntimeSearch {
    model::RuntimeSearch::new(std::env::var("ORT_DYLIB_PATH").ok().as_deref(), &[train_env()])
}

/// Shared by every test in this process: models are built once.
fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // The models are deterministic and written atomically, so reruns may share the folder.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-fixture");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// A small sentiment model (classes fresh / rotten) from `training/build_test_models.py`.
pub fn text_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let (data, model) = (fixture_dir().join("train.csv"), fixture_dir().join("text.onnx"));
        write_text_data(&data, 400);
        let (python, script) = (train_env().join("bin/python"), root().join("training/build_test_models.py"));
        let sh = xshell::Shell::new().unwrap();
        cmd!(sh, "{python} {script} --kind text --data {data} --out {model}").quiet().run().unwrap();
        model
    })
}

/// A text model of the shipped model's size (20,000 TF-IDF features with bigrams).
pub fn large_text_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let model = fixture_dir().join("text-large.onnx");
        let (python, script) = (train_env().join("bin/python"), root().join("training/build_test_models.py"));
        let sh = xshell::Shell::new().unwrap();
        cmd!(sh, "{python} {script} --kind text-large --out {model}").quiet().run().unwrap();
        model
    })
}

/// The text model with its `classes` metadata removed.
pub fn unlabelled_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        const STRIP: &str = "import onnx, sys\n\
            m = onnx.load(sys.argv[1])\n\
            keep = [p for p in m.metadata_props if p.key != 'classes']\n\
            del m.metadata_props[:]\n\
            m.metadata_props.extend(keep)\n\
            onnx.save(m, sys.argv[2])\n";
        let (from, to) = (text_model(), fixture_dir().join("unlabelled.onnx"));
        let python = train_env().join("bin/python");
        let sh = xshell::Shell::new().unwrap();
        cmd!(sh, "{python} -c {STRIP} {from} {to}").quiet().run().unwrap();
        to
    })
}

/// A model over four float features (classes `a` and `b`), input `features`.
pub fn features_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let model = fixture_dir().join("features.onnx");
        let (python, script) = (train_env().join("bin/python"), root().join("training/build_test_models.py"));
        let sh = xshell::Shell::new().unwrap();
        cmd!(sh, "{python} {script} --kind features --out {model}").quiet().run().unwrap();
        model
    })
}

/// Rows of a learnable set: words that mean fresh or rotten around neutral filler.
fn write_text_data(path: &Path, rows: usize) {
    let good = ["good", "great", "fine", "moving", "funny", "smart"];
    let bad = ["bad", "awful", "dull", "boring", "weak", "silly"];
    let filler = ["film", "plot", "cast", "story", "scene", "ending"];
    let mut csv = String::from("text,label\n");
    for i in 0..rows {
        let (words, label) = if i % 2 == 0 { (good, "fresh") } else { (bad, "rotten") };
        let (a, b, c) = (words[i % 6], words[(i / 6) % 6], filler[(i / 2) % 6]);
        csv.push_str(&format!("the {c} was {a} and {b},{label}\n"));
    }
    std::fs::write(path, csv).unwrap();
}

/// Feature rows for [`features_model`]: both classes, zeros, and large values.
pub fn feature_rows() -> Vec<Vec<f32>> {
    vec![
        vec![0.75, 0.75, 0.75, 0.75],
        vec![-0.75, -1.0, -0.5, -0.75],
        vec![0.0, 0.0, 0.0, 0.0],
        vec![8.0, -8.0, 0.015625, 3.5],
        vec![-2.25, 1.5, -0.125, 6.0],
    ]
}

/// Texts to predict: clear, mixed, unknown words, empty and non-ASCII.
pub fn texts() -> Vec<String> {
    ["a great and moving film", "dull, boring and silly", "funny but weak", "", "zzz unknown words", "émouvant 🎬 good"]
        .map(String::from)
        .to_vec()
}

/// The config tests start from: the model, an ephemeral port on loopback, two sessions.
pub fn config(model: &Path) -> serve::Config {
    let mut config = serve::Config::new(model.to_path_buf(), "127.0.0.1:0".parse().unwrap(), search());
    config.sessions = 2;
    config
}

/// A server running on its own tokio runtime, so tests can use a blocking client.
pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub app: serve::App,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), serve::ServeError>>>,
    rt: tokio::runtime::Runtime,
}

impl TestServer {
    /// Binds and runs `config` (loading its model in the background).
    pub fn run(config: serve::Config) -> TestServer {
        TestServer::start(config, |server, stop| Box::pin(server.run(stop)))
    }

    /// Binds and serves without loading: readiness is whatever the test sets on `app`.
    pub fn serve_only(config: serve::Config) -> TestServer {
        TestServer::start(config, |server, stop| Box::pin(server.serve(stop)))
    }

    /// [`TestServer::run`], then waits until `/readyz` answers 200.
    pub fn ready(config: serve::Config) -> TestServer {
        let server = TestServer::run(config);
        server.wait_ready();
        server
    }

    fn start(config: serve::Config, go: impl FnOnce(serve::Server, Stop) -> ServeFuture) -> TestServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = rt.block_on(serve::Server::bind(config)).unwrap();
        let (addr, app) = (server.local_addr(), server.app().clone());
        let (tx, rx) = oneshot::channel::<()>();
        let stop: Stop = Box::pin(async move {
            let _ = rx.await;
        });
        let handle = rt.spawn(go(server, stop));
        TestServer { addr, app, stop: Some(tx), handle: Some(handle), rt }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Polls `/readyz` until 200, with a deadline.
    pub fn wait_ready(&self) {
        let url = self.url("/readyz");
        poll("the model to load", || get(&url).status == 200);
    }

    /// Starts the graceful shutdown without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Stops the server and returns how it ended.
    pub fn stop(mut self) -> Result<(), serve::ServeError> {
        self.signal_stop();
        self.join()
    }

    /// Waits for the server to end on its own (or after [`TestServer::signal_stop`]).
    pub fn join(&mut self) -> Result<(), serve::ServeError> {
        let handle = self.handle.take().expect("joined once");
        let ended = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), handle).await });
        ended.expect("the server did not stop within 60 s").expect("the server task panicked")
    }
}

type Stop = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;
type ServeFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), serve::ServeError>> + Send>>;

/// Polls `done` every 10 ms until it holds, failing after 30 s.
pub fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A whole HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| ureq::Agent::config_builder().http_status_as_error(false).build().into())
}

pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call().unwrap())
}

/// POSTs `body` with `content_type`.
pub fn post(url: &str, content_type: &str, body: &[u8]) -> Reply {
    reply(agent().post(url).header("content-type", content_type).send(body).unwrap())
}

/// POSTs `body` with `headers`.
pub fn post_with(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut request = agent().post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    reply(request.send(body).unwrap())
}

pub fn post_json(url: &str, body: &serde_json::Value) -> Reply {
    post(url, "application/json", body.to_string().as_bytes())
}

fn reply(mut response: ureq::http::Response<ureq::Body>) -> Reply {
    let status = response.status().as_u16();
    let headers =
        response.headers().iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_string())).collect();
    let body = response.body_mut().read_to_string().unwrap();
    Reply { status, headers, body }
}

/// The BLAKE3 of a file, as the server reports it.
pub fn digest(path: &Path) -> String {
    format!("blake3:{}", blake3::hash(&std::fs::read(path).unwrap()).to_hex())
}

/// The version the server reports by default: the digest's first 12 hex digits.
pub fn default_version(path: &Path) -> String {
    digest(path)["blake3:".len()..][..12].to_string()
}

/// This crate's directory, from cargo when the test or bench runs: a binary in a target
/// directory that clones share may have been compiled in another clone.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from)
}

/// The real binary, started with the training environment as its ONNX Runtime source.
pub struct Binary {
    pub child: std::process::Child,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Binary {
    #[allow(clippy::disallowed_methods, reason = "the test must keep the child to signal it and read its stderr live")]
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Binary {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_slipway-serve"));
        for name in ["ORT_DYLIB_PATH", "SLIPWAY_MODEL", "SLIPWAY_LISTEN", "SLIPWAY_MODEL_VERSION"] {
            command.env_remove(name);
        }
        command.args(args).envs(envs.iter().copied()).env("SLIPWAY_PYTHON_ENV", train_env());
        let mut child = command.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let (tx, stderr) = std::sync::mpsc::channel();
        let pipe = std::io::BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(pipe).map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Binary { child, stderr }
    }

    /// The next stderr line, within 30 s.
    pub fn line(&self) -> String {
        self.stderr.recv_timeout(Duration::from_secs(30)).expect("a line on stderr within 30 s")
    }

    /// Waits for the exit (within 30 s) and returns its code and the rest of stderr.
    pub fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "slipway-serve did not exit within 30 s");
            std::thread::sleep(Duration::from_millis(10));
        };
        let rest: Vec<String> = self.stderr.iter().collect();
        (status.code(), rest.join("\n"))
    }
}

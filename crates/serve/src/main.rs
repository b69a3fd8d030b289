//! `slipway-serve`: parse the command line, bind, announce the address, serve until SIGTERM or
//! SIGINT, and map the outcome to an exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

const EXIT_CODES: &str = "\
Exit codes:
  0  stopped by SIGTERM or SIGINT after finishing in-flight requests (at most 10 s)
  2  could not serve: bad arguments, the address is taken, or the model failed to load

ONNX Runtime is loaded from ORT_DYLIB_PATH (the libonnxruntime.so file), else from the
onnxruntime package of the virtualenv named by SLIPWAY_PYTHON_ENV.

Endpoints: POST /predict (a JSON object with text, texts, features or instances), GET /healthz
(200 once listening), GET /readyz (200 once the model is loaded, 503 before or if loading
failed), GET /metrics (Prometheus), and the Open Inference Protocol (KServe v2): GET /v2,
/v2/health/live, /v2/health/ready, /v2/models/NAME[/ready], POST /v2/models/NAME/infer.

Limits: a body of at most 1 MiB and 1,024 rows (413), each text within --max-text-chars and each
feature row within 10,000 values (413),
headers within 5 s (the connection is closed) and the body within 10 s (408); /predict requests
beyond --max-requests are shed with 503 and Retry-After, while /healthz and /metrics answer.";

/// Serve an ONNX classifier (text or feature rows) over HTTP.
#[derive(Parser)]
#[command(name = "slipway-serve", version, after_help = EXIT_CODES)]
struct Cli {
    /// The ONNX model to serve.
    #[arg(long, env = "SLIPWAY_MODEL", default_value = "/model/model.onnx")]
    model: PathBuf,
    /// The address to listen on: loopback unless told otherwise (the image listens on 0.0.0.0).
    #[arg(long, env = "SLIPWAY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The longest text /predict accepts, in characters (413 beyond).
    #[arg(long, env = "SLIPWAY_MAX_TEXT_CHARS", default_value_t = serve::Limits::default().max_text_chars as u32, value_parser = clap::value_parser!(u32).range(1..))]
    max_text_chars: u32,
    /// /predict requests taken at once; more are shed with 503 and Retry-After.
    #[arg(long, env = "SLIPWAY_MAX_REQUESTS", default_value_t = serve::Limits::default().max_predict_requests as u32, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_requests: u32,
    /// Connections served at once; more are closed at once.
    #[arg(long, env = "SLIPWAY_MAX_CONNECTIONS", default_value_t = serve::Limits::default().max_connections as u32, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_connections: u32,
    /// ONNX Runtime sessions, i.e. predictions run at once [default: the number of CPUs].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    sessions: Option<u32>,
    /// The version reported in x-model-version, /readyz and /metrics [default: the first 12 hex
    /// digits of the model file's BLAKE3].
    #[arg(long, env = "SLIPWAY_MODEL_VERSION")]
    model_version: Option<String>,
    /// The model's name in the Open Inference Protocol's paths (/v2/models/NAME).
    #[arg(long, env = "SLIPWAY_MODEL_NAME", default_value = serve::DEFAULT_MODEL_NAME, value_parser = model_name)]
    model_name: String,
}

/// A name that fits in a URL path segment as it is.
fn model_name(name: &str) -> Result<String, String> {
    let ok = (1..=128).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != "..";
    if ok { Ok(name.to_string()) } else { Err("use 1 to 128 of A-Z, a-z, 0-9, `-`, `_` and `.`".to_string()) }
}

impl Cli {
    fn config(self) -> serve::Config {
        // ONNX Runtime: ORT_DYLIB_PATH exactly, else the onnxruntime wheel in SLIPWAY_PYTHON_ENV.
        let dylib = std::env::var("ORT_DYLIB_PATH").ok();
        let venvs: Vec<PathBuf> = std::env::var_os("SLIPWAY_PYTHON_ENV").map(PathBuf::from).into_iter().collect();
        let runtime = model::RuntimeSearch::new(dylib.as_deref(), &venvs);
        let mut config = serve::Config::new(self.model, self.listen, runtime);
        if let Some(n) = self.sessions {
            config.sessions = n as usize;
        }
        config.model_version = self.model_version.filter(|v| !v.is_empty());
        config.model_name = self.model_name;
        config.limits.max_text_chars = self.max_text_chars as usize;
        config.limits.max_predict_requests = self.max_requests as usize;
        config.limits.max_connections = self.max_connections as usize;
        config
    }
}

fn main() -> ExitCode {
    let config = Cli::parse().config();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}"), None),
    };
    let code = runtime.block_on(serve_until_signal(config));
    // Requests abandoned after the drain timeout must not hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn serve_until_signal(config: serve::Config) -> ExitCode {
    let server = match serve::Server::bind(config).await {
        Ok(server) => server,
        Err(e) => return fail(&e, e.help()),
    };
    // Handlers go in before the address is announced, so a SIGTERM sent as soon as the line is
    // read is a graceful stop, never the default kill.
    let shutdown = match shutdown_signal() {
        Ok(signal) => signal,
        Err(e) => return fail(&e, None),
    };
    eprintln!("listening on {}", server.local_addr());
    match server.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, e.help()),
    }
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        eprintln!("slipway-serve: {name}: finishing in-flight requests, then stopping");
    })
}

fn fail(error: &dyn std::fmt::Display, help: Option<&str>) -> ExitCode {
    eprintln!("error: {error}");
    if let Some(help) = help {
        eprintln!("help: {help}");
    }
    ExitCode::from(2)
}

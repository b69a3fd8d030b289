//! A token server for the Bearer flow real registries use: it checks Basic credentials and
//! hands out one RS256 JWT that `docker-registry`'s `auth.token` accepts, signed by `openssl`
//! with a throwaway self-signed certificate.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use xshell::cmd;

use crate::fixture::{self, PASSWORD, USER};

/// Issuer and audience the registry is configured to expect.
pub const ISSUER: &str = "slipway-test-issuer";
pub const SERVICE: &str = "slipway-test-registry";

/// Serves `GET /token` on 127.0.0.1 until dropped.
pub struct TokenServer {
    pub port: u16,
    pub cert: PathBuf,
    granted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    /// Starts a server whose token grants pull and push on `repository`.
    pub fn start(repository: &str) -> TokenServer {
        let openssl = fixture::tool("openssl", "openssl");
        let dir = tempfile::tempdir().unwrap();
        let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
        let sh = fixture::shell();
        cmd!(
            sh,
            "{openssl} req -x509 -newkey rsa:2048 -nodes -keyout {key} -out {cert} -days 1 -subj /CN=slipway-test"
        )
        .quiet()
        .ignore_stderr()
        .run()
        .unwrap();
        let der = cmd!(sh, "{openssl} x509 -in {cert} -outform DER").quiet().output().unwrap().stdout;
        let jwt = mint(&key, &der, repository);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (granted, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (g, s) = (granted.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                answer(stream, &jwt, &g);
            }
        });
        TokenServer { port, cert, granted, stop, _dir: dir }
    }

    /// The realm URL to configure the registry with.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// How many tokens were handed out.
    pub fn granted(&self) -> usize {
        self.granted.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A JWT the registry trusts through the `x5c` chain (our self-signed certificate).
fn mint(key: &std::path::Path, der: &[u8], repository: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [STANDARD.encode(der)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 3600, "nbf": now - 60, "iat": now - 60,
        "jti": "slipway-test", "access": [{"type": "repository", "name": repository, "actions": ["pull", "push"]}],
    });
    let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", encode(&header), encode(&claims));
    let (sh, openssl) = (fixture::shell(), fixture::tool("openssl", "openssl"));
    let signature = cmd!(sh, "{openssl} dgst -sha256 -sign {key}").stdin(&input).quiet().output().unwrap().stdout;
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Answers one request: the token for the right Basic credentials, 401 otherwise.
fn answer(mut stream: TcpStream, jwt: &str, granted: &AtomicUsize) {
    let expected = format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")));
    let mut authorized = false;
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
        let name = "authorization:";
        if line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name) {
            authorized = line[name.len()..].trim() == expected;
        }
        line.clear();
    }
    let (status, body) = if authorized {
        granted.fetch_add(1, Ordering::SeqCst);
        ("200 OK", serde_json::json!({"token": jwt, "expires_in": 3600}).to_string())
    } else {
        ("401 Unauthorized", r#"{"details":"bad credentials"}"#.to_owned())
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    let _ = write!(stream, "{head}Connection: close\r\n\r\n{body}");
}

//! `slipway-router --listen ADDR --admin ADDR --token-file PATH [--backend HOST:PORT]
//! [--addr-file PATH]`: an environment's stable port, run in the background by the local and
//! docker deploy targets. The admin API answers only callers that present the token in
//! `--token-file` (a file only its owner can read).

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;

const USAGE: &str =
    "usage: slipway-router --listen ADDR --admin ADDR --token-file PATH [--backend HOST:PORT] [--addr-file PATH]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    let parse = |flag: &str, default: &str| get(flag).unwrap_or_else(|| default.to_string()).parse::<SocketAddr>();
    let (Ok(public), Ok(admin), Some(token_file)) =
        (parse("--listen", "127.0.0.1:8080"), parse("--admin", "127.0.0.1:0"), get("--token-file"))
    else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let token = match read_token(&token_file) {
        Ok(token) => token,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let addr_file = get("--addr-file");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let options = router::Options::new(public, admin, get("--backend"), token);
    let result = runtime.block_on(router::run(options, |addrs| {
        let line = format!("{} {}\n", addrs.public, addrs.admin);
        if let Some(path) = &addr_file {
            let _ = std::fs::write(path, &line);
        }
        eprint!("router listening on {line}");
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The token, from a file that no one but its owner may read.
fn read_token(path: &str) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read the token file {path}: {e}"))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!("the token file {path} may be read by others; make it 0600"));
    }
    let token = std::fs::read_to_string(path).map_err(|e| format!("cannot read the token file {path}: {e}"))?;
    Ok(token.trim().to_string())
}

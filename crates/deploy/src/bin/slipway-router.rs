//! `slipway-router --listen ADDR --admin ADDR [--backend HOST:PORT] [--addr-file PATH]`: an
//! environment's stable port, run in the background by the local and docker deploy targets.

use std::net::SocketAddr;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    let parse = |flag: &str, default: &str| get(flag).unwrap_or_else(|| default.to_string()).parse::<SocketAddr>();
    let (Ok(public), Ok(admin)) = (parse("--listen", "127.0.0.1:8080"), parse("--admin", "127.0.0.1:0")) else {
        eprintln!("usage: slipway-router --listen ADDR --admin ADDR [--backend HOST:PORT] [--addr-file PATH]");
        return ExitCode::from(2);
    };
    let addr_file = get("--addr-file");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(deploy::router::run(public, admin, get("--backend"), |addrs| {
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

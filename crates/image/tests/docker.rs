//! The archive is a real Docker image: `docker load` takes it and `docker run` runs it, first a
//! system program (proving the loader, the libraries and the user), then the real server.

use std::time::Duration;

use serde_json::Value;
use xshell::cmd;

use crate::fixture;

/// Removes the containers and images a test made, even when it fails.
struct Cleanup {
    docker: std::path::PathBuf,
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (sh, docker) = (fixture::shell(), &self.docker);
        for c in &self.containers {
            let _ = cmd!(sh, "{docker} rm -f {c}").quiet().ignore_stdout().ignore_stderr().run();
        }
        for i in &self.images {
            let _ = cmd!(sh, "{docker} rmi -f {i}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }
}

fn docker() -> std::path::PathBuf {
    fixture::tool("docker", "docker.io")
}

/// `docker load`s the archive and returns the image ID it reports.
fn load(archive: &std::path::Path) -> String {
    let (sh, docker) = (fixture::shell(), docker());
    let out = cmd!(sh, "{docker} load -i {archive}").read().unwrap();
    assert!(out.contains("Loaded image"), "docker load said: {out}");
    out
}

#[test]
fn docker_runs_a_program_as_the_slipway_user_with_its_ldd_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, docker) = (fixture::tool("id", "coreutils"), docker());
    let mut spec = fixture::real(&binary, &fixture::model(), dir.path(), "slipway-image-test-id");
    spec.tags = vec![format!("t{}", std::process::id())];
    let built = image::build(&spec).unwrap();
    let name = format!("slipway-image-test-id:{}", spec.tags[0]);
    let _cleanup = Cleanup { docker: docker.clone(), containers: vec![], images: vec![name.clone()] };
    load(&built.archive);
    let sh = fixture::shell();
    let format = "{{.Id}}";
    let id = cmd!(sh, "{docker} image inspect --format {format} {name}").read().unwrap();
    assert_eq!(id.trim(), built.config_digest, "Docker's image ID is the config digest");
    let out = cmd!(sh, "{docker} run --rm --network none {name}").read().unwrap();
    assert_eq!(out.trim(), "uid=10001(slipway) gid=10001(slipway) groups=10001(slipway)");
}

#[test]
fn docker_runs_the_real_server_image_and_it_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let docker = docker();
    let binary = build_server();
    let mut spec = fixture::real(&binary, &fixture::model(), dir.path(), "slipway-image-test-serve");
    spec.tags = vec![format!("t{}", std::process::id())];
    let built = image::build(&spec).unwrap();
    for layer in &built.layers {
        println!("layer {:<12} {:>10} bytes  {}", layer.name, layer.size, layer.digest);
    }
    let name = format!("slipway-image-test-serve:{}", spec.tags[0]);
    let container = format!("slipway-image-test-{}", std::process::id());
    let _cleanup = Cleanup { docker: docker.clone(), containers: vec![container.clone()], images: vec![name.clone()] };
    load(&built.archive);
    let (sh, port) = (fixture::shell(), fixture::free_port());
    let publish = format!("127.0.0.1:{port}:8080");
    cmd!(sh, "{docker} run -d --name {container} -p {publish} {name}").quiet().ignore_stdout().run().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let ready = || http("GET", &format!("{base}/readyz"), None).is_some_and(|(status, _)| status == 200);
    let running = || {
        let format = "{{.State.Running}}";
        cmd!(sh, "{docker} inspect -f {format} {container}").quiet().read().is_ok_and(|s| s.trim() == "true")
    };
    // Stop waiting early if the container has exited: its log says why.
    let mut polls = 0;
    fixture::poll(60, || {
        polls += 1;
        ready() || (polls % 20 == 0 && !running())
    });
    if !ready() {
        let logs = cmd!(sh, "{docker} logs {container}").ignore_status().read_stderr().unwrap_or_default();
        panic!("the server in the image never became ready; its log:\n{logs}");
    }
    let (status, body) =
        http("POST", &format!("{base}/predict"), Some(r#"{"text":"a wonderful, moving film"}"#)).unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    let label = answer["label"].as_str().unwrap_or_else(|| panic!("no label in {body}"));
    assert!(answer["probabilities"].get(label).is_some(), "the label is not among the probabilities: {body}");
    println!("/predict answered {body}");
    // The Open Inference Protocol, through a real client of it (tritonclient, from the tools).
    let client = fixture::root().join("crates/serve/tests/oip_client.py");
    let python = fixture::root().join(".slipway/tools/bin/python");
    let (url, rows) = (format!("127.0.0.1:{port}"), r#"["a wonderful, moving film", "dull and boring"]"#);
    let out = cmd!(sh, "{python} {client} {url} model {rows}").quiet().read().expect("the protocol client failed");
    let got: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("the client printed no JSON ({e}): {out}"));
    assert_eq!((&got["ready"], &got["model_ready"]), (&Value::Bool(true), &Value::Bool(true)), "{got}");
    assert_eq!(got["metadata"]["inputs"][0]["datatype"], "BYTES", "{got}");
    for form in ["json", "binary"] {
        assert_eq!(got["results"][form]["labels"][0], label, "{form}: {got}");
    }
}

/// Builds `slipway-serve` the way `cargo test` builds the workspace, and returns its path.
fn build_server() -> std::path::PathBuf {
    let sh = fixture::shell();
    cmd!(sh, "cargo build --quiet -p slipway-serve").run().expect("cannot build slipway-serve (crates/serve)");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| fixture::root().join("target"), Into::into);
    target.join("debug/slipway-serve")
}

/// One HTTP request; `None` if nothing answered.
fn http(method: &str, url: &str, body: Option<&str>) -> Option<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut request = client.request(method.parse().unwrap(), url);
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    })
}

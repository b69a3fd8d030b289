//! Deploy targets: where a release's server runs. `local` runs the release's own binary as a
//! background process; `docker` runs the release's image. Both sit behind the environment's
//! router, which owns the stable port, so a version switch loses no request.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use xshell::cmd;

use crate::http;
use crate::ledger::Release;

/// A running server of one release.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// The release version it serves.
    pub version: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// How to stop it.
    pub handle: Handle,
}

/// A process or a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Handle {
    /// A local process.
    Pid(u32),
    /// A Docker container id.
    Container(String),
}

/// Where releases run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// The release's binary as a background process (the embedded default).
    Local,
    /// The release's image on a Docker engine.
    Docker,
    /// Deployment and Service manifests applied with kubectl.
    Kubernetes,
}

/// Starts a server of `release` (files in `bundle`) on a free loopback port and waits until it
/// is ready. `logs` is the directory for its output.
pub async fn start(kind: TargetKind, release: &Release, bundle: &Path, logs: &Path) -> Result<Backend> {
    let backend = spawn(kind, release, bundle, logs)?;
    ready(backend, &release.version, logs).await
}

/// Starts a server of `release` without waiting for it: the handle is known at once, so a
/// caller can record it before anything can interrupt it.
pub fn spawn(kind: TargetKind, release: &Release, bundle: &Path, logs: &Path) -> Result<Backend> {
    spawn_at(kind, release, bundle, pick_addr()?, logs)
}

/// A free loopback address for a new server: chosen, and recorded, before the server starts.
pub fn pick_addr() -> Result<SocketAddr> {
    Ok(([127, 0, 0, 1], free_port()?).into())
}

/// [`spawn`] on an address chosen by [`pick_addr`].
pub fn spawn_at(kind: TargetKind, release: &Release, bundle: &Path, addr: SocketAddr, logs: &Path) -> Result<Backend> {
    let handle = match kind {
        TargetKind::Local => Handle::Pid(spawn_local(release, bundle, addr, logs)?),
        TargetKind::Docker => Handle::Container(run_container(release, bundle, addr.port())?),
        TargetKind::Kubernetes => bail!("the kubernetes target does not run local backends"),
    };
    Ok(Backend { version: release.version.clone(), addr, handle })
}

/// The server of `version` that a deploy started on `addr` and was killed before it could
/// record: a `slipway-serve` process listening there, or the container named for it.
pub fn find_started(kind: TargetKind, version: &str, addr: SocketAddr) -> Option<Backend> {
    if !addr.ip().is_loopback() || !crate::names::is_version(version) {
        return None;
    }
    let handle = match kind {
        TargetKind::Local => Handle::Pid(find_process(addr)?),
        TargetKind::Docker => {
            let sh = xshell::Shell::new().ok()?;
            let (name, format) = (container_name(version, addr.port()), "{{.Id}}");
            let id = cmd!(sh, "docker inspect -f {format} {name}").quiet().ignore_stderr().read().ok()?;
            Handle::Container(id.trim().to_string())
        }
        TargetKind::Kubernetes => return None,
    };
    Some(Backend { version: version.to_string(), addr, handle }).filter(|b| alive(&b.handle))
}

/// The pid of the `slipway-serve` started with `--listen addr`, from `/proc`.
fn find_process(addr: SocketAddr) -> Option<u32> {
    processes("slipway-serve", "--listen", addr.to_string().as_bytes()).into_iter().next()
}

/// The routers started for the environment whose state is in `dir`, found by the address
/// file they were given: one that `router.json` does not name still holds the stable port.
pub fn routers_of(dir: &Path) -> Vec<u32> {
    use std::os::unix::ffi::OsStrExt;
    processes("slipway-router", "--addr-file", dir.join(ROUTER_ADDR_FILE).as_os_str().as_bytes())
}

/// Live processes of the program `name` that were given `flag value`, from `/proc`.
fn processes(name: &str, flag: &str, value: &[u8]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let suffix = format!("/{name}");
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let program = args.first().is_some_and(|a| a.ends_with(suffix.as_bytes()));
            let given = args.windows(2).any(|w| w[0] == flag.as_bytes() && w[1] == value);
            (program && given && alive(&Handle::Pid(pid))).then_some(pid)
        })
        .collect()
}

fn container_name(version: &str, port: u16) -> String {
    format!("slipway-{version}-{port}")
}

/// Waits until `backend` is ready; stops it if it does not become so.
pub async fn ready(backend: Backend, version: &str, logs: &Path) -> Result<Backend> {
    if let Err(e) = wait_ready(&backend).await {
        let _ = stop(&backend).await;
        return Err(e.context(format!("{version} did not become ready; its log is in {}", logs.display())));
    }
    Ok(backend)
}

/// A port that is free now and that the kernel will not hand out meanwhile: the address is
/// recorded before the server binds it, and a port from the ephemeral range (what `bind(0)`
/// gives) can be taken in between as the source port of any outgoing connection. So it is
/// drawn at random below that range, where only an explicit bind can take it; `bind(0)` is
/// the fallback when nothing there is free.
fn free_port() -> Result<u16> {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low = ephemeral.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(32768);
    let (from, to) = (20_000u16, low.min(32768));
    if to > from {
        use std::hash::{BuildHasher, Hasher};
        let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
        seed.write_u32(std::process::id());
        let mut x = seed.finish() | 1;
        for _ in 0..64 {
            // xorshift: cheap, and a fresh RandomState seeds it differently in every call.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = from + (x % u64::from(to - from)) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[allow(
    clippy::disallowed_methods,
    reason = "a background server must outlive this process; xshell only runs commands to completion"
)]
fn spawn_local(release: &Release, bundle: &Path, addr: SocketAddr, logs: &Path) -> Result<u32> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(logs)?;
    let log = std::fs::File::create(logs.join(format!("{}-{}.log", release.version, addr.port())))?;
    let child = std::process::Command::new(bundle.join("slipway-serve"))
        .arg("--model")
        .arg(bundle.join("model.onnx"))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--model-version")
        .arg(&release.version)
        // Nothing of this process's environment (credentials, webhook) reaches the server.
        .env_clear()
        .env("ORT_DYLIB_PATH", bundle.join("libonnxruntime.so"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for `cargo xtask` must not stop production.
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", bundle.join("slipway-serve").display()))?;
    Ok(child.id())
}

/// The image reference a release's tar loads as.
pub fn image_ref(release: &Release) -> Result<String> {
    let tag = release.tags.first().context("the release has no image tag; build it with `cargo xtask image`")?;
    Ok(format!("slipway-serve:{tag}"))
}

fn run_container(release: &Release, bundle: &Path, port: u16) -> Result<String> {
    let sh = xshell::Shell::new()?;
    let image = container_image(&sh, release, bundle)?;
    let name = container_name(&release.version, port);
    let publish = format!("127.0.0.1:{port}:8080");
    let id = cmd!(sh, "docker run -d --name {name} -p {publish} {image}")
        .quiet()
        .read()
        .context("start the release container")?;
    Ok(id.trim().to_string())
}

/// What `docker run` is given: the image by its content, never by a tag that may have moved
/// since the release was built (a `docker build -t slipway-serve:v1` by hand, an old load).
///
/// Docker's classic store names an image by its config digest, which the release records, so
/// the image is loaded from the release's own tar unless Docker already holds exactly that
/// content. Docker's containerd store names images by manifest instead; there the ID is taken
/// from the image that `docker load` just read from the tar.
fn container_image(sh: &xshell::Shell, release: &Release, bundle: &Path) -> Result<String> {
    let known =
        |image: &str| cmd!(sh, "docker image inspect {image}").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    let Some(config) = release.image_config.as_deref() else {
        // A release recorded before image digests were kept: its tag is all there is.
        return image_ref(release);
    };
    if known(config) {
        return Ok(config.to_string());
    }
    let tar = bundle.join("image.tar");
    let loaded = cmd!(sh, "docker load -i {tar}").quiet().read().context("load the release image into Docker")?;
    if known(config) {
        return Ok(config.to_string());
    }
    let reference = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image ID: ").or_else(|| l.strip_prefix("Loaded image: ")))
        .map(str::trim)
        .with_context(|| format!("`docker load -i {}` did not say what it loaded", tar.display()))?;
    let format = "{{.Id}}";
    let id = cmd!(sh, "docker image inspect -f {format} {reference}")
        .quiet()
        .read()
        .with_context(|| format!("Docker does not know the image it just loaded ({reference})"))?;
    Ok(id.trim().to_string())
}

async fn wait_ready(backend: &Backend) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{}/readyz", backend.addr);
    loop {
        if let Ok(r) = http::send("GET", &url, None, Duration::from_secs(2)).await
            && r.status == 200
        {
            return Ok(());
        }
        if !alive(&backend.handle) {
            bail!("the server exited before it was ready");
        }
        if Instant::now() > deadline {
            bail!("not ready after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the process or container is still running.
pub fn alive(handle: &Handle) -> bool {
    match handle {
        Handle::Pid(pid) => {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // A zombie has exited; only its parent has not collected it yet.
            !stat.is_empty() && stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        }
        Handle::Container(id) => xshell::Shell::new().is_ok_and(|sh| {
            let format = "{{.State.Running}}";
            cmd!(sh, "docker inspect -f {format} {id}").quiet().ignore_stderr().read().is_ok_and(|s| s.trim() == "true")
        }),
    }
}

/// Stops a backend gracefully (SIGTERM, up to 15 s), then for good.
pub async fn stop(backend: &Backend) -> Result<()> {
    let sh = xshell::Shell::new()?;
    match &backend.handle {
        Handle::Pid(pid) => {
            let pid = pid.to_string();
            let _ = cmd!(sh, "kill -TERM {pid}").quiet().ignore_stderr().run();
            let deadline = Instant::now() + Duration::from_secs(15);
            while alive(&backend.handle) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if alive(&backend.handle) {
                let _ = cmd!(sh, "kill -KILL {pid}").quiet().ignore_stderr().run();
                // Its sockets are closed only once it is gone: a caller may bind its port next.
                let deadline = Instant::now() + Duration::from_secs(5);
                while alive(&backend.handle) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        Handle::Container(id) => {
            let _ = cmd!(sh, "docker stop -t 15 {id}").quiet().ignore_stdout().ignore_stderr().run();
            let _ = cmd!(sh, "docker rm -f {id}").quiet().ignore_stdout().ignore_stderr().run();
        }
    }
    Ok(())
}

/// What a canary or shadow on a router from before them says.
const OLD_ROUTER: &str = "the router serving this environment predates canary and shadow releases; restart it (`cargo xtask stop --env ENV`, then deploy: the next router is this release's) or use strategy = \"blue-green\"";

/// The router of one environment: its process, ports and the file that holds its admin token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {
    /// Its process.
    pub pid: u32,
    /// The stable, public address.
    pub public: SocketAddr,
    /// The admin address.
    pub admin: SocketAddr,
    /// The 0600 file with the token its admin API asks for.
    pub token_file: PathBuf,
}

/// How a switch went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Switched {
    /// The old backend answered every request it was given.
    Drained,
    /// The switch is made, but the old backend still had requests when the router stopped
    /// waiting; the router says what.
    Undrained(String),
}

/// The token file of an environment's router.
const TOKEN_FILE: &str = "router.token";

/// Writes a fresh random token, readable only by this user, and returns its path.
fn new_token_file(dir: &Path) -> Result<PathBuf> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random).context("read /dev/urandom")?;
    let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join(TOKEN_FILE);
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    file.write_all(token.as_bytes())?;
    Ok(path)
}

/// Where a router writes the addresses it listens on.
const ROUTER_ADDR_FILE: &str = "router.addr";

impl Router {
    /// Starts `router_bin` on `port` in the background, with its state in `dir`.
    #[allow(
        clippy::disallowed_methods,
        reason = "the router must outlive this process; xshell only runs commands to completion"
    )]
    pub async fn start(router_bin: &Path, port: u16, dir: &Path) -> Result<Router> {
        use std::os::unix::process::CommandExt;
        std::fs::create_dir_all(dir)?;
        let addr_file = dir.join(ROUTER_ADDR_FILE);
        let _ = std::fs::remove_file(&addr_file);
        let token_file = new_token_file(dir).context("write the router's admin token")?;
        let log = std::fs::File::create(dir.join("router.log"))?;
        let mut child = std::process::Command::new(router_bin)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--admin", "127.0.0.1:0", "--addr-file"])
            .arg(&addr_file)
            .arg("--token-file")
            .arg(&token_file)
            // Nothing of this process's environment (credentials, webhook) reaches the router.
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start the router {}", router_bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((public, admin)) = std::fs::read_to_string(&addr_file).ok().and_then(|s| parse_addrs(&s)) {
                return Ok(Router { pid: child.id(), public, admin, token_file });
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("router.log")).unwrap_or_default();
                bail!("the router exited ({status}) before listening on port {port}: {}", log.trim());
            }
            if Instant::now() > deadline {
                bail!("the router did not start within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn token(&self) -> Result<String> {
        let token = std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("cannot read the router's token {}", self.token_file.display()))?;
        Ok(token.trim().to_string())
    }

    async fn admin(&self, method: &str, path: &str, body: Option<String>, timeout: Duration) -> Result<http::Reply> {
        let token = self.token()?;
        http::send_as(method, &format!("http://{}{path}", self.admin), body, Some(&token), timeout).await
    }

    /// Whether it answers on its admin port (and takes our token).
    pub async fn answers(&self) -> bool {
        self.admin("GET", "/backend", None, Duration::from_secs(2)).await.is_ok_and(|r| r.status == 200)
    }

    /// The backend it sends requests to now, if any.
    pub async fn backend(&self) -> Result<Option<SocketAddr>> {
        let r = self.admin("GET", "/backend", None, Duration::from_secs(2)).await?;
        if r.status != 200 {
            bail!("the router's admin API answered HTTP {} {}", r.status, r.text());
        }
        Ok(r.text().trim().parse().ok())
    }

    /// Sends new requests to `backend` and returns once the previous backend is drained, or
    /// once the router stopped waiting for it (the switch is made either way).
    pub async fn switch(&self, backend: SocketAddr) -> Result<Switched> {
        let r = self.admin("PUT", "/backend", Some(backend.to_string()), Duration::from_secs(60)).await?;
        if r.status != 200 {
            bail!("the router refused the switch: HTTP {} {}", r.status, r.text());
        }
        Ok(match r.header(crate::router::DRAINED_HEADER).as_deref() {
            Some("false") => Switched::Undrained(r.text()),
            _ => Switched::Drained,
        })
    }

    /// Sends `weight` percent of requests to `candidate` (the rest to the backend).
    pub async fn set_canary(&self, candidate: SocketAddr, weight: u8) -> Result<()> {
        let r = self.admin("PUT", "/canary", Some(format!("{candidate} {weight}")), Duration::from_secs(5)).await?;
        if r.status == 404 {
            bail!("{OLD_ROUTER}");
        }
        if r.status != 200 {
            bail!("the router refused the canary: HTTP {} {}", r.status, r.text());
        }
        Ok(())
    }

    /// Sends every request to the backend again, once the canary's are done.
    pub async fn clear_canary(&self) -> Result<()> {
        let r = self.admin("DELETE", "/canary", None, Duration::from_secs(60)).await?;
        // A router from before canaries has none to take back.
        if r.status != 200 && r.status != 404 {
            bail!("the router kept the canary: HTTP {} {}", r.status, r.text());
        }
        Ok(())
    }

    /// Mirrors `share` percent of live predictions to `shadow`, whose answers are only compared.
    pub async fn set_shadow(&self, shadow: SocketAddr, share: u8) -> Result<()> {
        let r = self.admin("PUT", "/shadow", Some(format!("{shadow} {share}")), Duration::from_secs(5)).await?;
        if r.status == 404 {
            bail!("{OLD_ROUTER}");
        }
        if r.status != 200 {
            bail!("the router refused the shadow: HTTP {} {}", r.status, r.text());
        }
        Ok(())
    }

    /// Mirrors nothing any more.
    pub async fn clear_shadow(&self) -> Result<()> {
        let r = self.admin("DELETE", "/shadow", None, Duration::from_secs(5)).await?;
        if r.status != 200 && r.status != 404 {
            bail!("the router kept the shadow: HTTP {} {}", r.status, r.text());
        }
        Ok(())
    }

    /// What it saw of each backend so far.
    pub async fn reading(&self) -> Result<crate::canary::Reading> {
        let r = self.admin("GET", "/metrics", None, Duration::from_secs(5)).await?;
        if r.status != 200 {
            bail!("the router's metrics answered HTTP {} {}", r.status, r.text());
        }
        Ok(crate::canary::Reading::parse(&r.text()))
    }

    /// Stops it.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.admin("POST", "/shutdown", None, Duration::from_secs(5)).await;
        Ok(())
    }
}

fn parse_addrs(s: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut it = s.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The state directory of an environment.
pub fn env_dir(root: &Path, env: &str) -> PathBuf {
    root.join(engine::STATE_DIR).join("deploy").join(env)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_chosen_port_is_free_and_below_the_ephemeral_range() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
        let low = range.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(32768);
        let ports: std::collections::BTreeSet<u16> = (0..20).map(|_| super::free_port().unwrap()).collect();
        assert!(ports.iter().all(|p| (20_000..low.min(32768)).contains(p)), "{ports:?}");
        assert!(ports.len() > 10, "drawn at random, not the same few: {ports:?}");
        for p in ports {
            assert!(std::net::TcpListener::bind(("127.0.0.1", p)).is_ok(), "{p} was free");
        }
    }
}

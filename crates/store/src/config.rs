//! Which remote to use: `SLIPWAY_REMOTE`, else DVC's default remote in `.dvc/config` (so an
//! existing DVC project works unchanged), else `slipway.toml`, else the embedded default
//! directory. Credentials and endpoints come from the usual places.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::error::StoreError;
use crate::remote::{DirRemote, Remote};
use crate::s3::S3Remote;

/// Everything needed to reach a bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// The key prefix inside it, without leading or trailing `/`.
    pub prefix: String,
    /// A non-AWS endpoint, e.g. `http://127.0.0.1:8333`; path-style addressing is used with it.
    pub endpoint: Option<String>,
    /// The region; `us-east-1` when nothing says otherwise.
    pub region: String,
    /// An access key id and secret, when given explicitly.
    pub keys: Option<(String, String)>,
    /// A session token for temporary keys.
    pub session_token: Option<String>,
    /// A profile in the AWS shared files, used when no keys are given.
    pub profile: Option<String>,
    /// Where the AWS shared files are.
    pub shared_files: crate::aws_profile::SharedFiles,
}

impl S3Settings {
    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix).trim_end_matches('/').to_string()
    }
}

// Hand-written so that secrets never reach a log through `{:?}`.
impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("url", &self.url())
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("keys", &self.keys.as_ref().map(|_| "<redacted>"))
            .field("profile", &self.profile)
            .finish()
    }
}

/// A remote, before connecting.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant, reason = "resolved once per command; boxing buys nothing")]
pub enum RemoteSpec {
    /// A directory.
    Dir(PathBuf),
    /// A bucket.
    S3(S3Settings),
}

/// Where the choice of remote came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `SLIPWAY_REMOTE`.
    Env,
    /// The named default remote of `.dvc/config`.
    DvcConfig(String),
    /// `slipway.toml`.
    SlipwayToml,
    /// Nothing was configured: the embedded default directory.
    Default,
}

/// The remote to use and why.
#[derive(Clone, Debug)]
pub struct ResolvedRemote {
    /// What to connect to.
    pub spec: RemoteSpec,
    /// Why this one.
    pub source: Source,
}

impl ResolvedRemote {
    /// Connects; for S3 this fails at once without credentials.
    pub fn open(&self) -> Result<Box<dyn Remote>, StoreError> {
        Ok(match &self.spec {
            RemoteSpec::Dir(path) => Box::new(DirRemote::new(path)),
            RemoteSpec::S3(s3) => Box::new(S3Remote::connect(s3)?),
        })
    }

    /// `s3://…` or the directory, for messages.
    pub fn describe(&self) -> String {
        match &self.spec {
            RemoteSpec::Dir(p) => p.display().to_string(),
            RemoteSpec::S3(s3) => s3.url(),
        }
    }
}

#[derive(Deserialize, Default)]
struct SlipwayToml {
    remote: Option<TomlRemote>,
}

#[derive(Deserialize)]
struct TomlRemote {
    url: String,
    endpoint: Option<String>,
    region: Option<String>,
}

/// Every environment variable [`resolve`] and the S3 client read that is not a secret. A stage
/// that opens the remote passes these and [`REMOTE_SECRETS`] (see `Stage::pass_env`): what a
/// remote holds is addressed by digest, so where it is does not key anything.
pub const REMOTE_ENV: &[&str] = &[
    "SLIPWAY_REMOTE",
    "XDG_CACHE_HOME",
    "HOME",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
];

/// The secrets the remote may need.
pub const REMOTE_SECRETS: &[&str] = &["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];

/// Resolves the remote for the repository at `root` with the environment `env`.
pub fn resolve(root: &Path, env: &BTreeMap<String, String>) -> Result<ResolvedRemote, StoreError> {
    let var = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
    if let Some(url) = var("SLIPWAY_REMOTE") {
        return Ok(ResolvedRemote { spec: parse_url(&url, root, &Options::default(), env)?, source: Source::Env });
    }
    if let Some((name, options)) = dvc_default_remote(root)? {
        let url = options.get("url").cloned().ok_or_else(|| {
            anyhow::anyhow!("remote `{name}` in .dvc/config has no url; set one with `dvc remote modify {name} url …`")
        })?;
        let spec = parse_url(&url, &root.join(".dvc"), &options, env)?;
        return Ok(ResolvedRemote { spec, source: Source::DvcConfig(name) });
    }
    if let Some(remote) = slipway_toml(root)?.remote {
        let mut options = Options::new();
        options.extend(remote.endpoint.map(|e| ("endpointurl".to_string(), e)));
        options.extend(remote.region.map(|r| ("region".to_string(), r)));
        return Ok(ResolvedRemote { spec: parse_url(&remote.url, root, &options, env)?, source: Source::SlipwayToml });
    }
    Ok(ResolvedRemote { spec: RemoteSpec::Dir(default_dir(root, env)), source: Source::Default })
}

/// The embedded default: a directory shared by every clone on this machine.
pub fn default_dir(root: &Path, env: &BTreeMap<String, String>) -> PathBuf {
    let cache = env
        .get("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").filter(|v| !v.is_empty()).map(|h| Path::new(h).join(".cache")));
    match cache {
        Some(dir) => dir.join("slipway").join("remote"),
        None => root.join(".slipway").join("remote"),
    }
}

type Options = BTreeMap<String, String>;

fn parse_url(
    url: &str,
    base: &Path,
    options: &Options,
    env: &BTreeMap<String, String>,
) -> Result<RemoteSpec, StoreError> {
    let var = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(anyhow::anyhow!("`{url}` names no bucket; write it as s3://BUCKET/PREFIX").into());
        }
        let keys = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some((id, secret)),
            _ => options.get("access_key_id").cloned().zip(options.get("secret_access_key").cloned()),
        };
        let home = |rel: &str| var("HOME").map(|home| Path::new(&home).join(rel));
        let shared_files = crate::aws_profile::SharedFiles {
            credentials: var("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from).or_else(|| home(".aws/credentials")),
            config: var("AWS_CONFIG_FILE").map(PathBuf::from).or_else(|| home(".aws/config")),
        };
        let profile = var("AWS_PROFILE").or_else(|| options.get("profile").cloned()).or_else(|| {
            let exists = |f: &Option<PathBuf>| f.as_ref().is_some_and(|f| f.is_file());
            (exists(&shared_files.credentials) || exists(&shared_files.config)).then(|| "default".to_string())
        });
        return Ok(RemoteSpec::S3(S3Settings {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: options
                .get("endpointurl")
                .cloned()
                .or_else(|| var("AWS_ENDPOINT_URL_S3"))
                .or_else(|| var("AWS_ENDPOINT_URL")),
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .or_else(|| options.get("region").cloned())
                .unwrap_or_else(|| "us-east-1".to_string()),
            session_token: var("AWS_SESSION_TOKEN").or_else(|| options.get("session_token").cloned()),
            keys,
            profile,
            shared_files,
        }));
    }
    if let Some((scheme, _)) = url.split_once("://").filter(|(s, _)| *s != "file") {
        return Err(anyhow::anyhow!(
            "remote `{url}`: the `{scheme}://` scheme is not supported; use s3:// or a directory"
        )
        .into());
    }
    let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
    Ok(RemoteSpec::Dir(if path.is_absolute() { path.to_path_buf() } else { base.join(path) }))
}

/// DVC's default remote and its options, merged from `.dvc/config` and `.dvc/config.local`.
fn dvc_default_remote(root: &Path) -> Result<Option<(String, Options)>, StoreError> {
    let mut sections: BTreeMap<String, Options> = BTreeMap::new();
    for file in ["config", "config.local"] {
        let path = root.join(".dvc").join(file);
        if !path.is_file() {
            continue;
        }
        let ini = ini::Ini::load_from_file(&path).with_context(|| format!("cannot read {}", path.display()))?;
        for (section, props) in ini.iter() {
            let name = section.unwrap_or_default().trim_matches('\'').to_string();
            let entry = sections.entry(name).or_default();
            entry.extend(props.iter().map(|(k, v)| (k.trim().to_string(), v.trim().to_string())));
        }
    }
    let Some(name) = sections.get("core").and_then(|core| core.get("remote")).cloned() else { return Ok(None) };
    let options = sections.remove(&format!("remote \"{name}\"")).ok_or_else(|| {
        anyhow::anyhow!("the default remote `{name}` in .dvc/config is not defined; add it with `dvc remote add`")
    })?;
    Ok(Some((name, options)))
}

fn slipway_toml(root: &Path) -> Result<SlipwayToml, StoreError> {
    let path = root.join("slipway.toml");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(SlipwayToml::default()) };
    let parsed = toml::from_str(&text).with_context(|| format!("{} is not valid", path.display()))?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stages pass exactly REMOTE_ENV and REMOTE_SECRETS to the code here: a variable read
    /// here and missing from them would silently not reach it.
    #[test]
    fn every_variable_read_here_is_listed() {
        let code = include_str!("config.rs");
        let code = &code[..code.find("#[cfg(test)]").unwrap()];
        let mut read = Vec::new();
        for pattern in ["var(\"", "env.get(\""] {
            for (i, _) in code.match_indices(pattern) {
                let rest = &code[i + pattern.len()..];
                read.push(rest[..rest.find('"').unwrap()].to_string());
            }
        }
        assert!(read.len() >= 8, "{read:?}");
        let listed: Vec<&str> = REMOTE_ENV.iter().chain(REMOTE_SECRETS).copied().collect();
        for name in &read {
            assert!(listed.contains(&name.as_str()), "{name} is read but not in REMOTE_ENV or REMOTE_SECRETS");
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    const DVC_CONFIG: &str = "[core]\n    remote = storage\n['remote \"storage\"']\n    url = s3://bucket/some/prefix\n    endpointurl = http://127.0.0.1:9000\n";

    #[test]
    fn slipway_remote_wins() {
        let dir = repo(&[(".dvc/config", DVC_CONFIG)]);
        let r = resolve(dir.path(), &env(&[("SLIPWAY_REMOTE", "/srv/artifacts")])).unwrap();
        assert_eq!((r.spec, r.source), (RemoteSpec::Dir("/srv/artifacts".into()), Source::Env));
    }

    #[test]
    fn dvc_default_remote_with_local_credentials() {
        let local = "['remote \"storage\"']\n    access_key_id = AKIA\n    secret_access_key = SECRET\n";
        let dir = repo(&[(".dvc/config", DVC_CONFIG), (".dvc/config.local", local)]);
        let r = resolve(dir.path(), &env(&[])).unwrap();
        assert_eq!(r.source, Source::DvcConfig("storage".into()));
        let RemoteSpec::S3(s3) = r.spec else { panic!() };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("bucket", "some/prefix"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.keys, Some(("AKIA".into(), "SECRET".into())));
        assert!(!format!("{s3:?}").contains("SECRET"));
    }

    #[test]
    fn environment_credentials_and_endpoint_apply_to_a_slipway_remote() {
        let e = env(&[
            ("SLIPWAY_REMOTE", "s3://b"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "key"),
            ("AWS_ENDPOINT_URL", "http://localhost:8333"),
            ("AWS_REGION", "eu-west-1"),
        ]);
        let RemoteSpec::S3(s3) = resolve(Path::new("/repo"), &e).unwrap().spec else { panic!() };
        assert_eq!(s3.url(), "s3://b");
        assert_eq!((s3.endpoint.as_deref(), s3.region.as_str()), (Some("http://localhost:8333"), "eu-west-1"));
        assert_eq!(s3.keys, Some(("id".into(), "key".into())));
    }

    #[test]
    fn relative_dvc_remotes_are_relative_to_the_dvc_directory() {
        let config = "[core]\n    remote = here\n['remote \"here\"']\n    url = ../remote\n";
        let dir = repo(&[(".dvc/config", config)]);
        let r = resolve(dir.path(), &env(&[])).unwrap();
        assert_eq!(r.spec, RemoteSpec::Dir(dir.path().join(".dvc").join("../remote")));
    }

    #[test]
    fn slipway_toml_then_the_default() {
        let dir = repo(&[("slipway.toml", "[remote]\nurl = \"s3://team/ml\"\nendpoint = \"http://minio:9000\"\n")]);
        let r = resolve(dir.path(), &env(&[])).unwrap();
        assert_eq!(r.source, Source::SlipwayToml);
        let empty = repo(&[]);
        let r = resolve(empty.path(), &env(&[("HOME", "/home/u")])).unwrap();
        assert_eq!((r.spec, r.source), (RemoteSpec::Dir("/home/u/.cache/slipway/remote".into()), Source::Default));
    }

    #[test]
    fn mistakes_are_explained() {
        let e = env(&[("SLIPWAY_REMOTE", "gs://bucket")]);
        assert!(resolve(Path::new("/r"), &e).unwrap_err().to_string().contains("not supported"));
        let dir = repo(&[(".dvc/config", "[core]\n    remote = nope\n")]);
        assert!(resolve(dir.path(), &env(&[])).unwrap_err().to_string().contains("is not defined"));
    }
}

//! Registry credentials (environment, then Docker's config file) and `WWW-Authenticate`
//! challenges. The password is never printed: `Debug` hides it and no error carries it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::PushError;

/// The user name variable.
pub const USER_VAR: &str = "SLIPWAY_REGISTRY_USER";
/// The password variable.
pub const PASSWORD_VAR: &str = "SLIPWAY_REGISTRY_PASSWORD";

/// Who we are to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials: fine for open registries.
    #[default]
    Anonymous,
    /// A user name and password (or token).
    Basic {
        /// The user name.
        user: String,
        /// The password; never printed.
        password: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { user, .. } => write!(f, "Basic {{ user: {user:?}, password: \"***\" }}"),
        }
    }
}

impl Credentials {
    /// A user name and password.
    pub fn basic(user: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials::Basic { user: user.into(), password: password.into() }
    }

    /// Credentials for `host` from the environment `env`: `SLIPWAY_REGISTRY_USER` and
    /// `SLIPWAY_REGISTRY_PASSWORD` if both are set, else `auths.<host>.auth` in
    /// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, else anonymous. The variables it
    /// reads are [`ENV_VARS`].
    pub fn for_registry(host: &str, env: &BTreeMap<String, String>) -> Result<Credentials, PushError> {
        if let (Some(user), Some(password)) = (env.get(USER_VAR), env.get(PASSWORD_VAR)) {
            return Ok(Credentials::basic(user, password));
        }
        match docker_config_path(env) {
            Some(path) if path.is_file() => from_docker_config(&path, host),
            _ => Ok(Credentials::Anonymous),
        }
    }

    /// How errors name us: never with the password.
    pub(crate) fn who(&self) -> String {
        match self {
            Credentials::Anonymous => "anonymous users".into(),
            Credentials::Basic { user, .. } => format!("user `{user}`"),
        }
    }
}

/// Every environment variable [`Credentials::for_registry`] reads.
pub const ENV_VARS: &[&str] = &[USER_VAR, PASSWORD_VAR, DOCKER_CONFIG_VAR, "HOME"];

const DOCKER_CONFIG_VAR: &str = "DOCKER_CONFIG";

fn docker_config_path(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    match env.get(DOCKER_CONFIG_VAR) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => env.get("HOME").map(|home| PathBuf::from(home).join(".docker/config.json")),
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
}

/// Reads `auths.<host>.auth` (base64 `user:password`); keys may carry a scheme or a path.
pub(crate) fn from_docker_config(path: &Path, host: &str) -> Result<Credentials, PushError> {
    let bad = |detail: String| PushError::DockerConfig { path: path.into(), detail };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let key_host = |key: &str| key.split_once("://").map_or(key, |(_, rest)| rest).split('/').next().map(str::to_owned);
    let entry = config.auths.iter().find(|(key, _)| key_host(key).as_deref() == Some(host));
    let Some(encoded) = entry.and_then(|(_, auth)| auth.auth.as_deref()) else {
        return Ok(Credentials::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad(format!("auths.{host}.auth is not base64")))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad(format!("auths.{host}.auth is not UTF-8")))?;
    let (user, password) =
        decoded.split_once(':').ok_or_else(|| bad(format!("auths.{host}.auth is not base64 of user:password")))?;
    Ok(Credentials::basic(user, password))
}

/// A parsed `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Send the user name and password with every request.
    Basic,
    /// Fetch a token from `realm` for `service` and `scope`, then send it.
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
}

/// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key="value",key2=value2` pairs; quoted values may contain commas (scopes do).
fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => after.split_once(',').unwrap_or((after, "")),
        };
        out.insert(key, value.to_owned());
        rest = tail.trim_start_matches([',', ' ']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge(r#"Basic realm="registry""#), Some(Challenge::Basic));
        let header =
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#;
        assert_eq!(
            parse_challenge(header),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn debug_hides_the_password() {
        let text = format!("{:?}", Credentials::basic("ci", "hunter2"));
        assert!(text.contains("ci") && !text.contains("hunter2"), "{text}");
    }

    #[test]
    fn docker_config_auths_match_by_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        let json = format!(r#"{{"auths":{{"https://reg.example:5000/v1/":{{"auth":"{auth}"}},"other":{{}}}}}}"#);
        std::fs::write(&path, json).unwrap();
        assert_eq!(from_docker_config(&path, "reg.example:5000").unwrap(), Credentials::basic("u", "p:w"));
        assert_eq!(from_docker_config(&path, "elsewhere").unwrap(), Credentials::Anonymous);
        std::fs::write(&path, "not json").unwrap();
        assert!(from_docker_config(&path, "x").is_err());
    }
}

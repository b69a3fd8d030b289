//! Image references: `[http://|https://]HOST[:PORT]/REPOSITORY[:TAG]`.

use crate::error::PushError;

/// A parsed reference to push to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// `host[:port]`.
    pub host: String,
    /// The repository path, e.g. `slipway/serve`.
    pub repository: String,
    /// The tag (default `latest`).
    pub tag: String,
}

impl Reference {
    /// Parses `reference`. Plain HTTP is used for an explicit `http://`, and for loopback hosts
    /// without a scheme (as Docker does); everything else is HTTPS.
    pub fn parse(reference: &str) -> Result<Reference, PushError> {
        let bad = |reason: &str| PushError::BadReference { reference: reference.into(), reason: reason.into() };
        let (scheme, rest) = match reference.split_once("://") {
            Some(("http", rest)) => (Some("http"), rest),
            Some(("https", rest)) => (Some("https"), rest),
            Some(_) => return Err(bad("only http:// and https:// are understood")),
            None => (None, reference),
        };
        let (host, path) = rest.split_once('/').ok_or_else(|| bad("it names no registry host"))?;
        if !(host.contains(['.', ':']) || host == "localhost") {
            return Err(bad("the part before the first `/` must be a registry host"));
        }
        if path.contains('@') {
            return Err(bad("push to a tag, not a digest"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (path, "latest"),
        };
        crate::spec::check_tag(tag).map_err(|_| bad("the tag is not a valid tag"))?;
        if repository.is_empty() || !repository.chars().all(repository_char) {
            return Err(bad("repository names are lowercase letters, digits and ._-/"));
        }
        let scheme = scheme.unwrap_or(if is_loopback(host) { "http" } else { "https" });
        Ok(Reference { scheme, host: host.into(), repository: repository.into(), tag: tag.into() })
    }

    /// `scheme://host`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }
}

fn repository_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/')
}

fn is_loopback(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host });
    name == "localhost" || name.starts_with("127.") || name == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Option<(&str, &str, &str, &str)>) {
        let got = Reference::parse(input).ok();
        let got = got.as_ref().map(|r| (r.scheme, r.host.as_str(), r.repository.as_str(), r.tag.as_str()));
        assert_eq!(got, expect, "{input}");
    }

    #[test]
    fn references() {
        check("http://127.0.0.1:5000/repo:v1", Some(("http", "127.0.0.1:5000", "repo", "v1")));
        check("127.0.0.1:5000/a/b:v1", Some(("http", "127.0.0.1:5000", "a/b", "v1")));
        check("localhost:5000/a", Some(("http", "localhost:5000", "a", "latest")));
        check("ghcr.io/org/serve:sha-1", Some(("https", "ghcr.io", "org/serve", "sha-1")));
        check("http://registry.lan:5000/x:y", Some(("http", "registry.lan:5000", "x", "y")));
        check("https://127.0.0.1:5000/x", Some(("https", "127.0.0.1:5000", "x", "latest")));
        check("registry.example.com:443/x", Some(("https", "registry.example.com:443", "x", "latest")));
        check("slipway/serve:v1", None);
        check("ghcr.io/Org/serve", None);
        check("ghcr.io/org/serve@sha256:abc", None);
        check("ftp://ghcr.io/x", None);
    }
}

//! The shapes of the names and digests that releases, the ledger and the manifests are made of.
//! Everything read from a remote or a local mirror is checked against them before it becomes a
//! path, a key, a process argument or a manifest field: the remote is shared and not trusted.

/// The files a release may hold, by name. Nothing else is laid out in a release directory.
pub const RELEASE_FILES: &[&str] = &[
    "slipway-serve",
    "slipway-router",
    "libonnxruntime.so",
    "model.onnx",
    "image.tar",
    "provenance.intoto.json",
    "validation_report.json",
];

/// A BLAKE3 (or SHA-256) digest in lowercase hex: 64 characters.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An OCI digest: `sha256:` and 64 hex characters.
pub fn is_oci_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_hex64)
}

/// A release version: `v1`, `v2`, … (no leading zero, at most 9 digits).
pub fn is_version(s: &str) -> bool {
    s.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.len() <= 9 && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The number of a version (`v12` → 12).
pub fn version_number(s: &str) -> Option<u64> {
    is_version(s).then(|| s[1..].parse().ok()).flatten()
}

/// An environment name: a lowercase DNS label (it becomes a directory and a Kubernetes name).
pub fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An OCI tag.
pub fn is_tag(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && s.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A git commit (hex, 4 to 64 characters: an abbreviation or a full id) or `unknown` outside git.
pub fn is_git_sha(s: &str) -> bool {
    s == "unknown" || ((4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Text a person wrote or a check reported: bounded, and no control characters but newlines
/// and tabs.
pub fn is_text(s: &str, max: usize) -> bool {
    s.len() <= max && s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_version("v1") && is_version("v123") && !is_version("v0") && !is_version("v01"));
        assert!(!is_version("v") && !is_version("1") && !is_version("v1\n") && !is_version("v1/../x"));
        assert!(is_hex64(&"a".repeat(64)) && !is_hex64(&"A".repeat(64)) && !is_hex64("ab"));
        assert!(is_oci_digest(&format!("sha256:{}", "0".repeat(64))) && !is_oci_digest("sha256:x"));
        assert!(is_env_name("staging") && is_env_name("eu-west-1") && !is_env_name("../x") && !is_env_name("Prod"));
        assert!(is_tag("sha-abc") && is_tag("v1.2.3") && !is_tag("-x") && !is_tag("a b") && !is_tag(""));
        assert!(is_git_sha("697b83e") && is_git_sha("unknown") && !is_git_sha("zzzzzzz") && !is_git_sha("abc"));
        assert!(is_text("tester (--approve)", 100) && !is_text("a\u{1b}[2J", 100) && !is_text("x", 0));
        assert_eq!(version_number("v12"), Some(12));
    }
}

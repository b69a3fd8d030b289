//! Static keys from a named profile in the AWS shared files (`~/.aws/credentials` and
//! `~/.aws/config`), read the way the AWS CLI reads them, with no SDK configuration loader.
//!
//! Only static keys are taken (`aws_access_key_id`, `aws_secret_access_key`, optionally
//! `aws_session_token`). A profile that gets its keys some other way (assuming a role, SSO, a
//! `credential_process`) is an error that says how to hand Slipway the keys instead: Slipway
//! never starts a program or calls STS on a profile's say-so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The largest shared file read; the AWS CLI writes a few hundred bytes per profile.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Keys a profile holds.
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileKeys {
    /// The access key id.
    pub id: String,
    /// The secret access key.
    pub secret: String,
    /// A session token, for temporary keys.
    pub token: Option<String>,
}

// Hand-written so that a secret never reaches a log through `{:?}`.
impl std::fmt::Debug for ProfileKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileKeys").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Where the shared files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedFiles {
    /// `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
    pub credentials: Option<PathBuf>,
    /// `AWS_CONFIG_FILE`, else `~/.aws/config`.
    pub config: Option<PathBuf>,
}

/// The keys of `profile`: `[profile]` in the credentials file wins over `[profile NAME]` (or
/// `[default]`) in the config file, key by key, as with the AWS CLI. `Ok(None)` when neither
/// file names the profile or it holds no keys; an error when a file cannot be read or the
/// profile gets its keys in a way Slipway does not follow.
pub fn keys(files: &SharedFiles, profile: &str) -> Result<Option<ProfileKeys>, String> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let config_section = if profile == "default" { "default".to_string() } else { format!("profile {profile}") };
    for (path, section) in [(&files.config, config_section.as_str()), (&files.credentials, profile)] {
        let Some(path) = path else { continue };
        if let Some(props) = section_of(path, section)? {
            found.extend(props);
        }
    }
    let get = |k: &str| found.get(k).filter(|v| !v.is_empty()).cloned();
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Some(ProfileKeys { id, secret, token: get("aws_session_token") })),
        _ => {
            let indirect =
                ["role_arn", "credential_process", "sso_session", "sso_start_url", "web_identity_token_file"];
            match indirect.iter().find(|k| found.contains_key(**k)) {
                Some(k) => Err(format!(
                    "the AWS profile `{profile}` gets its keys through `{k}`, which Slipway does not follow; export them instead (`eval \"$(aws configure export-credentials --profile {profile} --format env)\"`)"
                )),
                None => Ok(None),
            }
        }
    }
}

/// The properties of `[section]` in the INI file at `path`; `None` if the file or the section is
/// absent.
fn section_of(path: &Path, section: &str) -> Result<Option<BTreeMap<String, String>>, String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("{} is {} bytes, over the {MAX_FILE_BYTES} read", path.display(), meta.len()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(parse_section(&text, section))
}

/// `[section]` of an AWS shared file: `key = value` lines, `#` and `;` comments, section names
/// compared after trimming. Later values win; nested (indented) values are skipped.
fn parse_section(text: &str, section: &str) -> Option<BTreeMap<String, String>> {
    let (mut current, mut found) = (None::<String>, None::<BTreeMap<String, String>>);
    for line in text.lines() {
        let nested = line.starts_with([' ', '\t']);
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            if name == section {
                found.get_or_insert_with(BTreeMap::new);
            }
            current = Some(name);
        } else if let (false, Some((k, v))) = (nested, line.split_once('='))
            && current.as_deref() == Some(section)
        {
            let v = v.split(" #").next().unwrap_or_default();
            found.get_or_insert_with(BTreeMap::new).insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(credentials: &str, config: &str) -> (tempfile::TempDir, SharedFiles) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("credentials"), credentials).unwrap();
        std::fs::write(dir.path().join("config"), config).unwrap();
        let files =
            SharedFiles { credentials: Some(dir.path().join("credentials")), config: Some(dir.path().join("config")) };
        (dir, files)
    }

    fn id(found: Result<Option<ProfileKeys>, String>) -> Result<Option<(String, Option<String>)>, String> {
        found.map(|k| k.map(|k| (format!("{}:{}", k.id, k.secret), k.token)))
    }

    #[test]
    fn static_keys_from_either_file() {
        let (_d, f) = files(
            "[default]\naws_access_key_id = A\naws_secret_access_key = S # a comment\n\n[ci]\naws_access_key_id=B\naws_secret_access_key=T\naws_session_token=X\n",
            "[profile dev]\naws_access_key_id = C\naws_secret_access_key = U\n[default]\nregion = eu-west-1\n",
        );
        assert_eq!(id(keys(&f, "default")), Ok(Some(("A:S".into(), None))));
        assert_eq!(id(keys(&f, "ci")), Ok(Some(("B:T".into(), Some("X".into())))));
        assert_eq!(id(keys(&f, "dev")), Ok(Some(("C:U".into(), None))));
        assert_eq!(id(keys(&f, "absent")), Ok(None));
    }

    #[test]
    fn the_credentials_file_wins_key_by_key() {
        let (_d, f) = files(
            "[p]\naws_secret_access_key = FROM_CREDENTIALS\n",
            "[profile p]\naws_access_key_id = ID\naws_secret_access_key = FROM_CONFIG\n",
        );
        assert_eq!(id(keys(&f, "p")), Ok(Some(("ID:FROM_CREDENTIALS".into(), None))));
    }

    #[test]
    fn a_profile_that_assumes_a_role_is_an_error_that_says_what_to_do() {
        let (_d, f) = files("", "[profile ops]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n");
        let err = keys(&f, "ops").unwrap_err();
        assert!(err.contains("`role_arn`") && err.contains("export-credentials --profile ops"), "{err}");
    }

    #[test]
    fn missing_files_are_no_keys_and_huge_ones_an_error() {
        let none = SharedFiles { credentials: Some("/nonexistent/c".into()), config: None };
        assert_eq!(id(keys(&none, "default")), Ok(None));
        let (_d, f) = files(&"#".repeat(MAX_FILE_BYTES as usize + 1), "");
        assert!(keys(&f, "default").unwrap_err().contains("over the"));
    }

    #[test]
    fn nested_values_and_other_sections_are_not_taken() {
        let (_d, f) = files(
            "[a]\naws_access_key_id = A\n[b]\naws_secret_access_key = S\n",
            "[profile x]\ns3 =\n  aws_access_key_id = N\n",
        );
        assert_eq!(id(keys(&f, "a")), Ok(None));
        assert_eq!(id(keys(&f, "x")), Ok(None));
    }
}

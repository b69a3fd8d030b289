//! Small filesystem primitives shared by the caches: atomic writes and relative paths.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees either the old file or the whole new one, never a prefix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    // The temporary file is private (0600); the file it replaces keeps its mode, and a new one
    // gets the usual 0644, so a pointer or a report written here reads like any other file.
    let mode = fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `path` relative to `root` with `/` separators, or an error for a path that is not valid
/// UTF-8 (records and reports are JSON, and a lossy name could collide with another file).
pub fn relative_utf8(root: &Path, path: &Path) -> io::Result<String> {
    // A walk calls this for every entry, with `path` built by joining names onto `root`: the
    // bytes after `root/` are the answer whenever they hold no component that
    // `Path::strip_prefix` would normalise away. Comparing component by component was a tenth of
    // `status` on 10,000 files.
    if let Some(rel) = clean_suffix(root, path) {
        return Ok(rel.to_string());
    }
    let rel = path.strip_prefix(root).unwrap_or(path);
    let s = rel.to_str().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("path is not valid UTF-8: {}", rel.display()))
    })?;
    Ok(s.to_string())
}

/// The part of `path` after `root/`, when `path` starts with exactly those bytes and the rest
/// is valid UTF-8 with no empty, `.` or trailing component.
fn clean_suffix<'a>(root: &Path, path: &'a Path) -> Option<&'a str> {
    use std::os::unix::ffi::OsStrExt;
    let (root, path) = (root.as_os_str().as_bytes(), path.as_os_str().as_bytes());
    if root.is_empty() || root.ends_with(b"/") || !path.starts_with(root) || path.get(root.len()) != Some(&b'/') {
        return None;
    }
    let rest = std::str::from_utf8(&path[root.len() + 1..]).ok()?;
    rest.split('/').all(|c| !c.is_empty() && c != ".").then_some(rest)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn relative_paths_are_those_strip_prefix_gives() {
        use std::path::Path;
        let cases = [
            ("/r", "/r/a/b.txt"),
            ("/r", "/r/a//b"),
            ("/r", "/r/./a"),
            ("/r", "/r/a/"),
            ("/r/", "/r/a"),
            ("/r", "/rx/a"),
            ("/r", "/r"),
            ("/r/x", "/r/x/é/ü"),
            ("r", "r/a"),
        ];
        for (root, path) in cases {
            let (root, path) = (Path::new(root), Path::new(path));
            let slow = path.strip_prefix(root).unwrap_or(path).to_str().unwrap().to_string();
            assert_eq!(super::relative_utf8(root, path).unwrap(), slow, "{} in {}", path.display(), root.display());
        }
    }

    #[test]
    fn an_atomic_write_keeps_the_mode_of_what_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (new, old) = (dir.path().join("new"), dir.path().join("old"));
        super::write_atomic(&new, b"a").unwrap();
        assert_eq!(std::fs::metadata(&new).unwrap().permissions().mode() & 0o777, 0o644);
        std::fs::write(&old, b"x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o640)).unwrap();
        super::write_atomic(&old, b"y").unwrap();
        assert_eq!(std::fs::metadata(&old).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read(&old).unwrap(), b"y");
    }
}

//! Small filesystem primitives shared by the caches: atomic writes and relative paths.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader sees either the old file or the whole new one, never a prefix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_data()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// `path` relative to `root` with `/` separators, or an error for a path that is not valid
/// UTF-8 (records and reports are JSON, and a lossy name could collide with another file).
pub fn relative_utf8(root: &Path, path: &Path) -> io::Result<String> {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let s = rel.to_str().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("path is not valid UTF-8: {}", rel.display()))
    })?;
    Ok(s.to_string())
}

//! The runtime libraries layer: what `ldd` says the serve binary and ONNX Runtime load, laid
//! out the way this machine lays them out.
//!
//! Each library is written at its real directory (`/lib/x86_64-linux-gnu` on a merged-`/usr`
//! Debian is really `/usr/lib/x86_64-linux-gnu`) under the name `ldd` printed, with its bytes
//! read through any symlinks. Where a path `ldd` printed starts with a top-level symlink
//! (`/lib64 -> usr/lib64`), the image gets the same symlink, so the dynamic loader is found
//! at exactly the path the binary's `PT_INTERP` names.
//!
//! The layer also carries the `C.UTF-8` locale: the TF-IDF model's `StringNormalizer` asks
//! libstdc++ for it by name, and without its files ONNX Runtime refuses to load the model.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use xshell::{Shell, cmd};

use crate::error::ImageError;
use crate::spec::Library;

/// The libraries `binaries` need, resolved by `ldd` on this machine.
pub fn resolve_libraries(binaries: &[&Path]) -> Result<Vec<Library>, ImageError> {
    let sh = Shell::new().map_err(|e| ldd_error(binaries[0], e))?;
    let mut paths = BTreeSet::new();
    for binary in binaries {
        let output = cmd!(sh, "ldd {binary}").quiet().ignore_status().output().map_err(|e| ldd_error(binary, e))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stdout.contains("not a dynamic executable") || stderr.contains("not a dynamic executable") {
            continue;
        }
        if !output.status.success() {
            return Err(ImageError::Libraries { binary: binary.to_path_buf(), detail: stderr.trim().into() });
        }
        paths.extend(parse_ldd(&stdout).map_err(|detail| ImageError::Libraries { binary: binary.into(), detail })?);
    }
    let mut libraries = BTreeSet::new();
    for path in &paths {
        libraries.extend(place(path)?);
    }
    libraries.extend(locale(Path::new(LOCALE_DIR))?);
    Ok(libraries.into_iter().collect())
}

/// Where Debian keeps the compiled `C.UTF-8` locale (package `libc-bin`).
const LOCALE_DIR: &str = "/usr/lib/locale/C.utf8";

/// Every file under the locale directory, at the same path; nothing if this machine has none.
fn locale(dir: &Path) -> Result<Vec<Library>, ImageError> {
    let io = |source| ImageError::Input { what: "locale", path: dir.into(), source };
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return Ok(out) };
    for entry in entries {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            out.extend(locale(&path)?);
        } else {
            out.push(Library::File { source: path.clone(), path: path.to_string_lossy().into_owned() });
        }
    }
    Ok(out)
}

fn ldd_error(binary: &Path, e: impl std::fmt::Display) -> ImageError {
    ImageError::Libraries { binary: binary.into(), detail: format!("cannot run ldd: {e}") }
}

/// The absolute paths in `ldd` output; the loader appears as a bare path, the vDSO has none.
fn parse_ldd(stdout: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = line.split_once("=>").map_or(line, |(_, rhs)| rhs.trim());
        if target.starts_with("not found") {
            return Err(format!("{} is not found", line.split_whitespace().next().unwrap_or(line)));
        }
        let path = target.split(" (").next().unwrap_or_default();
        if path.starts_with('/') {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

/// Where one library goes in the image: its file at the real directory, plus the top-level
/// symlink its printed path went through, if any.
fn place(path: &Path) -> Result<Vec<Library>, ImageError> {
    let io = |source| ImageError::Input { what: "shared library", path: path.into(), source };
    let name = path.file_name().ok_or_else(|| io(std::io::ErrorKind::NotFound.into()))?;
    let real_dir = fs::canonicalize(path.parent().unwrap_or(Path::new("/"))).map_err(io)?;
    let mut out = vec![Library::File { source: path.into(), path: real_dir.join(name).to_string_lossy().into_owned() }];
    let top = path.components().nth(1).map(|c| Path::new("/").join(c));
    if let Some(top) = top
        && let Ok(target) = fs::read_link(&top)
    {
        let (path, target) = (top.to_string_lossy().into_owned(), target.to_string_lossy().into_owned());
        out.push(Library::Symlink { path, target });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LDD: &str = "\tlinux-vdso.so.1 (0x00007ffd)\n\
        \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f47)\n\
        \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f47)\n\
        \t/lib64/ld-linux-x86-64.so.2 (0x00007f47)\n";

    #[test]
    fn ldd_output_gives_the_libraries_and_the_loader() {
        let paths = parse_ldd(LDD).unwrap();
        let expect =
            ["/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"];
        assert_eq!(paths, expect.map(PathBuf::from));
    }

    #[test]
    fn a_missing_library_is_an_error_naming_it() {
        let err = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert_eq!(err, "libfoo.so.1 is not found");
    }
}

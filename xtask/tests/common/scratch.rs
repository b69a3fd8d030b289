//! A scratch copy of this repository for tests, shared through `#[path]` by the pipeline's unit
//! tests and the workspace tests: the files git tracks or does not ignore, with their
//! modification times (so cargo there finds a shared target directory up to date instead of
//! rebuilding), committed to a git repository of its own so that probes of git work.

#![allow(dead_code, reason = "each test file uses the part it needs")]

use std::fs::{self, File, FileTimes};
use std::path::Path;

/// The copy; removed when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// Copies the repository at `root`.
    pub fn of(root: &Path) -> Scratch {
        let sh = xshell::Shell::new().unwrap();
        sh.change_dir(root);
        let files = xshell::cmd!(sh, "git ls-files -co --exclude-standard -z").read().unwrap();
        let dir = tempfile::tempdir().unwrap();
        for rel in files.split('\0').filter(|f| !f.is_empty()) {
            let (src, dest) = (root.join(rel), dir.path().join(rel));
            let Ok(meta) = fs::symlink_metadata(&src) else { continue };
            if !meta.is_file() {
                continue;
            }
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(&src, &dest).unwrap();
            let times = FileTimes::new().set_modified(meta.modified().unwrap());
            File::options().write(true).open(&dest).unwrap().set_times(times).unwrap();
        }
        let scratch = Scratch { dir };
        scratch.git(&["init", "-q"]);
        scratch.git(&["add", "-A"]);
        scratch.git(&["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "scratch copy"]);
        scratch
    }

    /// Where the copy is.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A shell in the copy.
    pub fn shell(&self) -> xshell::Shell {
        let sh = xshell::Shell::new().unwrap();
        sh.change_dir(self.root());
        sh
    }

    /// Runs `git ARGS` in the copy.
    pub fn git(&self, args: &[&str]) {
        let sh = self.shell();
        xshell::cmd!(sh, "git {args...}").quiet().run().unwrap();
    }

    /// Writes a file of the copy, making its directory.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.root().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    /// Adds `text` to the end of a file of the copy, which must exist.
    pub fn append(&self, rel: &str, text: &str) {
        let path = self.root().join(rel);
        let mut now = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        now.push_str(text);
        fs::write(path, now).unwrap();
    }
}

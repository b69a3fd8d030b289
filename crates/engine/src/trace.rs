//! Finding undeclared inputs: a stage's commands run under `strace -f`, and every file inside the
//! workspace that they read is checked against what the stage declares.
//!
//! A file counts as read when a command opened it for reading or executed it; looking at a file
//! with `stat` (cargo checks which targets a crate has) does not read it. It is declared
//! when it lies under one of the stage's file or code paths, under something the stage writes
//! itself, or under something a stage it is keyed on writes. Files the stage created before
//! reading them, and paths on Slipway's ignore list (build output, tool caches, `.git`), are
//! not inputs. Ignore files do not excuse a read: a git-ignored file a command reads is exactly
//! the input a cache would otherwise miss.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::input::{Input, InputValue};
use crate::pipeline::Pipeline;
use crate::stage::Stage;
use crate::walk::is_within;

/// The system calls traced: opens, execs and renames.
const SYSCALLS: &str = "trace=open,openat,openat2,creat,execve,execveat,rename,renameat,renameat2";

/// The arguments that put a command under `strace`, writing to `out`.
pub fn strace_args(out: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["-f", "-qq", "-y", "-x", "--seccomp-bpf", "-e", "signal=none", "-e", SYSCALLS, "-o"]
        .into_iter()
        .map(String::from)
        .collect();
    args.push(out.display().to_string());
    args.push("--".into());
    args
}

/// What the trace of one stage found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TraceReport {
    /// The stage.
    pub stage: String,
    /// How many of its commands ran (and were traced).
    pub commands: usize,
    /// Files inside the workspace the commands read and the stage does not declare.
    pub undeclared: Vec<String>,
    /// Declared inputs the commands never opened, as hints (a declaration may be broader than
    /// what one run happens to read).
    pub unused: Vec<String>,
}

/// One file event of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Opened for reading, or executed.
    Read(PathBuf),
    /// Created, truncated or renamed into place by the commands.
    Write(PathBuf),
}

/// Reads every trace of `stage` in `dir` and checks it against the stage's declarations.
pub fn analyse(
    pipeline: &Pipeline,
    stage: &Stage,
    root: &Path,
    program_elsewhere: bool,
    inputs: &[crate::ResolvedInput],
    dir: &Path,
) -> Result<TraceReport> {
    let root = root.canonicalize().with_context(|| format!("cannot resolve {}", root.display()))?;
    let mut events = Vec::new();
    let prefix = format!("{}.", stage.name);
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the traces in {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".strace"))
        })
        .collect();
    names.sort();
    let commands = names.len();
    for path in names {
        let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        events.extend(parse(&String::from_utf8_lossy(&text)));
    }
    let reads = reads_inside(&root, &events);
    let mut declared = declared_paths(stage, &root, program_elsewhere)?;
    declared.extend(pipeline.excluded_inputs(stage));
    let undeclared: Vec<String> = reads
        .iter()
        .filter(|rel| !ignored(&stage.ignore, rel) && !declared.iter().any(|d| is_within(rel, d) || d == "."))
        .cloned()
        .collect();
    // A stage whose only commands were optional and not needed read nothing to judge.
    let unused = if commands == 0 { Vec::new() } else { unused(stage, inputs, &reads) };
    Ok(TraceReport { stage: stage.name.clone(), commands, undeclared, unused })
}

/// Whether `rel` or a directory above it is on Slipway's ignore list, as a walk would skip it.
fn ignored(ignore: &crate::tree::Ignore, rel: &str) -> bool {
    let mut prefix = String::new();
    rel.split('/').any(|part| {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        ignore.is_match(&prefix)
    })
}

/// The files, code and crates a stage declares, as relative paths. A crates input covers its
/// closure, every manifest and the lock file, whose lines for the closure it keys.
/// When the program's code and crates live outside the root (`program_elsewhere`), reads of
/// them are not reads inside the root, so they are not listed.
fn declared_paths(stage: &Stage, root: &Path, program_elsewhere: bool) -> Result<Vec<String>> {
    let mut out = stage.code.clone();
    if !program_elsewhere {
        out.extend(stage.pipeline_code.iter().cloned());
    }
    for input in &stage.inputs {
        match input {
            Input::Files { paths, .. } => out.extend(paths.iter().cloned()),
            Input::Crates { .. } if program_elsewhere => {}
            Input::Crates { packages } => {
                let closure = crate::crates::closure(root, packages)?;
                out.extend(crate::crates::paths(&closure));
                out.push("Cargo.lock".into());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Files read inside `root` that the commands had not written first, relative and sorted.
fn reads_inside(root: &Path, events: &[Event]) -> BTreeSet<String> {
    let mut written: BTreeSet<&Path> = BTreeSet::new();
    let mut reads = BTreeSet::new();
    for e in events {
        match e {
            Event::Write(p) => {
                written.insert(p);
            }
            Event::Read(p) if !written.contains(p.as_path()) => {
                if let Ok(rel) = p.strip_prefix(root)
                    && let Some(rel) = rel.to_str()
                    && !rel.is_empty()
                    && p.is_file()
                {
                    reads.insert(rel.to_string());
                }
            }
            Event::Read(_) => {}
        }
    }
    reads
}

/// Declared file inputs none of whose files was read, and how much of the rest was.
fn unused(stage: &Stage, inputs: &[crate::ResolvedInput], reads: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for input in &stage.inputs {
        let Input::Files { paths, .. } = input else { continue };
        let Some(InputValue::Files { files, .. }) =
            inputs.iter().find(|r| r.name == input.key_name()).map(|r| &r.value)
        else {
            continue;
        };
        for path in paths {
            let under: Vec<&str> = files.iter().map(|f| f.path.as_str()).filter(|f| is_within(f, path)).collect();
            let opened = under.iter().filter(|f| reads.contains(**f)).count();
            if opened == 0 {
                out.push(format!("`{path}` is declared and was never opened"));
            }
        }
    }
    out
}

/// The file events of one `strace -f -y` output.
pub fn parse(text: &str) -> Vec<Event> {
    let mut pending: HashMap<&str, String> = HashMap::new();
    let mut cwd: HashMap<String, PathBuf> = HashMap::new();
    let mut out = Vec::new();
    for raw in text.lines() {
        // `PID  syscall(…) = …`: strace pads the pid with spaces.
        let Some((pid, rest)) = raw.split_once(' ') else { continue };
        let rest = rest.trim_start();
        let line = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, head.to_string());
            continue;
        } else if let Some(resumed) = rest.strip_prefix("<... ") {
            let Some((_, tail)) = resumed.split_once(" resumed>") else { continue };
            match pending.remove(pid) {
                Some(head) => format!("{head}{tail}"),
                None => continue,
            }
        } else {
            rest.to_string()
        };
        if let Some(e) = event(&line, cwd.entry(pid.to_string()).or_default()) {
            out.push(e);
        }
    }
    out
}

/// The event of one whole syscall line, e.g.
/// `openat(AT_FDCWD</repo>, "a.txt", O_RDONLY) = 3</repo/a.txt>`.
fn event(line: &str, cwd: &mut PathBuf) -> Option<Event> {
    let (name, rest) = line.split_once('(')?;
    let (args, ret) = rest.rsplit_once(") = ")?;
    let args = split_args(args);
    if let Some(dir) = args.first().and_then(|a| a.strip_prefix("AT_FDCWD<")).and_then(|a| a.strip_suffix('>')) {
        *cwd = PathBuf::from(unescape(dir));
    }
    let ok = !ret.starts_with('-');
    match name {
        "open" | "openat" | "openat2" | "creat" if ok => {
            let path = ret.split_once('<')?.1.rsplit_once('>')?.0;
            let flags = args.iter().find(|a| a.contains("O_")).map(String::as_str).unwrap_or("");
            if flags.contains("O_DIRECTORY") {
                return None;
            }
            // Write-only, or truncated: the old content is not read. Read-write counts as a read.
            let writes = name == "creat" || flags.contains("O_WRONLY") || flags.contains("O_TRUNC");
            let path = PathBuf::from(unescape(path));
            Some(if writes { Event::Write(path) } else { Event::Read(path) })
        }
        "execve" | "execveat" if ok => Some(Event::Read(located(&args, name == "execveat", cwd)?)),
        "rename" | "renameat" | "renameat2" if ok => {
            let target = match name {
                "rename" => args.get(1).map(|a| (None, a)),
                _ => args.get(3).map(|a| (args.get(2), a)),
            }?;
            Some(Event::Write(join(target.0.map(String::as_str), target.1, cwd)?))
        }
        _ => None,
    }
}

/// The path a syscall names: its string argument, relative to its directory argument.
fn located(args: &[String], at: bool, cwd: &Path) -> Option<PathBuf> {
    if at { join(args.first().map(String::as_str), args.get(1)?, cwd) } else { join(None, args.first()?, cwd) }
}

fn join(dirfd: Option<&str>, quoted: &str, cwd: &Path) -> Option<PathBuf> {
    let path = unescape(quoted.strip_prefix('"')?.strip_suffix('"')?);
    if path.is_empty() {
        return None;
    }
    if path.starts_with('/') {
        return Some(PathBuf::from(path));
    }
    let base = dirfd
        .and_then(|d| d.split_once('<'))
        .and_then(|(_, dir)| dir.strip_suffix('>'))
        .map(|d| PathBuf::from(unescape(d)))
        .unwrap_or_else(|| cwd.to_path_buf());
    Some(base.join(path))
}

/// Splits a syscall's argument list at top-level commas.
fn split_args(args: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted, mut escaped) = (Vec::new(), String::new(), 0i32, false, false);
    for c in args.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' | '[' | '<' if !quoted => depth += 1,
            '}' | ']' | '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Undoes strace's escaping (`-x`: `\xNN` for non-printable bytes, `\"`, `\\`, `\n`, `\t`).
fn unescape(s: &str) -> String {
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes().peekable();
    while let Some(b) = it.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        match it.next() {
            Some(b'x') => {
                let hex: Vec<u8> = (0..2).filter_map(|_| it.next()).collect();
                let n = std::str::from_utf8(&hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                bytes.push(n.unwrap_or(b'?'));
            }
            Some(b'n') => bytes.push(b'\n'),
            Some(b't') => bytes.push(b'\t'),
            Some(other) => bytes.push(other),
            None => bytes.push(b'\\'),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The reports of every traced stage, for printing.
pub fn render(reports: &BTreeMap<String, TraceReport>) -> String {
    let mut out = String::new();
    for r in reports.values() {
        if r.commands == 0 {
            out.push_str(&format!("{}: ran no command\n", r.stage));
        } else if r.undeclared.is_empty() {
            out.push_str(&format!("{}: every file it read is declared\n", r.stage));
        }
        for f in &r.undeclared {
            out.push_str(&format!("{}: reads `{f}`, which it does not declare\n", r.stage));
        }
        for hint in &r.unused {
            out.push_str(&format!("{}: hint: {hint}\n", r.stage));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(trace: &str, expect: &[Event]) {
        assert_eq!(parse(trace), expect);
    }

    fn read(p: &str) -> Event {
        Event::Read(PathBuf::from(p))
    }

    fn write(p: &str) -> Event {
        Event::Write(PathBuf::from(p))
    }

    #[test]
    fn opens_execs_and_renames() {
        let trace = r#"10  openat(AT_FDCWD</r>, "a.txt", O_RDONLY|O_CLOEXEC) = 3</r/a.txt>
10 openat(AT_FDCWD</r>, "out.txt", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 4</r/out.txt>
10 openat(AT_FDCWD</r>, "missing", O_RDONLY) = -1 ENOENT (No such file or directory)
10 openat(AT_FDCWD</r>, "d", O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY) = 5</r/d>
11 execve("/r/bin/tool", ["tool", "x"], 0x7ffe /* 3 vars */) = 0
11 newfstatat(AT_FDCWD</r/sub>, "src/lib.rs", {st_mode=S_IFREG|0644, st_size=3, ...}, 0) = 0
11 newfstatat(AT_FDCWD</r>, "src", {st_mode=S_IFDIR|0755, st_size=4096, ...}, 0) = 0
12 renameat2(AT_FDCWD</r>, "tmp.x", AT_FDCWD</r>, "models/m.onnx", RENAME_NOREPLACE) = 0
12 openat(AT_FDCWD</r>, "caf\xc3\xa9.txt", O_RDONLY) = 3</r/caf\xc3\xa9.txt>
"#;
        check(
            trace,
            &[
                read("/r/a.txt"),
                write("/r/out.txt"),
                read("/r/bin/tool"),
                write("/r/models/m.onnx"),
                read("/r/café.txt"),
            ],
        );
    }

    #[test]
    fn interleaved_threads_are_joined() {
        let trace = "7 openat(AT_FDCWD</r>, \"a\", O_RDONLY <unfinished ...>\n8 execve(\"/bin/x\", [], 0x0 /* 0 vars */) = 0\n7 <... openat resumed>) = 3</r/a>\n";
        check(trace, &[read("/bin/x"), read("/r/a")]);
    }

    #[test]
    fn files_written_first_are_not_inputs() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().canonicalize().unwrap();
        for f in ["made.txt", "given.txt"] {
            std::fs::write(r.join(f), "x").unwrap();
        }
        let events = [
            Event::Write(r.join("made.txt")),
            Event::Read(r.join("made.txt")),
            Event::Read(r.join("given.txt")),
            Event::Read("/etc/hostname".into()),
        ];
        assert_eq!(reads_inside(&r, &events).into_iter().collect::<Vec<_>>(), ["given.txt"]);
    }
}

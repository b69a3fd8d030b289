//! The command line as a user sees it: help text and exit codes for bad usage.

use std::path::Path;

fn xtask() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_xtask"))
}

#[test]
fn help_documents_the_exit_codes() {
    let sh = xshell::Shell::new().unwrap();
    let xtask = xtask();
    let help = xshell::cmd!(sh, "{xtask} --help").read().unwrap();
    insta::assert_snapshot!(help);
}

#[test]
fn an_unknown_stage_is_an_error_with_exit_2() {
    let sh = xshell::Shell::new().unwrap();
    let xtask = xtask();
    let out = xshell::cmd!(sh, "{xtask} ci --force no-such-stage").ignore_status().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim(), "error: --force no-such-stage: there is no such stage (stages: lint, test)");
}

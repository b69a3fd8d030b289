//! Python environments under `.slipway/`, built with uv from a pinned lock file. Python itself
//! comes from the machine; everything else from PyPI, at the versions the lock names.

use engine::{StageContext, StageError};
use xshell::cmd;

/// The uv that builds every environment; pinned so that resolution behaves the same everywhere.
pub const UV: &str = "uv==0.13.9";

/// (Re)creates the virtualenv `dir` (relative to the root) with exactly the packages of `lock`.
pub fn install(ctx: &StageContext, dir: &str, lock: &str) -> Result<(), StageError> {
    let sh = ctx.shell();
    if cmd!(sh, "python3 --version").quiet().ignore_stdout().ignore_stderr().run().is_err() {
        return Err(StageError::Failed(anyhow::anyhow!(
            "python3 is not installed; install Python 3.10 or newer with venv and pip \
             (on Debian: apt-get install python3 python3-venv)"
        )));
    }
    let _ = sh.remove_path(dir);
    ctx.run("create a Python virtualenv", cmd!(sh, "python3 -m venv {dir}"))?;
    let (pip, uv, python) = (format!("{dir}/bin/pip"), format!("{dir}/bin/uv"), format!("{dir}/bin/python"));
    ctx.run("install uv from PyPI", cmd!(sh, "{pip} install --quiet --disable-pip-version-check {UV}"))?;
    ctx.run("install the locked Python packages", cmd!(sh, "{uv} pip sync --quiet --python {python} {lock}"))?;
    Ok(())
}

/// `PATH` with `dir/bin` (relative to the root) in front.
pub fn path_with(ctx: &StageContext, dir: &str) -> String {
    let bin = ctx.root().join(dir).join("bin");
    let rest = ctx.env().get("PATH").cloned().unwrap_or_default();
    format!("{}:{rest}", bin.display())
}

/// Installs the Debian packages of `list` (lines of `command package`) whose command is missing:
/// with apt-get when running as root, otherwise an error naming them.
pub fn system_packages(ctx: &StageContext, list: &str) -> Result<(), StageError> {
    let text =
        std::fs::read_to_string(ctx.root().join(list)).map_err(|e| anyhow::anyhow!("cannot read {list}: {e}"))?;
    let sh = ctx.shell();
    let missing: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(command, _)| {
            cmd!(sh, "sh -c 'command -v \"$0\"' {command}").quiet().ignore_stdout().ignore_stderr().run().is_err()
        })
        .map(|(_, package)| package.trim())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let root = cmd!(sh, "id -u").quiet().read().is_ok_and(|id| id.trim() == "0");
    // CI runners (GitHub's among them) are not root but have password-less sudo; `env` runs
    // `sudo -n apt-get` or plain `apt-get`.
    let sudo: &[&str] = if root { &[] } else { &["sudo", "-n"] };
    let can_sudo = root || cmd!(sh, "sudo -n true").quiet().ignore_stdout().ignore_stderr().run().is_ok();
    if !can_sudo {
        let (list, names) = (missing.join(", "), missing.join(" "));
        return Err(StageError::Failed(anyhow::anyhow!(
            "the tests need these Debian packages: {list}; install them (sudo apt-get install {names})"
        )));
    }
    ctx.run("update the package lists", cmd!(sh, "env {sudo...} apt-get update -qq"))?;
    let install = cmd!(sh, "env {sudo...} apt-get install -y -qq --no-install-recommends {missing...}");
    ctx.run("install the test tools' system packages", install)?;
    Ok(())
}

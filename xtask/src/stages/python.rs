//! The Python environments under `.slipway/`, built with uv from a pinned lock file, and the
//! Debian packages the tests run. Python itself comes from the machine; everything else from
//! PyPI and Debian, at the versions the locks name.

use engine::{Command, Stage};

use crate::paths::{SYSTEM_PACKAGES, SYSTEM_PACKAGES_SCRIPT, TOOLS_ENV, TOOLS_LOCK, TRAIN_ENV, TRAIN_LOCK};

/// The uv that builds every environment; pinned so that resolution behaves the same everywhere.
pub const UV: &str = "uv==0.13.9";

/// Where pip and uv find packages, which certificates pip trusts and how long it waits, and
/// where both keep their caches: where and how, not what (the locks pin what).
const PACKAGE_ENV: &[&str] = &[
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_CERT",
    "PIP_DEFAULT_TIMEOUT",
    "UV_INDEX_URL",
    "UV_CACHE_DIR",
    "XDG_CACHE_HOME",
];

/// The real tools the tests talk to: dvc, SeaweedFS and check-jsonschema in a virtualenv keyed
/// by their lock, and the Debian packages (skopeo, umoci, a registry, wrk, kubectl, strace).
pub fn tools() -> Stage {
    let stage = engine::stage!("tools", "install the test tools (dvc, SeaweedFS, skopeo, umoci, a registry, strace)")
        .code(SYSTEM_PACKAGES_SCRIPT)
        .files("packages", &[SYSTEM_PACKAGES])
        .command(
            Command::new("install the test tools' system packages", "sh")
                .args([SYSTEM_PACKAGES_SCRIPT, SYSTEM_PACKAGES]),
        )
        // Installing a package that was removed by hand: the stage is stale while one is missing.
        .alive(missing_packages);
    virtualenv(stage, TOOLS_ENV, TOOLS_LOCK)
}

/// The training environment (scikit-learn, skl2onnx, ONNX Runtime, ruff, pytest).
pub fn deps() -> Stage {
    virtualenv(engine::stage!("deps", "install the training environment"), TRAIN_ENV, TRAIN_LOCK)
}

/// `stage` builds the virtualenv `dir` with exactly the packages of `lock`.
fn virtualenv(stage: Stage, dir: &str, lock: &str) -> Stage {
    let (pip, uv, python) = (format!("{dir}/bin/pip"), format!("{dir}/bin/uv"), format!("{dir}/bin/python"));
    stage
        .pipeline_code(crate::paths::CODE)
        .files("lock", &[lock])
        .tool("python", &["python3", "--version"])
        .param("uv", UV)
        .pass_env(PACKAGE_ENV)
        .environment(dir)
        .command(Command::new("create a Python virtualenv", "python3").args(["-m", "venv", "--clear", dir]))
        .command(Command::new("install uv from PyPI", pip).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            UV,
        ]))
        .command(
            Command::new("install the locked Python packages", uv)
                .args(["pip", "sync", "--quiet", "--python", &python, lock]),
        )
}

/// `Err` naming the commands of the system package list that are not installed.
fn missing_packages(root: &std::path::Path, env: &std::collections::BTreeMap<String, String>) -> Result<(), String> {
    let text = std::fs::read_to_string(root.join(SYSTEM_PACKAGES))
        .map_err(|e| format!("cannot read {SYSTEM_PACKAGES}: {e}"))?;
    let path = env.get("PATH").cloned().unwrap_or_default();
    let missing: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|command| !path.split(':').any(|dir| std::path::Path::new(dir).join(command).is_file()))
        .collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(format!("{} not installed", missing.join(", "))),
    }
}

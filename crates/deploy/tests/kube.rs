//! The kubernetes target's manifests: golden files, `kubectl` parsing them client-side, and
//! `kubernetes-validate` holding them to the real schemas of the API, strictly. No API server
//! can run on these machines, so nothing is applied here.

use deploy::kube::{KubeConfig, render};
use deploy::ledger::Release;

fn release() -> Release {
    Release {
        version: "v7".into(),
        image_digest: Some("sha256:4f0c3d6e8a5b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d".into()),
        image_config: None,
        model_digest: "c0ffee00".repeat(8),
        serve_digest: "5e".repeat(32),
        config_digest: "c0".repeat(32),
        git_sha: "0123456789abcdef0123456789abcdef01234567".into(),
        tags: vec!["0123456".into()],
        files: Default::default(),
    }
}

fn config() -> KubeConfig {
    KubeConfig {
        namespace: "ml".into(),
        replicas: 3,
        repository: "ghcr.io/team/slipway-serve".into(),
        context: None,
        url: "https://api.example.com".into(),
    }
}

#[test]
fn manifests_reference_the_image_by_digest_with_readiness_on_readyz() {
    let yaml = render("production", &release(), &config()).unwrap();
    insta::assert_snapshot!(yaml);
    assert!(yaml.contains("image: ghcr.io/team/slipway-serve@sha256:4f0c3d6e"));
    assert_eq!(render("production", &release(), &config()).unwrap(), yaml, "rendering is deterministic");
}

#[test]
fn kubectl_parses_the_manifests_client_side() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, render("staging", &release(), &config()).unwrap()).unwrap();
    let sh = xshell::Shell::new().unwrap();
    let kubectl = sh.var("KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let names = xshell::cmd!(sh, "{kubectl} label --local -f {path} checked=yes -o name")
        .read()
        .expect("kubectl is needed for this test (Debian: apt-get install kubernetes-client)");
    assert_eq!(names.lines().collect::<Vec<_>>(), ["deployment.apps/slipway-staging", "service/slipway-staging"]);
}

/// Runs `kubernetes-validate --strict` (from the tools stage) on `yaml` for Kubernetes `version`;
/// returns whether it passed and what it said.
fn kubernetes_validate(yaml: &str, version: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, yaml).unwrap();
    let sh = xshell::Shell::new().unwrap();
    let out = xshell::cmd!(sh, "kubernetes-validate --strict --kubernetes-version {version} {path}")
        .ignore_status()
        .quiet()
        .output()
        .expect("kubernetes-validate is needed for this test (`cargo xtask ci` installs it into .slipway/tools)");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

#[test]
fn the_manifests_pass_the_kubernetes_schemas_in_strict_mode() {
    for env in ["staging", "production"] {
        let yaml = render(env, &release(), &config()).unwrap();
        for version in ["1.30.0", "1.37.0"] {
            let (passed, said) = kubernetes_validate(&yaml, version);
            assert!(passed, "{env} on Kubernetes {version}:\n{said}\n{yaml}");
            for resource in [format!("deployment/slipway-{env}"), format!("service/slipway-{env}")] {
                assert!(said.contains(&format!("passed for resource {resource}")), "{said}");
            }
        }
    }
    // Strict means strict: a field the schema does not have fails.
    let yaml = render("staging", &release(), &config()).unwrap();
    let typo = yaml.replacen("replicas:", "replicaz:", 1);
    assert_ne!(typo, yaml);
    let (passed, said) = kubernetes_validate(&typo, "1.37.0");
    assert!(!passed, "a misspelt field passed:\n{said}");
    assert!(said.contains("replicaz") && said.contains("did not validate"), "it failed for another reason:\n{said}");
}

#[test]
fn a_release_without_an_image_cannot_go_to_kubernetes() {
    let mut r = release();
    r.image_digest = None;
    let err = render("production", &r, &config()).unwrap_err().to_string();
    assert!(err.contains("needs `cargo xtask image --push`"), "{err}");
}

#[test]
fn no_field_of_a_release_or_a_config_can_add_a_field_to_the_manifests() {
    let mut r = release();
    r.version = "v7\n  kind: Secret".into();
    let err = render("production", &r, &config()).unwrap_err().to_string();
    assert!(err.contains("version `v7\\n  kind: Secret` is not valid"), "{err}");
    // The config is the team's own, but even a newline there stays inside its value.
    let mut k = config();
    k.namespace = "ml\n  replicas: 99".into();
    let yaml = render("production", &release(), &k).unwrap();
    let deployment: serde_json::Value = serde_norway::from_str(yaml.split("---\n").next().unwrap()).unwrap();
    assert_eq!(deployment["metadata"]["namespace"], "ml\n  replicas: 99");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert!(render("pro/../duction", &release(), &config()).is_err());
}

//! The kubernetes target: a Deployment and a Service that run the release's image by digest,
//! with readiness on `/readyz`, applied with `kubectl`, checked with `rollout status` and then
//! by the smoke tests through the Service's URL, and rolled back by applying the previous
//! release's manifests — all in the order [`crate::protocol`] gives every target.
//!
//! No API server can run on the machines this project is built on, so this path is tested on
//! its rendered manifests (golden files, parsed by `kubectl --local`), not against a cluster.

use serde::{Deserialize, Serialize};
use xshell::cmd;

use crate::DeployError;
use crate::flow::EnvConfig;
use crate::ledger::Release;
use crate::protocol::Target;
use crate::target::{Backend, Router};

/// `[environments.NAME.kubernetes]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeConfig {
    /// The namespace.
    pub namespace: String,
    /// Pods.
    #[serde(default = "one")]
    pub replicas: u32,
    /// The image repository the release was pushed to, e.g. `ghcr.io/team/slipway-serve`.
    pub repository: String,
    /// The kubectl context; the current one when unset.
    pub context: Option<String>,
    /// Where smoke tests reach the Service (an ingress or a port-forward), e.g. `https://staging.example.com`.
    pub url: String,
}

fn one() -> u32 {
    1
}

/// The manifests of `release` on `env`, as YAML. Deterministic: same input, same bytes. Every
/// value goes through the YAML serializer, after the release's names and digests were checked,
/// so no field of a release can add a field to a manifest.
pub fn render(env: &str, release: &Release, k: &KubeConfig) -> Result<String, DeployError> {
    let digest = release.image_digest.as_deref().ok_or_else(|| {
        anyhow::anyhow!(
            "release {} has no image digest; the kubernetes target needs `cargo xtask image --push`",
            release.version
        )
    })?;
    release.check().map_err(|detail| anyhow::anyhow!("release {} cannot be rendered: {detail}", release.version))?;
    if !crate::names::is_env_name(env) {
        return Err(anyhow::anyhow!("`{env}` is not a valid environment name for Kubernetes").into());
    }
    let name = format!("slipway-{env}");
    let labels = serde_json::json!({ "app.kubernetes.io/name": name });
    let versioned = serde_json::json!({ "app.kubernetes.io/name": name, "app.kubernetes.io/version": release.version });
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": k.namespace,
            "labels": { "app.kubernetes.io/name": name, "app.kubernetes.io/version": release.version, "app.kubernetes.io/managed-by": "slipway" },
            "annotations": { "slipway.dev/model-digest": format!("blake3:{}", release.model_digest) },
        },
        "spec": {
            "replicas": k.replicas,
            "selector": { "matchLabels": labels },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } },
            "template": {
                "metadata": { "labels": versioned },
                "spec": {
                    "securityContext": { "runAsNonRoot": true, "runAsUser": 10001 },
                    "containers": [{
                        "name": "serve",
                        "image": format!("{}@{digest}", k.repository),
                        "ports": [{ "name": "http", "containerPort": 8080 }],
                        "env": [{ "name": "SLIPWAY_MODEL_VERSION", "value": release.version }],
                        "readinessProbe": { "httpGet": { "path": "/readyz", "port": "http" }, "periodSeconds": 2 },
                        "livenessProbe": { "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 10 },
                        "resources": { "requests": { "cpu": "250m", "memory": "256Mi" } },
                    }],
                },
            },
        },
    });
    let service = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": k.namespace, "labels": { "app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "slipway" } },
        "spec": { "selector": labels, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] },
    });
    let yaml = |v: &serde_json::Value| {
        serde_norway::to_string(v).map_err(|e| anyhow::anyhow!("cannot write the manifests: {e}"))
    };
    Ok(format!("{}---\n{}", yaml(&deployment)?, yaml(&service)?))
}

fn kubectl_args(k: &KubeConfig) -> Vec<String> {
    let mut args = vec!["--namespace".to_string(), k.namespace.clone()];
    if let Some(ctx) = &k.context {
        args.extend(["--context".to_string(), ctx.clone()]);
    }
    args
}

/// The kubernetes target of the deploy protocol: the release is rolled out in place (a
/// Deployment with `maxUnavailable: 0` and readiness on `/readyz`), so it has no address of its
/// own before the switch and is checked through the Service's URL after it; a rollback applies
/// the previous release's manifests.
pub(crate) struct Kube<'a> {
    env: &'a str,
    k: KubeConfig,
    release: Release,
}

impl<'a> Kube<'a> {
    pub(crate) fn new(env: &'a str, config: &EnvConfig, release: &Release) -> Result<Kube<'a>, DeployError> {
        let k = config.kubernetes.clone().ok_or_else(|| {
            anyhow::anyhow!("environment {env} uses kubernetes but has no [environments.{env}.kubernetes] section")
        })?;
        // Rendered before anything is applied: a release that cannot be is refused up front.
        render(env, release, &k)?;
        Ok(Kube { env, k, release: release.clone() })
    }
}

impl Target for Kube<'_> {
    async fn start(&mut self) -> Result<Option<String>, DeployError> {
        Ok(None)
    }

    fn gradual(&mut self) -> Option<(&Router, &Backend)> {
        None
    }

    async fn discard(&mut self) -> Result<(), DeployError> {
        Ok(())
    }

    async fn switch(&mut self) -> Result<(), DeployError> {
        apply(self.env, &self.release, &self.k).map_err(DeployError::Target)
    }

    fn live_url(&self) -> String {
        self.k.url.clone()
    }

    async fn retire(&mut self) -> Result<(), DeployError> {
        Ok(())
    }

    async fn restore(&mut self, previous: &Release) -> Result<(), DeployError> {
        apply(self.env, previous, &self.k).map_err(DeployError::Target)
    }
}

fn apply(env: &str, release: &Release, k: &KubeConfig) -> anyhow::Result<()> {
    let manifests = render(env, release, k)?;
    let sh = xshell::Shell::new()?;
    let args = kubectl_args(k);
    let apply_args = args.clone();
    cmd!(sh, "kubectl {apply_args...} apply -f -").stdin(&manifests).quiet().ignore_stdout().run()?;
    let deployment = format!("deployment/slipway-{env}");
    cmd!(sh, "kubectl {args...} rollout status {deployment} --timeout=300s").quiet().run()?;
    Ok(())
}

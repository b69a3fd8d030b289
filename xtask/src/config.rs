//! `slipway.toml`: the repository's settings that are not code — data rules, validation
//! thresholds — and `training/params.toml`, the training parameters.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// This module, as code of the stages that read settings through it.
pub const CODE: &str = file!();

/// Everything `slipway.toml` may hold. Sections other crates read (`[remote]`) are skipped here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Rules for the data gate.
    pub data: gate::DataRules,
    /// Thresholds for the model gate.
    pub validate: ValidateConfig,
    /// Environments; `staging` and `production` on the local target when none are given.
    pub environments: std::collections::BTreeMap<String, deploy::EnvConfig>,
}

impl Config {
    /// The configured environments, or the default pair.
    pub fn environments(&self) -> std::collections::BTreeMap<String, deploy::EnvConfig> {
        if !self.environments.is_empty() {
            return self.environments.clone();
        }
        let env = |port| deploy::EnvConfig {
            target: deploy::TargetKind::Local,
            port,
            smoke: Default::default(),
            kubernetes: None,
        };
        [("staging".to_string(), env(18080)), ("production".to_string(), env(18081))].into_iter().collect()
    }
}

/// `[validate]`: the model gate's thresholds.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateConfig {
    /// Minimum accuracy.
    pub min_accuracy: f64,
    /// Minimum per-class recall.
    pub min_recall: f64,
    /// Maximum p99 single-row latency.
    pub max_latency_ms: f64,
    /// Maximum accuracy drop against the production model.
    pub max_accuracy_drop: f64,
    /// The production model to compare with, until the release ledger knows it.
    pub production_model: Option<String>,
}

impl Default for ValidateConfig {
    fn default() -> ValidateConfig {
        let t = gate::Thresholds::default();
        ValidateConfig {
            min_accuracy: t.min_accuracy,
            min_recall: t.min_recall,
            max_latency_ms: t.max_latency_ms,
            max_accuracy_drop: t.max_accuracy_drop,
            production_model: None,
        }
    }
}

impl ValidateConfig {
    /// As the gate's thresholds.
    pub fn thresholds(&self) -> gate::Thresholds {
        gate::Thresholds {
            min_accuracy: self.min_accuracy,
            min_recall: self.min_recall,
            max_latency_ms: self.max_latency_ms,
            max_accuracy_drop: self.max_accuracy_drop,
        }
    }
}

/// Reads `slipway.toml` at `root`; a missing file means the defaults.
pub fn load(root: &Path) -> Result<Config> {
    let path = root.join("slipway.toml");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(Config::default()) };
    toml::from_str(&text).with_context(|| format!("{} is not valid; see README.md for its sections", path.display()))
}

/// The `[train]` table of the training parameters, one JSON value per parameter, so that each
/// becomes its own stage input and `status` names the one that changed.
pub fn training_params(root: &Path, file: &str) -> Result<Vec<(String, serde_json::Value)>> {
    let path = root.join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let train = table
        .get("train")
        .and_then(toml::Value::as_table)
        .with_context(|| format!("{} has no [train] table", path.display()))?;
    train.iter().map(|(k, v)| Ok((k.clone(), serde_json::to_value(v)?))).collect()
}

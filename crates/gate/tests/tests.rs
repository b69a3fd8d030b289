//! The gate against real ONNX Runtime, on models built by the project's training code, with
//! every metric checked against scikit-learn's computation on ONNX Runtime's Python binding.
//! Needs the training environment (`cargo xtask deps`); without it the tests fail, they do not skip.

mod fixture;
mod fuzz;
mod validate;

//! The model server against real ONNX Runtime, on models built by the project's training code,
//! over real HTTP on 127.0.0.1: in-process for the API, and as the real binary for signals and
//! exit codes. Needs the training environment (`cargo xtask deps`); without it the tests fail,
//! they do not skip.

mod api;
mod connections;
mod features;
mod fixture;
mod lifecycle;
mod limits;
mod v2;

//! The deploy crate's tests: the router under load, the ledger and lock, and end-to-end
//! deploys of real servers with real models and ONNX Runtime.

mod canary;
mod crash;
mod e2e;
mod fixture;
mod fuzz;
mod kube;
mod ledger;
mod lock;
mod progressive;
mod router;

//! The engine's integration tests: one binary, one temporary repository per test.

mod cache;
mod crash;
mod fixture;
mod fuzz;
mod inputs;
mod random;
mod report;
mod stat;
mod trace;
mod wiring;

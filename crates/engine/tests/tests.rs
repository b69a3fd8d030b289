//! The engine's integration tests: one binary, one temporary repository per test.

mod cache;
mod crash;
mod fixture;
mod random;
mod report;
mod stat;

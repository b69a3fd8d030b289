//! The image crate's integration tests, with the real tools: `skopeo`, `umoci`, the Docker
//! engine and Debian's `docker-registry` on 127.0.0.1. A missing tool fails its test with the
//! package to install; nothing is skipped or mocked.

mod build;
mod docker;
mod dockerfile;
mod fixture;
mod push;
mod sbom;
mod token;
mod tools;

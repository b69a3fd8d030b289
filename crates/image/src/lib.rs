//! Daemonless, bit-for-bit reproducible OCI images of the model server, their CycloneDX SBOM,
//! and a registry pusher that sends only the blobs a registry lacks.
//!
//! - [`build`] turns an [`ImageSpec`] into an OCI image layout, a tar that both `skopeo` and
//!   `docker load` accept, and `sbom.cdx.json` — with no Docker engine and no base image.
//! - [`sbom()`] writes the CycloneDX 1.5 document that `build` stores beside the image.
//! - [`push`] sends a layout's image and its SBOM to a registry (Distribution API v2).
//! - [`provenance()`] writes the in-toto / SLSA provenance v1 statement of a built image.
//!
//! Equal inputs give equal bytes: every layer is sorted, owned by root, stamped with
//! `SOURCE_DATE_EPOCH` and compressed by one fixed gzip; every JSON map is ordered.

mod assemble;
mod digest;
mod error;
mod layer;
mod layout;
mod libs;
pub mod oci;
mod provenance;
mod push;
mod sbom;
mod spec;

pub use assemble::build;
pub use digest::sha256;
pub use error::{ImageError, PushError, WithHelp};
pub use libs::resolve_libraries;
pub use provenance::{BUILD_TYPE, Material, PREDICATE_TYPE, ProvenanceInput, STATEMENT_TYPE, provenance};
pub use push::{Credentials, PASSWORD_VAR, Pushed, REGISTRY_ENV, Reference, USER_VAR, push};
pub use sbom::{SbomInput, sbom};
pub use spec::{
    Built, ImageSpec, LABEL_CREATED, LABEL_DATA_DIGEST, LABEL_MODEL_DIGEST, LABEL_REVISION, LABEL_SOURCE,
    LABEL_VERSION, LISTEN, LayerInfo, Library, MODEL_PATH, ORT_DIR, SERVE_PATH, UID, check_tag, onnxruntime_version,
    tag_from,
};

/// `SOURCE_DATE_EPOCH` as RFC 3339 in UTC (`1970-01-01T00:00:00Z`); out-of-range values clamp
/// to the epoch so that a bad input cannot make a build fail halfway.
pub(crate) fn rfc3339(epoch: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(epoch).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339).expect("a UTC time always formats")
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_of_epochs() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}

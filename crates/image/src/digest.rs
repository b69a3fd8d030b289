//! SHA-256 digests in OCI's `sha256:<hex>` form, and a writer that digests what passes through.

use std::io::{self, Write};

use sha2::{Digest as _, Sha256};

/// The OCI digest of `bytes`. OCI requires SHA-256 support everywhere, so every blob uses it.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The hex part of a `sha256:<hex>` digest (or the whole string if it has no algorithm).
pub(crate) fn hex_of(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, hex)| hex)
}

/// Passes writes through to `inner` while digesting and counting them.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashWriter { inner, hasher: Sha256::new(), len: 0 }
    }

    /// The inner writer, the `sha256:<hex>` digest and the byte count of everything written.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, format!("sha256:{:x}", self.hasher.finalize()), self.len)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_json_object_is_the_oci_empty_descriptor() {
        // The digest the OCI spec gives for `{}`, used by artifact manifests.
        assert_eq!(sha256(b"{}"), "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    }

    #[test]
    fn hash_writer_matches_one_shot_digest() {
        let mut w = HashWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (bytes, digest, len) = w.finish();
        assert_eq!((digest, len), (sha256(&bytes), 11));
        assert_eq!(hex_of("sha256:ab"), "ab");
    }
}

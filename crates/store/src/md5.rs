//! MD5, the digest DVC addresses data by. Used only for DVC compatibility; everything else in
//! Slipway is addressed by BLAKE3.

use std::fmt;
use std::io::{self, Read};

use md5::{Digest as _, Md5 as Hasher};
use serde::{Deserialize, Serialize};

/// A 16-byte MD5 digest, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Md5(pub [u8; 16]);

impl Md5 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Md5 {
        Md5(Hasher::digest(bytes).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 32 hex digits (either case).
    pub fn from_hex(hex: &str) -> Option<Md5> {
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Md5(out))
    }
}

impl fmt::Debug for Md5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Md5({})", self.to_hex())
    }
}

impl fmt::Display for Md5 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Md5 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Md5 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        Md5::from_hex(&hex).ok_or_else(|| serde::de::Error::custom("not a 32-digit hex md5"))
    }
}

impl engine::CachedDigest for Md5 {
    const NAMESPACE: &'static str = "slipway-md5-stat-cache-v2";
    const LEN: usize = 16;
    fn bytes(&self) -> &[u8] {
        &self.0
    }
    fn from_bytes(bytes: &[u8]) -> Md5 {
        Md5(bytes.try_into().expect("16 bytes"))
    }
}

/// Incremental MD5, also counting bytes.
#[derive(Default)]
pub struct Md5Writer {
    hasher: Hasher,
    len: u64,
}

impl Md5Writer {
    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The digest and the byte count.
    pub fn finish(self) -> (Md5, u64) {
        (Md5(self.hasher.finalize().into()), self.len)
    }
}

/// Bytes gathered before a [`BlockingWriter`] writes them out.
const FLUSH_BYTES: usize = 1 << 20;

/// A new file written and hashed on tokio's blocking pool, in batches of up to a MiB: a download
/// does no file I/O on an async worker thread, and a small object costs one trip to the pool
/// (create, write and hash together) instead of one per network chunk. One batch is written
/// while the next is received.
pub struct BlockingWriter {
    path: std::path::PathBuf,
    /// The file once created, and the digest so far, while no batch is being written.
    state: Option<(Option<std::fs::File>, Md5Writer)>,
    /// The batch being written, which hands the state back.
    pending: Option<tokio::task::JoinHandle<io::Result<Written>>>,
    buf: Vec<u8>,
}

type Written = (std::fs::File, Md5Writer, Vec<u8>);

impl BlockingWriter {
    /// A writer that creates `path` with its first batch.
    pub fn new(path: &std::path::Path) -> BlockingWriter {
        BlockingWriter {
            path: path.to_path_buf(),
            state: Some((None, Md5Writer::default())),
            pending: None,
            buf: Vec::new(),
        }
    }

    /// Appends `bytes`, handing a batch to the pool once a MiB has gathered.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= FLUSH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Waits for the batch being written, if any, and takes the state back.
    async fn settle(&mut self) -> io::Result<()> {
        if let Some(pending) = self.pending.take() {
            let (file, md5, spare) = pending.await.map_err(io::Error::other)??;
            self.state = Some((Some(file), md5));
            if self.buf.capacity() < spare.capacity() {
                self.buf.reserve(spare.capacity());
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.settle().await?;
        let (file, mut md5) = self.state.take().ok_or_else(|| io::Error::other("an earlier write failed"))?;
        let (mut buf, path) = (std::mem::take(&mut self.buf), self.path.clone());
        self.pending = Some(tokio::task::spawn_blocking(move || -> io::Result<Written> {
            let mut file = match file {
                Some(file) => file,
                None => std::fs::File::create(&path)?,
            };
            io::Write::write_all(&mut file, &buf)?;
            md5.update(&buf);
            buf.clear();
            Ok((file, md5, buf))
        }));
        Ok(())
    }

    /// Writes what is left (creating the file even when nothing was written) and returns the
    /// md5 and length of everything written.
    pub async fn finish(mut self) -> io::Result<(Md5, u64)> {
        self.flush().await?;
        self.settle().await?;
        let (_, md5) = self.state.take().expect("a settled write leaves its state");
        Ok(md5.finish())
    }
}

/// MD5 and length of everything `reader` yields.
pub fn md5_reader(mut reader: impl Read) -> io::Result<(Md5, u64)> {
    let mut w = Md5Writer::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(w.finish()),
            Ok(n) => w.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(Md5::of(b"").to_hex(), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_reader(&b"abc"[..]).unwrap(), (Md5::from_hex("900150983cd24fb0d6963f7d28e17f72").unwrap(), 3));
    }

    #[tokio::test]
    async fn the_blocking_writer_writes_and_hashes_everything_in_any_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * FLUSH_BYTES + 17).map(|i| (i * 31 % 251) as u8).collect();
        let all = data.len();
        for (name, len, chunk) in
            [("empty", 0, 1), ("bytewise", 5000, 1), ("odd", all, 65_537), ("big", all, 2 * FLUSH_BYTES)]
        {
            let path = dir.path().join(name);
            let bytes = &data[..len];
            let mut w = BlockingWriter::new(&path);
            for c in bytes.chunks(chunk) {
                w.write(c).await.unwrap();
            }
            assert_eq!(w.finish().await.unwrap(), (Md5::of(bytes), bytes.len() as u64), "{name}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}");
        }
    }

    #[test]
    fn hex_is_checked() {
        assert_eq!(
            Md5::from_hex("900150983CD24FB0D6963F7D28E17F72"),
            Md5::from_hex("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(Md5::from_hex("9001"), None);
        assert_eq!(Md5::from_hex("zz0150983cd24fb0d6963f7d28e17f72"), None);
        assert_eq!(Md5::from_hex("é00150983cd24fb0d6963f7d28e17f7"), None);
    }
}

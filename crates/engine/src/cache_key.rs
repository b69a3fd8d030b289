//! Cache keys: BLAKE3 over fields written one by one, each with its length.
//!
//! A key is never derived from `Hash`, `Debug` or serde output, whose bytes may change between
//! compiler or crate versions. Every field is written through [`KeyHasher`], which prefixes
//! strings and collections with their length so that `("ab", "c")` and `("a", "bc")` differ,
//! and only ordered collections are hashed so that iteration order cannot leak into a key.

use std::collections::BTreeMap;
use std::fmt;

/// The version of every stage fingerprint. Bump it when the meaning of any field written by
/// [`crate::Stage::fingerprint`] or by an input's [`CacheKey`] impl changes, or when a bug let
/// two different sets of inputs produce the same key: old records then simply stop matching.
pub const FINGERPRINT_VERSION: &str = "slipway-stage-v2";

/// A 32-byte BLAKE3 digest, shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// The first 12 hex characters, for humans.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }

    /// Parses 64 hex characters.
    pub fn from_hex(hex: &str) -> Option<Digest> {
        blake3::Hash::from_hex(hex).ok().map(|h| Digest(*h.as_bytes()))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        Digest::from_hex(&hex).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex digest"))
    }
}

/// Writes fields into a BLAKE3 hasher with explicit framing.
///
/// Fields are gathered in a buffer and handed to BLAKE3 in large pieces: a manifest is tens of
/// thousands of fields of a few bytes, and BLAKE3 costs per call. How the input is split
/// between calls does not change a BLAKE3 digest, so neither does the buffer.
pub struct KeyHasher {
    hasher: blake3::Hasher,
    buf: Vec<u8>,
}

/// How much the buffer gathers before BLAKE3 takes it.
const KEY_BUFFER: usize = 16 * 1024;

impl KeyHasher {
    /// A hasher whose first field is the namespace `version`, e.g. [`FINGERPRINT_VERSION`].
    pub fn new(version: &str) -> KeyHasher {
        let mut h = KeyHasher { hasher: blake3::Hasher::new(), buf: Vec::with_capacity(KEY_BUFFER) };
        h.str(version);
        h
    }

    fn update(&mut self, bytes: &[u8]) {
        if self.buf.len() + bytes.len() > KEY_BUFFER {
            self.hasher.update(&self.buf);
            self.buf.clear();
            if bytes.len() > KEY_BUFFER {
                self.hasher.update(bytes);
                return;
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.u64(bytes.len() as u64);
        self.update(bytes);
        self
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// A fixed-width integer.
    pub fn u64(&mut self, n: u64) -> &mut Self {
        self.update(&n.to_le_bytes());
        self
    }

    /// A one-byte tag, for enum variants and booleans.
    pub fn tag(&mut self, t: u8) -> &mut Self {
        self.update(&[t]);
        self
    }

    /// Another key's value.
    pub fn key(&mut self, value: &(impl CacheKey + ?Sized)) -> &mut Self {
        value.cache_key(self);
        self
    }

    /// The digest of everything written so far.
    pub fn finish(&self) -> Digest {
        let mut hasher = self.hasher.clone();
        hasher.update(&self.buf);
        Digest(*hasher.finalize().as_bytes())
    }
}

/// A value that can be written into a cache key.
///
/// Implementations write every field that can change behaviour, with framing, in a fixed order.
pub trait CacheKey {
    /// Writes `self` into `h`.
    fn cache_key(&self, h: &mut KeyHasher);
}

impl CacheKey for str {
    fn cache_key(&self, h: &mut KeyHasher) {
        h.str(self);
    }
}

impl CacheKey for String {
    fn cache_key(&self, h: &mut KeyHasher) {
        h.str(self);
    }
}

impl CacheKey for bool {
    fn cache_key(&self, h: &mut KeyHasher) {
        h.tag(u8::from(*self));
    }
}

impl CacheKey for u64 {
    fn cache_key(&self, h: &mut KeyHasher) {
        h.u64(*self);
    }
}

impl CacheKey for Digest {
    fn cache_key(&self, h: &mut KeyHasher) {
        h.bytes(&self.0);
    }
}

impl<T: CacheKey> CacheKey for Option<T> {
    fn cache_key(&self, h: &mut KeyHasher) {
        match self {
            None => h.tag(0),
            Some(v) => h.tag(1).key(v),
        };
    }
}

impl<T: CacheKey> CacheKey for [T] {
    fn cache_key(&self, h: &mut KeyHasher) {
        h.u64(self.len() as u64);
        self.iter().for_each(|v| v.cache_key(h));
    }
}

impl<T: CacheKey> CacheKey for Vec<T> {
    fn cache_key(&self, h: &mut KeyHasher) {
        self.as_slice().cache_key(h);
    }
}

impl<K: CacheKey, V: CacheKey> CacheKey for BTreeMap<K, V> {
    fn cache_key(&self, h: &mut KeyHasher) {
        h.u64(self.len() as u64);
        for (k, v) in self {
            h.key(k).key(v);
        }
    }
}

/// JSON values are keyed by their canonical form: objects with sorted keys (serde_json's
/// default `Map` is a `BTreeMap`), numbers as serde_json prints them.
impl CacheKey for serde_json::Value {
    fn cache_key(&self, h: &mut KeyHasher) {
        use serde_json::Value;
        match self {
            Value::Null => h.tag(0),
            Value::Bool(b) => h.tag(1).key(b),
            Value::Number(n) => h.tag(2).str(&n.to_string()),
            Value::String(s) => h.tag(3).str(s),
            Value::Array(items) => h.tag(4).key(items),
            Value::Object(map) => {
                h.tag(5).u64(map.len() as u64);
                for (k, v) in map {
                    h.str(k).key(v);
                }
                h
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(f: impl FnOnce(&mut KeyHasher) -> &mut KeyHasher) -> Digest {
        let mut h = KeyHasher::new("test-v1");
        f(&mut h).finish()
    }

    /// The buffer changes how BLAKE3 is fed, never what it is fed: fields of every size, some
    /// larger than the buffer, give the digest of their framed bytes written out in one piece.
    #[test]
    fn the_buffer_does_not_change_a_key() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut framed = Vec::new();
        framed.extend_from_slice(&7u64.to_le_bytes());
        framed.extend_from_slice(b"test-v1");
        let mut h = KeyHasher::new("test-v1");
        for _ in 0..2_000 {
            let most = if rng.u8(..) == 0 { 3 * KEY_BUFFER } else { 40 };
            let len = rng.usize(0..=most);
            let field: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            h.bytes(&field).tag(1);
            framed.extend_from_slice(&(field.len() as u64).to_le_bytes());
            framed.extend_from_slice(&field);
            framed.push(1);
        }
        assert_eq!(h.finish(), Digest::of(&framed));
    }

    #[test]
    fn framing_separates_adjacent_strings() {
        assert_ne!(key(|h| h.str("ab").str("c")), key(|h| h.str("a").str("bc")));
    }

    #[test]
    fn nesting_is_framed() {
        let a = vec![vec!["a".to_string()], vec![]];
        let b = vec![vec![], vec!["a".to_string()]];
        assert_ne!(key(|h| h.key(&a)), key(|h| h.key(&b)));
    }

    #[test]
    fn version_changes_every_key() {
        let v1 = KeyHasher::new("x-v1").str("same").finish();
        let v2 = KeyHasher::new("x-v2").str("same").finish();
        assert_ne!(v1, v2);
    }

    #[test]
    fn json_objects_ignore_insertion_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[true,null]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":[true,null],"a":1}"#).unwrap();
        assert_eq!(key(|h| h.key(&a)), key(|h| h.key(&b)));
        let c: serde_json::Value = serde_json::from_str(r#"{"a":"1","b":[true,null]}"#).unwrap();
        assert_ne!(key(|h| h.key(&a)), key(|h| h.key(&c)));
    }

    #[test]
    fn digest_hex_round_trips() {
        let d = Digest::of(b"slipway");
        assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(Digest::from_hex("zz"), None);
    }
}

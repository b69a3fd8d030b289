//! Inputs for the parsers' property tests, shared by every crate's tests through `#[path]`:
//! noise, and valid inputs with a few edits. Noise tests the first byte a parser reads; an
//! edited valid input gets past the syntax and reaches the checks behind it, which is where a
//! missing bound or an unchecked slice hides.
//!
//! Each target runs [`CASES`] cases in `cargo test`, a fixed budget; set `PROPTEST_CASES` to
//! run more by hand (`PROPTEST_CASES=200000 cargo test -p slipway-store fuzz`).

#![allow(dead_code, reason = "each crate's tests use the part they need")]

use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{TestCaseError, TestRunner};

/// Cases per target in `cargo test`.
pub const CASES: u32 = 4096;

/// The run's configuration: [`CASES`] unless `PROPTEST_CASES` says otherwise, no regression
/// files written into the source tree (a failure prints its minimal input).
pub fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(CASES);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Runs `test` on [`config`]'s number of inputs from `strategy`. `test` checks its property and
/// says whether the parser accepted the input. Fails with the smallest failing input when the
/// property fails, and when no input at all was accepted: then only the error paths ran. Prints
/// the counts, which the closing notes quote.
pub fn run<S: Strategy>(target: &str, strategy: S, test: impl Fn(S::Value) -> Result<bool, TestCaseError>) {
    let accepted = AtomicU64::new(0);
    let mut runner = TestRunner::new(config());
    let result = runner.run(&strategy, |input| {
        if test(input)? {
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{target}: {e}");
    }
    let accepted = accepted.into_inner();
    println!("fuzz {target}: {} cases, {accepted} accepted", config().cases);
    assert!(accepted > 0, "{target}: no input was accepted; the generator reaches only the error paths");
}

/// Pieces that parsers treat specially: path parts, quoting, YAML anchors and tags, numbers
/// past every integer type, control and bidi characters, and our own prefixes.
pub const TOKENS: &[&str] = &[
    "..",
    "/",
    "../",
    "/etc/passwd",
    "\\",
    "\0",
    "\"",
    "'",
    "{",
    "}",
    "[",
    "]",
    ":",
    ": ",
    ",",
    "\n",
    "\r\n",
    "\t",
    "- ",
    "&a ",
    "*a",
    "!!binary ",
    "~",
    "1e999",
    "-1",
    "18446744073709551616",
    "99999999999999999999999",
    "null",
    "true",
    "\u{202e}",
    "\u{feff}",
    "\u{1b}[2J",
    "\u{10ffff}",
    "é",
    "%",
    "#",
    "=",
    ".",
    "sha256:",
    "md5",
    ".dir",
    "v0",
    "v4294967296",
    "00000000",
];

/// One edit of an input.
#[derive(Clone, Debug)]
enum Edit {
    /// Remove up to `len` bytes at a place.
    Delete(Index, usize),
    /// Put a [`TOKENS`] entry at a place.
    Insert(Index, &'static str),
    /// Overwrite one byte.
    Replace(Index, u8),
    /// Repeat a span of the input where it is.
    Repeat(Index, usize, usize),
    /// Replace the number at or after a place with one from [`NUMBERS`].
    Number(Index, &'static str),
}

/// Numbers at the edges: signs, zero, infinities, NaN, past every integer type, a fraction.
pub const NUMBERS: &[&str] = &[
    "-1",
    "0",
    "-0.0",
    "1e999",
    "-1e999",
    "inf",
    "-inf",
    "nan",
    "4294967296",
    "18446744073709551616",
    "0.5",
    "1e-320",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 1..16usize).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), select(TOKENS)).prop_map(|(i, t)| Edit::Insert(i, t)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<Index>(), 1..64usize, 2..40usize).prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
        (any::<Index>(), select(NUMBERS)).prop_map(|(i, n)| Edit::Number(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |i: &Index, b: &Vec<u8>| i.index(b.len() + 1);
        match e {
            Edit::Delete(i, n) => {
                let start = at(i, &bytes).min(bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert(i, t) => {
                let p = at(i, &bytes);
                bytes.splice(p..p, t.bytes());
            }
            Edit::Replace(i, b) if !bytes.is_empty() => {
                let p = i.index(bytes.len());
                bytes[p] = *b;
            }
            Edit::Replace(..) => {}
            Edit::Repeat(i, n, k) => {
                let start = at(i, &bytes).min(bytes.len());
                let span = bytes[start..(start + n).min(bytes.len())].to_vec();
                let repeated: Vec<u8> = span.iter().copied().cycle().take(span.len() * k).collect();
                bytes.splice(start..start, repeated);
            }
            Edit::Number(i, n) => {
                let from = at(i, &bytes).min(bytes.len());
                let Some(start) = bytes[from..].iter().position(u8::is_ascii_digit).map(|p| p + from) else { continue };
                let start = if start > 0 && bytes[start - 1] == b'-' { start - 1 } else { start };
                let len = bytes[start..].iter().take_while(|b| b.is_ascii_digit() || b"-+.eE".contains(b)).count();
                bytes.splice(start..start + len, n.bytes());
            }
        }
    }
    bytes
}

/// One of `seeds` with 1–4 edits.
pub fn mutated(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    (select(seeds), prop::collection::vec(edit(), 1..5))
        .prop_map(|(seed, edits)| apply(seed.as_bytes().to_vec(), &edits))
}

/// Bytes from nowhere, and strings of [`TOKENS`].
pub fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(select(TOKENS), 0..48).prop_map(|t| t.concat().into_bytes()),
    ]
}

/// Mostly edited seeds, some noise.
pub fn inputs(seeds: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => mutated(seeds), 1 => noise()]
}

/// [`inputs`] as text, the way a parser that takes `&str` sees a file (invalid UTF-8 replaced).
pub fn texts(seeds: &'static [&'static str]) -> impl Strategy<Value = String> {
    inputs(seeds).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// `/`-joined paths made of the parts that matter to a path check.
pub fn paths() -> impl Strategy<Value = String> {
    let part = select(
        &[
            "..", ".", "", "a", "b.txt", "dist", "model", "models", "reports", "r.json", "data", "\\", "\0", "c:", "~",
            " ", "...",
        ][..],
    );
    (any::<bool>(), prop::collection::vec(part, 1..6)).prop_map(|(rooted, parts)| {
        let joined = parts.join("/");
        if rooted { format!("/{joined}") } else { joined }
    })
}

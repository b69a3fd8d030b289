//! What one request, or all of them together, may make the server do: the size of a body and
//! of each text, how long a client may take to send them, how many connections and requests
//! are served at once, and how much work one call into ONNX Runtime may get.
//!
//! The TF-IDF tokenizer in ONNX pads every row of a batch to the longest one, so a batch's
//! memory grows with `rows × longest row`, not with its total size: one long text among 255
//! short ones made a 1 MB request cost 4 GB. Batches are therefore cut by a budget of that
//! product ([`chunks`]), after every text is held to a length cap.

use std::time::Duration;

/// The limits of one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// The most texts or rows in one request (413 beyond).
    pub max_rows: usize,
    /// The longest text, in characters (413 beyond).
    pub max_text_chars: usize,
    /// The most features in one row of a feature model (413 beyond).
    pub max_features: usize,
    /// The work of one call into the model: rows × the longest text in them, in characters (or
    /// rows × features, for a feature model).
    pub chunk_budget: usize,
    /// The most rows in one call into the model, however short.
    pub chunk_rows: usize,
    /// A request whose rows × longest row is within this many characters is predicted on the
    /// async worker that read it, when a session is free at once: a few hundred microseconds of
    /// ONNX Runtime, against the two thread hand-offs the blocking pool costs. Larger requests,
    /// and any that would wait for a session, go to the blocking pool, so no worker is held up
    /// for longer than a small prediction.
    pub inline_budget: usize,
    /// How long a client may take to send a request's headers before its connection is closed.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body (408 beyond).
    pub body_timeout: Duration,
    /// Connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// `/predict` requests reading their body or waiting for a session at once, beyond which
    /// a request is shed with 503 and `Retry-After` (health and metrics are never shed).
    pub max_predict_requests: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_rows: 1024,
            max_text_chars: 20_000,
            max_features: 10_000,
            chunk_budget: 1 << 20,
            chunk_rows: 256,
            inline_budget: 2_048,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_predict_requests: 64,
        }
    }
}

/// The seconds a shed client is asked to wait.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Splits rows `0..lengths.len()` into calls whose `rows × longest row` stays within `budget`
/// (a row longer than the budget goes alone) and that hold at most `max_rows` rows. Rows of
/// similar length go together; each chunk lists row indices, and every row is in exactly one.
pub fn chunks(lengths: &[usize], budget: usize, max_rows: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending: this row is the longest of the chunk if it joins.
        let longest = lengths[i].max(1);
        if !current.is_empty() && ((current.len() + 1) * longest > budget || current.len() == max_rows.max(1)) {
            out.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lengths: &[usize], budget: usize, max_rows: usize, expect: &[&[usize]]) {
        let got = chunks(lengths, budget, max_rows);
        assert_eq!(got, expect.iter().map(|c| c.to_vec()).collect::<Vec<_>>());
    }

    #[test]
    fn one_long_row_does_not_pad_the_short_ones() {
        check(&[1000, 2, 2, 2], 100, 256, &[&[1, 2, 3], &[0]]);
        check(&[5, 5, 5, 5], 10, 256, &[&[0, 1], &[2, 3]]);
        check(&[3, 1, 2], 1000, 2, &[&[1, 2], &[0]]);
        check(&[], 10, 10, &[]);
        check(&[0, 0], 1, 256, &[&[0], &[1]]);
    }

    #[test]
    fn every_row_is_in_exactly_one_chunk_within_budget() {
        let mut rng = 0x2545F4914F6CDD1Du64;
        for _ in 0..500 {
            let n = (rng % 300) as usize;
            let lengths: Vec<usize> = (0..n)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % 5000) as usize
                })
                .collect();
            let got = chunks(&lengths, 20_000, 64);
            let mut seen: Vec<usize> = got.iter().flatten().copied().collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
            for c in &got {
                let longest = c.iter().map(|&i| lengths[i].max(1)).max().unwrap();
                assert!(c.len() <= 64 && (c.len() == 1 || c.len() * longest <= 20_000), "{c:?}");
            }
        }
    }
}

//! The framing of a batch upload (`POST /v1/blobs/batch`): many small blobs
//! in one request body, in the spirit of REAPI's `BatchUpdateBlobs`.
//!
//! The body is the blobs one after another, each framed as
//! `32-byte SHA-256 | u64 size, big-endian | size bytes`. Binary rather than
//! JSON so that a blob costs 40 bytes of overhead and no encoding. A body
//! holds at most [`MAX_BATCH_BLOBS`] blobs and [`MAX_BATCH_BYTES`] of
//! content, so the server can read it whole and bound its memory.
//!
//! This module only frames and splits; checking that bytes hash to their
//! digest is the receiver's job, as for any upload. It is shared by the
//! HTTP backend (which encodes) and the server (which decodes).

use std::ops::Range;

use cairn_digest::Digest;

/// The most blobs in one batch request.
pub const MAX_BATCH_BLOBS: usize = 4096;

/// The most content bytes (frame headers not counted) in one batch request.
pub const MAX_BATCH_BYTES: u64 = 4 << 20;

/// Bytes of framing before each blob's content: hash and size.
pub const FRAME_HEADER: usize = 40;

/// The largest body a batch request may have.
pub const MAX_BATCH_BODY: usize = MAX_BATCH_BYTES as usize + MAX_BATCH_BLOBS * FRAME_HEADER;

/// Why a batch body could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The body ends inside a frame.
    #[error("batch body is truncated: the frame at byte {offset} is incomplete")]
    Truncated {
        /// Where the incomplete frame starts.
        offset: usize,
    },
    /// More blobs than [`MAX_BATCH_BLOBS`].
    #[error("batch holds more than {MAX_BATCH_BLOBS} blobs")]
    TooManyBlobs,
    /// More content than [`MAX_BATCH_BYTES`].
    #[error("batch holds more than {MAX_BATCH_BYTES} bytes of content")]
    TooManyBytes,
}

/// Frames `blobs` into one body, as claimed: the content is not checked
/// against the digests here.
pub fn encode<'a>(blobs: impl IntoIterator<Item = (&'a Digest, &'a [u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (digest, bytes) in blobs {
        out.extend_from_slice(digest.hash());
        out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Splits a body into the claimed digests and their bytes, enforcing the
/// bounds. The digest of each entry is the frame's hash and the length of
/// its bytes; whether the bytes hash to it is for the caller to check.
pub fn decode(body: &[u8]) -> Result<Vec<(Digest, &[u8])>, BatchError> {
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut at = 0;
    while at < body.len() {
        let truncated = BatchError::Truncated { offset: at };
        let header = body.get(at..at + FRAME_HEADER).ok_or(truncated.clone())?;
        let hash: [u8; 32] = header[..32].try_into().expect("32 bytes");
        let size = u64::from_be_bytes(header[32..].try_into().expect("8 bytes"));
        if out.len() == MAX_BATCH_BLOBS {
            return Err(BatchError::TooManyBlobs);
        }
        total = total.saturating_add(size);
        if total > MAX_BATCH_BYTES {
            return Err(BatchError::TooManyBytes);
        }
        let start = at + FRAME_HEADER;
        let end = start + size as usize; // size <= MAX_BATCH_BYTES: no overflow
        let bytes = body.get(start..end).ok_or(truncated)?;
        out.push((Digest::from_parts(hash, size), bytes));
        at = end;
    }
    Ok(out)
}

/// Splits blobs of these sizes, in order, into runs that each fit one
/// request. A blob larger than [`MAX_BATCH_BYTES`] cannot travel in a
/// batch and gets a run of its own, for the caller to send alone.
pub fn split(sizes: &[u64]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        let full = i - start == MAX_BATCH_BLOBS || bytes + size > MAX_BATCH_BYTES;
        if i > start && full {
            runs.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        runs.push(start..sizes.len());
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let blobs: Vec<Vec<u8>> = vec![b"one".to_vec(), Vec::new(), vec![7; 1000]];
        let digests: Vec<Digest> = blobs.iter().map(|b| Digest::of(b)).collect();
        let body = encode(digests.iter().zip(blobs.iter().map(Vec::as_slice)));
        assert_eq!(body.len(), 3 * FRAME_HEADER + 1003);
        let back = decode(&body).unwrap();
        assert_eq!(back.len(), 3);
        for ((d, bytes), (want_d, want_b)) in back.iter().zip(digests.iter().zip(&blobs)) {
            assert_eq!((d, *bytes), (want_d, want_b.as_slice()));
        }
        assert_eq!(decode(&[]).unwrap(), Vec::new());
    }

    #[test]
    fn truncation_is_caught_anywhere() {
        let d = Digest::of(b"hello");
        let body = encode([(&d, &b"hello"[..])]);
        for cut in 1..body.len() {
            assert_eq!(
                decode(&body[..cut]),
                Err(BatchError::Truncated { offset: 0 }),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bounds_are_enforced() {
        let empty = Digest::of(b"");
        let many = encode(std::iter::repeat_n((&empty, &b""[..]), MAX_BATCH_BLOBS + 1));
        assert_eq!(decode(&many), Err(BatchError::TooManyBlobs));
        // A header claiming more than the limit is refused before any read.
        let mut huge = vec![0u8; FRAME_HEADER];
        huge[32..].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(decode(&huge), Err(BatchError::TooManyBytes));
    }

    #[test]
    fn split_respects_both_bounds() {
        assert!(split(&[]).is_empty());
        let small = vec![1u64; MAX_BATCH_BLOBS * 2 + 1];
        let runs = split(&small);
        assert_eq!(runs.len(), 3);
        assert!(runs.iter().all(|r| r.len() <= MAX_BATCH_BLOBS));
        let half = MAX_BATCH_BYTES / 2 + 1;
        let big = MAX_BATCH_BYTES + 1;
        assert_eq!(split(&[half, half, big, 1]), vec![0..1, 1..2, 2..3, 3..4]);
        assert_eq!(split(&[half, 10, 10]), vec![0..3]);
    }
}

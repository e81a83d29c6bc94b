//! Whether the first bytes of a blob can begin a canonical [`Directory`]
//! (`proto::Directory`), without reading the rest.
//!
//! A walk of the store meets blobs whose kind it does not know (a document
//! names them with `{"hash": …, "size": …}`): they may be directories of
//! any size, or gigabytes of data. Reading each whole to find out would
//! cost a walk the size of the store's data; reading its start is enough
//! to rule a directory out for almost any data, because the canonical
//! encoding is narrow (entry tags in order, minimal lengths, entries that
//! decode and re-encode to the same bytes, valid names, sorted).
//!
//! The check is one-sided: every prefix of a valid directory passes (a
//! property test holds it to that), so a blob that fails is certainly not
//! a directory; one that passes must still be decoded whole.
//!
//! [`Directory`]: crate::proto::Directory

use prost::Message;

use crate::path::validate_name;
use crate::proto::{DirectoryNode, FileNode, SymlinkNode};

/// The one-byte keys of the three repeated fields of a `Directory`, in the
/// order the canonical encoding writes them (field 1, 2, 3; length-delimited).
const ENTRY_KEYS: [u8; 3] = [0x0a, 0x12, 0x1a];

/// Whether `prefix`, the first bytes of a blob of `total` bytes, can be
/// the beginning of a canonical directory encoding. `false` means the blob
/// is certainly not a directory.
pub fn could_begin_directory(prefix: &[u8], total: u64) -> bool {
    let mut pos = 0usize;
    let mut last_key = 0u8;
    let mut last_name: Option<String> = None;
    while pos < prefix.len() {
        let key = prefix[pos];
        let Some(kind) = ENTRY_KEYS.iter().position(|k| *k == key) else {
            return false;
        };
        if key < last_key {
            return false;
        }
        if key != last_key {
            last_name = None;
        }
        last_key = key;
        let Some((len, len_bytes)) = read_varint(&prefix[pos + 1..]) else {
            return true; // the prefix ends inside the length
        };
        let Some(len_bytes) = len_bytes else {
            return false; // not a minimal varint, or too long
        };
        let start = pos + 1 + len_bytes;
        let end = start as u64 + len;
        if end > total {
            return false;
        }
        if end > prefix.len() as u64 {
            return true; // the prefix ends inside this entry
        }
        let end = end as usize;
        let Some(name) = valid_entry(kind, &prefix[start..end]) else {
            return false;
        };
        if last_name
            .as_deref()
            .is_some_and(|prev| prev >= name.as_str())
        {
            return false;
        }
        last_name = Some(name);
        pos = end;
    }
    true
}

/// Decodes a varint at the start of `bytes`: `None` if `bytes` ends first;
/// `Some((value, None))` if it is not the minimal encoding (or overlong).
fn read_varint(bytes: &[u8]) -> Option<(u64, Option<usize>)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let minimal = i == 0 || b != 0;
            return Some((value, minimal.then_some(i + 1)));
        }
    }
    if bytes.len() >= 10 {
        Some((0, None))
    } else {
        None
    }
}

/// The entry's name if `bytes` is one canonical, valid entry of kind
/// `kind` (0 file, 1 directory, 2 symlink).
fn valid_entry(kind: usize, bytes: &[u8]) -> Option<String> {
    let digest_ok = |d: &Option<crate::proto::Digest>| {
        d.as_ref()
            .is_some_and(|d| cairn_digest::Digest::try_from(d).is_ok())
    };
    let (name, canonical) = match kind {
        0 => {
            let node = FileNode::decode(bytes).ok()?;
            if !digest_ok(&node.digest) {
                return None;
            }
            let canonical = node.encode_to_vec() == bytes;
            (node.name, canonical)
        }
        1 => {
            let node = DirectoryNode::decode(bytes).ok()?;
            if !digest_ok(&node.digest) {
                return None;
            }
            let canonical = node.encode_to_vec() == bytes;
            (node.name, canonical)
        }
        _ => {
            let node = SymlinkNode::decode(bytes).ok()?;
            if node.target.is_empty() || node.target.contains('\0') {
                return None;
            }
            let canonical = node.encode_to_vec() == bytes;
            (node.name, canonical)
        }
    };
    (canonical && validate_name(&name).is_ok()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_directory, encode_directory, DirectoryBuilder};
    use cairn_digest::Digest;
    use proptest::prelude::*;

    fn every_prefix_passes(bytes: &[u8]) {
        for n in 0..=bytes.len() {
            assert!(
                could_begin_directory(&bytes[..n], bytes.len() as u64),
                "prefix of {n} of {} bytes refused",
                bytes.len()
            );
        }
    }

    #[test]
    fn prefixes_of_a_directory_pass() {
        let mut b = DirectoryBuilder::new();
        b.file("a", Digest::of(b"a"), true)
            .file("b", Digest::of(b"b"), false)
            .directory("d", Digest::empty())
            .symlink("l", "a");
        every_prefix_passes(&encode_directory(&b.build().unwrap()));
        every_prefix_passes(&[]);
    }

    #[test]
    fn data_is_refused_at_once() {
        let total = 1 << 30;
        for data in [
            &b"\x7fELF\x02\x01\x01"[..],
            b"{\"hash\": \"sha256:00\"}",
            b"PK\x03\x04",
            &[0u8; 64],
            &[0xffu8; 64],
        ] {
            assert!(!could_begin_directory(data, total), "{data:?}");
        }
    }

    #[test]
    fn lengths_past_the_blob_and_disorder_are_refused() {
        let mut b = DirectoryBuilder::new();
        b.file("a", Digest::of(b"a"), false);
        let bytes = encode_directory(&b.build().unwrap());
        assert!(!could_begin_directory(&bytes, bytes.len() as u64 - 1));
        let mut twice = bytes.clone();
        twice.extend_from_slice(&bytes); // "a" then "a" again
        assert!(!could_begin_directory(&twice, twice.len() as u64));
        let mut symlink_then_file = vec![0x1a, 0x06, 0x0a, 0x01, b'z', 0x12, 0x01, b'a'];
        symlink_then_file.extend_from_slice(&bytes);
        assert!(could_begin_directory(&symlink_then_file[..8], 1000));
        assert!(!could_begin_directory(
            &symlink_then_file,
            symlink_then_file.len() as u64
        ));
    }

    fn arb_name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9._-]{1,12}".prop_filter("not . or ..", |n| n != "." && n != "..")
    }

    proptest! {
        #[test]
        fn every_prefix_of_any_directory_passes(
            files in proptest::collection::btree_map(arb_name(), any::<(u8, bool)>(), 0..20),
            dirs in proptest::collection::btree_set(arb_name(), 0..5),
            links in proptest::collection::btree_map(arb_name(), "[a-z/.]{1,20}", 0..5),
        ) {
            let mut b = DirectoryBuilder::new();
            let mut seen = std::collections::BTreeSet::new();
            for (name, (content, x)) in &files {
                seen.insert(name.clone());
                b.file(name.as_str(), Digest::of(&[*content]), *x);
            }
            for name in dirs.iter().filter(|n| seen.insert((*n).clone())) {
                b.directory(name.as_str(), Digest::of(name.as_bytes()));
            }
            for (name, target) in links.iter().filter(|(n, _)| seen.insert((*n).clone())) {
                b.symlink(name.as_str(), target.as_str());
            }
            let bytes = encode_directory(&b.build().unwrap());
            every_prefix_passes(&bytes);
        }

        #[test]
        fn whatever_decodes_passes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if decode_directory(&bytes).is_ok() {
                prop_assert!(could_begin_directory(&bytes, bytes.len() as u64));
            }
        }
    }
}

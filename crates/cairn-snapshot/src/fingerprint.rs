//! The fingerprint of what a snapshot's directory encodings are made of.
//!
//! Encoding a tree is a pure function of the walk (each path, in walk
//! order, with its kind), each file's digest and executable bit and each
//! symlink's target; the stat cache keeps the fingerprint of those inputs
//! beside the directory digests they gave, so that a snapshot whose inputs
//! are all the same reuses the digests instead of encoding again.

use cairn_digest::Digest;

use crate::walk::{Entry, Kind};

/// Bumped whenever what [`tree_fingerprint`] covers or how directories are
/// encoded changes: a tree recorded by an older encoding is then not reused.
const FINGERPRINT_DOMAIN: &[u8] = b"cairn snapshot tree fingerprint 1\0";

/// Bytes gathered before they are hashed (few calls into the hasher).
const FINGERPRINT_CHUNK: usize = 32 << 10;

/// The SHA-256 of everything a snapshot encodes its directories from:
/// each walked path in walk order with its kind, each file's digest and
/// executable bit, each symlink's target (length-prefixed, so no two
/// different inputs serialize alike). `None` when a symlink's target was
/// not read by the walk (it is read while encoding then). `files` are the
/// digest and executable bit of each file entry, in order.
pub(crate) fn tree_fingerprint(
    entries: &[Entry],
    mut files: impl Iterator<Item = (Digest, bool)>,
) -> Option<[u8; 32]> {
    let mut hasher = cairn_digest::Hasher::new();
    hasher.update(FINGERPRINT_DOMAIN);
    let mut buf = Vec::with_capacity(FINGERPRINT_CHUNK + 4096);
    for e in entries {
        buf.extend_from_slice(&(e.rel.len() as u64).to_le_bytes());
        buf.extend_from_slice(e.rel.as_bytes());
        match &e.kind {
            Kind::Dir => buf.push(0),
            Kind::File => {
                let (digest, executable) = files.next()?;
                buf.push(1 + u8::from(executable));
                buf.extend_from_slice(digest.hash());
                buf.extend_from_slice(&digest.size().to_le_bytes());
            }
            Kind::Symlink(Some(target)) => {
                buf.push(3);
                buf.extend_from_slice(&(target.len() as u64).to_le_bytes());
                buf.extend_from_slice(target);
            }
            Kind::Symlink(None) => return None,
        }
        if buf.len() >= FINGERPRINT_CHUNK {
            hasher.update(&buf);
            buf.clear();
        }
    }
    hasher.update(&buf);
    Some(*hasher.finish().hash())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rel: &str, kind: Kind) -> Entry {
        Entry {
            rel: rel.into(),
            kind,
        }
    }

    fn print(entries: &[Entry], files: &[(&[u8], bool)]) -> Option<[u8; 32]> {
        tree_fingerprint(entries, files.iter().map(|(b, x)| (Digest::of(b), *x)))
    }

    fn link(target: &[u8]) -> Kind {
        Kind::Symlink(Some(target.to_vec()))
    }

    #[test]
    fn every_input_of_the_encoding_changes_the_fingerprint() {
        let base = || {
            vec![
                entry("d", Kind::Dir),
                entry("d/f", Kind::File),
                entry("l", link(b"d/f")),
            ]
        };
        let one = print(&base(), &[(b"x", false)]).unwrap();
        assert_eq!(print(&base(), &[(b"x", false)]), Some(one));
        let mut seen = vec![one];
        let mut renamed = base();
        renamed[1].rel = "d/g".into();
        let mut retargeted = base();
        retargeted[2].kind = link(b"d/g");
        let mut moved = base();
        moved.swap(0, 2);
        let variants = [
            print(&base(), &[(b"y", false)]),
            print(&base(), &[(b"x", true)]),
            print(&renamed, &[(b"x", false)]),
            print(&retargeted, &[(b"x", false)]),
            print(&moved, &[(b"x", false)]),
            print(&base()[..2], &[(b"x", false)]),
            // The same bytes split differently between name and target.
            print(&[entry("ab", link(b"c"))], &[]),
            print(&[entry("a", link(b"bc"))], &[]),
        ];
        for v in variants {
            let v = v.unwrap();
            assert!(!seen.contains(&v), "two different inputs, one fingerprint");
            seen.push(v);
        }
    }

    #[test]
    fn an_unread_symlink_target_gives_no_fingerprint() {
        assert_eq!(print(&[entry("l", Kind::Symlink(None))], &[]), None);
    }
}

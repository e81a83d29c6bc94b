//! What a ref keeps alive: the roots of every walk that decides what the
//! store must keep.
//!
//! A ref is a root for every blob its value names:
//!
//! * a value that is a digest written as text — `sha256:<hex>/<size>`,
//!   `sha256:<hex>`, or the bare `<hex>` with or without `/<size>`
//!   (surrounding whitespace ignored) — as `cairn ref set pins/x DIGEST`
//!   writes it; the blob may be a tree, a file or a document, so it is
//!   walked as [`Kind::Unknown`];
//! * any other value as a document ([`references_in`]): an encoded
//!   directory, JSON with `{"hash": …, "size": …}` objects (a DSSE
//!   envelope's payload included), or a REAPI `ActionResult` / `Action`;
//! * a ref named `fetch/<hex>` also keeps the blob `<hex>`: the fetched
//!   bytes whose unpacked (or one-file) tree the value names, so a later
//!   build neither fetches nor unpacks again;
//! * a ref named `oci/<hex>` (an image input's pin, its value the unpacked
//!   tree written as `fetch/<hex>`'s is) also keeps the blob `<hex>`: the
//!   pinned manifest or index, which the build's provenance names. Its
//!   layers are not stored (the tree is), so it is kept as a leaf.
//!
//! A digest written without its size is kept by hash; it is walked once its
//! size is known (the local store reads it from the blob file).

use cairn_digest::{Digest, DigestRef};

use crate::reach::{references_in, Kind, Node};
use crate::refs::RefName;

/// The prefix of refs that record a fixed-output fetch (`fetch/<hex>`).
pub const FETCH_PREFIX: &str = "fetch/";
/// The prefix of refs that record an image input's tree (`oci/<hex>`).
pub const OCI_PREFIX: &str = "oci/";

/// A blob a ref names: its hash, its size when the ref says it, and how
/// to read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Root {
    /// The blob's SHA-256.
    pub hash: [u8; 32],
    /// Its size, if the ref's value gives it.
    pub size: Option<u64>,
    /// How its edges are read.
    pub kind: Kind,
}

impl Root {
    /// A root whose digest is fully known.
    pub fn node((digest, kind): Node) -> Self {
        Self {
            hash: *digest.hash(),
            size: Some(digest.size()),
            kind,
        }
    }

    /// The full digest, given a way to learn a missing size.
    pub fn resolve(&self, size_of: impl FnOnce(&[u8; 32]) -> Option<u64>) -> Option<Node> {
        let size = self.size.or_else(|| size_of(&self.hash))?;
        Some((full_digest(self.hash, size), self.kind))
    }
}

/// Every blob the ref `name` with `value` keeps alive.
pub fn roots_of_ref(name: &RefName, value: &[u8]) -> Vec<Root> {
    let mut roots = match digest_text(value) {
        Some(d) => vec![Root {
            hash: d.hash,
            size: d.size,
            kind: Kind::Unknown,
        }],
        None => references_in(value).into_iter().map(Root::node).collect(),
    };
    let pinned = [FETCH_PREFIX, OCI_PREFIX]
        .iter()
        .find_map(|prefix| name.as_str().strip_prefix(prefix));
    if let Some(hex) = pinned {
        if let Some(d) = parse_digest_text(hex) {
            roots.push(Root {
                hash: d.hash,
                size: d.size,
                kind: Kind::Leaf,
            });
        }
    }
    roots
}

/// The digest a ref value names when the value is a digest written as
/// text, the way `cairn ref set` users write one.
pub fn digest_text(value: &[u8]) -> Option<DigestRef> {
    parse_digest_text(std::str::from_utf8(value).ok()?.trim())
}

fn parse_digest_text(text: &str) -> Option<DigestRef> {
    if let Ok(d) = text.parse::<DigestRef>() {
        return Some(d);
    }
    // The bare hex, with or without its size.
    let hex = text.split('/').next()?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    format!("sha256:{}", text.to_ascii_lowercase()).parse().ok()
}

fn full_digest(hash: [u8; 32], size: u64) -> Digest {
    DigestRef { hash, size: None }.with_size(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn name(n: &str) -> RefName {
        RefName::new(n).unwrap()
    }

    #[test]
    fn digest_text_in_every_spelling_is_a_root() {
        for value in [
            format!("sha256:{HEX}/5"),
            format!("sha256:{HEX}/5\n"),
            format!("  {HEX}/5 "),
            HEX.to_uppercase() + "/5",
        ] {
            let roots = roots_of_ref(&name("pins/x"), value.as_bytes());
            assert_eq!(roots.len(), 1, "{value:?}");
            assert_eq!(roots[0].size, Some(5), "{value:?}");
            assert_eq!(roots[0].kind, Kind::Unknown);
        }
        for value in [format!("sha256:{HEX}"), HEX.to_string()] {
            let roots = roots_of_ref(&name("pins/x"), value.as_bytes());
            assert_eq!(roots.len(), 1, "{value:?}");
            assert_eq!(roots[0].size, None);
        }
        assert!(roots_of_ref(&name("pins/x"), b"just words").is_empty());
        assert!(roots_of_ref(&name("pins/x"), &HEX.as_bytes()[1..]).is_empty());
    }

    #[test]
    fn a_fetch_ref_keeps_the_fetched_bytes_and_its_tree() {
        let tree = Digest::of(b"tree");
        let roots = roots_of_ref(
            &name(&format!("fetch/{HEX}")),
            format!("{tree:#}").as_bytes(),
        );
        assert_eq!(roots.len(), 2);
        assert_eq!(roots[0].resolve(|_| None), Some((tree, Kind::Unknown)));
        assert_eq!(full_digest(roots[1].hash, 5).hex(), HEX);
        assert_eq!(roots[1].kind, Kind::Leaf);
        assert_eq!(roots[1].resolve(|_| Some(5)).unwrap().0.size(), 5);
    }

    #[test]
    fn an_oci_ref_keeps_the_pinned_manifest_and_the_tree() {
        let tree = Digest::of(b"tree");
        let roots = roots_of_ref(&name(&format!("oci/{HEX}")), format!("{tree:#}").as_bytes());
        assert_eq!(roots.len(), 2);
        assert_eq!(roots[0].resolve(|_| None), Some((tree, Kind::Unknown)));
        assert_eq!(full_digest(roots[1].hash, 5).hex(), HEX);
        assert_eq!(roots[1].kind, Kind::Leaf);
        // Any other prefix names nothing by its name.
        let other = roots_of_ref(
            &name(&format!("pins/{HEX}")),
            format!("{tree:#}").as_bytes(),
        );
        assert_eq!(other.len(), 1);
    }
}

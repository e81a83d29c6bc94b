//! What a user types for a blob or a release, turned into a full digest.
//!
//! cairn prints digests as `sha256:<hex>`, without their size, and every
//! printed digest must work as an argument wherever the store is
//! reachable. So an argument may be:
//!
//! * `sha256:<hex>/<size>`: used as written;
//! * `sha256:<hex>`: the size comes from the local cache if it holds the
//!   blob, else from the store itself ([`BlobStore::lookup`]: a file's
//!   length, an S3 object's size, a `cairn server`'s `HEAD /cas/<hex>`),
//!   and the bytes are verified against the whole digest when read;
//! * `releases/<service>/<hex>`: a release's ref, as `cairn ref list`
//!   shows it, for the release it holds.
//!
//! [`BlobStore::lookup`]: cairn_store::BlobStore::lookup

use anyhow::{bail, Result};
use cairn_digest::{Digest, DigestRef};
use cairn_store::Store;

/// The forms a digest argument may take, for messages.
pub const FORMS: &str =
    "sha256:<hex> (as cairn prints it), sha256:<hex>/<size>, or a release's ref releases/<service>/<hex>";

/// Parses a digest argument without looking anything up.
pub fn parse(text: &str) -> Result<DigestRef> {
    if let Some(rest) = text.strip_prefix("releases/") {
        if let Some((service, hex)) = rest.split_once('/') {
            if let Ok(d) = Digest::from_hex(hex, 0) {
                if !service.is_empty() {
                    return Ok(DigestRef {
                        hash: *d.hash(),
                        size: None,
                    });
                }
            }
        }
        bail!("{text:?} is not a release's ref: write releases/<service>/<64 hex digits>");
    }
    text.parse::<DigestRef>()
        .map_err(|_| anyhow::anyhow!("{text:?} is not a digest; write {FORMS}"))
}

/// Resolves `text` against `cache` (a local directory store), then `store`
/// (the same store, or the remote one behind the cache); `url` names the
/// store in messages.
pub async fn resolve(cache: &Store, store: &Store, url: &str, text: &str) -> Result<Digest> {
    let wanted = parse(text)?;
    if let Some(size) = wanted.size {
        return Ok(wanted.with_size(size));
    }
    if let Some(found) = cache.blobs.lookup(&wanted.hash).await? {
        return Ok(found);
    }
    if store.local.is_none() {
        if let Some(found) = store.blobs.lookup(&wanted.hash).await? {
            return Ok(found);
        }
    }
    bail!("{text} is not in the store {url}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_a_user_sees() {
        let d = Digest::of(b"x");
        let bare = parse(&d.to_string()).unwrap();
        assert_eq!((bare.hash, bare.size), (*d.hash(), None));
        assert_eq!(parse(&format!("{d:#}")).unwrap().size, Some(1));
        let by_ref = parse(&format!("releases/web/{}", d.hex())).unwrap();
        assert_eq!(by_ref.hash, *d.hash());
        for bad in ["releases/web", "releases//00", "sha256:zz", "latest"] {
            let err = format!("{:#}", parse(bad).unwrap_err());
            assert!(err.contains(bad), "{err}");
        }
    }
}

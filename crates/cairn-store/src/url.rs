//! Choosing a backend from a store URL (`--store`, `CAIRN_STORE`).

use std::path::PathBuf;

use crate::error::{Result, StoreError};
use crate::{FsStore, Store};

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A local directory (a plain path or `file://`).
    Local(PathBuf),
    /// An S3-compatible bucket: `s3://bucket/prefix?endpoint=…`.
    S3(String),
    /// A `cairn server`: `http(s)://host:port`.
    Http(String),
}

impl StoreUrl {
    /// Parses a store URL; anything without a scheme is a local path.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: &str| StoreError::BadUrl {
            url: url.into(),
            reason: reason.into(),
        };
        if url.is_empty() {
            return Err(bad("empty"));
        }
        match url.split_once("://") {
            None => Ok(Self::Local(PathBuf::from(url))),
            Some(("file", path)) if path.starts_with('/') => Ok(Self::Local(PathBuf::from(path))),
            Some(("file", _)) => Err(bad("file:// URLs need an absolute path")),
            Some(("s3", _)) => Ok(Self::S3(url.into())),
            Some(("http" | "https", _)) => Ok(Self::Http(url.into())),
            Some((scheme, _)) => Err(bad(&format!(
                "unknown scheme {scheme:?} (use a path, file://, s3:// or http(s)://)"
            ))),
        }
    }
}

/// The default store: `$XDG_DATA_HOME/cairn/store`, else
/// `~/.local/share/cairn/store`.
pub fn default_location() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(".local/share")
        });
    data.join("cairn/store")
}

/// Opens the store a URL names.
pub fn open(url: &str) -> Result<Store> {
    match StoreUrl::parse(url)? {
        StoreUrl::Local(path) => Ok(Store::local(FsStore::open(path)?)),
        StoreUrl::S3(url) => Ok(crate::s3::S3Store::new(&url)?.into_store()),
        StoreUrl::Http(url) => Ok(crate::http::HttpStore::new(&url, None)?.into_store()),
    }
}

/// Opens the store a URL names; a `cairn server` (`http(s)://`) is sent
/// `token` as its bearer token. Other backends ignore the token.
pub fn open_with_token(url: &str, token: Option<String>) -> Result<Store> {
    match StoreUrl::parse(url)? {
        StoreUrl::Http(url) => Ok(crate::http::HttpStore::new(&url, token)?.into_store()),
        _ => open(url),
    }
}

/// Opens the store a URL names and checks that the server behind a remote
/// URL is reachable and able to keep refs safe (for S3: conditional writes),
/// so that a misconfigured store fails here rather than on first use.
pub async fn open_async(url: &str) -> Result<Store> {
    open_async_with_token(url, None).await
}

/// [`open_async`], sending `token` to a `cairn server` (`http(s)://`) as
/// its bearer token.
pub async fn open_async_with_token(url: &str, token: Option<String>) -> Result<Store> {
    match StoreUrl::parse(url)? {
        StoreUrl::S3(url) => Ok(crate::s3::S3Store::connect(&url).await?.into_store()),
        _ => open_with_token(url, token),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            StoreUrl::parse("/a/b").unwrap(),
            StoreUrl::Local("/a/b".into())
        );
        assert_eq!(
            StoreUrl::parse("rel").unwrap(),
            StoreUrl::Local("rel".into())
        );
        assert_eq!(
            StoreUrl::parse("file:///a").unwrap(),
            StoreUrl::Local("/a".into())
        );
        assert!(matches!(
            StoreUrl::parse("s3://b/p").unwrap(),
            StoreUrl::S3(_)
        ));
        assert!(matches!(
            StoreUrl::parse("http://h:1").unwrap(),
            StoreUrl::Http(_)
        ));
        assert!(StoreUrl::parse("ftp://x").is_err());
        assert!(StoreUrl::parse("file://rel").is_err());
        assert!(StoreUrl::parse("").is_err());
    }
}

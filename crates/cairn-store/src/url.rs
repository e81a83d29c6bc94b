//! Opening a store from its URL (`--store`, `CAIRN_STORE`): one way, for
//! every caller, that also checks the store, so a wrong URL, a missing
//! bucket, a bad token or missing credentials fail at once, in one line
//! naming the store, instead of halfway through a command.
//!
//! Settings come in [`OpenOptions`], resolved once by the caller (the
//! command line reads its flags and environment); nothing here reads the
//! environment.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Result, StoreError};
use crate::{FsStore, Store};

/// The schemes a store URL may have.
const SCHEMES: [&str; 4] = ["file", "s3", "http", "https"];

/// The forms a store URL may take, for error messages.
const FORMS: &str =
    "use a directory path, file:///absolute/path, s3://bucket/prefix or http(s)://host:port";

/// A parsed store location. It never carries credentials ([`StoreUrl::parse`]
/// refuses them), and its `Debug` hides any a hand-made one has.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A local directory (a plain path or `file://`).
    Local(PathBuf),
    /// An S3-compatible bucket: `s3://bucket/prefix?endpoint=…`.
    S3(String),
    /// A `cairn server`: `http(s)://host:port`.
    Http(String),
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(path) => f.debug_tuple("Local").field(path).finish(),
            Self::S3(url) => f.debug_tuple("S3").field(&redacted(url)).finish(),
            Self::Http(url) => f.debug_tuple("Http").field(&redacted(url)).finish(),
        }
    }
}

/// Why a URL with credentials in it is refused.
const CREDENTIALS_REFUSED: &str = "carries credentials (user:password@), which would show in \
    errors, logs and `ps`: give a cairn server's token in a file (--token-file) or \
    CAIRN_TOKEN, and S3 credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a \
    profile or the instance's role)";

/// The byte ranges of the user information (`user:password` before `@`)
/// of every `scheme://` authority in `url`: the URL's own and any URL
/// inside it (an S3 URL's `endpoint=` parameter).
fn userinfo_ranges(url: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(at) = url[from..].find("://") {
        let start = from + at + 3;
        let end = url[start..]
            .find(['/', '?', '#', '&'])
            .map_or(url.len(), |i| start + i);
        if let Some(sign) = url[start..end].rfind('@') {
            ranges.push(start..start + sign);
        }
        from = start;
    }
    ranges
}

/// `url` with the user name and password of every authority in it (its
/// own and any URL inside it) replaced by `***`: what a message may show.
pub fn redacted(url: &str) -> Cow<'_, str> {
    let ranges = userinfo_ranges(url);
    if ranges.is_empty() {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len());
    let mut last = 0;
    for range in ranges {
        out.push_str(&url[last..range.start]);
        out.push_str("***");
        last = range.end;
    }
    out.push_str(&url[last..]);
    Cow::Owned(out)
}

/// Refuses a remote store URL with credentials in it (see
/// [`StoreUrl::parse`]), naming it without them.
pub fn refuse_credentials(url: &str) -> Result<()> {
    if userinfo_ranges(url).is_empty() {
        return Ok(());
    }
    Err(StoreError::BadUrl {
        url: redacted(url).into_owned(),
        reason: CREDENTIALS_REFUSED.into(),
    })
}

impl StoreUrl {
    /// Parses a store URL. Anything without a scheme is a local path, but
    /// what looks like a mistyped URL (`s3:/bucket`, `http:host`,
    /// `s3//bucket`, `foo:/bar`) is refused with the forms accepted, rather
    /// than taken for a directory of that name (write `./s3:x` for one).
    ///
    /// A remote URL with credentials in it (`https://user:pass@host`,
    /// also in an S3 URL's `endpoint=`) is refused, as Nix and Bazel take
    /// theirs from files and the environment: a URL is shown in errors,
    /// logs and `ps`. No error shows them ([`redacted`]).
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |reason: String| StoreError::BadUrl {
            url: redacted(url).into_owned(),
            reason,
        };
        if url.is_empty() {
            return Err(bad(format!("empty; {FORMS}")));
        }
        if url.contains("://") && !url.starts_with("file://") {
            refuse_credentials(url)?;
        }
        match url.split_once("://") {
            Some(("file", path)) if path.starts_with('/') => Ok(Self::Local(PathBuf::from(path))),
            Some(("file", _)) => Err(bad("file:// URLs need an absolute path".into())),
            Some(("s3", _)) => Ok(Self::S3(url.into())),
            Some(("http" | "https", _)) => Ok(Self::Http(url.into())),
            Some((scheme, _)) if is_scheme(scheme) => {
                Err(bad(format!("unknown scheme {scheme:?}; {FORMS}")))
            }
            _ if looks_like_url(url) => Err(bad(format!(
                "not a URL cairn knows and not meant as a directory; {FORMS} \
                 (for a directory whose name has a colon, write ./{url})"
            ))),
            _ => Ok(Self::Local(PathBuf::from(url))),
        }
    }
}

/// Whether `text` could be a URL scheme: a letter, then letters, digits,
/// `+`, `-` or `.`.
fn is_scheme(text: &str) -> bool {
    let mut bytes = text.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
}

/// A path that is almost a URL: `scheme:` anything (a colon in the first
/// segment after a scheme-like word), or a known scheme's name followed by
/// `//` without the colon.
fn looks_like_url(path: &str) -> bool {
    if let Some((head, _)) = path.split_once(':') {
        if !head.contains('/') && is_scheme(head) {
            return true;
        }
    }
    path.split_once("//")
        .is_some_and(|(head, _)| SCHEMES.contains(&head.to_ascii_lowercase().as_str()))
}

/// Everything opening a store may need, resolved once by the caller.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// The bearer token for a `cairn server` (`http(s)://`).
    pub token: Option<String>,
    /// PEM files of CA certificates trusted for `https://` servers besides
    /// the usual public roots (a private CA, a self-signed server).
    pub ca_certs: Vec<PathBuf>,
    /// The caller will write to the store: a local directory that is not a
    /// store yet is made one (without this, it is an error, so a read-only
    /// command never leaves an empty store behind), and an S3 bucket is
    /// checked for writes and conditional writes too.
    pub create: bool,
    /// S3 settings by their AWS environment names (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
    /// `AWS_ENDPOINT`, ...); the URL's own `endpoint` and `region` win.
    pub aws: BTreeMap<String, String>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_certs", &self.ca_certs)
            .field("create", &self.create)
            .field("aws", &self.aws.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Opens the store `url` names and checks it:
///
/// * a local directory must be a store, unless [`OpenOptions::create`]
///   (then an absent or empty directory becomes one);
/// * an S3 bucket needs credentials, must exist and let them list it, and
///   with `create` must take a write and refuse a second conditional
///   create of the same key;
/// * a `cairn server` must answer `/healthz` and accept the token (or no
///   token) for reading.
///
/// Every failure names the store; [`StoreError::kind`] says what kind it
/// is (a bad token is [`Unauthorized`], a server that does not answer is
/// [`Unavailable`]).
///
/// [`Unauthorized`]: crate::ErrorKind::Unauthorized
/// [`Unavailable`]: crate::ErrorKind::Unavailable
pub async fn connect(url: &str, options: &OpenOptions) -> Result<Store> {
    match StoreUrl::parse(url)? {
        StoreUrl::Local(path) if options.create => Ok(Store::local(FsStore::open(path)?)),
        StoreUrl::Local(path) => Ok(Store::local(FsStore::open_existing(path)?)),
        StoreUrl::S3(url) => {
            let store = crate::s3::S3Store::new(&url, &options.aws)?;
            crate::s3::credentials::check(&url, &options.aws).await?;
            store.probe(options.create).await?;
            Ok(store.into_store())
        }
        StoreUrl::Http(url) => {
            let store =
                crate::http::HttpStore::new(&url, options.token.clone(), &options.ca_certs)?;
            store.probe().await?;
            Ok(store.into_store())
        }
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
            StoreUrl::parse("./s3:x").unwrap(),
            StoreUrl::Local("./s3:x".into())
        );
        assert_eq!(
            StoreUrl::parse("a/b:c").unwrap(),
            StoreUrl::Local("a/b:c".into())
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

    #[test]
    fn refuses_credentials_without_showing_them() {
        for url in [
            "https://alice:s3cret@cache.example/x",
            "http://s3cret@cache.example:8080",
            "s3://s3cret:more@bucket/prefix",
            "s3://bucket/prefix?endpoint=http://alice:s3cret@127.0.0.1:9000",
            "foo://alice:s3cret@host/x",
        ] {
            let err = StoreUrl::parse(url).unwrap_err();
            let text = err.to_string();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidRequest, "{url}");
            assert!(!text.contains("s3cret"), "{url}: {text}");
            assert!(text.contains("***@"), "{url}: {text}");
        }
        assert_eq!(
            redacted("s3://b/p?endpoint=http://u:p@h:1&region=r"),
            "s3://b/p?endpoint=http://***@h:1&region=r"
        );
        assert_eq!(redacted("https://h/a@b"), "https://h/a@b");
        let hand_made = StoreUrl::Http("https://alice:s3cret@h".into());
        assert_eq!(format!("{hand_made:?}"), "Http(\"https://***@h\")");
    }

    #[test]
    fn refuses_almost_urls_with_the_forms_accepted() {
        for almost in [
            "s3:/bucket",
            "s3:bucket",
            "http:/host:1",
            "https:host",
            "file:/abs",
            "foo:/bar",
            "s3//bucket",
            "HTTP//host",
        ] {
            let err = StoreUrl::parse(almost).unwrap_err();
            assert_eq!(
                err.kind(),
                crate::ErrorKind::InvalidRequest,
                "{almost}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains("s3://bucket/prefix"), "{almost}: {text}");
            assert!(!text.contains('\n'), "{almost}: {text}");
        }
    }
}

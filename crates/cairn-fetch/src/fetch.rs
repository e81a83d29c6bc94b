//! Fixed-output fetches: `file://`, `http://` and `https://` URLs whose
//! bytes must match a declared digest.
//!
//! Bytes are hashed as they are written to a temporary file in the
//! destination's directory, so memory stays bounded and the final rename is
//! atomic; the temporary file is removed on any failure, including a digest
//! mismatch. A declared size stops an over-long download early; without
//! one, [`FetchLimits::max_unsized_bytes`] does, so a server sending an
//! endless body cannot fill the disk. An HTTP server that stops sending
//! (before its answer's head or in the middle of its body) fails the fetch
//! after [`FetchLimits::stall_timeout`] instead of holding the build
//! forever. Redirects are followed as [`crate::redirect`] allows, and
//! connections go only where [`crate::reach`] allows.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_digest::{Digest, DigestRef, Hasher};
use tempfile::TempPath;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::reach::Refusal;

/// Why a fetch failed. Nothing is left at the destination in any case.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not a `file://`, `http://` or `https://` URL.
    #[error("cannot fetch {url}: only file://, http:// and https:// URLs are supported")]
    UnsupportedUrl {
        /// The URL.
        url: String,
    },
    /// Reading the source or writing the destination failed.
    #[error("fetching {url} into {}: {source}", path.display())]
    Io {
        /// The URL.
        url: String,
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The HTTP request failed (connection, TLS, protocol or status).
    #[error("fetching {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// More bytes arrived than the declared size.
    #[error("fetching {url}: more than the declared {size} bytes of {expected}")]
    TooLong {
        /// The URL.
        url: String,
        /// The declared digest.
        expected: DigestRef,
        /// The declared size.
        size: u64,
    },
    /// The digest declares no size and the bytes went past
    /// [`FetchLimits::max_unsized_bytes`].
    #[error(
        "fetching {url}: more than {limit} bytes for {expected}, which declares no size \
         (declare it as {expected}/SIZE)"
    )]
    Unbounded {
        /// The URL.
        url: String,
        /// The digest as declared (without a size).
        expected: DigestRef,
        /// The limit that was passed.
        limit: u64,
    },
    /// The server sent nothing for [`FetchLimits::stall_timeout`].
    #[error("fetching {url}: the server sent nothing for {} s", after.as_secs())]
    Stalled {
        /// The URL.
        url: String,
        /// How long it was silent.
        after: Duration,
    },
    /// The server redirected somewhere a fetch does not follow
    /// ([`crate::redirect`]).
    #[error("fetching {url}: {source}")]
    Redirect {
        /// The URL.
        url: String,
        /// Where it pointed and why it was refused.
        #[source]
        source: crate::redirect::RedirectRefused,
    },
    /// A host the fetch was sent to resolves only to addresses a public
    /// origin may not reach ([`crate::reach`]).
    #[error("fetching {url}: {source}")]
    Address {
        /// The URL.
        url: String,
        /// The host, its addresses and why they were refused.
        #[source]
        source: crate::reach::AddressRefused,
    },
    /// The bytes do not have the declared digest.
    #[error("digest mismatch for {url}: expected {expected} got {got:#}")]
    Mismatch {
        /// The URL.
        url: String,
        /// The declared digest.
        expected: DigestRef,
        /// The digest (and size) of what arrived.
        got: Digest,
    },
}

/// Downloads `url` to `dest` if its bytes have digest `expected` (and its
/// size, when `expected` carries one). Returns the full digest. `dest` is
/// replaced atomically; on any error nothing is written there and the
/// temporary file is removed.
/// Within the default [`FetchLimits`].
pub async fn fetch(url: &str, expected: DigestRef, dest: &Path) -> Result<Digest, FetchError> {
    fetch_with(url, expected, dest, &FetchLimits::default()).await
}

/// Bounds on one fetch, for what the digest does not bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Bytes accepted when the digest declares no size (default 16 GiB,
    /// what an archive may unpack to).
    pub max_unsized_bytes: u64,
    /// Longest silence from an HTTP server: to connect, for its answer's
    /// head, and between bytes of its body (default 60 s).
    pub stall_timeout: Duration,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_unsized_bytes: 16 << 30,
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// [`fetch`] within `limits`.
#[tracing::instrument(skip_all, fields(url = %url, digest = %expected))]
pub async fn fetch_with(
    url: &str,
    expected: DigestRef,
    dest: &Path,
    limits: &FetchLimits,
) -> Result<Digest, FetchError> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io_err = |path: &Path| {
        let (url, path) = (url.to_owned(), path.to_owned());
        move |source| FetchError::Io { url, path, source }
    };
    let tmp = tempfile::Builder::new()
        .prefix(".cairn-fetch-")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    let (file, tmp_path) = tmp.into_parts();
    let mut sink = Sink {
        url,
        expected,
        file: tokio::fs::File::from_std(file),
        path: &tmp_path,
        hasher: Hasher::new(),
        max_unsized: limits.max_unsized_bytes,
    };
    if let Some(path) = url.strip_prefix("file://") {
        copy_file(&mut sink, Path::new(path)).await?;
    } else if url.starts_with("http://") || url.starts_with("https://") {
        copy_http(&mut sink, limits.stall_timeout).await?;
    } else {
        return Err(FetchError::UnsupportedUrl {
            url: url.to_owned(),
        });
    }
    let got = sink.finish().await?;
    persist(url, tmp_path, dest)?;
    Ok(got)
}

/// The temporary file being filled, and the hash of what went in.
struct Sink<'a> {
    url: &'a str,
    expected: DigestRef,
    file: tokio::fs::File,
    path: &'a TempPath,
    hasher: Hasher,
    max_unsized: u64,
}

impl Sink<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        self.hasher.update(bytes);
        if let Some(size) = self.expected.size.filter(|s| self.hasher.size() > *s) {
            let (url, expected) = (self.url.to_owned(), self.expected);
            return Err(FetchError::TooLong {
                url,
                expected,
                size,
            });
        }
        if self.expected.size.is_none() && self.hasher.size() > self.max_unsized {
            return Err(FetchError::Unbounded {
                url: self.url.to_owned(),
                expected: self.expected,
                limit: self.max_unsized,
            });
        }
        self.file.write_all(bytes).await.map_err(|e| self.io(e))
    }

    async fn finish(mut self) -> Result<Digest, FetchError> {
        self.file.flush().await.map_err(|e| self.io(e))?;
        self.file.sync_all().await.map_err(|e| self.io(e))?;
        let got = self.hasher.finish();
        let size_ok = self.expected.size.is_none_or(|s| s == got.size());
        if got.hash() != &self.expected.hash || !size_ok {
            let (url, expected) = (self.url.to_owned(), self.expected);
            return Err(FetchError::Mismatch { url, expected, got });
        }
        Ok(got)
    }

    fn io(&self, source: io::Error) -> FetchError {
        FetchError::Io {
            url: self.url.to_owned(),
            path: self.path.to_path_buf(),
            source,
        }
    }
}

async fn copy_file(sink: &mut Sink<'_>, path: &Path) -> Result<(), FetchError> {
    let io_err = |source| FetchError::Io {
        url: sink.url.to_owned(),
        path: path.to_owned(),
        source,
    };
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => return Err(io_err(e)),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => sink.write(&buf[..n]).await?,
            Err(e) => return Err(io_err(e)),
        }
    }
}

async fn copy_http(sink: &mut Sink<'_>, stall: Duration) -> Result<(), FetchError> {
    let url = sink.url.to_owned();
    let http_err = |source: reqwest::Error| {
        match crate::reach::Refusal::of(&source) {
            Some(Refusal::Redirect(source)) => {
                return FetchError::Redirect {
                    url: url.clone(),
                    source,
                }
            }
            Some(Refusal::Address(source)) => {
                return FetchError::Address {
                    url: url.clone(),
                    source,
                }
            }
            None => {}
        }
        match source.is_timeout() {
            true => FetchError::Stalled {
                url: url.clone(),
                after: stall,
            },
            false => FetchError::Http {
                url: url.clone(),
                source,
            },
        }
    };
    let parsed = reqwest::Url::parse(sink.url)
        .map_err(|_| FetchError::UnsupportedUrl { url: url.clone() })?;
    let client = crate::reach::Reach::new(&parsed)
        .client_builder()
        .connect_timeout(stall)
        .read_timeout(stall)
        .build()
        .map_err(http_err)?;
    let mut response = client
        .get(parsed)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(http_err)?;
    while let Some(chunk) = response.chunk().await.map_err(http_err)? {
        sink.write(&chunk).await?;
    }
    Ok(())
}

fn persist(url: &str, tmp: TempPath, dest: &Path) -> Result<(), FetchError> {
    tmp.persist(dest).map_err(|e| FetchError::Io {
        url: url.to_owned(),
        path: dest.to_owned(),
        source: e.error,
    })
}

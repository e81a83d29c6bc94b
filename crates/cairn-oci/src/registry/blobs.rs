//! Blobs in a registry: asking, downloading (verified, into a layout) and
//! uploading (monolithic, or in chunks for large blobs).

use std::path::Path;

use cairn_digest::{Digest, Hasher};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{Registry, RegistryError, DEFAULT_CHUNK};
use crate::layout::Layout;

impl Registry {
    /// Whether the repository holds blob `digest`.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"));
        let what = format!("HEAD blob {digest}");
        let response = self.send(&what, |c| c.head(&url)).await?;
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_err(&what, response).await),
        }
    }

    /// Downloads blob `digest` into `layout`, verified; nothing is stored
    /// if the bytes do not match.
    pub async fn fetch_blob(&self, digest: &Digest, layout: &Layout) -> Result<(), RegistryError> {
        if layout.has(digest) {
            return Ok(());
        }
        let url = self.url(&format!("blobs/{digest}"));
        let what = format!("blob {digest}");
        let mut response = self.send(&what, |c| c.get(&url)).await?;
        if !response.status().is_success() {
            return Err(self.status_err(&what, response).await);
        }
        let io_err = |source| RegistryError::Io {
            reference: self.name(),
            what: what.clone(),
            source,
        };
        let dir = layout.root().join("blobs/sha256");
        let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err)?;
        let (file, path) = tmp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Hasher::new();
        while let Some(chunk) = response.chunk().await.map_err(self.http_err(&what))? {
            hasher.update(&chunk);
            if hasher.size() > digest.size() {
                break;
            }
            file.write_all(&chunk).await.map_err(io_err)?;
        }
        file.flush().await.map_err(io_err)?;
        let got = hasher.finish();
        if got != *digest {
            return Err(RegistryError::Mismatch {
                reference: self.name(),
                what,
                expected: format!("{digest:#}"),
                got: format!("{got:#}"),
            });
        }
        layout
            .put_verified(path, digest)
            .map_err(|e| RegistryError::Io {
                reference: self.name(),
                what: what.clone(),
                source: std::io::Error::other(e),
            })
    }

    /// Uploads the file `path` as blob `digest` unless the repository has
    /// it; returns the bytes sent.
    pub async fn push_blob(&self, digest: &Digest, path: &Path) -> Result<u64, RegistryError> {
        if self.has_blob(digest).await? {
            return Ok(0);
        }
        let what = format!("upload of blob {digest}");
        let start = self.url("blobs/uploads/");
        let response = self.send(&what, |c| c.post(&start)).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.status_err(&what, response).await);
        }
        let mut location = self.location(&what, &response)?;
        let chunk = self.config.chunk_size.unwrap_or(DEFAULT_CHUNK).max(1);
        let io_err = |source| RegistryError::Io {
            reference: self.name(),
            what: what.clone(),
            source,
        };
        let mut offset = 0;
        let mut file = tokio::fs::File::open(path).await.map_err(io_err)?;
        if digest.size() > chunk {
            while offset < digest.size() {
                let len = chunk.min(digest.size() - offset);
                let mut buf = vec![0; len as usize];
                file.seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(io_err)?;
                file.read_exact(&mut buf).await.map_err(io_err)?;
                let range = format!("{}-{}", offset, offset + len - 1);
                let response = self
                    .send(&what, |c| {
                        c.request(Method::PATCH, &location)
                            .header("Content-Type", "application/octet-stream")
                            .header("Content-Range", &range)
                            .body(buf.clone())
                    })
                    .await?;
                if response.status() != StatusCode::ACCEPTED {
                    return Err(self.status_err(&what, response).await);
                }
                location = self.location(&what, &response)?;
                offset += len;
            }
        }
        let body = if offset == 0 {
            let mut all = Vec::with_capacity(digest.size() as usize);
            file.read_to_end(&mut all).await.map_err(io_err)?;
            all
        } else {
            Vec::new()
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let response = self
            .send(&what, |c| {
                c.put(&url)
                    .header("Content-Type", "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.status_err(&what, response).await);
        }
        Ok(digest.size())
    }

    /// Where the upload goes on: the answer's `Location`, checked as a
    /// redirect from the registry would be.
    fn location(&self, what: &str, response: &reqwest::Response) -> Result<String, RegistryError> {
        let location = response
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .map(|l| self.absolute(l))
            .ok_or_else(|| RegistryError::Status {
                reference: self.name(),
                what: what.to_owned(),
                status: response.status(),
                body: "no Location header".into(),
            })?;
        self.check_followed(what, &location)?;
        Ok(location)
    }
}

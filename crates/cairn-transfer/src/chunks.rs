//! Large files as content-defined chunks, so a changed artifact moves only
//! the chunks around its changes.
//!
//! The design, chosen to keep a file's digest the SHA-256 of its whole
//! content and to need nothing new from any backend:
//!
//! * A file is cut with FastCDC (2020; min 64 KiB, average 256 KiB, max
//!   1 MiB). Boundaries depend on content, so an edit in the middle changes
//!   only the chunks it touches; the others hash as before.
//! * Every chunk is an ordinary blob. The list of chunks is a blob too (a
//!   [`ChunkList`] in JSON), and the ref `chunks/<file-hex>` points at it
//!   (blobs are named by their own hash, so the file → list mapping has to
//!   be a ref). The ref is written only after every chunk is stored, and it
//!   keeps the chunks alive through garbage collection (its value names the
//!   list, whose JSON names the chunks; the file itself is named as plain
//!   text so an old version can still be collected).
//! * To copy a large file the destination lacks: take the source's chunk
//!   list if it has one (then chunks are copied blob to blob), else spool
//!   the file to a temporary file and cut it; put only the chunks the
//!   destination lacks; record the list; then have the destination
//!   **assemble** the file from chunks it now holds
//!   ([`BlobStore::assemble`]), which verifies the whole file's SHA-256 and
//!   stores nothing if it does not match.
//! * Where the file is assembled depends on the destination. A local store
//!   concatenates its chunk files; a `cairn server` does the same on its
//!   side (`POST /v1/assemble/<hex>/<size>`; over an S3 backing it reads
//!   the chunks back itself). Either way only the new chunks and the list
//!   cross the wire: a 1 MiB change to a 100 MiB file moves a few MB. A
//!   destination that cannot assemble (S3 directly, or a server older than
//!   the route) gets the file put whole from here, reading the chunks back
//!   from it ([`cairn_store::assemble::by_copy`]), and the report counts
//!   those bytes too. (S3's `UploadPartCopy` could assemble server-side;
//!   it is not used yet.)

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use cairn_digest::Digest;
use cairn_store::{Assembled, BlobReader, BlobStore, BlobStoreExt, RefName, Store, StoreError};
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use crate::{Result, TransferError};

/// FastCDC's smallest chunk.
pub const MIN_CHUNK: usize = 64 << 10;
/// FastCDC's target chunk size.
pub const AVG_CHUNK: usize = 256 << 10;
/// FastCDC's largest chunk.
pub const MAX_CHUNK: usize = 1 << 20;
/// Chunks moved at once for one file.
const CHUNKS_IN_FLIGHT: usize = 8;

/// The chunks of one file, in order: the blob a `chunks/<hex>` ref names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkList {
    /// The file, as text (`sha256:…`), deliberately not a `{hash, size}`
    /// object so the list does not keep the file alive.
    pub file: String,
    /// The chunks; their concatenation is the file.
    pub chunks: Vec<Digest>,
}

/// The ref that maps a file to its chunk list.
pub fn chunk_ref(file: &Digest) -> RefName {
    RefName::new(format!("chunks/{}", file.hex())).expect("hex is a valid ref name")
}

/// What moving one large file cost.
#[derive(Default)]
pub(crate) struct ChunkedCopy {
    pub bytes_put: u64,
    pub chunks_total: u64,
    pub chunks_reused: u64,
}

/// Where the chunks' bytes come from.
enum Source {
    /// Blobs in the source store (it has a chunk list).
    Blobs(Vec<Digest>),
    /// A spooled copy of the file, with each chunk's offset.
    Spool(Arc<std::fs::File>, Vec<(u64, Digest)>),
}

/// Copies one large file the destination lacks, moving only missing chunks.
pub(crate) async fn copy_chunked(from: &Store, to: &Store, file: Digest) -> Result<ChunkedCopy> {
    let source = source_chunks(from, file).await?;
    let chunks: Vec<Digest> = match &source {
        Source::Blobs(c) => c.clone(),
        Source::Spool(_, c) => c.iter().map(|(_, d)| *d).collect(),
    };
    let mut missing: Vec<(usize, Digest)> = Vec::new();
    for (batch_start, batch) in chunks.chunks(1000).enumerate() {
        let have = to.blobs.has_many(batch).await?;
        missing.extend(
            (0..batch.len())
                .filter(|&i| !have[i])
                .map(|i| (batch_start * 1000 + i, batch[i])),
        );
    }
    missing.sort_by_key(|(_, d)| *d);
    missing.dedup_by_key(|(_, d)| *d);
    let mut report = ChunkedCopy {
        chunks_total: chunks.len() as u64,
        chunks_reused: (chunks.len() - missing.len()) as u64,
        ..Default::default()
    };
    futures::stream::iter(
        missing
            .iter()
            .map(|&(i, d)| put_chunk(&source, from, to, i, d)),
    )
    .buffer_unordered(CHUNKS_IN_FLIGHT)
    .try_for_each(|_| async { Ok(()) })
    .await?;
    report.bytes_put += missing.iter().map(|(_, d)| d.size()).sum::<u64>();
    report.bytes_put += record_list(to, file, chunks.clone()).await?;
    report.bytes_put += assemble(to, file, &chunks).await?;
    Ok(report)
}

/// The file's chunks: the source's list if it has one, else cut here.
async fn source_chunks(from: &Store, file: Digest) -> Result<Source> {
    if let Some(list) = stored_list(from, file).await? {
        return Ok(Source::Blobs(list));
    }
    let spool = tempfile::tempfile().map_err(|source| TransferError::Spool { file, source })?;
    let mut writer = tokio::fs::File::from_std(
        spool
            .try_clone()
            .map_err(|source| TransferError::Spool { file, source })?,
    );
    let mut reader = from
        .blobs
        .get(&file)
        .await?
        .ok_or(TransferError::Missing(file))?;
    tokio::io::copy(&mut reader, &mut writer)
        .await
        .map_err(|e| cairn_store::blob::read_error(&file, e))?;
    writer
        .flush()
        .await
        .map_err(|source| TransferError::Spool { file, source })?;
    let spool = Arc::new(spool);
    let cut = spool.clone();
    let chunks = tokio::task::spawn_blocking(move || cut_file(&cut))
        .await
        .map_err(|e| TransferError::Spool {
            file,
            source: std::io::Error::other(e),
        })?
        .map_err(|source| TransferError::Spool { file, source })?;
    Ok(Source::Spool(spool, chunks))
}

/// Cuts a file into FastCDC chunks: each chunk's offset and digest.
fn cut_file(file: &std::fs::File) -> std::io::Result<Vec<(u64, Digest)>> {
    let mut reader = std::io::BufReader::new(file.try_clone()?);
    std::io::Seek::rewind(&mut reader)?;
    fastcdc::v2020::StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .map(|chunk| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            Ok((chunk.offset, Digest::of(&chunk.data)))
        })
        .collect()
}

/// The chunk list the store keeps for `file`, if any, checked against it.
pub async fn stored_list(store: &Store, file: Digest) -> Result<Option<Vec<Digest>>> {
    let Some(pointer) = store.refs.get(&chunk_ref(&file)).await? else {
        return Ok(None);
    };
    let bad = |reason: String| TransferError::BadChunkList { file, reason };
    let list: Digest = serde_json::from_slice(&pointer.value).map_err(|e| bad(e.to_string()))?;
    let list = match store.blobs.get_bytes(&list).await {
        Ok(bytes) => bytes,
        // A list whose blob is gone is no list: cut the file instead.
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let list: ChunkList = serde_json::from_slice(&list).map_err(|e| bad(e.to_string()))?;
    let total: u64 = list.chunks.iter().map(|c| c.size()).sum();
    if list.file != file.to_string() || total != file.size() {
        return Err(bad(format!("it describes {} in {total} bytes", list.file)));
    }
    Ok(Some(list.chunks))
}

/// Puts chunk `index` (`digest`) into `to`, from wherever the source keeps it.
async fn put_chunk(
    source: &Source,
    from: &Store,
    to: &Store,
    index: usize,
    digest: Digest,
) -> Result<()> {
    let data: BlobReader = match source {
        Source::Blobs(_) => from
            .blobs
            .get(&digest)
            .await?
            .ok_or(TransferError::Missing(digest))?,
        Source::Spool(file, offsets) => {
            let (offset, _) = offsets[index];
            let file = file.clone();
            let mut buf = vec![0; digest.size() as usize];
            let read = tokio::task::spawn_blocking(move || {
                file.read_exact_at(&mut buf, offset).map(|()| buf)
            });
            let bytes = read
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|source| TransferError::Spool {
                    file: digest,
                    source,
                })?;
            Box::pin(std::io::Cursor::new(bytes))
        }
    };
    to.blobs
        .put(&digest, data)
        .await
        .map_err(|source| TransferError::Blob { digest, source })
}

/// Stores the chunk list and points `chunks/<hex>` at it; returns the bytes put.
async fn record_list(to: &Store, file: Digest, chunks: Vec<Digest>) -> Result<u64> {
    let list = ChunkList {
        file: file.to_string(),
        chunks,
    };
    let bytes = serde_json::to_vec(&list).expect("a chunk list serializes");
    let size = bytes.len() as u64;
    let digest = to.blobs.put_bytes(bytes).await?;
    let pointer = serde_json::to_vec(&digest).expect("a digest serializes");
    match to
        .refs
        .compare_and_swap(&chunk_ref(&file), None, pointer)
        .await
    {
        // Someone recorded the list first: theirs describes the same file.
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(size),
        Err(e) => Err(e.into()),
    }
}

/// Puts `file` into `to` from chunks `to` already holds, where they are if
/// `to` can assemble, else from here; returns the bytes that had to be put
/// (0, or the whole file). A local destination assembles without going
/// through its `blobs` (which a caller may have wrapped to count traffic).
async fn assemble(to: &Store, file: Digest, chunks: &[Digest]) -> Result<u64> {
    let target: Arc<dyn BlobStore> = match &to.local {
        Some(fs) => fs.clone(),
        None => to.blobs.clone(),
    };
    let blob = |source| TransferError::Blob {
        digest: file,
        source,
    };
    match target.assemble(&file, chunks).await.map_err(blob)? {
        Assembled::Stored => Ok(0),
        Assembled::Unsupported => {
            cairn_store::assemble::by_copy(target, &file, chunks)
                .await
                .map_err(blob)?;
            Ok(file.size())
        }
    }
}

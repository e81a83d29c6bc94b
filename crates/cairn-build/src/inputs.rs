//! Resolving a recipe's inputs to trees in the store.
//!
//! * `path`: snapshotted (relative to the recipe's directory) with the
//!   input's excludes; the snapshot's stat cache makes an unchanged source
//!   tree cost one `lstat` per file.
//! * `tree`: must already be in the store; a digest written without its
//!   size gets it from the local blob.
//! * `url` + `digest`: fetched once into the store, verified against the
//!   declared digest (a mismatch stores nothing). Unpacked archives are
//!   snapshotted into a tree and the mapping archive → tree is kept in the
//!   ref `fetch/<archive hex>`, so later builds neither fetch nor unpack;
//!   a plain download becomes a one-file tree named after the URL.

use std::path::Path;
use std::sync::Arc;

use cairn_digest::{Digest, DigestRef};
use cairn_recipe::Input;
use cairn_snapshot::{snapshot, snapshot_unconfirmed, NoProgress, SnapshotOptions, Unconfirmed};
use cairn_store::{FsStore, RefName, RefStore, StoreError};
use cairn_tree::{encode_directory, validate_name, DirectoryBuilder};

use crate::error::BuildError;
use crate::offload::{blocking, Offload};
use crate::trees::{scratch, snapshot_temp};

/// An input as the build resolved it (what SLSA provenance calls a material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedInput {
    /// The input's name in the recipe.
    pub name: String,
    /// The tree mounted for it.
    pub tree: Digest,
    /// For a fetch: the URL and the digest of the fetched bytes.
    pub fetched: Option<(String, Digest)>,
}

/// Resolves one input to a tree.
pub async fn resolve(
    fs: &Arc<FsStore>,
    refs: &dyn RefStore,
    recipe_dir: &Path,
    name: &str,
    input: &Input,
) -> Result<ResolvedInput, BuildError> {
    let resolved = |tree, fetched| ResolvedInput {
        name: name.to_owned(),
        tree,
        fetched,
    };
    match input {
        Input::Path {
            path,
            exclude,
            gitignore,
        } => {
            let options = path_options(exclude, *gitignore);
            let tree = snapshot_path(fs, &recipe_dir.join(path), options, name).await?;
            Ok(resolved(tree, None))
        }
        Input::Tree(digest) => Ok(resolved(pinned_tree(fs, name, *digest)?, None)),
        Input::Fetch {
            url,
            digest,
            unpack,
        } => {
            let archive = fetch_blob(fs, name, url, *digest).await?;
            let tree = if *unpack {
                unpacked_tree(fs, refs, name, archive).await?
            } else {
                let tree = one_file_tree(fs, name, url, archive)?;
                // The ref is what keeps the download through a collection.
                remember_fetch(refs, name, &archive, &tree, None).await?;
                tree
            };
            Ok(resolved(tree, Some((url.clone(), archive))))
        }
        Input::Oci { .. } => unreachable!("images are resolved by crate::image"),
    }
}

fn path_options(exclude: &[String], gitignore: bool) -> SnapshotOptions {
    SnapshotOptions {
        exclude: exclude.to_vec(),
        gitignore,
        ..SnapshotOptions::default()
    }
}

/// Resolves a path input for an action key alone: its stat cache hits are
/// taken on the files' metadata ([`SnapshotOptions::trust_hits`]), and what
/// was walked is returned to be confirmed before a step mounts the tree
/// ([`Unconfirmed::confirm`]).
pub(crate) async fn resolve_unconfirmed(
    fs: &Arc<FsStore>,
    recipe_dir: &Path,
    name: &str,
    path: &str,
    exclude: &[String],
    gitignore: bool,
    offload: Offload,
) -> Result<(ResolvedInput, Unconfirmed), BuildError> {
    let options = path_options(exclude, gitignore);
    let (fs, path) = (fs.clone(), recipe_dir.join(path));
    let path2 = path.clone();
    let (added, unconfirmed) = offload
        .run(move || snapshot_unconfirmed(&fs, &path2, &options, &NoProgress))
        .await?
        .map_err(|source| snapshot_error(name, source))?;
    let tree = a_tree(&path, name, added)?;
    let resolved = ResolvedInput {
        name: name.to_owned(),
        tree,
        fetched: None,
    };
    Ok((resolved, unconfirmed))
}

/// Confirms a path input resolved by [`resolve_unconfirmed`]: the tree it
/// makes once its blobs are checked (or stored again). Steps that mount
/// the same input wait for one confirmation.
pub(crate) async fn confirm(
    fs: &Arc<FsStore>,
    name: &str,
    unconfirmed: Arc<tokio::sync::Mutex<Unconfirmed>>,
    offload: Offload,
) -> Result<Digest, BuildError> {
    let fs = fs.clone();
    let mut unconfirmed = unconfirmed.lock_owned().await;
    let added = offload
        .run(move || unconfirmed.confirm(&fs))
        .await?
        .map_err(|source| snapshot_error(name, source))?;
    Ok(added.digest)
}

fn snapshot_error(name: &str, source: cairn_snapshot::SnapshotError) -> BuildError {
    BuildError::Snapshot {
        what: format!("input `{name}`"),
        source,
    }
}

async fn snapshot_path(
    fs: &Arc<FsStore>,
    path: &Path,
    options: SnapshotOptions,
    name: &str,
) -> Result<Digest, BuildError> {
    let (fs, path2) = (fs.clone(), path.to_owned());
    let added = blocking(move || snapshot(&fs, &path2, &options, &NoProgress))
        .await?
        .map_err(|source| snapshot_error(name, source))?;
    a_tree(path, name, added)
}

/// The tree a path input's snapshot made; a file is refused.
fn a_tree(path: &Path, name: &str, added: cairn_snapshot::Added) -> Result<Digest, BuildError> {
    if !added.is_tree {
        return Err(BuildError::BadInput {
            input: name.to_owned(),
            reason: format!(
                "{} is a file; a path input must be a directory",
                path.display()
            ),
        });
    }
    Ok(added.digest)
}

/// The full digest of a blob named by a possibly size-less reference, if
/// the local store holds it.
pub(crate) fn local_blob(fs: &FsStore, digest: DigestRef) -> Option<Digest> {
    let size = match digest.size {
        Some(size) => size,
        None => std::fs::metadata(fs.blob_path(&digest.with_size(0)))
            .ok()?
            .len(),
    };
    let full = digest.with_size(size);
    fs.has_sync(&full).then_some(full)
}

fn pinned_tree(fs: &FsStore, name: &str, digest: DigestRef) -> Result<Digest, BuildError> {
    let missing = || BuildError::MissingTree {
        input: name.to_owned(),
        digest: digest.to_string(),
    };
    let tree = local_blob(fs, digest).ok_or_else(missing)?;
    // Claimed before it is relied on: no collection takes it mid-build.
    fs.claim(&[(tree, cairn_store::reach::Kind::Tree)])
        .map_err(|e| BuildError::store(format!("input `{name}`: claiming {tree}"), e))?;
    local_blob(fs, digest).ok_or_else(missing)
}

/// The fetched bytes' digest, fetching them only if the store lacks them.
async fn fetch_blob(
    fs: &Arc<FsStore>,
    name: &str,
    url: &str,
    declared: DigestRef,
) -> Result<Digest, BuildError> {
    if let Some(d) = local_blob(fs, declared) {
        return Ok(d);
    }
    let dir = scratch(fs, "fetch")?;
    let dest = dir.path().join("download");
    let fetch_err = |source| BuildError::Fetch {
        input: name.to_owned(),
        source: Box::new(source),
    };
    let digest = cairn_fetch::fetch(url, declared, &dest)
        .await
        .map_err(fetch_err)?;
    let fs2 = fs.clone();
    let stored = blocking(move || fs2.put_file(&dest))
        .await?
        .map_err(|e| BuildError::store(format!("input `{name}`: storing {url}"), e))?;
    debug_assert_eq!(stored, digest);
    Ok(stored)
}

pub(crate) fn fetch_ref(archive: &Digest) -> RefName {
    RefName::new(format!("fetch/{}", archive.hex())).expect("hex is a valid ref segment")
}

async fn unpacked_tree(
    fs: &Arc<FsStore>,
    refs: &dyn RefStore,
    name: &str,
    archive: Digest,
) -> Result<Digest, BuildError> {
    let ref_name = fetch_ref(&archive);
    let store_err = |e| BuildError::store(format!("input `{name}`: ref {}", ref_name.as_str()), e);
    let known = refs.get(&ref_name).await.map_err(store_err)?;
    if let Some(v) = &known {
        let text = String::from_utf8_lossy(&v.value);
        if let Some(tree) = text
            .trim()
            .parse::<DigestRef>()
            .ok()
            .and_then(|d| local_blob(fs, d))
        {
            return Ok(tree);
        }
    }
    let (fs2, input) = (fs.clone(), name.to_owned());
    let tree = blocking(move || unpack_and_snapshot(&fs2, &input, &archive)).await??;
    remember_fetch(
        refs,
        name,
        &archive,
        &tree,
        known.as_ref().map(|v| &v.version),
    )
    .await?;
    Ok(tree)
}

/// Points `fetch/<archive hex>` at `tree` (unless it already does): a
/// root that keeps both the fetched bytes and their tree, so a later build
/// needs neither the network nor an unpack.
async fn remember_fetch(
    refs: &dyn RefStore,
    name: &str,
    archive: &Digest,
    tree: &Digest,
    expected: Option<&cairn_store::Version>,
) -> Result<(), BuildError> {
    let ref_name = fetch_ref(archive);
    let value = format!("{tree:#}").into_bytes();
    let current = match expected {
        Some(v) => Some(v.clone()),
        None => match refs.get(&ref_name).await {
            Ok(Some(v)) if v.value == value => return Ok(()),
            Ok(v) => v.map(|v| v.version),
            Err(e) => return Err(fetch_ref_error(name, &ref_name, e)),
        },
    };
    match refs
        .compare_and_swap(&ref_name, current.as_ref(), value)
        .await
    {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(fetch_ref_error(name, &ref_name, e)),
    }
}

fn fetch_ref_error(name: &str, ref_name: &RefName, e: StoreError) -> BuildError {
    BuildError::store(format!("input `{name}`: ref {}", ref_name.as_str()), e)
}

fn unpack_and_snapshot(fs: &FsStore, name: &str, archive: &Digest) -> Result<Digest, BuildError> {
    let dir = scratch(fs, "fetch")?;
    let dest = dir.path().join("unpacked");
    cairn_fetch::unpack(&fs.blob_path(archive), &dest).map_err(|source| BuildError::Unpack {
        input: name.to_owned(),
        source: Box::new(source),
    })?;
    let added = snapshot_temp(fs, &dest).map_err(|source| BuildError::Snapshot {
        what: format!("input `{name}`: unpacked archive"),
        source,
    })?;
    Ok(added.digest)
}

/// A tree holding the downloaded file, named after the URL's last segment.
fn one_file_tree(fs: &FsStore, name: &str, url: &str, blob: Digest) -> Result<Digest, BuildError> {
    let last = url.split(['?', '#']).next().unwrap_or(url);
    let file = last.rsplit('/').next().unwrap_or_default();
    let file = if validate_name(file).is_ok() {
        file
    } else {
        "download"
    };
    let mut b = DirectoryBuilder::new();
    b.file(file, blob, false);
    let dir = b.build().map_err(|source| BuildError::Tree {
        digest: blob,
        source,
    })?;
    fs.put_bytes_sync(&encode_directory(&dir))
        .map_err(|e| BuildError::store(format!("input `{name}`: storing its tree"), e))
}

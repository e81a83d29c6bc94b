//! An exported image read back as an input: the layers of `export` applied
//! by `pull` + `unpack` give back the tree's files; a tampered blob and
//! unsupported media types are refused naming the image and the layer.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use cairn_digest::Digest;
use cairn_oci::error::ExportError;
use cairn_oci::spec::Platform;
use cairn_oci::{
    ExportRequest, ImageLocation, ImageSpec, Layout, Limits, PullError, RegistryConfig, TreeSource,
};
use cairn_tree::proto::Directory;
use cairn_tree::{decode_directory, encode_directory, DirectoryBuilder};

/// Blobs in memory.
#[derive(Default)]
struct MemSource(HashMap<Digest, Vec<u8>>);

impl MemSource {
    fn put(&mut self, bytes: Vec<u8>) -> Digest {
        let d = Digest::of(&bytes);
        self.0.insert(d, bytes);
        d
    }

    /// A tree of `n` files in `bin/` and `share/`, plus a symlink.
    fn tree(&mut self, n: usize, changed: Option<usize>) -> Digest {
        let mut share = DirectoryBuilder::new();
        for i in 0..n {
            let body = if Some(i) == changed {
                format!("changed {i}")
            } else {
                format!("file {i}\n")
            };
            share.file(format!("f{i:03}.txt"), self.put(body.into_bytes()), false);
        }
        let share = self.put(encode_directory(&share.build().unwrap()));
        let mut bin = DirectoryBuilder::new();
        bin.file("hello", self.put(b"#!/bin/sh\necho hi\n".to_vec()), true);
        bin.symlink("hi", "hello");
        let bin = self.put(encode_directory(&bin.build().unwrap()));
        let mut root = DirectoryBuilder::new();
        root.directory("bin", bin).directory("share", share);
        self.put(encode_directory(&root.build().unwrap()))
    }
}

impl TreeSource for MemSource {
    fn directory(&self, digest: &Digest) -> Result<Directory, ExportError> {
        Ok(decode_directory(&self.0[digest]).unwrap())
    }

    fn open(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(&self.0[digest][..]))
    }
}

fn spec() -> ImageSpec {
    ImageSpec {
        platform: Platform::native(),
        created: "2026-01-01T00:00:00Z".into(),
        entrypoint: vec!["bin/hello".into()],
        env: BTreeMap::new(),
        working_dir: "/".into(),
        labels: BTreeMap::new(),
        stop_signal: None,
    }
}

fn export(source: &MemSource, tree: Digest, out: &Path) -> cairn_oci::Exported {
    let req = ExportRequest {
        artifact: tree,
        root: String::new(),
        spec: spec(),
        base: None,
        tag: Some("t".into()),
    };
    cairn_oci::export(source, req, out).unwrap()
}

async fn pull_layout(dir: &Path, manifest: &Digest) -> Result<cairn_oci::PulledImage, PullError> {
    let location = ImageLocation::Layout {
        path: dir.to_owned(),
        digest: (*manifest).into(),
    };
    let cache = Layout::create(dir.join("unused-cache")).unwrap();
    cairn_oci::pull(&location, &RegistryConfig::default(), &cache).await
}

#[tokio::test]
async fn an_export_unpacks_to_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut source = MemSource::default();
    let tree = source.tree(100, None);
    let exported = export(&source, tree, &tmp.path().join("img"));
    assert!(exported.layers.len() > 1, "100 files in one layer");
    let pulled = pull_layout(&tmp.path().join("img"), &exported.manifest)
        .await
        .unwrap();
    let dest = tmp.path().join("rootfs");
    pulled.unpack(&dest, Limits::default()).unwrap();
    assert_eq!(
        fs::read_to_string(dest.join("share/f042.txt")).unwrap(),
        "file 42\n"
    );
    assert_eq!(
        fs::read_link(dest.join("bin/hi")).unwrap(),
        Path::new("hello")
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(dest.join("bin/hello"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        pulled.config.config.entrypoint,
        Some(vec!["/bin/hello".to_string()])
    );
}

#[tokio::test]
async fn one_changed_file_changes_one_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut source = MemSource::default();
    let (a, b) = (source.tree(100, None), source.tree(100, Some(42)));
    let one = export(&source, a, &tmp.path().join("a"));
    let two = export(&source, b, &tmp.path().join("b"));
    assert_eq!(one.layers.len(), two.layers.len());
    let differing = one
        .layers
        .iter()
        .zip(&two.layers)
        .filter(|(x, y)| x != y)
        .count();
    assert_eq!(differing, 1);
}

#[tokio::test]
async fn a_tampered_layer_is_refused_naming_image_and_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let mut source = MemSource::default();
    let tree = source.tree(3, None);
    let dir = tmp.path().join("img");
    let exported = export(&source, tree, &dir);
    let layer = exported.layers[0].blob_digest().unwrap();
    let path = dir.join("blobs/sha256").join(layer.hex());
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&path, bytes).unwrap();
    let pulled = pull_layout(&dir, &exported.manifest).await.unwrap();
    let err = pulled
        .unpack(&tmp.path().join("rootfs"), Limits::default())
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PullError::Layer { .. }), "{text}");
    assert!(
        text.contains(&format!("layer {layer}")) && text.contains(&dir.display().to_string()),
        "{text}"
    );
}

#[tokio::test]
async fn unsupported_media_types_are_refused_before_any_layer_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut source = MemSource::default();
    let tree = source.tree(3, None);
    let dir = tmp.path().join("img");
    let exported = export(&source, tree, &dir);
    let manifest_path = dir.join("blobs/sha256").join(exported.manifest.hex());
    let text = fs::read_to_string(&manifest_path).unwrap();
    for (from, to, what) in [
        (
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "layer",
        ),
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+json",
            "manifest",
        ),
    ] {
        let bad = text.replacen(from, to, 1);
        assert_ne!(bad, text);
        let digest = Digest::of(bad.as_bytes());
        fs::write(dir.join("blobs/sha256").join(digest.hex()), &bad).unwrap();
        let err = pull_layout(&dir, &digest).await.unwrap_err().to_string();
        assert!(
            err.contains("unsupported media type") && err.contains(what),
            "{err}"
        );
    }
}

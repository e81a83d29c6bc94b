//! The image configuration and manifest of an export, as pure functions of
//! what the release says and the layers written.

use std::collections::BTreeMap;

use cairn_digest::Digest;

use crate::layer::LayerBlob;
use crate::media;
use crate::spec::{Descriptor, ImageConfig, Manifest, Platform, RootFs, RunConfig};

/// Labels cairn puts on every image it exports.
pub mod labels {
    /// The release digest.
    pub const RELEASE: &str = "dev.cairn.release";
    /// The release's signed provenance.
    pub const PROVENANCE: &str = "dev.cairn.provenance";
    /// The artifact tree.
    pub const ARTIFACT: &str = "dev.cairn.artifact";
    /// The base image's manifest, when there is one.
    pub const BASE: &str = "org.opencontainers.image.base.digest";
    /// The service.
    pub const TITLE: &str = "org.opencontainers.image.title";
    /// The release's version label.
    pub const VERSION: &str = "org.opencontainers.image.version";
    /// The release's creation time.
    pub const CREATED: &str = "org.opencontainers.image.created";
}

/// What the image runs, taken from the release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// The platform the artifact was built for.
    pub platform: Platform,
    /// RFC 3339: the release's creation time, never the clock's.
    pub created: String,
    /// The command, absolute where it names a file of the artifact.
    pub entrypoint: Vec<String>,
    /// The release's environment (the base's comes first).
    pub env: BTreeMap<String, String>,
    /// Where the artifact is, as an absolute path (the working directory).
    pub working_dir: String,
    /// Labels naming the release and its provenance.
    pub labels: BTreeMap<String, String>,
    /// `SIGTERM`-style stop signal.
    pub stop_signal: Option<String>,
}

/// A base image the artifact's layers go on top of.
#[derive(Clone, Debug)]
pub struct BaseImage {
    /// The base's manifest digest.
    pub manifest_digest: Digest,
    /// Its layers, as they are.
    pub layers: Vec<Descriptor>,
    /// Its configuration (environment, user, diff_ids).
    pub config: ImageConfig,
}

/// The command line of the image: a relative first word that names a file
/// of the artifact becomes its absolute path below `working_dir`; anything
/// else (a bare program name looked up in `PATH`) stays as it is.
pub fn entrypoint(
    command: &[String],
    working_dir: &str,
    is_artifact_file: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut argv = command.to_vec();
    if let Some(first) = argv.first_mut() {
        let rel = first.trim_start_matches("./");
        if !first.starts_with('/') && is_artifact_file(rel) {
            *first = format!("{}/{rel}", working_dir.trim_end_matches('/'));
        }
    }
    argv
}

/// The image configuration for `spec` over `base`'s layers and `layers`.
pub fn config(spec: &ImageSpec, base: Option<&BaseImage>, layers: &[LayerBlob]) -> ImageConfig {
    let base_config = base.map(|b| &b.config);
    let mut env: Vec<String> = base_config
        .map(|c| c.config.env.clone())
        .unwrap_or_default();
    for (k, v) in &spec.env {
        env.retain(|e| e.split('=').next() != Some(k));
        env.push(format!("{k}={v}"));
    }
    let mut labels = base_config
        .map(|c| c.config.labels.clone())
        .unwrap_or_default();
    labels.extend(spec.labels.clone());
    let mut diff_ids: Vec<String> = base_config
        .map(|c| c.rootfs.diff_ids.clone())
        .unwrap_or_default();
    diff_ids.extend(layers.iter().map(|l| l.diff_id.to_string()));
    ImageConfig {
        created: Some(spec.created.clone()),
        architecture: spec.platform.architecture.clone(),
        os: spec.platform.os.clone(),
        config: RunConfig {
            user: base_config.and_then(|c| c.config.user.clone()),
            env,
            entrypoint: Some(spec.entrypoint.clone()),
            cmd: None,
            working_dir: spec.working_dir.clone(),
            labels,
            stop_signal: spec.stop_signal.clone(),
        },
        rootfs: RootFs {
            type_: "layers".into(),
            diff_ids,
        },
    }
}

/// The manifest of an image whose config blob is `config`.
pub fn manifest(config: &Digest, base: Option<&BaseImage>, layers: &[LayerBlob]) -> Manifest {
    let mut all: Vec<Descriptor> = base.map(|b| b.layers.clone()).unwrap_or_default();
    all.extend(
        layers
            .iter()
            .map(|l| Descriptor::new(l.media_type, &l.digest)),
    );
    Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(media::OCI_CONFIG, config),
        layers: all,
        subject: None,
        annotations: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoint_is_absolute_for_artifact_files_only() {
        let is_file = |p: &str| p == "bin/hello" || p == "hello";
        let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            entrypoint(&argv(&["bin/hello", "-x"]), "/", is_file),
            argv(&["/bin/hello", "-x"])
        );
        assert_eq!(
            entrypoint(&argv(&["./hello"]), "/app", is_file),
            argv(&["/app/hello"])
        );
        assert_eq!(
            entrypoint(&argv(&["sh", "-c"]), "/", is_file),
            argv(&["sh", "-c"])
        );
        assert_eq!(
            entrypoint(&argv(&["/bin/sh"]), "/", is_file),
            argv(&["/bin/sh"])
        );
    }

    #[test]
    fn release_env_overrides_the_bases() {
        let spec = ImageSpec {
            platform: Platform::native(),
            created: "2026-01-01T00:00:00Z".into(),
            entrypoint: vec!["/x".into()],
            env: BTreeMap::from([("PATH".into(), "/app/bin".into())]),
            working_dir: "/".into(),
            labels: BTreeMap::new(),
            stop_signal: None,
        };
        let mut base_config = ImageConfig::default();
        base_config.config.env = vec!["PATH=/bin".into(), "LANG=C".into()];
        let base = BaseImage {
            manifest_digest: Digest::of(b"m"),
            layers: vec![],
            config: base_config,
        };
        let c = config(&spec, Some(&base), &[]);
        assert_eq!(c.config.env, vec!["LANG=C", "PATH=/app/bin"]);
    }
}

//! `cairn image build|push|verify` and the images `cairn promote` carries:
//! a release exported as a reproducible OCI image (`cairn-oci`), pushed
//! with a signed attestation, and checked against a trust policy.

mod promote;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cairn_digest::Digest;
use cairn_oci::attest::{attestation_artifact, cosign_tag, image_statement};
use cairn_oci::image::labels;
use cairn_oci::registry::referrers::Attached;
use cairn_oci::spec::Platform;
use cairn_oci::{
    BaseImage, Credentials, ExportRequest, Exported, ImageLocation, ImageSpec, Layout, Reference,
    Registry, RegistryConfig, StoreSource,
};
use cairn_release::LoadedRelease;
use cairn_transfer::Kind;
use cairn_trust::Document;
use serde::Serialize;

pub use promote::ChannelImages;

use super::{Access, Workspace};
use crate::cli::{Global, ImageCommand, ImageOptions, RegistryArgs};
use crate::output::emit;

/// Runs a `cairn image` subcommand.
pub async fn run(global: &Global, cmd: ImageCommand) -> Result<i32> {
    match cmd {
        ImageCommand::Build {
            release,
            output,
            image,
            registry,
        } => {
            build(
                global,
                &release,
                output,
                &image,
                &registry_config(&registry)?,
            )
            .await
        }
        ImageCommand::Push {
            release,
            reference,
            key,
            image,
            registry,
        } => {
            let ws = Workspace::open(global, Access::Existing).await?;
            let digest = ws.digest(&release).await?;
            let reference = Reference::parse(&reference)?;
            let config = registry_config(&registry)?;
            let pushed =
                push_release(global, &ws, &digest, &reference, &key, &image, &config).await?;
            let tag = match &reference.tag {
                Some(t) => t.clone(),
                None => pushed.version.clone(),
            };
            pushed.tag(&tag).await?;
            let out = pushed.summary(Some(tag));
            emit(global.json, &out, |o| {
                format!(
                    "pushed {}@{} ({} of {} bytes sent), attestation {}",
                    o.repository, o.manifest, o.bytes_sent, o.image_bytes, o.attestation
                )
            });
            Ok(0)
        }
        ImageCommand::Verify {
            reference,
            policy,
            channel,
            registry,
        } => {
            verify::run(
                global,
                &reference,
                &policy,
                channel.as_deref(),
                &registry_config(&registry)?,
            )
            .await
        }
    }
}

/// The registry settings of builds (`oci` inputs): credentials from
/// `CAIRN_REGISTRY_USER` and `CAIRN_REGISTRY_PASSWORD`, plain HTTP for
/// loopback registries only.
pub fn registry_from_env() -> Result<RegistryConfig> {
    let user = std::env::var("CAIRN_REGISTRY_USER")
        .ok()
        .filter(|v| !v.is_empty());
    registry_config(&RegistryArgs {
        registry_user: user,
        ..RegistryArgs::default()
    })
}

/// The registry password: the contents of `--registry-password-file`, else
/// `CAIRN_REGISTRY_PASSWORD`. `--registry-password VALUE` is refused (every
/// local user sees a command line).
fn registry_password(args: &RegistryArgs) -> Result<Option<String>> {
    if args.registry_password_on_command_line.is_some() {
        bail!(
            "--registry-password puts the password where every local user can read it (ps, /proc); \
             give --registry-password-file PATH or set CAIRN_REGISTRY_PASSWORD"
        );
    }
    if let Some(path) = &args.registry_password_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the password file {}", path.display()))?;
        let password = text.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            bail!("the password file {} is empty", path.display());
        }
        return Ok(Some(password.to_owned()));
    }
    Ok(std::env::var("CAIRN_REGISTRY_PASSWORD")
        .ok()
        .filter(|v| !v.is_empty()))
}

/// The registry settings the flags and environment give.
pub fn registry_config(args: &RegistryArgs) -> Result<RegistryConfig> {
    let password = registry_password(args)?;
    let credentials = match (&args.registry_user, &password) {
        (Some(u), Some(p)) => Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        (None, None) => None,
        _ => bail!("give both CAIRN_REGISTRY_USER and CAIRN_REGISTRY_PASSWORD (or neither)"),
    };
    Ok(RegistryConfig {
        plain_http: args.plain_http.clone(),
        credentials,
        chunk_size: args.upload_chunk_size,
    })
}

#[derive(Serialize)]
struct Built {
    manifest: String,
    config: String,
    layers: usize,
    bytes: u64,
    dir: String,
}

async fn build(
    global: &Global,
    release: &str,
    output: Option<PathBuf>,
    options: &ImageOptions,
    config: &RegistryConfig,
) -> Result<i32> {
    let ws = Workspace::open(global, Access::Existing).await?;
    let digest = ws.digest(release).await?;
    let loaded = load(&ws, &digest).await?;
    let out = output.unwrap_or_else(|| PathBuf::from(format!("{}.oci", loaded.release.service)));
    let (exported, _) = export_release(&ws, &digest, &loaded, options, config, &out).await?;
    let bytes = exported.layers.iter().map(|l| l.size).sum::<u64>() + exported.config.size();
    let built = Built {
        manifest: exported.manifest.to_string(),
        config: exported.config.to_string(),
        layers: exported.layers.len(),
        bytes,
        dir: exported.dir.display().to_string(),
    };
    emit(global.json, &built, |b| b.manifest.clone());
    Ok(0)
}

/// The release `digest` names, read from the store (copied into the cache
/// first when the store is remote).
async fn load(ws: &Workspace, digest: &Digest) -> Result<LoadedRelease> {
    ws.pull(*digest, Kind::Unknown).await?;
    Ok(cairn_release::load_release(&ws.cache, digest).await?)
}

/// Exports `loaded` as a layout at `out`; also returns the base image's
/// manifest digest, if there is a base.
async fn export_release(
    ws: &Workspace,
    digest: &Digest,
    loaded: &LoadedRelease,
    options: &ImageOptions,
    config: &RegistryConfig,
    out: &Path,
) -> Result<(Exported, Option<Digest>)> {
    let release = &loaded.release;
    ws.pull(release.artifact, Kind::Tree).await?;
    let base = match &options.base {
        None => None,
        Some(text) => {
            let location = ImageLocation::parse_pinned(text)?;
            let cache = Layout::create(ws.fs.cache_dir().join("oci"))?;
            let pulled = cairn_oci::pull(&location, config, &cache).await?;
            let base = BaseImage {
                manifest_digest: pulled.manifest_digest,
                layers: pulled.manifest.layers.clone(),
                config: pulled.config.clone(),
            };
            Some((base, pulled.layout))
        }
    };
    let root = image_root(&options.root)?;
    let spec = image_spec(digest, release, base.as_ref().map(|b| &b.0), &root)?;
    let base_digest = base.as_ref().map(|b| b.0.manifest_digest);
    let source = StoreSource::new(ws.cache.blobs.clone(), tokio::runtime::Handle::current());
    let (artifact, tag, out) = (release.artifact, release.version.clone(), out.to_owned());
    let exported = tokio::task::spawn_blocking(move || {
        let request = ExportRequest {
            artifact,
            root,
            spec,
            base: base.as_ref().map(|(b, l)| (b, l)),
            tag: Some(tag),
        };
        cairn_oci::export(&source, request, &out)
    })
    .await
    .context("the export task failed")?
    .with_context(|| format!("exporting release {digest}"))?;
    Ok((exported, base_digest))
}

/// `--root` as a relative path of plain names (`""` for `/`).
fn image_root(text: &str) -> Result<String> {
    let parts: Vec<&str> = text
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    for p in &parts {
        if cairn_tree::validate_name(p).is_err() || *p == ".." {
            bail!("--root {text:?}: {p:?} is not a plain directory name");
        }
    }
    Ok(parts.join("/"))
}

/// What the image runs and says about itself, from the release alone.
fn image_spec(
    digest: &Digest,
    release: &cairn_trust::Release,
    base: Option<&BaseImage>,
    root: &str,
) -> Result<ImageSpec> {
    let run = &release.run;
    let command: Vec<String> = serde_json::from_value(run["command"].clone())
        .with_context(|| format!("release {digest}: run.command is not a list of strings"))?;
    let env: BTreeMap<String, String> = match run.get("env") {
        None | Some(serde_json::Value::Null) => BTreeMap::new(),
        Some(v) => serde_json::from_value(v.clone())
            .with_context(|| format!("release {digest}: run.env is not a table of strings"))?,
    };
    let created = release
        .created
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the release's creation time")?;
    let mut labels = BTreeMap::from([
        (labels::RELEASE.to_string(), digest.to_string()),
        (
            labels::PROVENANCE.to_string(),
            release.provenance.to_string(),
        ),
        (labels::ARTIFACT.to_string(), release.artifact.to_string()),
        (labels::TITLE.to_string(), release.service.clone()),
        (labels::VERSION.to_string(), release.version.clone()),
        (labels::CREATED.to_string(), created.clone()),
    ]);
    if let Some(b) = base {
        labels.insert(labels::BASE.to_string(), b.manifest_digest.to_string());
    }
    Ok(ImageSpec {
        platform: Platform::native(),
        created,
        entrypoint: command,
        env,
        working_dir: format!("/{root}"),
        labels,
        stop_signal: run["stop"]["signal"].as_str().map(|s| format!("SIG{s}")),
    })
}

/// A release's image in a registry by digest, with its attestation; its
/// tag is set separately ([`PushedImage::tag`]).
pub struct PushedImage {
    registry: Registry,
    reference: Reference,
    manifest: Digest,
    manifest_bytes: Vec<u8>,
    attestation: Digest,
    attached: Attached,
    pushed: cairn_oci::Pushed,
    /// The release's version label.
    pub version: String,
}

/// What `cairn image push` reports.
#[derive(Serialize)]
pub struct PushSummary {
    repository: String,
    tag: Option<String>,
    manifest: String,
    attestation: String,
    attestation_found_by: &'static str,
    blobs_sent: u64,
    bytes_sent: u64,
    image_bytes: u64,
}

impl PushedImage {
    /// Points `tag` at the image.
    pub async fn tag(&self, tag: &str) -> Result<()> {
        cairn_oci::push::tag(&self.registry, tag, &self.manifest_bytes)
            .await
            .with_context(|| format!("tagging {} as {tag}", self.reference.name()))?;
        Ok(())
    }

    /// The report of this push.
    pub fn summary(&self, tag: Option<String>) -> PushSummary {
        PushSummary {
            repository: self.reference.name(),
            tag,
            manifest: self.manifest.to_string(),
            attestation: self.attestation.to_string(),
            attestation_found_by: match self.attached {
                Attached::ReferrersApi => "referrers API and cosign tag",
                Attached::TagSchema => "referrers tag schema and cosign tag",
            },
            blobs_sent: self.pushed.blobs_sent,
            bytes_sent: self.pushed.bytes_sent,
            image_bytes: self.pushed.image_bytes,
        }
    }
}

/// Exports release `digest` and pushes it to `reference`'s repository by
/// digest, with a statement signed by `key` about it.
pub async fn push_release(
    global: &Global,
    ws: &Workspace,
    digest: &Digest,
    reference: &Reference,
    key: &str,
    options: &ImageOptions,
    config: &RegistryConfig,
) -> Result<PushedImage> {
    let key = cairn_keyring::load_signing(&cairn_keyring::keys_dir(global.keys.clone())?, key)?;
    let loaded = load(ws, digest).await?;
    let scratch = ws.fs.cache_dir().join("oci-export");
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let tmp = tempfile::tempdir_in(&scratch)
        .with_context(|| format!("creating a directory in {}", scratch.display()))?;
    let out = tmp.path().join("image");
    let (exported, base) = export_release(ws, digest, &loaded, options, config, &out).await?;
    let layout = Layout::open(&out)?;
    let registry = Registry::new(reference, config, true);
    registry.ping().await?;
    let pushed = cairn_oci::push_image(&registry, &layout, &exported.manifest).await?;
    let statement = image_statement(
        &reference.name(),
        &exported.manifest,
        &loaded.release,
        digest,
        base.as_ref(),
    );
    let mut envelope = statement.to_envelope();
    envelope.sign(&key);
    let art = attestation_artifact(envelope.to_json(), &exported.manifest);
    for blob in [&art.config, &art.envelope] {
        let d = Digest::of(blob);
        let path = layout.blob_path(&d);
        std::fs::write(&path, blob).with_context(|| format!("writing {}", path.display()))?;
        registry.push_blob(&d, &path).await?;
    }
    let attached = registry
        .attach(&exported.manifest, &art.manifest, cairn_oci::media::IN_TOTO)
        .await?;
    registry
        .put_manifest(
            &cosign_tag(&exported.manifest),
            cairn_oci::media::OCI_MANIFEST,
            &art.manifest,
        )
        .await?;
    Ok(PushedImage {
        manifest_bytes: layout.read_blob(&exported.manifest)?,
        registry,
        reference: reference.clone(),
        manifest: exported.manifest,
        attestation: Digest::of(&art.manifest),
        attached,
        pushed,
        version: loaded.release.version,
    })
}

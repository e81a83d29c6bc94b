//! `cairn image verify REF --policy FILE`: finds the image's attestations
//! (referrers API, its tag-schema fallback, and cosign's `.att` tag) and
//! accepts the image when one is signed by enough keys of a channel of the
//! policy, about this very manifest, for that channel's service — the same
//! policy file and the same key and threshold rules as `channel verify`
//! (`cairn_trust::verify_attestation`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use cairn_digest::Digest;
use cairn_oci::attest::cosign_tag;
use cairn_oci::spec::Manifest;
use cairn_oci::{media, Layout, Reference, Registry, RegistryConfig};
use cairn_trust::{verify_attestation, Envelope, TrustPolicy};
use serde::Serialize;

use crate::cli::Global;
use crate::output::{emit, name};

#[derive(Serialize)]
struct Accepted {
    accepted: bool,
    image: String,
    manifest: String,
    service: String,
    channel: String,
    release: String,
    signed_by: Vec<String>,
}

/// Runs `cairn image verify`.
pub async fn run(
    global: &Global,
    reference: &str,
    policy_path: &Path,
    channel: Option<&str>,
    config: &RegistryConfig,
) -> Result<i32> {
    let text = std::fs::read_to_string(policy_path)
        .with_context(|| format!("reading trust policy {}", policy_path.display()))?;
    let policy = TrustPolicy::parse(&text, &policy_path.display().to_string())?;
    let entries: Vec<_> = policy
        .channels
        .iter()
        .filter(|c| channel.is_none_or(|ch| c.channel == ch))
        .collect();
    if entries.is_empty() {
        bail!(
            "trust policy {} has no [[channel]] entry{}",
            policy_path.display(),
            channel
                .map(|c| format!(" for channel {c}"))
                .unwrap_or_default()
        );
    }
    let keys = cairn_keyring::public_keys(&cairn_keyring::keys_dir(global.keys.clone())?)?;
    let reference = Reference::parse(reference)?;
    let registry = Registry::new(&reference, config, false);
    let manifest = manifest_digest(&registry, &reference).await?;
    let envelopes = attestations(&registry, &manifest).await?;
    if envelopes.is_empty() {
        bail!(
            "refused image {reference}: no attestation of {manifest} found (referrers, {} or {})",
            cairn_oci::registry::referrers::fallback_tag(&manifest),
            cosign_tag(&manifest)
        );
    }
    let mut first_refusal = None;
    for envelope in &envelopes {
        for entry in &entries {
            match verify_attestation(envelope, entry, &keys, &manifest) {
                Ok(statement) => {
                    let params = &statement.predicate.build_definition.external_parameters;
                    let check = envelope.check(&keys);
                    let out = Accepted {
                        accepted: true,
                        image: reference.to_string(),
                        manifest: manifest.to_string(),
                        service: entry.service.clone(),
                        channel: entry.channel.clone(),
                        release: params
                            .get("release")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        signed_by: check
                            .valid
                            .iter()
                            .filter(|k| entry.trusts(k))
                            .map(|k| k.to_string())
                            .collect(),
                    };
                    emit(global.json, &out, |o| {
                        format!(
                            "accepted: {} ({}) -> release {} for {}/{}",
                            o.image,
                            o.manifest,
                            // The attestation's text: shown escaped.
                            name(&o.release),
                            o.service,
                            o.channel
                        )
                    });
                    return Ok(0);
                }
                Err(r) => {
                    first_refusal
                        .get_or_insert(format!("{}/{}: {r}", entry.service, entry.channel));
                }
            }
        }
    }
    bail!(
        "refused image {reference} ({manifest}): {}",
        first_refusal.unwrap_or_default()
    )
}

/// The manifest digest `reference` names (checked against its bytes).
async fn manifest_digest(registry: &Registry, reference: &Reference) -> Result<Digest> {
    let name = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_owned(),
    };
    let Some((bytes, _)) = registry.get_manifest(&name).await? else {
        bail!("{reference}: the registry has no manifest {name}");
    };
    let got = Digest::of(&bytes);
    if let Some(d) = &reference.digest {
        if got.hash() != &d.hash {
            bail!("{reference}: the registry's manifest hashes to {got}");
        }
    }
    Ok(got)
}

/// Every DSSE envelope attached to `manifest` that could be fetched and
/// parsed (verified against its digest).
async fn attestations(registry: &Registry, manifest: &Digest) -> Result<Vec<Envelope>> {
    let mut names: Vec<String> = registry
        .referrers(manifest, media::IN_TOTO)
        .await?
        .into_iter()
        .map(|d| d.digest)
        .collect();
    names.push(cosign_tag(manifest));
    names.dedup();
    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let layout = Layout::create(scratch.path())?;
    let mut out = Vec::new();
    for name in names {
        let Some((bytes, _)) = registry.get_manifest(&name).await? else {
            continue;
        };
        if name.starts_with("sha256:") && Digest::of(&bytes).to_string() != name {
            bail!(
                "{}: attestation manifest {name} does not match its digest",
                registry.name()
            );
        }
        let Ok(parsed) = serde_json::from_slice::<Manifest>(&bytes) else {
            continue;
        };
        for layer in parsed
            .layers
            .iter()
            .filter(|l| l.media_type == media::DSSE_ENVELOPE)
        {
            let digest = layer.blob_digest()?;
            registry.fetch_blob(&digest, &layout).await?;
            if let Ok(envelope) = Envelope::from_json(&layout.read_blob(&digest)?) {
                if !out.contains(&envelope) {
                    out.push(envelope);
                }
            }
        }
    }
    Ok(out)
}

//! Whether a rollout record's claim of a newer statement is signed.
//!
//! The rollout record is anyone's to write who may write the store, and
//! agents trust signatures, never the store. A record naming a statement
//! sequence above the one this agent accepted would make it wait for that
//! statement; it is believed only if the statement it carries (the
//! channel's signed envelope, copied in by the agent that created the
//! rollout) verifies against this agent's own policy and keys, is newer
//! than what it accepted, and names the record's target and sequence.
//! Otherwise `cairn_rollout::decide` replaces the record with the
//! accepted statement's rollout.
//!
//! A `fleet` gate reads another set's rollout record the same way
//! ([`Trust::check_gate`]): its statement must verify against this
//! agent's own keys and threshold, for the gate's service, and name the
//! record's target and sequence; otherwise the gate stays closed, with
//! the reason in the record's `gates`.

use cairn_rollout::{Attempt, RolloutRecord};
use cairn_trust::{verify_channel, ChannelPolicy, ChannelStatement, Document, Envelope, KeySet};
use time::OffsetDateTime;

/// This agent's trust, for checking what a record claims.
#[derive(Clone, Debug)]
pub struct Trust {
    /// The channel's policy entry.
    pub policy: ChannelPolicy,
    /// The public keys it names.
    pub keys: KeySet,
}

/// Why a record's claim is not believed.
#[derive(Debug, thiserror::Error)]
pub enum Unbacked {
    /// It carries no statement.
    #[error("it carries no signed statement")]
    Missing,
    /// What it carries is not an envelope.
    #[error("its statement is not a signed envelope: {0}")]
    NotAnEnvelope(String),
    /// The statement does not verify.
    #[error("its statement is refused: {0}")]
    Refused(#[source] cairn_trust::Refusal),
    /// The statement verifies but names something else.
    #[error("its statement names release {release} #{sequence}")]
    Other {
        /// The release the statement names.
        release: cairn_digest::Digest,
        /// Its sequence.
        sequence: u64,
    },
}

impl Trust {
    /// The statement `rec` carries, as the release and sequence it names,
    /// if it verifies, is newer than `accepted` and names `rec`'s target
    /// and sequence.
    pub fn check(
        &self,
        rec: &RolloutRecord,
        accepted: u64,
        now: OffsetDateTime,
    ) -> Result<Attempt, Unbacked> {
        let text = rec.statement.as_deref().ok_or(Unbacked::Missing)?;
        let envelope = Envelope::from_json(text.as_bytes())
            .map_err(|e| Unbacked::NotAnEnvelope(e.to_string()))?;
        let verified = verify_channel(&envelope, &self.policy, &self.keys, Some(accepted), now)
            .map_err(Unbacked::Refused)?;
        let (release, sequence) = (verified.statement.release, verified.statement.sequence);
        if release != rec.target || sequence != rec.sequence {
            return Err(Unbacked::Other { release, sequence });
        }
        Ok(Attempt { release, sequence })
    }

    /// The statement another set's rollout record `rec` carries (the set
    /// of service `service` a `fleet` gate waits on), if it verifies
    /// against this agent's keys and threshold, for `service` (on
    /// whichever channel it names), and names `rec`'s target and
    /// sequence.
    pub fn check_gate(
        &self,
        rec: &RolloutRecord,
        service: &str,
        now: OffsetDateTime,
    ) -> Result<Attempt, Unbacked> {
        let text = rec.statement.as_deref().ok_or(Unbacked::Missing)?;
        let envelope = Envelope::from_json(text.as_bytes())
            .map_err(|e| Unbacked::NotAnEnvelope(e.to_string()))?;
        // The channel it names (unverified yet: verifying checks it is
        // what was signed).
        let claimed = ChannelStatement::from_payload(&envelope.payload)
            .map_err(|e| Unbacked::NotAnEnvelope(e.to_string()))?;
        let policy = ChannelPolicy {
            service: service.to_string(),
            channel: claimed.channel,
            ..self.policy.clone()
        };
        let verified =
            verify_channel(&envelope, &policy, &self.keys, None, now).map_err(Unbacked::Refused)?;
        let (release, sequence) = (verified.statement.release, verified.statement.sequence);
        if release != rec.target || sequence != rec.sequence {
            return Err(Unbacked::Other { release, sequence });
        }
        Ok(Attempt { release, sequence })
    }
}

#[cfg(test)]
mod tests {
    use cairn_digest::Digest;
    use cairn_trust::{ChannelStatement, Document, SigningKey};

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(NOW).unwrap()
    }

    fn trusted() -> SigningKey {
        SigningKey::from_seed(&[1; 32])
    }

    fn trust() -> Trust {
        let mut keys = KeySet::new();
        keys.insert(trusted().public_key());
        Trust {
            policy: ChannelPolicy {
                service: "svc".into(),
                channel: "prod".into(),
                keys: vec![trusted().key_id()],
                threshold: 1,
            },
            keys,
        }
    }

    fn signed(key: &SigningKey, release: Digest, sequence: u64) -> String {
        let statement = ChannelStatement {
            service: "svc".into(),
            channel: "prod".into(),
            release,
            sequence,
            previous: None,
            expires: now() + time::Duration::days(1),
            issued: None,
        };
        let mut envelope = statement.to_envelope();
        envelope.sign(key);
        String::from_utf8(envelope.to_json()).unwrap()
    }

    fn claim(release: Digest, sequence: u64, statement: Option<String>) -> RolloutRecord {
        let json = serde_json::json!({
            "target": release, "sequence": sequence, "statement": statement,
            "strategy": cairn_rollout::Plan::default(), "phase": "rolling",
            "capacity": 1, "lease": 60, "created": NOW, "updated": NOW,
        });
        RolloutRecord::parse("rollout", json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_claim_is_believed_only_with_a_trusted_signed_statement_naming_it() {
        let (r5, r6) = (Digest::of(b"release 5"), Digest::of(b"release 6"));
        let t = trust();
        let good = claim(r6, 6, Some(signed(&trusted(), r6, 6)));
        let backed = t.check(&good, 5, now()).unwrap();
        assert_eq!((backed.release, backed.sequence), (r6, 6));

        let rogue = SigningKey::from_seed(&[3; 32]);
        let refusals = [
            (claim(r6, 6, None), "no signed statement"),
            (claim(r6, 6, Some("{}".into())), "not a signed envelope"),
            (claim(r6, 6, Some(signed(&rogue, r6, 6))), "refused"),
            // Signed, but for another release or sequence than claimed.
            (
                claim(r6, 6, Some(signed(&trusted(), r5, 6))),
                "names release",
            ),
            (
                claim(r6, 9, Some(signed(&trusted(), r6, 6))),
                "names release",
            ),
        ];
        for (rec, why) in refusals {
            let e = t.check(&rec, 5, now()).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        // Signed, but not newer than what the agent accepted.
        assert!(matches!(
            t.check(&good, 6, now()),
            Err(Unbacked::Refused(_))
        ));
        // Expired by the agent's clock.
        let later = now() + time::Duration::days(2);
        assert!(matches!(
            t.check(&good, 5, later),
            Err(Unbacked::Refused(_))
        ));
    }

    #[test]
    fn a_gated_sets_record_is_believed_only_with_a_trusted_statement_for_its_service() {
        // `signed` makes statements of service "svc"; the gate waits on it.
        let r6 = Digest::of(b"release 6");
        let t = trust();
        let good = claim(r6, 6, Some(signed(&trusted(), r6, 6)));
        let backed = t.check_gate(&good, "svc", now()).unwrap();
        assert_eq!((backed.release, backed.sequence), (r6, 6));
        // Any sequence: the gate keeps no mark of another set's channel.
        assert!(t.check_gate(&good, "svc", now()).is_ok());

        let rogue = SigningKey::from_seed(&[3; 32]);
        let refusals = [
            (claim(r6, 6, None), "svc", "no signed statement"),
            (claim(r6, 6, Some(signed(&rogue, r6, 6))), "svc", "refused"),
            (
                claim(r6, 6, Some(signed(&trusted(), Digest::of(b"5"), 6))),
                "svc",
                "names release",
            ),
            // Signed by a trusted key, but another service's statement.
            (good.clone(), "db", "refused"),
        ];
        for (rec, service, why) in refusals {
            let e = t.check_gate(&rec, service, now()).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
    }
}

//! Trust policies: which keys, and how many of them, a channel needs.
//!
//! An agent's policy is a TOML file:
//!
//! ```toml
//! [[channel]]
//! service = "hello"
//! channel = "prod"
//! keys = ["ed25519:…", "ed25519:…"]   # key ids as `cairn key generate` prints them
//! threshold = 2
//! ```
//!
//! Parsing is strict (`deny_unknown_fields`, key ids and names validated,
//! `1 <= threshold <= keys.len()`, no repeated key, no repeated channel) so
//! a typo fails when the agent starts rather than silently trusting less or
//! more. The caller reads the file and passes its name for error messages;
//! TOML syntax errors carry line and column.
//!
//! Policies need not be written by hand: [`TrustPolicy::add`] adds keys to
//! a channel's entry (creating it) and [`TrustPolicy::to_toml`] writes the
//! file back, each key id followed by its name as a comment where the
//! caller knows it (`cairn policy add`).

use std::collections::BTreeSet;

use crate::document::validate_name;
use crate::key::KeyId;

/// A whole trust policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicy {
    /// One entry per (service, channel).
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelPolicy>,
}

/// The keys trusted for one channel of one service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPolicy {
    /// The service name.
    pub service: String,
    /// The channel name.
    pub channel: String,
    /// Key ids whose signatures count.
    pub keys: Vec<KeyId>,
    /// How many distinct keys of `keys` must sign.
    pub threshold: usize,
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file is not valid TOML of the policy's shape.
    #[error("{file}: {source}")]
    Toml {
        /// The file name given by the caller.
        file: String,
        /// The TOML error (its message includes line and column).
        #[source]
        source: toml::de::Error,
    },
    /// A `[[channel]]` entry breaks a rule.
    #[error("{file}: [[channel]] entry #{index} ({service}/{channel}): {reason}")]
    Invalid {
        /// The file name given by the caller.
        file: String,
        /// 1-based position of the entry.
        index: usize,
        /// Its service.
        service: String,
        /// Its channel.
        channel: String,
        /// The broken rule.
        reason: String,
    },
}

impl TrustPolicy {
    /// Parses and validates policy `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, PolicyError> {
        let policy: Self = toml::from_str(text).map_err(|source| PolicyError::Toml {
            file: file.to_owned(),
            source,
        })?;
        let mut seen = BTreeSet::new();
        for (i, entry) in policy.channels.iter().enumerate() {
            let first = seen.insert((&entry.service, &entry.channel));
            let reason = match entry.problem() {
                Some(reason) => reason,
                None if !first => "the same service and channel appear twice".into(),
                None => continue,
            };
            return Err(PolicyError::Invalid {
                file: file.to_owned(),
                index: i + 1,
                service: entry.service.clone(),
                channel: entry.channel.clone(),
                reason,
            });
        }
        Ok(policy)
    }

    /// Adds `keys` to the entry for `service`/`channel`, creating it, and
    /// sets its threshold (`None`: keep the entry's, or 1 for a new one).
    /// Keys already there are not repeated. The result must be a valid
    /// entry; `file` names the policy in errors.
    pub fn add(
        &mut self,
        service: &str,
        channel: &str,
        keys: &[KeyId],
        threshold: Option<usize>,
        file: &str,
    ) -> Result<(), PolicyError> {
        let index = match self
            .channels
            .iter()
            .position(|c| c.service == service && c.channel == channel)
        {
            Some(i) => i,
            None => {
                self.channels.push(ChannelPolicy {
                    service: service.into(),
                    channel: channel.into(),
                    keys: Vec::new(),
                    threshold: 1,
                });
                self.channels.len() - 1
            }
        };
        let entry = &mut self.channels[index];
        for key in keys {
            if !entry.keys.contains(key) {
                entry.keys.push(key.clone());
            }
        }
        if let Some(t) = threshold {
            entry.threshold = t;
        }
        match entry.problem() {
            None => Ok(()),
            Some(reason) => Err(PolicyError::Invalid {
                file: file.to_owned(),
                index: index + 1,
                service: service.into(),
                channel: channel.into(),
                reason,
            }),
        }
    }

    /// The policy as a TOML file that [`parse`](Self::parse) reads back,
    /// each key id followed by `# NAME` where `name_of` knows it.
    pub fn to_toml(&self, name_of: impl Fn(&KeyId) -> Option<String>) -> String {
        let quote = |s: &str| serde_json::to_string(s).expect("strings serialize");
        let mut out = String::from(
            "# Trust policy: the keys whose signatures count for each channel, and\n\
             # how many of them must sign. Written by `cairn policy add`.\n",
        );
        for c in &self.channels {
            out.push_str(&format!(
                "\n[[channel]]\nservice = {}\nchannel = {}\nkeys = [\n",
                quote(&c.service),
                quote(&c.channel)
            ));
            for key in &c.keys {
                let comment = name_of(key)
                    .map(|n| format!("  # {}", n.replace('\n', " ")))
                    .unwrap_or_default();
                out.push_str(&format!("  {},{comment}\n", quote(key.as_str())));
            }
            out.push_str(&format!("]\nthreshold = {}\n", c.threshold));
        }
        out
    }

    /// The entry for `service`/`channel`, if the policy has one.
    pub fn entry(&self, service: &str, channel: &str) -> Option<&ChannelPolicy> {
        self.channels
            .iter()
            .find(|c| c.service == service && c.channel == channel)
    }
}

impl ChannelPolicy {
    /// Whether `id` is one of this channel's keys.
    pub fn trusts(&self, id: &KeyId) -> bool {
        self.keys.contains(id)
    }

    /// The rule this entry breaks, if any: names valid, no key twice,
    /// `1 <= threshold <= keys.len()`. Every policy entry, whether read
    /// from a policy file or from an agent's `[trust]`, is checked here.
    pub fn problem(&self) -> Option<String> {
        if let Err(e) = validate_name("service", &self.service) {
            return Some(e.to_string());
        }
        if let Err(e) = validate_name("channel", &self.channel) {
            return Some(e.to_string());
        }
        let distinct: BTreeSet<_> = self.keys.iter().collect();
        if distinct.len() != self.keys.len() {
            return Some("a key id is listed twice".into());
        }
        if self.threshold == 0 || self.threshold > self.keys.len() {
            return Some(format!(
                "threshold {} must be between 1 and the number of keys ({})",
                self.threshold,
                self.keys.len()
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{KEY_A_ID, KEY_B_ID};

    const FILE: &str = "trust.toml";

    fn one_entry(keys: &str, threshold: usize) -> String {
        format!(
            "[[channel]]\nservice = \"hello\"\nchannel = \"prod\"\nkeys = [{keys}]\nthreshold = {threshold}\n"
        )
    }

    #[test]
    fn parses_the_design_example() {
        let text = one_entry(&format!("\"{KEY_A_ID}\", \"{KEY_B_ID}\""), 2);
        let policy = TrustPolicy::parse(&text, FILE).unwrap();
        let entry = policy.entry("hello", "prod").unwrap();
        assert_eq!(entry.threshold, 2);
        assert!(entry.trusts(&KEY_B_ID.parse().unwrap()));
        assert!(policy.entry("hello", "staging").is_none());
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = TrustPolicy::parse("[[channel]]\nservice = \n", FILE).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("trust.toml: "), "{text}");
        assert!(text.contains("line 2, column"), "{text}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = one_entry(&format!("\"{KEY_A_ID}\""), 1) + "treshold = 1\n";
        let err = TrustPolicy::parse(&text, FILE).unwrap_err().to_string();
        assert!(err.contains("unknown field `treshold`"), "{err}");
    }

    #[test]
    fn bad_key_ids_are_refused() {
        let err = TrustPolicy::parse(&one_entry("\"ed25519:xyz\"", 1), FILE).unwrap_err();
        assert!(err.to_string().contains("ed25519:xyz"), "{err}");
    }

    #[test]
    fn threshold_must_fit_the_keys() {
        for (keys, threshold) in [
            (format!("\"{KEY_A_ID}\""), 0),
            (format!("\"{KEY_A_ID}\""), 2),
        ] {
            let err = TrustPolicy::parse(&one_entry(&keys, threshold), FILE).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("entry #1 (hello/prod): threshold"), "{text}");
        }
    }

    #[test]
    fn repeated_keys_and_channels_are_refused() {
        let twice = one_entry(&format!("\"{KEY_A_ID}\", \"{KEY_A_ID}\""), 2);
        let err = TrustPolicy::parse(&twice, FILE).unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
        let entry = one_entry(&format!("\"{KEY_A_ID}\""), 1);
        let err = TrustPolicy::parse(&(entry.clone() + &entry), FILE).unwrap_err();
        assert!(err.to_string().contains("entry #2"), "{err}");
    }

    #[test]
    fn add_writes_a_policy_that_parses_back() {
        let (a, b) = (
            KEY_A_ID.parse::<KeyId>().unwrap(),
            KEY_B_ID.parse::<KeyId>().unwrap(),
        );
        let mut policy = TrustPolicy::default();
        policy
            .add("hello", "prod", std::slice::from_ref(&a), None, FILE)
            .unwrap();
        policy
            .add("hello", "prod", &[a.clone(), b.clone()], Some(2), FILE)
            .unwrap();
        policy
            .add("hello", "staging", std::slice::from_ref(&b), None, FILE)
            .unwrap();
        let text = policy.to_toml(|k| (k == &a).then(|| "ci".to_string()));
        assert!(text.contains(&format!("\"{KEY_A_ID}\",  # ci")), "{text}");
        let back = TrustPolicy::parse(&text, FILE).unwrap();
        assert_eq!(back, policy);
        let prod = back.entry("hello", "prod").unwrap();
        assert_eq!((prod.keys.len(), prod.threshold), (2, 2));

        let err = policy.add("hello", "prod", &[], Some(3), FILE).unwrap_err();
        assert!(err.to_string().contains("threshold 3"), "{err}");
        let err = TrustPolicy::default().add("hello", "prod", &[], None, FILE);
        assert!(err.is_err(), "an entry without keys");
    }

    #[test]
    fn bad_names_are_refused() {
        let text = one_entry(&format!("\"{KEY_A_ID}\""), 1).replace("prod", "pr od");
        let err = TrustPolicy::parse(&text, FILE).unwrap_err().to_string();
        assert!(err.contains("channel name \"pr od\""), "{err}");
    }
}

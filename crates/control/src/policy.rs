//! Policies: central rules for how the nodes a label selector matches may use their network
//! and disks ([`Policy`], [`Rules`]), and the rules a node is under when several match it
//! ([`effective`]).
//!
//! The default, with no policy, is to share without limits: no caps, no tit-for-tat. A policy
//! is the exception an admin makes for some hosts (metered or VPN links upload nothing or
//! little; a small disk gets a quota). Where several policies match a node, each rule takes
//! the strictest value any of them sets, so the outcome does not depend on their order or
//! names, and adding a policy can only tighten what a node may do.

use std::collections::BTreeMap;

use shoal_bencode::{Dict, Value};

use crate::Labels;
use crate::placement::PlacementName;
use crate::record::{self, Fields, RecordError, uint};
use crate::selector::Selector;

/// The stored record's format number.
const FORMAT: i64 = 1;

/// The most policies a control plane holds.
pub const MAX_POLICIES: usize = 1000;

/// A policy's name: the same grammar as a placement's (a DNS label).
pub type PolicyName = PlacementName;

/// What a policy limits. `None` leaves a rule to other policies (or unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// Upload cap in bytes per second over all of a node's transfers. `Some(0)`: the node
    /// uploads nothing (leech-only), yet downloads what it is assigned.
    pub upload_rate: Option<u64>,
    /// Download cap in bytes per second over all of a node's transfers.
    pub download_rate: Option<u64>,
    /// The most peers a node keeps per artifact.
    pub max_peers: Option<u32>,
    /// How long a node keeps seeding an artifact once no placement assigns it, in seconds.
    pub seed_retention_secs: Option<u64>,
    /// The most bytes of artifacts a node keeps: least recently used artifacts that no
    /// placement pins are evicted to stay under it, and an assignment that cannot fit fails
    /// with `quota`.
    pub quota_bytes: Option<u64>,
}

/// Why a policy's rules were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A policy that limits nothing is a mistake (a forgotten flag).
    #[error(
        "the policy sets no rule; give at least one of upload rate, download rate, max peers, \
         seed retention or quota"
    )]
    Empty,
    /// A node with no peers cannot download anything.
    #[error("max peers must be at least 1 (got 0)")]
    NoPeers,
    /// A quota of zero would evict everything and fail every assignment.
    #[error(
        "a quota of 0 would evict every artifact and fail every assignment; to keep artifacts \
         off these nodes, leave them out of the placements' selectors"
    )]
    NoQuota,
    /// A download cap of zero would stop every assignment: say so with the selector instead.
    #[error(
        "a download rate of 0 would stop every transfer; to keep artifacts off these nodes, \
         leave them out of the placement's selector"
    )]
    NoDownload,
}

impl Rules {
    /// Checks the rules make sense on their own.
    ///
    /// # Errors
    /// [`RulesError`] saying which rule is wrong.
    pub fn validate(&self) -> Result<(), RulesError> {
        if *self == Self::default() {
            return Err(RulesError::Empty);
        }
        if self.max_peers == Some(0) {
            return Err(RulesError::NoPeers);
        }
        if self.download_rate == Some(0) {
            return Err(RulesError::NoDownload);
        }
        if self.quota_bytes == Some(0) {
            return Err(RulesError::NoQuota);
        }
        Ok(())
    }

    /// The strictest of `self` and `other`, rule by rule: the lower cap, the fewer peers,
    /// the shorter retention, the smaller quota.
    pub fn strictest(self, other: Self) -> Self {
        fn min<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Self {
            upload_rate: min(self.upload_rate, other.upload_rate),
            download_rate: min(self.download_rate, other.download_rate),
            max_peers: min(self.max_peers, other.max_peers),
            seed_retention_secs: min(self.seed_retention_secs, other.seed_retention_secs),
            quota_bytes: min(self.quota_bytes, other.quota_bytes),
        }
    }

    fn encode_into(&self, d: &mut Dict<'_>) {
        let fields = [
            (b"download rate".as_slice(), self.download_rate),
            (b"max peers".as_slice(), self.max_peers.map(u64::from)),
            (b"quota".as_slice(), self.quota_bytes),
            (b"seed retention".as_slice(), self.seed_retention_secs),
            (b"upload rate".as_slice(), self.upload_rate),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                d.insert(key, uint(value));
            }
        }
    }

    fn decode_from(top: &Fields<'_, '_>) -> Result<Self, RecordError> {
        Ok(Self {
            upload_rate: top.opt_uint("upload rate")?,
            download_rate: top.opt_uint("download rate")?,
            max_peers: top.opt_uint("max peers")?,
            seed_retention_secs: top.opt_uint("seed retention")?,
            quota_bytes: top.opt_uint("quota")?,
        })
    }
}

/// A policy: `rules` for every node `selector` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Its name, unique in the control plane.
    pub name: PolicyName,
    /// Which nodes it governs.
    pub selector: Selector,
    /// What it limits.
    pub rules: Rules,
    /// When it was last set, Unix milliseconds.
    pub updated_ms: u64,
    /// Who last set it (the caller's principal).
    pub updated_by: String,
}

impl Policy {
    /// The stored form: a canonical bencode dictionary.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Dict::new();
        d.insert(b"format".as_slice(), FORMAT);
        d.insert(b"name".as_slice(), self.name.as_str());
        d.insert(b"selector".as_slice(), self.selector.to_string());
        d.insert(b"updated".as_slice(), uint(self.updated_ms));
        d.insert(b"updated by".as_slice(), self.updated_by.as_str());
        self.rules.encode_into(&mut d);
        shoal_bencode::encode(&Value::Dict(d))
    }

    /// Reads a record written by [`Policy::encode`], validating every field.
    ///
    /// # Errors
    /// A [`RecordError`] naming the field that is missing, mistyped or invalid.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let dict = record::decode(bytes, FORMAT)?;
        let top = Fields::new(&dict, "");
        Ok(Self {
            name: top.parsed("name")?,
            selector: top.parsed("selector")?,
            rules: Rules::decode_from(&top)?,
            updated_ms: top.uint("updated")?,
            updated_by: top.str("updated by")?.to_owned(),
        })
    }
}

/// The rules a node with `labels` is under: the strictest value of each rule over every
/// policy that matches it, with the names of those policies in name order.
pub fn effective<'p>(
    policies: impl IntoIterator<Item = &'p Policy>,
    labels: &Labels,
) -> (Rules, Vec<PolicyName>) {
    let mut rules = Rules::default();
    let mut names = Vec::new();
    for policy in policies {
        if policy.selector.matches(labels) {
            rules = rules.strictest(policy.rules);
            names.push(policy.name.clone());
        }
    }
    names.sort();
    (rules, names)
}

/// The policies of a control plane, by name.
pub type PolicyTable = BTreeMap<PolicyName, Policy>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(items: &[&str]) -> Labels {
        Labels::parse(items.iter().copied()).expect("valid labels")
    }

    fn policy(name: &str, selector: &str, rules: Rules) -> Policy {
        Policy {
            name: name.parse().expect("name"),
            selector: selector.parse().expect("selector"),
            rules,
            updated_ms: 1_700_000_000_000,
            updated_by: "admin".to_owned(),
        }
    }

    #[test]
    fn the_strictest_value_of_each_rule_wins() {
        let metered = policy(
            "metered",
            "metered=true",
            Rules {
                upload_rate: Some(0),
                max_peers: Some(20),
                ..Rules::default()
            },
        );
        let eu = policy(
            "eu-links",
            "region=eu",
            Rules {
                upload_rate: Some(5_000_000),
                download_rate: Some(10_000_000),
                max_peers: Some(50),
                ..Rules::default()
            },
        );
        let small = policy(
            "small-disks",
            "disk=small",
            Rules {
                quota_bytes: Some(1 << 30),
                seed_retention_secs: Some(3600),
                ..Rules::default()
            },
        );
        let all = [metered, eu, small];

        let (rules, names) = effective(&all, &labels(&["region=eu", "metered=true"]));
        assert_eq!(
            rules,
            Rules {
                upload_rate: Some(0),
                download_rate: Some(10_000_000),
                max_peers: Some(20),
                ..Rules::default()
            }
        );
        let names: Vec<&str> = names.iter().map(PolicyName::as_str).collect();
        assert_eq!(names, ["eu-links", "metered"]);

        let (rules, names) = effective(&all, &labels(&["region=us"]));
        assert_eq!(rules, Rules::default(), "no policy: share without limits");
        assert!(names.is_empty());
    }

    #[test]
    fn rules_that_make_no_sense_are_refused() {
        assert_eq!(Rules::default().validate(), Err(RulesError::Empty));
        let zero_peers = Rules {
            max_peers: Some(0),
            ..Rules::default()
        };
        assert_eq!(zero_peers.validate(), Err(RulesError::NoPeers));
        let no_download = Rules {
            download_rate: Some(0),
            ..Rules::default()
        };
        assert_eq!(no_download.validate(), Err(RulesError::NoDownload));
        let no_quota = Rules {
            quota_bytes: Some(0),
            ..Rules::default()
        };
        assert_eq!(no_quota.validate(), Err(RulesError::NoQuota));
        let leech_only = Rules {
            upload_rate: Some(0),
            ..Rules::default()
        };
        assert_eq!(leech_only.validate(), Ok(()));
    }

    #[test]
    fn a_record_reads_back_as_written_and_names_a_bad_field() {
        let p = policy(
            "vpn",
            "net in (vpn,lte),!exempt",
            Rules {
                upload_rate: Some(1 << 20),
                quota_bytes: Some(5 << 30),
                ..Rules::default()
            },
        );
        assert_eq!(Policy::decode(&p.encode()), Ok(p.clone()));
        let bad = p.encode().replace_first(b"3:vpn", b"3:V!N");
        let e = Policy::decode(&bad).expect_err("bad name");
        assert!(e.to_string().contains("\"name\""), "{e}");
    }

    trait ReplaceFirst {
        fn replace_first(self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }

    impl ReplaceFirst for Vec<u8> {
        fn replace_first(self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let at = self
                .windows(from.len())
                .position(|w| w == from)
                .expect("pattern present");
            [&self[..at], to, &self[at + from.len()..]].concat()
        }
    }

    fn rules() -> impl Strategy<Value = Rules> {
        (
            proptest::option::of(0u64..10),
            proptest::option::of(1u64..10),
            proptest::option::of(1u32..10),
            proptest::option::of(0u64..10),
            proptest::option::of(0u64..10),
        )
            .prop_map(|(u, d, p, r, q)| Rules {
                upload_rate: u,
                download_rate: d,
                max_peers: p,
                seed_retention_secs: r,
                quota_bytes: q,
            })
    }

    proptest! {
        #[test]
        fn strictest_is_order_free_and_only_tightens(a in rules(), b in rules(), c in rules()) {
            prop_assert_eq!(a.strictest(b), b.strictest(a));
            prop_assert_eq!(a.strictest(b).strictest(c), a.strictest(b.strictest(c)));
            prop_assert_eq!(a.strictest(a), a);
            let both = a.strictest(b);
            let tighter = |x: Option<u64>, y: Option<u64>| match (x, y) {
                (Some(x), Some(y)) => x <= y,
                (Some(_), None) | (None, None) => true,
                (None, Some(_)) => false,
            };
            prop_assert!(tighter(both.upload_rate, a.upload_rate));
            prop_assert!(tighter(both.quota_bytes, b.quota_bytes));
        }
    }
}

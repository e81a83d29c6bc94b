//! The order members take their turns in.
//!
//! Every agent computes the same order from what it already knows (the
//! plan, the target and a member id), so the order is never stored: the
//! rollout record keeps only a cursor, the [`Position`] of the last member
//! given its turn. Hashing the target into the order means each release
//! picks different canaries, so a release that only breaks on some
//! machines is not always tried on the same one first; a pinned order
//! puts named members first, in the order given.

use cairn_digest::Digest;

use crate::plan::{Order, Plan};
use crate::record::Position;

/// `member`'s place in the turn order of a rollout of `target`.
pub fn position(plan: &Plan, target: &Digest, member: &str) -> Position {
    let rank = match &plan.order {
        Order::Pinned(ids) => ids
            .iter()
            .position(|m| m == member)
            .and_then(|i| u32::try_from(i).ok())
            .unwrap_or(u32::MAX),
        Order::Hashed => u32::MAX,
    };
    Position {
        rank,
        hash: mix(target, member),
        member: member.to_string(),
    }
}

/// A 64-bit hash of the target's hash and the member id: FNV-1a, then
/// SplitMix64's finalizer to spread it. Not cryptographic (nothing here
/// is secret or adversarial: a member cannot pick its own id to go
/// first any more than it can skip the rollout), but fixed forever, fast
/// enough to order ten thousand members every round, and identical on
/// every agent.
pub(crate) fn mix(target: &Digest, member: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in target.hash().iter().chain(member.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `members` sorted into turn order.
pub fn in_order(plan: &Plan, target: &Digest, members: &[String]) -> Vec<Position> {
    keys(plan, target, members)
        .into_iter()
        .map(Key::position)
        .collect()
}

/// A member's place in the order, borrowing its id (sorting a large set
/// copies no strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key<'m>(pub u32, pub u64, pub &'m str);

impl Key<'_> {
    /// The owned [`Position`].
    pub fn position(self) -> Position {
        Position {
            rank: self.0,
            hash: self.1,
            member: self.2.to_string(),
        }
    }

    /// Whether this member comes after `p`.
    pub fn after(&self, p: &Position) -> bool {
        (self.0, self.1, self.2) > (p.rank, p.hash, p.member.as_str())
    }
}

/// The keys of `members`, sorted into turn order.
pub(crate) fn keys<'m>(plan: &Plan, target: &Digest, members: &'m [String]) -> Vec<Key<'m>> {
    let mut all: Vec<Key<'m>> = members
        .iter()
        .map(|m| {
            let p = position(plan, target, m);
            Key(p.rank, p.hash, m.as_str())
        })
        .collect();
    all.sort_unstable();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("host-{i}")).collect()
    }

    #[test]
    fn the_order_is_shared_and_changes_with_the_release() {
        let plan = Plan::default();
        let (a, b) = (Digest::of(b"release a"), Digest::of(b"release b"));
        let members = ids(50);
        let first = |t: Digest| in_order(&plan, &t, &members)[0].member.clone();
        assert_eq!(first(a), first(a));
        let firsts: std::collections::BTreeSet<String> = (0..20)
            .map(|i| first(Digest::of(format!("release {i}").as_bytes())))
            .collect();
        assert!(firsts.len() > 5, "20 releases chose {firsts:?}");
        assert_ne!(in_order(&plan, &a, &members), in_order(&plan, &b, &members));
    }

    #[test]
    fn pinned_members_go_first_in_the_given_order() {
        let plan = Plan {
            order: Order::Pinned(vec!["host-7".into(), "host-2".into()]),
            ..Plan::default()
        };
        let order = in_order(&plan, &Digest::of(b"r"), &ids(10));
        assert_eq!(order[0].member, "host-7");
        assert_eq!(order[1].member, "host-2");
        assert!(order[2..].iter().all(|p| p.rank == u32::MAX));
    }
}

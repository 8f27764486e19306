//! The storage quota a policy sets on a node: which artifacts to evict, least recently used
//! first, so that what is assigned fits, and when to give up instead.
//!
//! Pure decisions over a list of what the node holds; the assignment executor gathers the
//! list and carries the answer out. Rules:
//! - an artifact an active placement assigns to this node, or one in use (a retrieve copying
//!   it out, the post-completion action reading it), is pinned: never evicted;
//! - an artifact still downloading is never evicted (someone is waiting for it);
//! - to make room for a new assignment, complete unpinned artifacts go in least-recently-used
//!   order, and only as many as needed; if evicting every one of them would still not make
//!   room, nothing is evicted and the assignment fails with `quota` (evicting and fetching in
//!   turn would thrash without ever fitting).

/// One artifact the node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    /// Its content id.
    pub id: String,
    /// Its size in bytes (the whole artifact, even while downloading: it is on its way).
    pub bytes: u64,
    /// When it was last used, Unix milliseconds.
    pub last_used_ms: u64,
    /// An active placement assigns it to this node, or something reads it right now.
    pub pinned: bool,
    /// Every byte is verified (only complete artifacts are evicted).
    pub complete: bool,
}

impl Held {
    fn evictable(&self) -> bool {
        !self.pinned && self.complete
    }
}

/// What to do about one new artifact under a quota.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Room {
    /// It fits after evicting these (possibly none), in this order.
    Fits {
        /// Content ids to evict.
        evict: Vec<String>,
    },
    /// It cannot fit even with every evictable artifact gone.
    Cannot {
        /// The bytes the node would need to hold.
        needed: u64,
        /// Bytes held that cannot be evicted (pinned or downloading).
        kept: u64,
    },
}

/// Makes room for `incoming` bytes under `quota`, given what the node holds.
pub(crate) fn make_room(held: &[Held], incoming: u64, quota: u64) -> Room {
    let used: u64 = held.iter().map(|h| h.bytes).sum();
    let kept: u64 = held
        .iter()
        .filter(|h| !h.evictable())
        .map(|h| h.bytes)
        .sum();
    let needed = kept.saturating_add(incoming);
    if needed > quota {
        return Room::Cannot { needed, kept };
    }
    Room::Fits {
        evict: evict_until(held, used.saturating_add(incoming), quota),
    }
}

/// Brings what the node holds back under `quota` (after the quota was lowered), evicting
/// least recently used first; as close as it can get when pinned artifacts alone are over it.
pub(crate) fn trim(held: &[Held], quota: u64) -> Vec<String> {
    evict_until(held, held.iter().map(|h| h.bytes).sum(), quota)
}

/// The evictable artifacts to drop, least recently used first (ties by id, so the order is
/// stable), until `total` bytes are down to `quota` or none is left.
fn evict_until(held: &[Held], mut total: u64, quota: u64) -> Vec<String> {
    let mut candidates: Vec<&Held> = held.iter().filter(|h| h.evictable()).collect();
    candidates.sort_by(|a, b| a.last_used_ms.cmp(&b.last_used_ms).then(a.id.cmp(&b.id)));
    let mut evict = Vec::new();
    for h in candidates {
        if total <= quota {
            break;
        }
        total -= h.bytes;
        evict.push(h.id.clone());
    }
    evict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: &str, bytes: u64, last_used_ms: u64, pinned: bool) -> Held {
        Held {
            id: id.to_owned(),
            bytes,
            last_used_ms,
            pinned,
            complete: true,
        }
    }

    #[test]
    fn room_is_made_least_recently_used_first_and_no_more_than_needed() {
        let node = [
            held("newest", 10, 300, false),
            held("oldest", 10, 100, false),
            held("middle", 10, 200, false),
        ];
        assert_eq!(
            make_room(&node, 10, 40),
            Room::Fits { evict: vec![] },
            "it fits as it is"
        );
        assert_eq!(
            make_room(&node, 15, 40),
            Room::Fits {
                evict: vec!["oldest".to_owned()]
            }
        );
        assert_eq!(
            make_room(&node, 25, 40),
            Room::Fits {
                evict: vec!["oldest".to_owned(), "middle".to_owned()]
            }
        );
    }

    #[test]
    fn pinned_and_downloading_artifacts_are_never_evicted() {
        let mut downloading = held("downloading", 10, 50, false);
        downloading.complete = false;
        let node = [
            held("pinned-old", 10, 1, true),
            downloading,
            held("free", 10, 500, false),
        ];
        assert_eq!(
            make_room(&node, 10, 30),
            Room::Fits {
                evict: vec!["free".to_owned()]
            }
        );
        assert_eq!(trim(&node, 5), vec!["free".to_owned()]);
    }

    #[test]
    fn what_cannot_fit_evicts_nothing() {
        let node = [held("pinned", 20, 1, true), held("free", 10, 2, false)];
        assert_eq!(
            make_room(&node, 15, 30),
            Room::Cannot {
                needed: 35,
                kept: 20
            }
        );
    }

    #[test]
    fn a_lowered_quota_trims_in_lru_order() {
        let node = [
            held("a", 10, 3, false),
            held("b", 10, 1, false),
            held("c", 10, 2, true),
            held("d", 10, 4, false),
        ];
        assert_eq!(trim(&node, 30), vec!["b".to_owned()]);
        assert_eq!(trim(&node, 25), vec!["b".to_owned(), "a".to_owned()]);
        assert_eq!(
            trim(&node, 10),
            vec!["b".to_owned(), "a".to_owned(), "d".to_owned()]
        );
        assert!(trim(&node, 40).is_empty());
    }
}

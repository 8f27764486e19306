//! Placements: an admin's standing order that an artifact be on every node a label selector
//! matches ([`Placement`]), and the progress of one placement across its nodes
//! ([`PlacementProgress`]).
//!
//! A placement is declarative. The control plane keeps it true: a node that matches now is
//! assigned the artifact, a node that registers later (or whose labels change) and matches
//! is assigned it then, a node that stops matching is no longer assigned it. Agents carry
//! assignments out without asking and report what happened; they do not choose.
//!
//! [`PlacementProgress`] keeps, for one placement, the state of each target node and the
//! totals over them, updated as reports arrive, so the aggregate costs the same for 10 nodes
//! or 10,000 and per-node detail is read a page at a time.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::str::FromStr;

use shoal_bencode::{Dict, Value};

use crate::nodes::NodeId;
use crate::record::{self, Fields, RecordError, uint};
use crate::selector::Selector;
use crate::{Labels, NameTag};

/// The stored record's format number.
const FORMAT: i64 = 1;

/// The longest placement name, in bytes.
pub const MAX_PLACEMENT_NAME_LEN: usize = 63;

/// The longest failure reason kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_REASON_LEN: usize = 512;

/// A placement's name: 1 to 63 bytes of `a-z 0-9 -`, starting and ending with a letter or
/// digit (a DNS label, so it reads the same in URLs, metrics and logs).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlacementName(String);

/// Why a placement name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementNameError {
    /// Empty or longer than [`MAX_PLACEMENT_NAME_LEN`].
    #[error("a name must be 1 to {MAX_PLACEMENT_NAME_LEN} bytes, got {len}")]
    Length {
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside `a-z 0-9 -`, or a `-` at either end.
    #[error(
        "name {name:?} may only hold a-z, 0-9 and '-', and must start and end with a letter or \
         digit (like `web-release-42`)"
    )]
    Character {
        /// The name (cut to the length limit).
        name: String,
    },
}

impl PlacementName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A name derived from an artifact's `name:tag` and a selector's text, for placements
    /// created without one: `name-tag` lowercased, characters outside the alphabet replaced
    /// by `-`, cut to leave room for an 8-hex-digit digest of the whole request, so two
    /// placements of one artifact to different selectors get different names.
    pub fn derive(name_tag: &str, selector: &str) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{name_tag}\n{selector}").as_bytes());
        let suffix = data_encoding::HEXLOWER.encode(&digest[..4]);
        let mut stem: String = name_tag
            .chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_lowercase() || c.is_ascii_digit() {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        stem.truncate(MAX_PLACEMENT_NAME_LEN - suffix.len() - 1);
        let stem = stem.trim_matches('-');
        if stem.is_empty() {
            Self(suffix)
        } else {
            Self(format!("{stem}-{suffix}"))
        }
    }
}

impl FromStr for PlacementName {
    type Err = PlacementNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_PLACEMENT_NAME_LEN {
            return Err(PlacementNameError::Length { len: s.len() });
        }
        let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
        if !s.bytes().all(allowed) || s.starts_with('-') || s.ends_with('-') {
            return Err(PlacementNameError::Character { name: s.to_owned() });
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for PlacementName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A placement: put `content_id` on every node `selector` matches, until `until_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Its name, unique in the control plane.
    pub name: PlacementName,
    /// The artifact's content id (its v2 info-hash).
    pub content_id: [u8; 32],
    /// The `name:tag` the admin named it by, for display.
    pub name_tag: Option<NameTag>,
    /// Which nodes get it.
    pub selector: Selector,
    /// When it was created, Unix milliseconds.
    pub created_ms: u64,
    /// Who created it (the caller's principal).
    pub created_by: String,
    /// When it ends, Unix milliseconds: after that no node is assigned the artifact by it.
    pub until_ms: Option<u64>,
}

impl Placement {
    /// The content id as 64 lowercase hex digits.
    pub fn content_id_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.content_id)
    }

    /// Checks `self`, asked for under a name `existing` already holds: the same content,
    /// selector and end is the same request again (nothing to do), anything else is refused.
    ///
    /// # Errors
    /// [`PlacementError::Exists`] when `existing` is a different placement.
    pub fn check_against(&self, existing: &Placement) -> Result<(), PlacementError> {
        let same = existing.content_id == self.content_id
            && existing.selector == self.selector
            && existing.until_ms == self.until_ms;
        if same {
            return Ok(());
        }
        Err(PlacementError::Exists {
            name: self.name.clone(),
            existing: format!(
                "{} to `{}`",
                existing
                    .name_tag
                    .as_ref()
                    .map_or_else(|| existing.content_id_hex(), ToString::to_string),
                existing.selector
            ),
        })
    }

    /// Returns true if and only if the placement still holds at `now_ms`.
    pub fn is_active(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|until| now_ms < until)
    }

    /// Returns true if and only if a node with `labels` is a target at `now_ms`.
    pub fn targets(&self, labels: &Labels, now_ms: u64) -> bool {
        self.is_active(now_ms) && self.selector.matches(labels)
    }

    /// The stored form: a canonical bencode dictionary.
    pub fn encode(&self) -> Vec<u8> {
        let mut d = Dict::new();
        d.insert(b"content".as_slice(), Value::bytes(&self.content_id[..]));
        d.insert(b"created".as_slice(), uint(self.created_ms));
        d.insert(b"created by".as_slice(), self.created_by.as_str());
        d.insert(b"format".as_slice(), FORMAT);
        d.insert(b"name".as_slice(), self.name.as_str());
        if let Some(name_tag) = &self.name_tag {
            d.insert(b"name tag".as_slice(), name_tag.to_string());
        }
        d.insert(b"selector".as_slice(), self.selector.to_string());
        if let Some(until) = self.until_ms {
            d.insert(b"until".as_slice(), uint(until));
        }
        shoal_bencode::encode(&Value::Dict(d))
    }

    /// Reads a record written by [`Placement::encode`], validating every field.
    ///
    /// # Errors
    /// A [`RecordError`] naming the field that is missing, mistyped or invalid.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let dict = record::decode(bytes, FORMAT)?;
        let top = Fields::new(&dict, "");
        let name = top.parsed("name")?;
        let content_id = top.array::<32>("content")?;
        let name_tag = top.opt_parsed("name tag")?;
        let selector = top.parsed("selector")?;
        let until_ms = top.opt_uint("until")?;
        Ok(Self {
            name,
            content_id,
            name_tag,
            selector,
            created_ms: top.uint("created")?,
            created_by: top.str("created by")?.to_owned(),
            until_ms,
        })
    }
}

/// `reason` cut to [`MAX_REASON_LEN`] bytes, at a character boundary.
fn cut(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON_LEN);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// Where one node is with one placement's artifact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Assigned; the node has not reported starting.
    Pending,
    /// Downloading: `done` bytes of the artifact verified so far.
    Downloading {
        /// Bytes verified.
        done: u64,
        /// What holds it back, when something does (`no peers for 60 s`, pieces failing
        /// verification); the node keeps trying.
        stalled: Option<String>,
    },
    /// Every byte verified; the node seeds it.
    Done,
    /// The node gave up for now (it retries with back-off) and says why: `disk full`,
    /// `quota`, `no peers`, `verification failures`, ...
    Failed {
        /// What the agent reported.
        reason: String,
    },
}

impl NodeState {
    /// Bytes verified on the node, given the artifact's `size`.
    pub fn done_bytes(&self, size: u64) -> u64 {
        match self {
            Self::Pending | Self::Failed { .. } => 0,
            Self::Downloading { done, .. } => (*done).min(size),
            Self::Done => size,
        }
    }

    /// A failure whose reason is cut to [`MAX_REASON_LEN`] bytes.
    pub fn failed(reason: &str) -> Self {
        Self::Failed {
            reason: cut(reason),
        }
    }

    /// A download with `done` bytes verified, stalled for `why` unless it is empty (cut to
    /// [`MAX_REASON_LEN`] bytes).
    pub fn downloading(done: u64, why: &str) -> Self {
        Self::Downloading {
            done,
            stalled: (!why.is_empty()).then(|| cut(why)),
        }
    }

    /// Why the node failed or is stalled, if it says.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Failed { reason } => Some(reason),
            Self::Downloading { stalled, .. } => stalled.as_deref(),
            Self::Pending | Self::Done => None,
        }
    }
}

/// How many target nodes are in each state, and the bytes verified over all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Nodes assigned that have not started.
    pub pending: u64,
    /// Nodes downloading.
    pub downloading: u64,
    /// Nodes with every byte verified.
    pub done: u64,
    /// Nodes that reported a failure.
    pub failed: u64,
    /// Bytes verified, summed over the target nodes.
    pub bytes_done: u64,
}

impl Totals {
    /// Every target node.
    pub fn nodes(&self) -> u64 {
        self.pending + self.downloading + self.done + self.failed
    }

    fn count(&mut self, state: &NodeState, size: u64, add: bool) {
        let slot = match state {
            NodeState::Pending => &mut self.pending,
            NodeState::Downloading { .. } => &mut self.downloading,
            NodeState::Done => &mut self.done,
            NodeState::Failed { .. } => &mut self.failed,
        };
        let bytes = state.done_bytes(size);
        if add {
            *slot += 1;
            self.bytes_done += bytes;
        } else {
            *slot = slot.saturating_sub(1);
            self.bytes_done = self.bytes_done.saturating_sub(bytes);
        }
    }
}

/// One placement's target nodes and their states, with running totals: every update is
/// O(log n) and [`PlacementProgress::totals`] is O(1).
#[derive(Clone, Debug, Default)]
pub struct PlacementProgress {
    size: u64,
    nodes: BTreeMap<NodeId, NodeState>,
    totals: Totals,
}

impl PlacementProgress {
    /// No targets yet, for an artifact of `size` bytes.
    pub fn new(size: u64) -> Self {
        Self {
            size,
            ..Self::default()
        }
    }

    /// The artifact's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The totals over the target nodes.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Returns true if and only if `node` is a target.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.nodes.contains_key(node)
    }

    /// Makes `node` a target in `state` (or moves it to `state` if it is one already).
    pub fn set(&mut self, node: &NodeId, state: NodeState) {
        if let Some(old) = self.nodes.get(node) {
            if *old == state {
                return;
            }
            self.totals.count(old, self.size, false);
        }
        self.totals.count(&state, self.size, true);
        self.nodes.insert(node.clone(), state);
    }

    /// Stops targeting `node`; returns its last state.
    pub fn remove(&mut self, node: &NodeId) -> Option<NodeState> {
        let old = self.nodes.remove(node)?;
        self.totals.count(&old, self.size, false);
        Some(old)
    }

    /// Up to `limit` target nodes after `after` (from the first when `None`), in node id order.
    pub fn page(&self, after: Option<&NodeId>, limit: usize) -> Vec<(&NodeId, &NodeState)> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.nodes
            .range::<NodeId, _>((start, Bound::Unbounded))
            .take(limit)
            .collect()
    }
}

/// Why a placement could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The name is taken by a placement with another artifact, selector or end.
    #[error(
        "placement {name} exists with other settings ({existing}); choose another name or \
         remove it first (`shoal placement rm {name}`)"
    )]
    Exists {
        /// The name.
        name: PlacementName,
        /// What the existing one places, for the message.
        existing: String,
    },
}

/// One artifact a node must hold, and the placements that ask for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The artifact's content id.
    pub content_id: [u8; 32],
    /// A `name:tag` it was placed by, for display.
    pub name_tag: Option<NameTag>,
    /// The placements asking for it, in name order.
    pub placements: Vec<PlacementName>,
}

/// Every placement with its progress, and what each node last reported per artifact: the
/// control plane's placement state, with nodes, labels and time passed in.
///
/// Reports are kept per node and artifact, so a placement created after a node already has
/// the artifact starts with that node done, and a node that comes back into a selector
/// resumes at its last state.
#[derive(Clone, Debug, Default)]
pub struct PlacementTable {
    placements: BTreeMap<PlacementName, (Placement, PlacementProgress)>,
    reports: BTreeMap<NodeId, BTreeMap<[u8; 32], NodeState>>,
}

impl PlacementTable {
    /// No placements.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `placement` of an artifact of `size` bytes, targeting those of `nodes` it matches.
    /// Returns false when an identical placement exists already (nothing changes).
    ///
    /// # Errors
    /// [`PlacementError::Exists`] when the name holds a different placement.
    pub fn create<'a>(
        &mut self,
        placement: Placement,
        size: u64,
        nodes: impl IntoIterator<Item = (&'a NodeId, &'a Labels)>,
        now_ms: u64,
    ) -> Result<bool, PlacementError> {
        if !self.is_new(&placement)? {
            return Ok(false);
        }
        self.restore(placement, size, nodes, now_ms);
        Ok(true)
    }

    /// Whether `placement` would be new here: false when an identical placement exists
    /// (asking again changes nothing).
    ///
    /// # Errors
    /// [`PlacementError::Exists`] when the name holds a different placement.
    pub fn is_new(&self, placement: &Placement) -> Result<bool, PlacementError> {
        match self.placements.get(&placement.name) {
            Some((existing, _)) => placement.check_against(existing).map(|()| false),
            None => Ok(true),
        }
    }

    /// Adds a placement read back from the store (no conflict check).
    pub fn restore<'a>(
        &mut self,
        placement: Placement,
        size: u64,
        nodes: impl IntoIterator<Item = (&'a NodeId, &'a Labels)>,
        now_ms: u64,
    ) {
        let mut progress = PlacementProgress::new(size);
        for (id, labels) in nodes {
            if placement.targets(labels, now_ms) {
                progress.set(id, self.reported(id, &placement.content_id));
            }
        }
        self.placements
            .insert(placement.name.clone(), (placement, progress));
    }

    /// Removes a placement; returns it with its last progress.
    pub fn remove(&mut self, name: &PlacementName) -> Option<(Placement, PlacementProgress)> {
        self.placements.remove(name)
    }

    /// A placement and its progress.
    pub fn get(&self, name: &PlacementName) -> Option<&(Placement, PlacementProgress)> {
        self.placements.get(name)
    }

    /// Up to `limit` placements after `after`, in name order.
    pub fn page(
        &self,
        after: Option<&PlacementName>,
        limit: usize,
    ) -> Vec<&(Placement, PlacementProgress)> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.placements
            .range::<PlacementName, _>((start, Bound::Unbounded))
            .map(|(_, v)| v)
            .take(limit)
            .collect()
    }

    fn reported(&self, node: &NodeId, content_id: &[u8; 32]) -> NodeState {
        self.reports
            .get(node)
            .and_then(|r| r.get(content_id))
            .cloned()
            .unwrap_or(NodeState::Pending)
    }

    /// A node registered or changed its labels (or time passed an end): it becomes a target
    /// of the placements that match it now and stops being one of those that do not.
    /// Returns true if and only if its assignments changed.
    pub fn node_changed(&mut self, node: &NodeId, labels: &Labels, now_ms: u64) -> bool {
        let mut changed = false;
        let reports = self.reports.get(node);
        for (placement, progress) in self.placements.values_mut() {
            let wanted = placement.targets(labels, now_ms);
            if wanted && !progress.contains(node) {
                let state = reports
                    .and_then(|r| r.get(&placement.content_id))
                    .cloned()
                    .unwrap_or(NodeState::Pending);
                progress.set(node, state);
                changed = true;
            } else if !wanted && progress.contains(node) {
                progress.remove(node);
                changed = true;
            }
        }
        changed
    }

    /// `node` reports `state` for `content_id`: recorded, and counted in every placement of
    /// that artifact that targets the node. Cost: O(placements) plus O(log n) per update.
    pub fn report(&mut self, node: &NodeId, content_id: [u8; 32], state: NodeState) {
        for (placement, progress) in self.placements.values_mut() {
            if placement.content_id == content_id && progress.contains(node) {
                progress.set(node, state.clone());
            }
        }
        self.reports
            .entry(node.clone())
            .or_default()
            .insert(content_id, state);
    }

    /// What a node with `labels` must hold at `now_ms`, by content id.
    pub fn assignments(&self, labels: &Labels, now_ms: u64) -> Vec<Assignment> {
        let mut by_content: BTreeMap<[u8; 32], Assignment> = BTreeMap::new();
        for (placement, _) in self.placements.values() {
            if !placement.targets(labels, now_ms) {
                continue;
            }
            let entry = by_content
                .entry(placement.content_id)
                .or_insert_with(|| Assignment {
                    content_id: placement.content_id,
                    name_tag: None,
                    placements: Vec::new(),
                });
            if entry.name_tag.is_none() {
                entry.name_tag.clone_from(&placement.name_tag);
            }
            entry.placements.push(placement.name.clone());
        }
        by_content.into_values().collect()
    }

    /// The next instant after `now_ms` at which a placement ends (assignments change then).
    pub fn next_end(&self, now_ms: u64) -> Option<u64> {
        self.placements
            .values()
            .filter_map(|(p, _)| p.until_ms)
            .filter(|&until| until > now_ms)
            .min()
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        reason = "test code: a panic is the failure report"
    )]

    use super::*;

    fn node(name: &str) -> NodeId {
        name.parse().unwrap()
    }

    fn placement() -> Placement {
        Placement {
            name: "web-release".parse().unwrap(),
            content_id: [7; 32],
            name_tag: Some("app:1.0".parse().unwrap()),
            selector: "role=web,rack in (r1,r2)".parse().unwrap(),
            created_ms: 1_700_000_000_000,
            created_by: "alice".to_owned(),
            until_ms: Some(1_800_000_000_000),
        }
    }

    #[test]
    fn names_follow_the_dns_label_rule() {
        for good in ["a", "web-release-42", &"x".repeat(63)] {
            assert_eq!(good.parse::<PlacementName>().unwrap().as_str(), good);
        }
        assert_eq!(
            "".parse::<PlacementName>(),
            Err(PlacementNameError::Length { len: 0 })
        );
        assert_eq!(
            "x".repeat(64).parse::<PlacementName>(),
            Err(PlacementNameError::Length { len: 64 })
        );
        for bad in ["-a", "a-", "A", "a_b", "a.b", "a b", "é"] {
            let e = bad.parse::<PlacementName>().unwrap_err();
            assert!(e.to_string().contains("web-release-42"), "{e}");
        }
    }

    #[test]
    fn derived_names_are_valid_and_differ_by_selector() {
        let a = PlacementName::derive("App_Server:1.0", "role=web");
        let b = PlacementName::derive("App_Server:1.0", "role=db");
        assert!(a.as_str().starts_with("app-server-1-0-"), "{a}");
        assert_ne!(a, b);
        for name in [&a, &b, &PlacementName::derive(&"é".repeat(200), "")] {
            assert_eq!(name.as_str().parse::<PlacementName>().as_ref(), Ok(name));
        }
    }

    #[test]
    fn records_round_trip_and_name_bad_fields() {
        let p = placement();
        assert_eq!(Placement::decode(&p.encode()).unwrap(), p);
        let open = Placement {
            name_tag: None,
            until_ms: None,
            selector: Selector::all(),
            ..placement()
        };
        assert_eq!(Placement::decode(&open.encode()).unwrap(), open);
        let bad = String::from_utf8(p.encode())
            .unwrap()
            .replace("11:web-release", "11:Web-Release");
        let e = Placement::decode(bad.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("\"name\""), "{e}");
    }

    #[test]
    fn a_placement_targets_matching_nodes_until_it_ends() {
        let p = placement();
        let web = Labels::parse(["role=web", "rack=r1"]).unwrap();
        let db = Labels::parse(["role=db", "rack=r1"]).unwrap();
        assert!(p.targets(&web, 0));
        assert!(!p.targets(&db, 0));
        assert!(!p.targets(&web, 1_800_000_000_000), "ended");
    }

    #[test]
    fn totals_follow_every_update() {
        let mut progress = PlacementProgress::new(100);
        let (a, b, c) = (node("a"), node("b"), node("c"));
        progress.set(&a, NodeState::Pending);
        progress.set(&b, NodeState::downloading(40, ""));
        progress.set(&c, NodeState::failed("disk full"));
        assert_eq!(
            progress.totals(),
            Totals {
                pending: 1,
                downloading: 1,
                done: 0,
                failed: 1,
                bytes_done: 40
            }
        );
        progress.set(&b, NodeState::downloading(90, ""));
        progress.set(&a, NodeState::Done);
        assert_eq!(progress.totals().bytes_done, 190);
        assert_eq!(progress.totals().done, 1);
        assert_eq!(progress.remove(&a), Some(NodeState::Done));
        assert_eq!(progress.remove(&a), None);
        let t = progress.totals();
        assert_eq!((t.nodes(), t.bytes_done, t.done), (2, 90, 0));
        // A report beyond the size counts as the size.
        progress.set(&b, NodeState::downloading(1000, ""));
        assert_eq!(progress.totals().bytes_done, 100);
    }

    #[test]
    fn pages_walk_every_node_once() {
        let mut progress = PlacementProgress::new(1);
        for i in 0..25 {
            progress.set(&node(&format!("n{i:02}")), NodeState::Pending);
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page: Vec<NodeId> = progress
                .page(after.as_ref(), 10)
                .into_iter()
                .map(|(n, _)| n.clone())
                .collect();
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            seen.extend(page);
        }
        assert_eq!(seen.len(), 25);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn failure_reasons_are_cut_at_a_character_boundary() {
        let NodeState::Failed { reason } = NodeState::failed(&"é".repeat(400)) else {
            unreachable!()
        };
        assert!(reason.len() <= MAX_REASON_LEN && reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn the_table_keeps_placements_true_as_nodes_come_and_change() {
        let mut table = PlacementTable::new();
        let web: Labels = Labels::parse(["role=web"]).unwrap();
        let db: Labels = Labels::parse(["role=db"]).unwrap();
        let (a, b, c) = (node("a"), node("b"), node("c"));
        // b already holds the artifact before any placement names it.
        table.report(&b, [7; 32], NodeState::Done);
        let p = Placement {
            selector: "role=web".parse().unwrap(),
            until_ms: None,
            ..placement()
        };
        let nodes = [(&a, &web), (&b, &web), (&c, &db)];
        assert_eq!(table.create(p.clone(), 100, nodes, 0), Ok(true));
        assert_eq!(
            table.create(p.clone(), 100, nodes, 0),
            Ok(false),
            "idempotent"
        );
        let other = Placement {
            selector: "role=db".parse().unwrap(),
            ..p.clone()
        };
        let e = table.create(other, 100, nodes, 0).unwrap_err();
        assert!(e.to_string().contains("app:1.0 to `role=web`"), "{e}");
        let (_, progress) = table.get(&p.name).unwrap();
        let t = progress.totals();
        assert_eq!((t.nodes(), t.pending, t.done, t.bytes_done), (2, 1, 1, 100));

        assert_eq!(table.assignments(&web, 0).len(), 1);
        assert!(table.assignments(&db, 0).is_empty());
        // c joins the web role: it is assigned at once; a leaves it.
        assert!(table.node_changed(&c, &web, 0));
        assert!(!table.node_changed(&c, &web, 0), "nothing new");
        assert!(table.node_changed(&a, &db, 0));
        table.report(&c, [7; 32], NodeState::downloading(30, ""));
        table.report(&a, [7; 32], NodeState::Done);
        let t = table.get(&p.name).unwrap().1.totals();
        assert_eq!(
            (t.nodes(), t.downloading, t.done, t.bytes_done),
            (2, 1, 1, 130)
        );
        // a comes back: it resumes at what it reported.
        table.node_changed(&a, &web, 0);
        assert_eq!(table.get(&p.name).unwrap().1.totals().done, 2);
        assert!(table.remove(&p.name).is_some());
        assert!(table.assignments(&web, 0).is_empty());
    }

    #[test]
    fn assignments_merge_placements_of_one_artifact_and_end_on_time() {
        let mut table = PlacementTable::new();
        let web = Labels::parse(["role=web", "rack=r1"]).unwrap();
        let first = Placement {
            until_ms: Some(50),
            ..placement()
        };
        let second = Placement {
            name: "second".parse().unwrap(),
            selector: Selector::all(),
            until_ms: Some(80),
            ..placement()
        };
        table.create(first, 1, [], 0).unwrap();
        table.create(second, 1, [], 0).unwrap();
        let at = |t| table.assignments(&web, t);
        assert_eq!(at(0).len(), 1);
        assert_eq!(at(0)[0].placements.len(), 2);
        assert_eq!(at(60)[0].placements, vec!["second".parse().unwrap()]);
        assert!(at(80).is_empty());
        assert_eq!(table.next_end(0), Some(50));
        assert_eq!(table.next_end(50), Some(80));
        assert_eq!(table.next_end(80), None);
    }
}

//! The control plane's pure logic, sans-IO: everything the Shoal server decides, with time,
//! randomness and bytes as arguments, so the server and agent crates only move bytes.
//!
//! - [`name_tag`]: artifact names, `NAME:TAG` ([`NameTag`]).
//! - [`artifact_ref`]: what a user may type to name an artifact ([`ArtifactRef`]): a
//!   `NAME:TAG`, a content id or a prefix of one ([`ContentIdPrefix`]), a magnet link, a
//!   torrent URL or a `.torrent` path.
//! - [`artifact`]: the record of a published artifact ([`ArtifactRecord`]), built from a
//!   torrent, stored as canonical bencode, turned back into a `.torrent`; and the bind rule
//!   that keeps tags immutable ([`decide_bind`]).
//! - [`page_token`]: signed, opaque pagination tokens ([`PageToken`]) and the page-size rule
//!   ([`page_size`]).
//! - [`tracker`]: the tracker's swarm table ([`Tracker`]): announces and scrapes in,
//!   [`shoal_tracker_proto`] replies out.
//! - [`placement`]: placements, an admin's standing order that an artifact be on every node
//!   a selector matches ([`Placement`]), their per-node progress with running totals
//!   ([`PlacementProgress`]), and the table that keeps them true as nodes come and change
//!   ([`PlacementTable`]).
//! - [`policy`]: central rules for the nodes a selector matches ([`Policy`], [`Rules`]: rate
//!   caps, leech-only, peers, seed retention, quota), the strictest value of each rule
//!   winning where several match ([`effective`]).
//! - [`nodes`]: the node registry ([`NodeRegistry`]) with node ids ([`NodeId`]) and labels
//!   ([`Labels`]).
//! - [`auth`]: who may do what: roles ([`Role`]), actions ([`Action`]), the one table that
//!   joins them ([`permits`]), bearer tokens ([`Token`]) and the stored, hashed credential
//!   ([`CredentialRecord`]).
//! - [`selector`]: label selectors ([`Selector`]), `role=web,region=eu`, `rack in (r1,r2)`,
//!   `!metered`: which nodes, by their labels, in the Kubernetes grammar.
//! - [`history`]: a checker for histories of binds and linearizable reads against a replicated
//!   control plane ([`history::check`]): bound once, no acknowledged bind lost, no stale read.
//! - [`replicated`]: the replicated state machine ([`ControlState`]): every change is a
//!   [`Command`] applied deterministically to an [`Outcome`], with snapshots and a digest, so
//!   server nodes applying the same log agree.
//!
//! Stored records ([`ArtifactRecord::encode`], [`NodeRecord::encode`]) are canonical bencode
//! dictionaries with a `format` number; reading one back checks every field and names the bad
//! one ([`RecordError`]).
//!
//! Times are `now_ms: u64`, Unix milliseconds read by the caller. Random choices take a seed
//! from the caller. Nothing here does I/O.
#![forbid(unsafe_code)]

pub mod artifact;
pub mod artifact_ref;
pub mod auth;
pub mod history;
mod hmac;
pub mod name_tag;
pub mod nodes;
pub mod page_token;
pub mod placement;
pub mod policy;
mod record;
pub mod replicated;
mod rng;
pub mod selector;
pub mod tracker;

pub use artifact::{
    ArtifactError, ArtifactFile, ArtifactRecord, BindError, BindOutcome, decide_bind,
};
pub use artifact_ref::{ArtifactRef, ArtifactRefError, ContentIdError, ContentIdPrefix};
pub use auth::{
    Action, CredentialId, CredentialName, CredentialNameError, CredentialRecord, Denied, Role,
    RoleError, Token, TokenError, authorize, permits,
};
pub use name_tag::{NameTag, NameTagError};
pub use nodes::{
    LabelError, Labels, NodeConfig, NodeError, NodeId, NodeIdError, NodeRecord, NodeRegistry,
    NodeView, Registration,
};
pub use page_token::{PageToken, PageTokenError, page_size};
pub use placement::{
    Assignment, NodeState, Placement, PlacementError, PlacementName, PlacementNameError,
    PlacementProgress, PlacementTable, Totals,
};
pub use policy::{MAX_POLICIES, Policy, PolicyName, PolicyTable, Rules, RulesError, effective};
pub use record::RecordError;
pub use replicated::{Command, ControlState, Outcome, ReplicatedError};
pub use selector::{Selector, SelectorError};
pub use tracker::{TrackedPeer, Tracker, TrackerConfig, TrackerStats};

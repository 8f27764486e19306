//! The node registry: which agents exist, where to reach them, and whether they are alive
//! ([`NodeRegistry`]).
//!
//! An agent registers with its [`NodeId`], [`Labels`], the address its BitTorrent peer listens
//! on, and optionally the URL of its own API; it then sends heartbeats. A node is alive while
//! its last heartbeat is at most [`NodeConfig::ttl_ms`] old. Nodes are never dropped for
//! silence (an operator wants to see the dead ones); [`NodeRegistry::forget`] removes one.
//! [`NodeRecord::encode`] gives the stored form the server persists.

mod labels;
mod node_id;

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use shoal_bencode::{Dict, Value};

pub use labels::{LabelError, Labels, MAX_LABELS};
pub use node_id::{MAX_NODE_ID_LEN, NodeId, NodeIdError};

use crate::record::{self, Fields, RecordError, uint};

/// The stored record's format number.
const FORMAT: i64 = 1;

/// The longest agent API URL accepted, in bytes.
pub const MAX_AGENT_API_LEN: usize = 2048;

/// How the registry behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Milliseconds after its last heartbeat that a node counts as dead. Default: 30,000.
    pub ttl_ms: u64,
    /// The most nodes registered at once; new registrations beyond it are refused.
    /// Default: 100,000.
    pub max_nodes: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            ttl_ms: 30_000,
            max_nodes: 100_000,
        }
    }
}

/// What the registry keeps about one node: its stored form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's id.
    pub id: NodeId,
    /// Its labels.
    pub labels: Labels,
    /// Where its BitTorrent peer listens.
    pub peer_addr: SocketAddr,
    /// The URL of its agent API, if it serves one.
    pub agent_api: Option<String>,
    /// When it first registered, in Unix milliseconds.
    pub registered_at_ms: u64,
    /// When it last registered or sent a heartbeat, in Unix milliseconds.
    pub last_heartbeat_ms: u64,
}

/// One node as shown to an operator: its record and whether it is alive now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// What the registry keeps about it.
    pub record: NodeRecord,
    /// Whether it was heard from within [`NodeConfig::ttl_ms`].
    pub alive: bool,
}

/// What [`NodeRegistry::register`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// A node not seen before.
    New,
    /// A known node registered again (after a restart, or with new labels or addresses),
    /// replacing its labels and addresses and keeping its first registration time.
    Updated,
}

/// Why the registry refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A heartbeat from a node that is not registered (or was forgotten).
    #[error("node {id} is not registered: register it again (agents register when they start)")]
    Unknown {
        /// The node's id.
        id: NodeId,
    },
    /// The registry holds [`NodeConfig::max_nodes`] already.
    #[error("node registry is full ({max} nodes): forget nodes that are gone, or raise the limit")]
    Full {
        /// The limit in force.
        max: usize,
    },
    /// An agent API URL longer than [`MAX_AGENT_API_LEN`].
    #[error(
        "agent API URL of {len} bytes is longer than the {MAX_AGENT_API_LEN}-byte limit: \
         give a shorter URL"
    )]
    AgentApiTooLong {
        /// Its length in bytes.
        len: usize,
    },
}

/// The registered nodes, by id. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct NodeRegistry {
    config: NodeConfig,
    nodes: BTreeMap<NodeId, NodeRecord>,
}

impl NodeRegistry {
    /// An empty registry.
    pub fn new(config: NodeConfig) -> Self {
        Self {
            config,
            nodes: BTreeMap::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Registers node `id` at `now_ms`, or registers it again: labels and addresses are
    /// replaced, and registering counts as a heartbeat.
    ///
    /// # Errors
    /// [`NodeError::AgentApiTooLong`]; [`NodeError::Full`] for a new node when the registry
    /// holds [`NodeConfig::max_nodes`].
    pub fn register(
        &mut self,
        now_ms: u64,
        id: NodeId,
        labels: Labels,
        peer_addr: SocketAddr,
        agent_api: Option<String>,
    ) -> Result<Registration, NodeError> {
        if let Some(url) = &agent_api
            && url.len() > MAX_AGENT_API_LEN
        {
            return Err(NodeError::AgentApiTooLong { len: url.len() });
        }
        let full = self.nodes.len() >= self.config.max_nodes;
        match self.nodes.entry(id) {
            Entry::Occupied(mut e) => {
                let node = e.get_mut();
                node.labels = labels;
                node.peer_addr = peer_addr;
                node.agent_api = agent_api;
                node.last_heartbeat_ms = node.last_heartbeat_ms.max(now_ms);
                Ok(Registration::Updated)
            }
            Entry::Vacant(_) if full => Err(NodeError::Full {
                max: self.config.max_nodes,
            }),
            Entry::Vacant(e) => {
                let id = e.key().clone();
                e.insert(NodeRecord {
                    id,
                    labels,
                    peer_addr,
                    agent_api,
                    registered_at_ms: now_ms,
                    last_heartbeat_ms: now_ms,
                });
                Ok(Registration::New)
            }
        }
    }

    /// Records a heartbeat from node `id` at `now_ms`. A heartbeat older than the last one
    /// (clocks disagree) leaves the time where it is.
    ///
    /// # Errors
    /// [`NodeError::Unknown`] if `id` is not registered.
    pub fn heartbeat(&mut self, now_ms: u64, id: &NodeId) -> Result<(), NodeError> {
        let node = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| NodeError::Unknown { id: id.clone() })?;
        node.last_heartbeat_ms = node.last_heartbeat_ms.max(now_ms);
        Ok(())
    }

    /// Every node as of `now_ms`, sorted by id.
    pub fn list(&self, now_ms: u64) -> Vec<NodeView> {
        self.nodes
            .values()
            .map(|node| self.view_of(now_ms, node))
            .collect()
    }

    /// Node `id` as of `now_ms`, if registered.
    pub fn view(&self, now_ms: u64, id: &NodeId) -> Option<NodeView> {
        self.nodes.get(id).map(|node| self.view_of(now_ms, node))
    }

    /// Node `id`'s record, if registered.
    pub fn get(&self, id: &NodeId) -> Option<&NodeRecord> {
        self.nodes.get(id)
    }

    /// Removes node `id`, returning its record.
    pub fn forget(&mut self, id: &NodeId) -> Option<NodeRecord> {
        self.nodes.remove(id)
    }

    /// Puts back a stored record (when the server starts), replacing any record with its id.
    /// Not limited by [`NodeConfig::max_nodes`]: what was stored is kept.
    pub fn restore(&mut self, record: NodeRecord) {
        self.nodes.insert(record.id.clone(), record);
    }

    /// Every record, sorted by id: what to persist.
    pub fn records(&self) -> impl ExactSizeIterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// The number of registered nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Returns true if and only if no node is registered.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn view_of(&self, now_ms: u64, node: &NodeRecord) -> NodeView {
        NodeView {
            record: node.clone(),
            alive: now_ms.saturating_sub(node.last_heartbeat_ms) <= self.config.ttl_ms,
        }
    }
}

impl NodeRecord {
    /// The stored form: a canonical bencode dictionary with a `format` number.
    pub fn encode(&self) -> Vec<u8> {
        let labels: Dict<'_> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_bytes(), Value::string(v)))
            .collect();
        let mut d = Dict::new();
        if let Some(url) = &self.agent_api {
            d.insert(b"agent api".as_slice(), url.as_str());
        }
        d.insert(b"format".as_slice(), FORMAT);
        d.insert(b"heartbeat".as_slice(), uint(self.last_heartbeat_ms));
        d.insert(b"id".as_slice(), self.id.as_str());
        d.insert(b"labels".as_slice(), labels);
        d.insert(b"peer addr".as_slice(), self.peer_addr.to_string());
        d.insert(b"registered".as_slice(), uint(self.registered_at_ms));
        shoal_bencode::encode(&Value::Dict(d))
    }

    /// Reads a record written by [`NodeRecord::encode`], validating the id, every label and
    /// the address.
    ///
    /// # Errors
    /// A [`RecordError`] naming the field that is missing, mistyped or invalid.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let dict = record::decode(bytes, FORMAT)?;
        let top = Fields::new(&dict, "");
        let id: NodeId = top.parsed("id")?;
        let mut labels = Labels::new();
        for (key, value) in top.dict("labels")?.iter() {
            let key = std::str::from_utf8(key).map_err(|_| top.invalid("labels", "not UTF-8"))?;
            let value = value
                .as_str()
                .ok_or_else(|| top.invalid("labels", "a value is not text"))?;
            labels
                .insert(key, value)
                .map_err(|e| top.invalid("labels", e.to_string()))?;
        }
        let addr = top.str("peer addr")?;
        let peer_addr = addr.parse().map_err(|_| {
            top.invalid("peer addr", format!("{addr:?} is not an address and port"))
        })?;
        let agent_api = top.opt_str("agent api")?;
        if agent_api.is_some_and(|url| url.len() > MAX_AGENT_API_LEN) {
            return Err(top.invalid("agent api", "longer than the limit"));
        }
        Ok(Self {
            id,
            labels,
            peer_addr,
            agent_api: agent_api.map(str::to_owned),
            registered_at_ms: top.uint("registered")?,
            last_heartbeat_ms: top.uint("heartbeat")?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn id(s: &str) -> NodeId {
        s.parse().unwrap()
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 6881)
    }

    #[test]
    fn register_heartbeat_list() {
        let mut r = NodeRegistry::default();
        let labels: Labels = "region=eu,rack=r1".parse().unwrap();
        assert_eq!(
            r.register(1_000, id("b"), labels.clone(), addr(2), None),
            Ok(Registration::New)
        );
        r.register(
            1_000,
            id("a"),
            Labels::new(),
            addr(1),
            Some("http://a:7000".into()),
        )
        .unwrap();
        r.heartbeat(20_000, &id("b")).unwrap();
        r.heartbeat(5_000, &id("b")).unwrap(); // late: ignored
        assert!(
            r.list(31_000).iter().all(|v| v.alive),
            "30,000 ms is within the TTL"
        );
        let views = r.list(31_001);
        let ids: Vec<&str> = views.iter().map(|v| v.record.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "sorted by id");
        assert!(!views[0].alive, "a: 30,001 ms since its last heartbeat");
        assert!(views[1].alive);
        assert_eq!(views[1].record.last_heartbeat_ms, 20_000);
        assert_eq!(views[1].record.labels, labels);
        assert!(
            r.view(0, &id("a"))
                .is_some_and(|v| v.record.agent_api.is_some())
        );
        assert!(r.view(0, &id("zz")).is_none());

        // Registering again replaces labels and addresses, keeps the first time.
        assert_eq!(
            r.register(40_000, id("b"), Labels::new(), addr(9), None),
            Ok(Registration::Updated)
        );
        let b = r.get(&id("b")).unwrap();
        assert_eq!(
            (b.peer_addr, b.registered_at_ms, b.last_heartbeat_ms),
            (addr(9), 1_000, 40_000)
        );
        assert!(b.labels.is_empty());

        assert!(r.forget(&id("b")).is_some());
        assert_eq!(
            r.heartbeat(0, &id("b")),
            Err(NodeError::Unknown { id: id("b") })
        );
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn limits() {
        let mut r = NodeRegistry::new(NodeConfig {
            max_nodes: 1,
            ..NodeConfig::default()
        });
        r.register(0, id("a"), Labels::new(), addr(1), None)
            .unwrap();
        assert_eq!(
            r.register(0, id("b"), Labels::new(), addr(2), None),
            Err(NodeError::Full { max: 1 })
        );
        assert!(r.register(0, id("a"), Labels::new(), addr(1), None).is_ok());
        let long = "x".repeat(MAX_AGENT_API_LEN + 1);
        assert!(matches!(
            r.register(0, id("a"), Labels::new(), addr(1), Some(long)),
            Err(NodeError::AgentApiTooLong { .. })
        ));
    }

    #[test]
    fn stored_form() {
        let mut r = NodeRegistry::default();
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 7000);
        r.register(
            5,
            id("n1"),
            "zone=z1,x/y=".parse().unwrap(),
            v6,
            Some("https://n1".into()),
        )
        .unwrap();
        let record = r.get(&id("n1")).unwrap().clone();
        let bytes = record.encode();
        assert_eq!(NodeRecord::decode(&bytes), Ok(record.clone()));
        let mut restored = NodeRegistry::default();
        restored.restore(NodeRecord::decode(&bytes).unwrap());
        assert_eq!(restored.records().collect::<Vec<_>>(), [&record]);

        let bad = b"d6:formati1e9:heartbeati0e2:id2:-x6:labelsde9:peer addr10:1.2.3.4:5610:registeredi0ee";
        assert!(matches!(
            NodeRecord::decode(bad),
            Err(RecordError::Invalid { field, .. }) if field == "id"
        ));
        assert!(NodeRecord::decode(b"d6:formati9ee").is_err());
    }

    pub(crate) fn record() -> impl Strategy<Value = NodeRecord> {
        (
            "[a-z0-9][a-z0-9._-]{0,20}",
            prop::collection::btree_map("[a-z]{1,8}", "[a-z0-9]{0,8}", 0..5),
            any::<([u8; 4], u16)>(),
            prop::option::of("[a-z:/.]{1,30}"),
            0u64..i64::MAX as u64,
            0u64..i64::MAX as u64,
        )
            .prop_map(|(id_text, pairs, (ip, port), agent_api, at, beat)| {
                let mut labels = Labels::new();
                for (k, v) in &pairs {
                    labels.insert(k, v).unwrap();
                }
                NodeRecord {
                    id: id(&id_text),
                    labels,
                    peer_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
                    agent_api,
                    registered_at_ms: at,
                    last_heartbeat_ms: beat,
                }
            })
    }

    proptest! {
        #[test]
        fn records_round_trip(r in record()) {
            prop_assert_eq!(NodeRecord::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = NodeRecord::decode(&bytes);
        }
    }
}

//! Catalog records and registry entries in their API form.

use shoal_api::v1;
use shoal_control::{ArtifactRecord, NodeView};
use shoal_metainfo::Torrent;

/// A Unix-milliseconds time as a protobuf timestamp.
pub fn timestamp(ms: u64) -> shoal_api::wkt::Timestamp {
    shoal_api::wkt::Timestamp {
        seconds: i64::try_from(ms / 1000).unwrap_or(i64::MAX),
        // Below 1e9 by construction.
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    }
}

/// The API form of a catalog record. `trackers` are the tracker URLs put in the magnet link and
/// the `.torrent` (every server node's, in order); the torrent's bytes are included only when
/// asked for.
pub fn artifact(
    record: &ArtifactRecord,
    trackers: &[String],
    include_torrent: bool,
) -> v1::Artifact {
    let magnet = Torrent::from_info_bytes(&record.info)
        .map(|t| {
            let mut magnet = t.magnet();
            magnet.trackers = trackers.to_vec();
            magnet.to_string()
        })
        .unwrap_or_default();
    v1::Artifact {
        name_tag: record.name_tag.to_string(),
        content_id: record.content_id_hex(),
        info_hash_v1: record
            .info_hash_v1
            .map(|h| data_encoding::HEXLOWER.encode(&h))
            .unwrap_or_default(),
        size: record.size,
        piece_length: record.piece_length,
        files: record
            .files
            .iter()
            .map(|f| v1::FileEntry {
                path: f.path.clone(),
                size: f.size,
                pieces_root: f
                    .pieces_root
                    .map(|r| data_encoding::HEXLOWER.encode(&r))
                    .unwrap_or_default(),
            })
            .collect(),
        created_at: Some(timestamp(record.created_at_ms)),
        created_by: record.created_by.clone(),
        magnet,
        torrent: if include_torrent {
            record.to_torrent_bytes(trackers)
        } else {
            Vec::new()
        },
    }
}

/// The API form of a registered node.
pub fn node(view: &NodeView) -> v1::Node {
    let node = &view.record;
    v1::Node {
        node_id: node.id.as_str().to_owned(),
        labels: node
            .labels
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        peer_address: node.peer_addr.to_string(),
        last_heartbeat: Some(timestamp(node.last_heartbeat_ms)),
        alive: view.alive,
        agent_api: node.agent_api.clone().unwrap_or_default(),
    }
}

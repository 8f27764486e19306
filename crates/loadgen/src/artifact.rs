//! The artifact the simulated agents are told to fetch: a real hybrid torrent over `size`
//! bytes of zeros, built in memory. Every full piece of zeros has the same hashes, so each
//! distinct piece length is hashed once and a gigabyte costs one piece of hashing.

use std::collections::HashMap;

use anyhow::{Context, anyhow};
use shoal_api::v1;
use shoal_control::ArtifactRecord;
use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
use shoal_metainfo::{PathComponent, TorrentPath};

/// The bind request for a torrent named `loadgen-<size>.bin` over `size` bytes of zeros, as
/// `name_tag`, and the artifact's content id (lowercase hex), the id reports carry.
///
/// # Errors
/// When `size` is 0 or the name or tag is not valid.
pub fn zeros(name_tag: &str, size: u64) -> anyhow::Result<(v1::BindArtifactRequest, String)> {
    let name = format!("loadgen-{size}.bin");
    let plan = Plan::new(
        PathComponent::new(&name).map_err(|e| anyhow!("file name {name}: {e}"))?,
        vec![InputFile {
            path: TorrentPath::parse(&name).map_err(|e| anyhow!("file name {name}: {e}"))?,
            length: size,
            executable: false,
        }],
        true,
        CreateOptions::default(),
    )
    .context("cannot plan the torrent")?;
    let mut by_length = HashMap::new();
    let mut hashes = Vec::with_capacity(plan.units().len());
    for (i, unit) in plan.units().iter().enumerate() {
        let hash = match by_length.get(&unit.len()) {
            Some(&hash) => hash,
            None => {
                let data = vec![0u8; usize::try_from(unit.len())?];
                let hash = unit.hash(i, &data)?;
                by_length.insert(unit.len(), hash);
                hash
            }
        };
        hashes.push(hash);
    }
    let torrent = plan.finish(&hashes).context("cannot finish the torrent")?;
    let record = ArtifactRecord::from_torrent(
        name_tag
            .parse()
            .map_err(|e| anyhow!("name:tag {name_tag:?}: {e}"))?,
        &torrent,
        "loadgen",
        0,
    )
    .context("cannot describe the torrent as an artifact")?;
    let content_id = record.content_id_hex();
    Ok((
        v1::BindArtifactRequest {
            name_tag: name_tag.to_owned(),
            info: record.info,
            piece_layers: record.piece_layers,
        },
        content_id,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a panic is the failure report"
    )]

    use super::*;

    #[test]
    fn a_gigabyte_of_zeros_binds_with_a_content_id() {
        let (request, content_id) = zeros("loadgen:1", 1 << 30).unwrap();
        assert_eq!(content_id.len(), 64);
        assert!(!request.info.is_empty() && !request.piece_layers.is_empty());
        // The same size gives the same content: a rerun binds idempotently.
        assert_eq!(zeros("loadgen:1", 1 << 30).unwrap().1, content_id);
    }
}

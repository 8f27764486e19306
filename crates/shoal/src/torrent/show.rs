//! `shoal torrent show`: what a .torrent file or magnet link describes.

use anyhow::Context;
use shoal_metainfo::{MAX_TORRENT_SIZE, Magnet, Torrent};

use crate::cli::ShowArgs;
use crate::output::TorrentReport;

/// Runs `shoal torrent show`.
pub fn run(args: ShowArgs) -> anyhow::Result<()> {
    let report = if args
        .torrent
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
    {
        let magnet = Magnet::parse(&args.torrent).context("cannot read the magnet link")?;
        TorrentReport::from_magnet(&magnet)
    } else {
        let torrent = read_torrent(std::path::Path::new(&args.torrent))?;
        TorrentReport::from_torrent(&torrent)?
    };
    report.print(args.json)
}

/// Reads and parses a .torrent file, refusing files over [`MAX_TORRENT_SIZE`] before reading.
pub fn read_torrent(path: &std::path::Path) -> anyhow::Result<Torrent> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot open {shown}"))?
        .len();
    if size > MAX_TORRENT_SIZE as u64 {
        anyhow::bail!(
            "{shown} is {size} bytes; torrents over {MAX_TORRENT_SIZE} bytes are refused"
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {shown}"))?;
    Torrent::from_bytes(&bytes).with_context(|| format!("{shown} is not a valid torrent"))
}

//! Everything the CLI prints: the torrent report (text or JSON) and error messages. Printing
//! lives here so the commands stay free of formatting.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module is the CLI's voice"
)]

use serde::Serialize;
use shoal_metainfo::{Magnet, Torrent};

use crate::units::format_size;

/// What `shoal torrent show` (and `create`) reports about a torrent or magnet link. The JSON
/// form is a stable interface: fields are added, never renamed.
#[derive(Debug, Serialize)]
pub struct TorrentReport {
    /// The torrent's name.
    pub name: Option<String>,
    /// `v1`, `v2`, `hybrid`, or `magnet` when only a magnet link is known.
    pub version: &'static str,
    /// Total size of the files (padding excluded), in bytes.
    pub total_size: Option<u64>,
    /// Piece length in bytes.
    pub piece_length: Option<u32>,
    /// Number of pieces.
    pub piece_count: Option<u32>,
    /// The BEP 27 private flag.
    pub private: Option<bool>,
    /// The v1 info-hash, hex.
    pub info_hash_v1: Option<String>,
    /// The v2 info-hash, hex.
    pub info_hash_v2: Option<String>,
    /// The files (padding files left out).
    pub files: Vec<FileReport>,
    /// Tracker tiers.
    pub trackers: Vec<Vec<String>>,
    /// Web seeds.
    pub web_seeds: Vec<String>,
    /// Peer addresses from a magnet link.
    pub peers: Vec<String>,
    /// Comment.
    pub comment: Option<String>,
    /// Creating program.
    pub created_by: Option<String>,
    /// Creation time, Unix seconds.
    pub creation_date: Option<i64>,
    /// The magnet link.
    pub magnet: String,
}

/// One file in a [`TorrentReport`].
#[derive(Debug, Serialize)]
pub struct FileReport {
    /// Path relative to the torrent's directory, `/`-separated.
    pub path: String,
    /// Length in bytes.
    pub length: u64,
    /// Marked executable.
    pub executable: bool,
}

impl TorrentReport {
    /// The report for a parsed torrent.
    pub fn from_torrent(torrent: &Torrent) -> anyhow::Result<Self> {
        let info = torrent.info();
        let geometry = info.geometry()?;
        Ok(Self {
            name: Some(info.name.to_string()),
            version: info.version.as_str(),
            total_size: Some(info.total_size()),
            piece_length: Some(info.piece_length.get()),
            piece_count: Some(geometry.piece_count()),
            private: Some(info.private),
            info_hash_v1: torrent.info_hashes().v1().map(|h| h.to_hex()),
            info_hash_v2: torrent.info_hashes().v2().map(|h| h.to_hex()),
            files: info
                .data_files()
                .map(|f| FileReport {
                    path: f.path.to_string(),
                    length: f.length,
                    executable: f.attr.executable,
                })
                .collect(),
            trackers: torrent.trackers(),
            web_seeds: torrent.web_seeds.clone(),
            peers: Vec::new(),
            comment: torrent.comment.clone(),
            created_by: torrent.created_by.clone(),
            creation_date: torrent.creation_date,
            magnet: torrent.magnet().to_string(),
        })
    }

    /// The report for a magnet link: what the link says, and nothing it does not.
    pub fn from_magnet(magnet: &Magnet) -> Self {
        Self {
            name: magnet.name.clone(),
            version: "magnet",
            total_size: magnet.exact_length,
            piece_length: None,
            piece_count: None,
            private: None,
            info_hash_v1: magnet.info_hashes.v1().map(|h| h.to_hex()),
            info_hash_v2: magnet.info_hashes.v2().map(|h| h.to_hex()),
            files: Vec::new(),
            trackers: magnet.trackers.iter().map(|t| vec![t.clone()]).collect(),
            web_seeds: magnet.web_seeds.clone(),
            peers: magnet.peers.clone(),
            comment: None,
            created_by: None,
            creation_date: None,
            magnet: magnet.to_string(),
        }
    }

    /// Prints the report: pretty JSON, or aligned text.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
            return Ok(());
        }
        let row = |label: &str, value: &str| println!("{label:<14}{value}");
        row("name:", self.name.as_deref().unwrap_or("(unknown)"));
        let version = match self.version {
            "hybrid" => "hybrid (v1 + v2)",
            "magnet" => "magnet link (metadata not fetched)",
            other => other,
        };
        row("version:", version);
        if let Some(size) = self.total_size {
            row(
                "total size:",
                &format!("{} ({size} bytes)", format_size(size)),
            );
        }
        if let (Some(len), Some(count)) = (self.piece_length, self.piece_count) {
            row(
                "piece length:",
                &format!("{} ({count} pieces)", format_size(len.into())),
            );
        }
        if let Some(private) = self.private {
            row(
                "private:",
                if private {
                    "yes (peers from trackers only)"
                } else {
                    "no"
                },
            );
        }
        if let Some(v1) = &self.info_hash_v1 {
            row("info-hash v1:", v1);
        }
        if let Some(v2) = &self.info_hash_v2 {
            row("info-hash v2:", v2);
        }
        for (i, tier) in self.trackers.iter().enumerate() {
            row(
                if i == 0 { "trackers:" } else { "" },
                &format!("tier {}: {}", i + 1, tier.join(", ")),
            );
        }
        for (i, seed) in self.web_seeds.iter().enumerate() {
            row(if i == 0 { "web seeds:" } else { "" }, seed);
        }
        for (i, peer) in self.peers.iter().enumerate() {
            row(if i == 0 { "peers:" } else { "" }, peer);
        }
        if let Some(comment) = &self.comment {
            row("comment:", comment);
        }
        if let Some(created_by) = &self.created_by {
            row("created by:", created_by);
        }
        if !self.files.is_empty() {
            println!("files ({}):", self.files.len());
            for file in &self.files {
                let mark = if file.executable { " (executable)" } else { "" };
                println!("  {:>10}  {}{mark}", format_size(file.length), file.path);
            }
        }
        row("magnet:", &self.magnet);
        Ok(())
    }
}

/// Prints an error and its causes on stderr, one per line.
pub fn report_error(error: &anyhow::Error) {
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// Prints a JSON document on stdout.
pub fn json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints one status line on stderr (kept off stdout, which carries results).
pub fn status(line: &str) {
    eprintln!("{line}");
}

/// Sends log events to stderr. The level comes from `SHOAL_LOG` (`error`, `warn`, `info`,
/// `debug`, `trace`; default `warn`, so a healthy run prints only its own output).
pub fn init_logging() {
    let level = std::env::var("SHOAL_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints one line of a client command's text output on stdout.
pub fn line(text: &str) {
    println!("{text}");
}

/// Prints an API message as its proto3 JSON (the same JSON the REST API returns).
pub fn json_value<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

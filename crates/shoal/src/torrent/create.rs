//! `shoal torrent create`: hash a file or directory into a .torrent, with a progress bar on a
//! terminal.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoal_metainfo::create::CreateOptions;
use shoal_metainfo::{MetaVersion, PathComponent};

use crate::cli::CreateArgs;
use crate::output::{TorrentReport, status};
use crate::units::format_size;

/// Inputs smaller than this hash in well under a second: no progress bar.
const PROGRESS_THRESHOLD: u64 = 64 << 20;

/// Runs `shoal torrent create`.
pub fn run(args: CreateArgs) -> anyhow::Result<()> {
    if args.output.exists() && !args.force {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite it",
            args.output.display()
        );
    }
    let version = match (args.v1, args.v2) {
        (true, _) => MetaVersion::V1,
        (_, true) => MetaVersion::V2,
        _ => MetaVersion::Hybrid,
    };
    let name = args
        .name
        .as_deref()
        .map(PathComponent::new)
        .transpose()
        .context("--name cannot be used as a file name")?;
    let source = shoal_create::scan(&args.path)
        .with_context(|| format!("cannot read {}", args.path.display()))?;
    let options = CreateOptions {
        version,
        piece_length: args.piece_length,
        private: args.private,
        trackers: args
            .trackers
            .iter()
            .map(|tier| {
                tier.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .collect(),
        web_seeds: args.web_seeds.clone(),
        comment: args.comment.clone(),
        created_by: Some(concat!("shoal/", env!("CARGO_PKG_VERSION")).to_owned()),
        creation_date: (!args.no_date).then(unix_now),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let total = source.total_size();
    let bar = progress_bar(total);
    let started = std::time::Instant::now();
    let torrent = shoal_create::create(&source, options, name, threads, &|bytes| bar.inc(bytes))
        .with_context(|| format!("cannot create a torrent from {}", args.path.display()))?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    write_atomically(&args.output, &torrent.to_bytes())?;
    if !args.json {
        status(&format!(
            "hashed {} in {:.2}s ({}/s) on {threads} thread{}; wrote {}",
            format_size(total),
            elapsed.as_secs_f64(),
            format_size((total as f64 / elapsed.as_secs_f64().max(1e-9)) as u64),
            if threads == 1 { "" } else { "s" },
            args.output.display(),
        ));
    }
    TorrentReport::from_torrent(&torrent)?.print(args.json)
}

fn progress_bar(total: u64) -> ProgressBar {
    if total < PROGRESS_THRESHOLD {
        return ProgressBar::hidden();
    }
    // Draws only when stderr is a terminal; hidden otherwise.
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "hashing {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place, so a crash
/// never leaves a half-written torrent under the final name.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let file_name = path
        .file_name()
        .context("the output path has no file name")?;
    let temp = dir.join(format!(".{}.partial", file_name.to_string_lossy()));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

//! `shoal torrent download` and `shoal torrent seed`: the one-shot client, no daemon needed.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shoal_driver::{Progress, SessionConfig, Summary};
use shoal_storage::{FileStore, PieceStore, ResumeState};
use tokio::sync::watch;

use crate::cli::{DownloadArgs, SeedArgs};
use crate::output::status;
use crate::torrent::show::read_torrent;
use crate::units::format_size;

/// How long to look for a magnet link's metadata before giving up.
const METADATA_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `shoal torrent download`.
pub fn download(args: DownloadArgs) -> anyhow::Result<()> {
    let runtime = runtime()?;
    let mut peers = runtime.block_on(resolve(&args.peers))?;
    let torrent = if args
        .torrent
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("magnet:"))
    {
        let magnet =
            shoal_metainfo::Magnet::parse(&args.torrent).context("cannot read the magnet link")?;
        status("fetching the torrent's metadata from peers (BEP 9)");
        let fetched = runtime.block_on(shoal_driver::fetch_metadata(
            &magnet,
            peers.clone(),
            shoal_driver::new_peer_id(),
            METADATA_TIMEOUT,
        ))?;
        status(&format!(
            "metadata verified: {}",
            fetched.torrent.info().name
        ));
        for addr in fetched.peers {
            if !peers.contains(&addr) {
                peers.push(addr);
            }
        }
        Arc::new(fetched.torrent)
    } else {
        Arc::new(read_torrent(Path::new(&args.torrent))?)
    };
    let info = torrent.info();
    let web_seeds: Vec<String> = torrent
        .web_seeds
        .iter()
        .chain(&args.web_seeds)
        .cloned()
        .collect();
    if peers.is_empty()
        && torrent.trackers().is_empty()
        && web_seeds.is_empty()
        && args.listen.is_none()
    {
        anyhow::bail!(
            "nothing to download from: the torrent names no tracker and no web seed; give a peer \
             (--peer HOST:PORT), a web seed (--web-seed URL), or a port peers can reach (--listen PORT)"
        );
    }
    let id = torrent
        .info_hashes()
        .v2()
        .map(|h| h.to_hex())
        .or_else(|| torrent.info_hashes().v1().map(|h| h.to_hex()));
    let id = id.context("the torrent has no info-hash")?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let staging = args.output.join(".shoal-staging");
    let store = FileStore::open(info, &id, &staging, &args.output)
        .with_context(|| format!("cannot prepare the download in {}", staging.display()))?;
    // After an interruption, pieces written but not yet recorded may be intact: check them
    // rather than download them again.
    let recheck = !matches!(store.resume_state(), ResumeState::Fresh);
    if let ResumeState::Restored { verified, .. } = store.resume_state() {
        status(&format!("resuming: {verified} pieces already verified"));
    }
    let total_size = info.total_size();
    let name = info.name.to_string();
    let config = SessionConfig {
        torrent: torrent.clone(),
        store: Arc::new(store),
        recheck,
        require_complete: false,
        listen: args.listen,
        inbound: None,
        peers,
        trackers: torrent.trackers(),
        web_seeds,
        swarm: swarm_config(args.listen.map(|a| a.port())),
        peer_id: shoal_driver::new_peer_id(),
        seed_for: args.seed_for,
        max_peers: 200,
        limits: shoal_driver::HostLimits::default(),
        site: None,
    };
    let started = Instant::now();
    let summary = runtime.block_on(run_with_progress(config, total_size, "downloading"))?;
    let elapsed = started.elapsed();
    // The staging root is empty once the last download in it finished.
    let _ = std::fs::remove_dir(&staging);
    if !summary.complete {
        anyhow::bail!(
            "stopped before the download completed ({} of {} downloaded); run the same command again to resume",
            format_size(summary.stats.downloaded),
            format_size(total_size)
        );
    }
    let line = format!(
        "downloaded {name} ({}) in {:.1}s ({}/s), every piece verified; saved in {}",
        format_size(total_size),
        elapsed.as_secs_f64(),
        format_size((total_size as f64 / elapsed.as_secs_f64().max(1e-3)) as u64),
        args.output.display()
    );
    if args.json {
        crate::output::json(&serde_json::json!({
            "name": name,
            "size": total_size,
            "seconds": elapsed.as_secs_f64(),
            "downloaded": summary.stats.downloaded,
            "uploaded": summary.stats.uploaded,
            "wasted": summary.stats.wasted,
            "pieces_failed": summary.stats.pieces_failed,
            "peers_banned": summary.banned.len(),
            "banned": summary.banned.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "banned_web_seeds": summary.banned_web_seeds,
            "path": args.output.join(&name),
        }))?;
    } else {
        status(&line);
    }
    Ok(())
}

/// Runs `shoal torrent seed`.
pub fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let torrent = Arc::new(read_torrent(&args.torrent)?);
    let info = torrent.info();
    let store = FileStore::seed_in_place(info, &args.data)
        .with_context(|| format!("{} does not hold this torrent's files", args.data.display()))?;
    let total_size = info.total_size();
    let runtime = runtime()?;
    let peers = runtime.block_on(resolve(&args.peers))?;
    let config = SessionConfig {
        torrent: torrent.clone(),
        store: Arc::new(store) as Arc<dyn PieceStore>,
        recheck: true,
        require_complete: true,
        listen: Some(args.listen),
        inbound: None,
        peers,
        trackers: torrent.trackers(),
        web_seeds: Vec::new(),
        swarm: shoal_swarm::Config {
            super_seed: args.super_seed,
            ..swarm_config(Some(args.listen.port()))
        },
        peer_id: shoal_driver::new_peer_id(),
        seed_for: Some(args.seed_for.unwrap_or(Duration::MAX)),
        max_peers: usize::from(args.max_peers),
        limits: shoal_driver::HostLimits::default(),
        site: None,
    };
    status(&format!(
        "checking {} before seeding it on port {}",
        args.data.display(),
        args.listen
    ));
    let summary = runtime
        .block_on(run_with_progress(config, total_size, "seeding"))
        .with_context(|| format!("cannot seed {}", args.data.display()))?;
    status(&format!(
        "stopped seeding; uploaded {}",
        format_size(summary.stats.uploaded)
    ));
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn swarm_config(listen: Option<u16>) -> shoal_swarm::Config {
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&shoal_driver::new_peer_id()[8..16]);
    shoal_swarm::Config {
        listen_port: listen,
        seed: u64::from_le_bytes(seed),
        // Swarms we join on our own mostly grow from plain seeds, where freeing a peer's
        // slot while we have nothing to ask of it makes peers lean on the seeds instead.
        withdraw_idle_interest: false,
        ..shoal_swarm::Config::default()
    }
}

async fn resolve(peers: &[String]) -> anyhow::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for peer in peers {
        let addrs = tokio::net::lookup_host(peer.as_str())
            .await
            .with_context(|| format!("--peer {peer}: not a HOST:PORT that resolves"))?;
        out.extend(addrs.take(1));
    }
    Ok(out)
}

/// Runs the session, drawing a progress bar on a terminal, until it ends or Ctrl-C.
async fn run_with_progress(
    config: SessionConfig,
    total_size: u64,
    verb: &'static str,
) -> anyhow::Result<Summary> {
    let (tx, mut rx) = watch::channel(Progress::default());
    // A bar only on a terminal; logs and pipes get the final summary line alone.
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(total_size), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    let style = ProgressStyle::with_template(
        "{msg:12} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {prefix}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(verb);
    let piece_bytes = total_size as f64;
    let draw = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let p = rx.borrow().clone();
                if let Some(checked) = p.checking {
                    bar.set_message("checking");
                    bar.set_prefix(format!("{checked} pieces checked"));
                    continue;
                }
                bar.set_message(verb);
                let fraction = if p.total == 0 {
                    0.0
                } else {
                    f64::from(p.have) / f64::from(p.total)
                };
                bar.set_position((fraction * piece_bytes) as u64);
                bar.set_prefix(format!(
                    "{} peers, {} up",
                    p.peers,
                    format_size(p.stats.uploaded)
                ));
            }
        })
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let result = shoal_driver::run(config, shutdown, tx).await;
    draw.abort();
    bar.finish_and_clear();
    Ok(result?)
}

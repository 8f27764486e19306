//! Prometheus metrics of the agent, in the text exposition format at `GET /metrics`.
//!
//! Totals over every torrent (no per-torrent labels, so the series count stays fixed however
//! many artifacts an agent holds): bytes up and down, pieces verified and failed, peers
//! connected, peers banned, pieces re-checked at start, tracker announces and their latency,
//! torrents by state.

use std::fmt::Write as _;

use crate::Agent;
use crate::torrents::RunState;

impl Agent {
    /// The metrics, rendered.
    pub fn render_metrics(&self) -> String {
        let retired = self.torrents.retired();
        let (mut up, mut down, mut failed, mut banned, mut rechecked) = (
            retired.uploaded,
            retired.downloaded,
            retired.pieces_failed,
            retired.peers_banned,
            retired.pieces_rechecked,
        );
        let (mut verified, mut peers, mut up_rate, mut down_rate) = (0u64, 0u64, 0u64, 0u64);
        let mut states = [0u64; 4];
        let mut announces = retired.announces;
        for view in self.torrents.list() {
            let p = view.progress.borrow().clone();
            up += p.stats.uploaded;
            down += p.stats.downloaded;
            failed += u64::from(p.stats.pieces_failed);
            banned += u64::from(p.stats.peers_banned);
            rechecked += u64::from(p.rechecked);
            announces.ok += p.announces.ok;
            announces.failed += p.announces.failed;
            announces.micros += p.announces.micros;
            verified += u64::from(p.have);
            peers += p.peers as u64;
            up_rate += view.rates.upload;
            down_rate += view.rates.download;
            let slot = match *view.state.borrow() {
                RunState::Checking => 0,
                RunState::Downloading => 1,
                RunState::Seeding => 2,
                RunState::Failed(_) => 3,
            };
            states[slot] += 1;
        }
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        };
        metric(
            "shoal_uploaded_bytes_total",
            "counter",
            "Bytes of piece data sent to peers.",
            up,
        );
        metric(
            "shoal_downloaded_bytes_total",
            "counter",
            "Bytes of piece data received from peers.",
            down,
        );
        metric(
            "shoal_pieces_verified",
            "gauge",
            "Pieces held and verified, all torrents.",
            verified,
        );
        metric(
            "shoal_pieces_failed_total",
            "counter",
            "Pieces that failed hash verification (their data was discarded).",
            failed,
        );
        metric(
            "shoal_pieces_rechecked_total",
            "counter",
            "Pieces hash-checked when their torrent started (data the resume record did not cover).",
            rechecked,
        );
        metric(
            "shoal_peers_banned_total",
            "counter",
            "Peers banned for sending data that failed verification.",
            banned,
        );
        metric(
            "shoal_peers",
            "gauge",
            "Connected peers, all torrents.",
            peers,
        );
        metric(
            "shoal_upload_rate_bytes",
            "gauge",
            "Bytes per second sent, averaged over 5 s.",
            up_rate,
        );
        metric(
            "shoal_download_rate_bytes",
            "gauge",
            "Bytes per second received, averaged over 5 s.",
            down_rate,
        );
        metric(
            "shoal_control_plane_connected",
            "gauge",
            "1 when the last heartbeat to the control plane succeeded.",
            u64::from(self.connected()),
        );
        let _ = write!(
            out,
            "# HELP shoal_tracker_announces_total Announces to trackers, by result.\n\
             # TYPE shoal_tracker_announces_total counter\n\
             shoal_tracker_announces_total{{result=\"ok\"}} {}\n\
             shoal_tracker_announces_total{{result=\"failed\"}} {}\n\
             # HELP shoal_tracker_announce_duration_seconds Time announces took (sum / count is the mean latency).\n\
             # TYPE shoal_tracker_announce_duration_seconds summary\n\
             shoal_tracker_announce_duration_seconds_sum {:.6}\n\
             shoal_tracker_announce_duration_seconds_count {}\n",
            announces.ok,
            announces.failed,
            announces.micros as f64 / 1e6,
            announces.ok + announces.failed,
        );
        let _ = write!(
            out,
            "# HELP shoal_torrents Torrents held, by state.\n# TYPE shoal_torrents gauge\n\
             shoal_torrents{{state=\"checking\"}} {}\nshoal_torrents{{state=\"downloading\"}} {}\n\
             shoal_torrents{{state=\"seeding\"}} {}\nshoal_torrents{{state=\"failed\"}} {}\n",
            states[0], states[1], states[2], states[3]
        );
        out
    }
}

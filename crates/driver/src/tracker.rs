//! Announcing to HTTP trackers (BEP 3, with BEP 12 tiers and BEP 23 compact peers): a task per
//! session that tells the trackers about us and hands the peers they return to the session.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use shoal_tracker_proto::{AnnounceReply, AnnounceRequest, Event as AnnounceEvent, MAX_BODY_LEN};
use tokio::sync::{mpsc, oneshot, watch};

use crate::session::{Event, Progress};

/// How long one announce may take.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(15);

/// The shortest and longest pause between announces, whatever the tracker says.
const MIN_INTERVAL: Duration = Duration::from_secs(30);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// After a round in which every tracker failed, wait this long before retrying.
const RETRY_INTERVAL: Duration = Duration::from_secs(15);

/// Why one announce failed (logged; the next tracker or round is tried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnnounceError {
    #[error("only http:// trackers are supported so far")]
    Scheme,
    #[error("bad tracker URL: {0}")]
    Url(String),
    #[error("request failed: {0}")]
    Http(String),
    #[error("the tracker answered HTTP {0}")]
    Status(u16),
    #[error("no answer within {ANNOUNCE_TIMEOUT:?}")]
    Timeout,
    #[error("unreadable answer: {0}")]
    Body(String),
    #[error("the tracker refused: {0}")]
    Refused(String),
}

/// What every announce of this session carries.
pub(crate) struct Announcer {
    pub tiers: Vec<Vec<String>>,
    /// The last error seen per tracker: a repeat is logged at debug, a change at warn.
    pub last_error: std::collections::HashMap<String, String>,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    /// The address to be listed under (BEP 3 `ip`), when we listen on a specific one: the
    /// source address of our HTTP request may differ (several addresses on one host).
    pub ip: Option<std::net::IpAddr>,
    pub total_size: u64,
    pub piece_length: u64,
    /// Sent as `shoal_site`.
    pub site: Option<String>,
}

impl Announcer {
    /// Announces until `stop` fires (then sends `stopped`), re-announcing at the tracker's
    /// interval and at once when the download completes.
    pub(crate) async fn run(
        mut self,
        mut progress: watch::Receiver<Progress>,
        events: mpsc::Sender<Event>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut event = Some(AnnounceEvent::Started);
        let mut completed_sent = progress.borrow().complete;
        let mut failed_rounds = 0u32;
        loop {
            let snapshot = progress.borrow().clone();
            let interval = match self
                .announce_round(&client, &snapshot, event, &events)
                .await
            {
                Some((interval, peers)) => {
                    failed_rounds = 0;
                    if !peers.is_empty() && events.send(Event::Peers(peers)).await.is_err() {
                        return;
                    }
                    interval
                }
                None => {
                    // Back off: 15 s, 30 s, 1 min, ... up to an hour.
                    failed_rounds = failed_rounds.saturating_add(1);
                    RETRY_INTERVAL
                        .saturating_mul(1 << failed_rounds.min(8).saturating_sub(1))
                        .min(MAX_INTERVAL)
                }
            };
            event = None;
            let next = tokio::time::sleep(interval);
            tokio::pin!(next);
            loop {
                tokio::select! {
                    _ = &mut stop => {
                        let snapshot = progress.borrow().clone();
                        let _ = self.announce_round(&client, &snapshot, Some(AnnounceEvent::Stopped), &events).await;
                        return;
                    }
                    () = &mut next => break,
                    changed = progress.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if progress.borrow().complete && !completed_sent {
                            completed_sent = true;
                            event = Some(AnnounceEvent::Completed);
                            break;
                        }
                    }
                }
            }
        }
    }

    /// One round over the tiers (BEP 12): the first tracker that answers wins and moves to the
    /// front of its tier. Returns the interval to wait and the peers, or `None` if none answered.
    async fn announce_round(
        &mut self,
        client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
        progress: &Progress,
        event: Option<AnnounceEvent>,
        events: &mpsc::Sender<Event>,
    ) -> Option<(Duration, Vec<SocketAddr>)> {
        let have_bytes = u64::from(progress.have)
            .saturating_mul(self.piece_length)
            .min(self.total_size);
        let request = AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.peer_id,
            port: self.port,
            uploaded: progress.stats.uploaded,
            downloaded: progress.stats.downloaded,
            left: if progress.complete {
                0
            } else {
                self.total_size - have_bytes
            },
            event,
            compact: true,
            numwant: Some(200),
            key: None,
            ip: self.ip,
            no_peer_id: true,
            tracker_id: None,
            site: self.site.clone(),
        };
        for t in 0..self.tiers.len() {
            for u in 0..self.tiers[t].len() {
                let url = self.tiers[t][u].clone();
                let started = tokio::time::Instant::now();
                let result = announce(client, &request.url(&url)).await;
                // For metrics only: dropped rather than waited for when the session is busy.
                let _ = events.try_send(Event::Announced {
                    took: started.elapsed(),
                    ok: result.is_ok(),
                });
                match result {
                    Ok(reply) => {
                        tracing::debug!(tracker = %url, peers = reply.peers.len(), interval = reply.interval, "announced");
                        self.last_error.remove(&url);
                        let tier = &mut self.tiers[t];
                        let winner = tier.remove(u);
                        tier.insert(0, winner);
                        let interval = Duration::from_secs(u64::from(reply.interval))
                            .clamp(MIN_INTERVAL, MAX_INTERVAL);
                        return Some((interval, reply.peers));
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if self.last_error.get(&url) == Some(&text) {
                            tracing::debug!(tracker = %url, error = %text, "announce failed again");
                        } else {
                            tracing::warn!(tracker = %url, error = %text, "announce failed; retrying with back-off");
                            self.last_error.insert(url.clone(), text);
                        }
                    }
                }
            }
        }
        None
    }
}

async fn announce(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    url: &str,
) -> Result<shoal_tracker_proto::AnnounceResponse, AnnounceError> {
    if !url.starts_with("http://") {
        return Err(AnnounceError::Scheme);
    }
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| AnnounceError::Url(e.to_string()))?;
    let work = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| AnnounceError::Http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(AnnounceError::Status(response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY_LEN)
            .collect()
            .await
            .map_err(|e| AnnounceError::Body(e.to_string()))?
            .to_bytes();
        match AnnounceReply::parse(&body).map_err(|e| AnnounceError::Body(e.to_string()))? {
            AnnounceReply::Ok(response) => Ok(response),
            AnnounceReply::Failure(reason) => Err(AnnounceError::Refused(reason)),
        }
    };
    tokio::time::timeout(ANNOUNCE_TIMEOUT, work)
        .await
        .map_err(|_| AnnounceError::Timeout)?
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use super::*;

    /// An HTTP tracker on loopback that answers every announce with no peers and hands over
    /// each request line.
    fn tracker() -> (String, std::sync::mpsc::Receiver<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/announce", listener.local_addr().unwrap());
        let (lines, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut header = String::new();
                while reader.read_line(&mut header).unwrap() > 2 {
                    header.clear();
                }
                let body = b"d8:intervali60e5:peers0:e";
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(body).unwrap();
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        (url, received)
    }

    /// The request line of the first announce an announcer with `site` sends.
    async fn first_announce(site: Option<&str>) -> String {
        let (url, lines) = tracker();
        let announcer = Announcer {
            tiers: vec![vec![url]],
            last_error: std::collections::HashMap::new(),
            info_hash: [1; 20],
            peer_id: [2; 20],
            port: 6881,
            ip: None,
            total_size: 100,
            piece_length: 16 * 1024,
            site: site.map(str::to_owned),
        };
        let (_progress, progress_rx) = watch::channel(Progress::default());
        let (events, _events_rx) = mpsc::channel(8);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(announcer.run(progress_rx, events, stopped));
        let line = tokio::task::spawn_blocking(move || lines.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("an announce within 30 s");
        let _ = stop.send(());
        task.await.unwrap();
        line
    }

    #[tokio::test]
    async fn announces_name_the_site_when_the_host_has_one() {
        let line = first_announce(Some("eu-west.a")).await;
        assert!(line.contains("&shoal_site=eu-west.a"), "{line}");
        assert!(line.contains("event=started"), "{line}");
        let line = first_announce(None).await;
        assert!(!line.contains("shoal_site"), "{line}");
    }
}

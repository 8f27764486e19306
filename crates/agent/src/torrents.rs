//! The torrents an agent holds: one driver session each, all behind one peer listener.
//!
//! A torrent starts in one of three ways, decided by what the data directory holds:
//! - complete and recorded ([`DataDir::is_complete`]): seeded at once, no hashing;
//! - data present but not recorded (a crash between finishing and recording): hash-checked,
//!   then seeded;
//! - otherwise downloaded into staging, resuming from the resume file (pieces written after
//!   its last flush are hash-checked, not fetched again), then moved into the store.
//!
//! Each session has a monitor task that records completion and keeps smoothed rates.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use shoal_driver::{HostLimits, PeerListener, Progress, SessionConfig};
use shoal_metainfo::Torrent;
use shoal_storage::{FileStore, PieceStore, ResumeState, StorageError};
use tokio::sync::{oneshot, watch};

use crate::action::OnComplete;
use crate::store::DataDir;

/// Artifacts something is reading right now (a retrieve copying one out, the
/// post-completion action): the quota does not evict them. Cloning shares the registry.
#[derive(Clone, Debug, Default)]
pub struct Uses(Arc<Mutex<HashMap<String, usize>>>);

impl Uses {
    /// Marks `id` in use until the guard drops.
    pub fn hold(&self, id: &str) -> InUse {
        *lock(&self.0).entry(id.to_owned()).or_default() += 1;
        InUse {
            uses: self.clone(),
            id: id.to_owned(),
        }
    }

    /// Returns true if and only if something holds `id`.
    pub fn contains(&self, id: &str) -> bool {
        lock(&self.0).contains_key(id)
    }
}

/// A hold on an artifact in use; released on drop.
#[derive(Debug)]
pub struct InUse {
    uses: Uses,
    id: String,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut uses = lock(&self.uses.0);
        if let Some(n) = uses.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                uses.remove(&self.id);
            }
        }
    }
}

/// The most peers each torrent keeps, unless a policy says fewer. Fewer connections make for
/// shorter waits for each peer's upload slots: in `shoal-sim`, 100 hosts finish in 1.41 x the
/// lower bound with 50 and 1.80 x with 200 (8 upload slots each). Transmission's default per
/// torrent is 50 too.
pub const MAX_PEERS: usize = 50;

/// What the agent is doing with a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Hash-checking data found on disk.
    Checking,
    /// Downloading.
    Downloading,
    /// Complete and sharing.
    Seeding,
    /// Stopped by an error.
    Failed(String),
}

/// Rates in bytes per second, averaged over about five seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Sent.
    pub upload: u64,
    /// Received.
    pub download: u64,
}

/// A view of one torrent.
#[derive(Clone)]
pub struct TorrentView {
    /// Its content id (v2 info-hash, hex).
    pub id: String,
    /// The torrent.
    pub torrent: Arc<Torrent>,
    /// Its catalog name, when known.
    pub name_tag: Option<String>,
    /// Progress from the driver.
    pub progress: watch::Receiver<Progress>,
    /// What it is doing.
    pub state: watch::Receiver<RunState>,
    /// Smoothed rates.
    pub rates: Rates,
}

struct Entry {
    torrent: Arc<Torrent>,
    name_tag: Option<String>,
    progress: watch::Receiver<Progress>,
    state: watch::Receiver<RunState>,
    rates: Arc<Mutex<Rates>>,
    stop: Option<oneshot::Sender<()>>,
    session: tokio::task::JoinHandle<()>,
}

/// Counters of torrents that are gone, so totals never go backwards.
#[derive(Clone, Copy, Debug, Default)]
pub struct Retired {
    /// Bytes sent.
    pub uploaded: u64,
    /// Bytes received.
    pub downloaded: u64,
    /// Pieces that failed verification.
    pub pieces_failed: u64,
    /// Peers banned.
    pub peers_banned: u64,
    /// Pieces hash-checked when their torrent started.
    pub pieces_rechecked: u64,
    /// Tracker announces.
    pub announces: shoal_driver::AnnounceStats,
}

/// Every torrent of the agent.
pub struct Torrents {
    data: DataDir,
    listener: PeerListener,
    advertise: SocketAddr,
    peer_id: [u8; 20],
    announce: Mutex<Vec<String>>,
    entries: Mutex<HashMap<String, Entry>>,
    retired: Mutex<Retired>,
    limits: HostLimits,
    on_complete: OnComplete,
    uses: Uses,
    /// The host's `site` label, told to trackers.
    site: Option<String>,
}

impl Torrents {
    /// A manager over `data`, accepting peers on `listener` and telling trackers `advertise`.
    pub fn new(data: DataDir, listener: PeerListener, advertise: SocketAddr) -> Self {
        Self {
            data,
            listener,
            advertise,
            peer_id: shoal_driver::new_peer_id(),
            announce: Mutex::new(Vec::new()),
            entries: Mutex::new(HashMap::new()),
            retired: Mutex::new(Retired::default()),
            limits: HostLimits::default(),
            on_complete: OnComplete::default(),
            uses: Uses::default(),
            site: None,
        }
    }

    /// Tells trackers that this host is in `site` (its `site` label), so that they name peers
    /// of the same site (see `shoal_control::Tracker`).
    #[must_use]
    pub fn with_site(mut self, site: Option<String>) -> Self {
        self.site = site;
        self
    }

    /// What is in use right now (the quota does not evict it).
    pub fn uses(&self) -> &Uses {
        &self.uses
    }

    /// Runs `action` once for each artifact verified here.
    #[must_use]
    pub fn with_on_complete(mut self, action: OnComplete) -> Self {
        self.on_complete = action;
        self
    }

    /// The data directory.
    pub fn data(&self) -> &DataDir {
        &self.data
    }

    /// The limits every torrent shares (rate caps, no uploads, fewer peers); setting them
    /// changes running transfers at once.
    pub fn limits(&self) -> &HostLimits {
        &self.limits
    }

    /// The address peers reach this agent at.
    pub fn advertise(&self) -> SocketAddr {
        self.advertise
    }

    /// Sets the tracker URLs every torrent announces to (the control plane's tracker).
    pub fn set_announce(&self, urls: Vec<String>) {
        *lock(&self.announce) = urls;
    }

    /// The counters of torrents removed since start.
    pub fn retired(&self) -> Retired {
        *lock(&self.retired)
    }

    /// Starts `torrent` (seeding or downloading, as the data directory decides) unless it
    /// runs already; records it so a restart resumes it. Returns its content id.
    ///
    /// # Errors
    /// When its store cannot be opened or its record written.
    pub fn start(
        &self,
        torrent: Arc<Torrent>,
        name_tag: Option<String>,
    ) -> Result<String, StorageError> {
        let id = content_id(&torrent);
        if let Err(e) = self.data.touch(&id, shoal_server::now_ms()) {
            tracing::debug!(content_id = %id, error = %e, "cannot record the use of an artifact");
        }
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get_mut(&id) {
            let failed = matches!(*entry.state.borrow(), RunState::Failed(_));
            if name_tag.is_some() && entry.name_tag.is_none() {
                entry.name_tag.clone_from(&name_tag);
                let _ = self
                    .data
                    .save_torrent(&id, &entry.torrent, name_tag.as_deref());
            }
            if !failed {
                return Ok(id);
            }
            // A failed session (disk full, say) is started again.
            entries.remove(&id);
        }
        self.data
            .save_torrent(&id, &torrent, name_tag.as_deref())
            .map_err(|e| StorageError::io("recording the torrent", self.data.root(), e))?;
        let entry = self.spawn(&id, torrent, name_tag)?;
        entries.insert(id.clone(), entry);
        Ok(id)
    }

    fn spawn(
        &self,
        id: &str,
        torrent: Arc<Torrent>,
        name_tag: Option<String>,
    ) -> Result<Entry, StorageError> {
        let info = torrent.info();
        let (store, recheck, seeding): (Arc<dyn PieceStore>, bool, bool) =
            if self.data.is_complete(id, info) {
                let store = FileStore::seed_verified(info, &self.data.data_path(id, info))?;
                (Arc::new(store), false, true)
            } else if self.data.has_data(id, info) {
                let store = FileStore::seed_in_place(info, &self.data.data_path(id, info))?;
                (Arc::new(store), true, true)
            } else {
                let store_dir = self.data.store_dir(id);
                std::fs::create_dir_all(&store_dir)
                    .map_err(|e| StorageError::io("creating the store", &store_dir, e))?;
                let store = FileStore::open(info, id, &self.data.staging(), &store_dir)?;
                let recheck = !matches!(store.resume_state(), ResumeState::Fresh);
                if let ResumeState::Restored { verified, .. } = store.resume_state() {
                    tracing::info!(content_id = %id, verified, "resuming a download");
                }
                (Arc::new(store), recheck, false)
            };
        let hashes = announce_hashes(&torrent);
        let mut trackers: Vec<Vec<String>> = lock(&self.announce)
            .iter()
            .map(|u| vec![u.clone()])
            .collect();
        for tier in torrent.trackers() {
            if !trackers.contains(&tier) {
                trackers.push(tier);
            }
        }
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&shoal_driver::new_peer_id()[8..16]);
        let config = SessionConfig {
            torrent: torrent.clone(),
            store,
            recheck,
            require_complete: false,
            listen: Some(self.advertise),
            inbound: Some(self.listener.register(&hashes)),
            peers: Vec::new(),
            trackers,
            web_seeds: torrent.web_seeds.clone(),
            swarm: shoal_swarm::Config {
                listen_port: Some(self.advertise.port()),
                seed: u64::from_le_bytes(seed),
                // A torrent that starts complete (a publish, a restart) is an origin: it
                // offers each downloader fresh pieces so that each leaves it about once.
                super_seed: true,
                ..shoal_swarm::Config::default()
            },
            peer_id: self.peer_id,
            seed_for: Some(Duration::MAX),
            max_peers: MAX_PEERS,
            limits: self.limits.clone(),
            site: self.site.clone(),
        };
        let initial = if recheck {
            RunState::Checking
        } else if seeding {
            RunState::Seeding
        } else {
            RunState::Downloading
        };
        let (state_tx, state) = watch::channel(initial);
        let (progress_tx, progress) = watch::channel(Progress::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let rates = Arc::new(Mutex::new(Rates::default()));
        tokio::spawn(monitor(
            Monitored {
                id: id.to_owned(),
                torrent: torrent.clone(),
                name_tag: name_tag.clone(),
                data: self.data.clone(),
                on_complete: self.on_complete.clone(),
                uses: self.uses.clone(),
            },
            progress.clone(),
            state_tx.clone(),
            rates.clone(),
            seeding && !recheck,
        ));
        let session_id = id.to_owned();
        let session = tokio::spawn(async move {
            let result = shoal_driver::run(
                config,
                async {
                    let _ = stopped.await;
                },
                progress_tx,
            )
            .await;
            match result {
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(content_id = %session_id, error = %e, "torrent stopped");
                    let _ = state_tx.send(RunState::Failed(e.to_string()));
                }
            }
        });
        Ok(Entry {
            torrent,
            name_tag,
            progress,
            state,
            rates,
            stop: Some(stop),
            session,
        })
    }

    /// Resumes every torrent recorded in the data directory.
    pub fn resume_all(&self) -> usize {
        let saved = match self.data.saved_torrents() {
            Ok(saved) => saved,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the recorded torrents");
                return 0;
            }
        };
        let mut started = 0;
        for (id, bytes, name) in saved {
            match Torrent::from_bytes(&bytes) {
                Ok(torrent) => match self.start(Arc::new(torrent), name) {
                    Ok(_) => started += 1,
                    Err(e) => tracing::error!(content_id = %id, error = %e, "cannot resume"),
                },
                Err(e) => {
                    tracing::error!(content_id = %id, error = %e, "recorded torrent is unreadable")
                }
            }
        }
        started
    }

    /// A view of the torrent `id`.
    pub fn get(&self, id: &str) -> Option<TorrentView> {
        lock(&self.entries).get(id).map(|e| view(id, e))
    }

    /// Views of every torrent, by content id.
    pub fn list(&self) -> Vec<TorrentView> {
        let entries = lock(&self.entries);
        let mut out: Vec<_> = entries.iter().map(|(id, e)| view(id, e)).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Stops the torrent `id` and deletes its data; returns the bytes freed, or `None` when
    /// the agent does not hold it.
    pub async fn remove(&self, id: &str) -> Option<u64> {
        let entry = lock(&self.entries).remove(id)?;
        let info_torrent = entry.torrent.clone();
        let (last, entry_rechecked, announces) = {
            let p = entry.progress.borrow();
            (p.stats, p.rechecked, p.announces)
        };
        stop(entry).await;
        {
            let mut retired = lock(&self.retired);
            retired.uploaded += last.uploaded;
            retired.downloaded += last.downloaded;
            retired.pieces_failed += u64::from(last.pieces_failed);
            retired.peers_banned += u64::from(last.peers_banned);
            retired.pieces_rechecked += u64::from(entry_rechecked);
            retired.announces.ok += announces.ok;
            retired.announces.failed += announces.failed;
            retired.announces.micros += announces.micros;
        }
        let data = self.data.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || data.remove(&id, info_torrent.info()))
            .await
            .ok()
    }

    /// Stops every session, making what was verified durable.
    pub async fn shutdown(&self) {
        let entries: Vec<Entry> = lock(&self.entries).drain().map(|(_, e)| e).collect();
        for entry in entries {
            stop(entry).await;
        }
    }
}

async fn stop(mut entry: Entry) {
    if let Some(stop) = entry.stop.take() {
        let _ = stop.send(());
    }
    if tokio::time::timeout(Duration::from_secs(10), &mut entry.session)
        .await
        .is_err()
    {
        entry.session.abort();
    }
}

fn view(id: &str, e: &Entry) -> TorrentView {
    TorrentView {
        id: id.to_owned(),
        torrent: e.torrent.clone(),
        name_tag: e.name_tag.clone(),
        progress: e.progress.clone(),
        state: e.state.clone(),
        rates: *lock(&e.rates),
    }
}

/// What a monitor follows.
struct Monitored {
    id: String,
    torrent: Arc<Torrent>,
    name_tag: Option<String>,
    data: DataDir,
    on_complete: OnComplete,
    uses: Uses,
}

/// Follows a session: records completion in the data directory, then runs the
/// post-completion action; keeps the state and the smoothed rates.
async fn monitor(
    Monitored {
        id,
        torrent,
        name_tag,
        data,
        on_complete,
        uses,
    }: Monitored,
    mut progress: watch::Receiver<Progress>,
    state: watch::Sender<RunState>,
    rates: Arc<Mutex<Rates>>,
    mut recorded: bool,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut samples: std::collections::VecDeque<(Instant, u64, u64)> = Default::default();
    let mut acted = !on_complete.is_set();
    loop {
        tokio::select! {
            changed = progress.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
        let p = progress.borrow_and_update().clone();
        if matches!(*state.borrow(), RunState::Failed(_)) {
            break;
        }
        // Complete data stays complete: the driver's first reports, sent before it has
        // loaded the verified set, must not turn a recorded seed into a download.
        let seeding = matches!(*state.borrow(), RunState::Seeding);
        let next = if p.checking.is_some() {
            RunState::Checking
        } else if p.complete || seeding {
            RunState::Seeding
        } else {
            RunState::Downloading
        };
        state.send_if_modified(|s| {
            if *s == next {
                false
            } else {
                *s = next.clone();
                true
            }
        });
        if p.complete && !recorded {
            let (data, marked, torrent) = (data.clone(), id.clone(), torrent.clone());
            let due = on_complete.is_set();
            let done = tokio::task::spawn_blocking(move || {
                if due {
                    data.mark_action_due(&marked)?;
                }
                data.mark_complete(&marked, torrent.info())
            })
            .await;
            match done {
                Ok(Ok(())) => {
                    tracing::info!(content_id = %id, "complete and verified; seeding");
                    recorded = true;
                }
                Ok(Err(e)) => {
                    tracing::warn!(content_id = %id, error = %e, "cannot record completion; a restart will check the data again")
                }
                Err(_) => {}
            }
        }
        // Only once the completion record is written: never on partial data.
        if recorded && !acted && matches!(*state.borrow(), RunState::Seeding) {
            acted = true;
            let path = data.data_path(&id, torrent.info());
            on_complete.run(&data, &id, name_tag.as_deref(), path, uses.hold(&id));
        }
        let now = Instant::now();
        samples.push_back((now, p.stats.uploaded, p.stats.downloaded));
        while samples.len() > 2
            && samples
                .front()
                .is_some_and(|(t, ..)| now.duration_since(*t) > Duration::from_secs(5))
        {
            samples.pop_front();
        }
        if let (Some(first), Some(last)) = (samples.front(), samples.back()) {
            let secs = last.0.duration_since(first.0).as_secs_f64();
            if secs > 0.2 {
                *lock(&rates) = Rates {
                    upload: ((last.1 - first.1) as f64 / secs) as u64,
                    download: ((last.2 - first.2) as f64 / secs) as u64,
                };
            }
        }
    }
}

/// The content id of a torrent: its v2 info-hash, or v1 for a v1-only torrent.
pub fn content_id(torrent: &Torrent) -> String {
    let hashes = torrent.info_hashes();
    hashes
        .v2()
        .map(|h| h.to_hex())
        .or_else(|| hashes.v1().map(|h| h.to_hex()))
        .unwrap_or_default()
}

/// The 20-byte hashes peers handshake with for this torrent.
fn announce_hashes(torrent: &Torrent) -> Vec<[u8; 20]> {
    let hashes = torrent.info_hashes();
    hashes
        .v1()
        .map(|h| h.0)
        .into_iter()
        .chain(hashes.v2().map(|h| h.truncated().0))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps and counters: consistent at every step, usable after a panic elsewhere.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

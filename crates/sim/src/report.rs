//! What a simulation measured: completion times against the lower bound, traffic, and the
//! digest of the event trace.

/// One host's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct HostReport {
    /// Its site.
    pub site: usize,
    /// Whether it started as a seed.
    pub seed: bool,
    /// Seconds from the start until it had every piece verified (`None`: it did not finish;
    /// seeds: `Some(0.0)`).
    pub completed: Option<f64>,
    /// Payload bytes its engine served.
    pub uploaded: u64,
    /// Payload bytes its engine received that it wanted.
    pub downloaded: u64,
    /// Bytes its uplink put on the wire (payload and protocol).
    pub wire_up: u64,
}

/// The swarm over one interval of a run's timeline ([`crate::Scenario::timeline`]): link use
/// over the interval, the rest as it stood at the interval's end. Means are over downloaders
/// that have not finished, unless said otherwise.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Virtual seconds at the interval's end.
    pub end: f64,
    /// Downloaders' uplinks busy, as a share of their capacity (all downloaders).
    pub up_busy: f64,
    /// The seeds' uplinks busy, as a share of their capacity.
    pub seed_busy: f64,
    /// Downloaders' downlinks busy, as a share of their capacity (all downloaders).
    pub down_busy: f64,
    /// Downloaders finished.
    pub done: usize,
    /// Downloaders with at least one verified piece (something to upload).
    pub holding: usize,
    /// Downloaders that have uploaded anything so far.
    pub uploaded_any: usize,
    /// Mean share of the pieces held.
    pub pieces: f64,
    /// Fewest and most downloaders holding any one piece.
    pub copies_min: usize,
    /// See `copies_min`.
    pub copies_max: usize,
    /// Mean connections with data queued on the uplink (flows sharing it).
    pub flows: f64,
    /// Mean peers interested in us / uploaded to / we want from / that unchoke us while we
    /// want from them / we have requests out to / requests out ([`shoal_swarm::PeerCounts`]).
    pub interested_in_us: f64,
    /// See `interested_in_us`.
    pub uploading_to: f64,
    /// See `interested_in_us`.
    pub we_want: f64,
    /// See `interested_in_us`.
    pub may_ask: f64,
    /// See `interested_in_us`.
    pub asked: f64,
    /// See `interested_in_us`.
    pub requests: f64,
}

/// The outcome of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Every host, in scenario order.
    pub hosts: Vec<HostReport>,
    /// The fluid lower bound `T*`, seconds ([`crate::Scenario::lower_bound`]).
    pub lower_bound: f64,
    /// The artifact's size in bytes.
    pub size: u64,
    /// Bytes that crossed between sites (0 on one site).
    pub inter_site_bytes: u64,
    /// Peers banned for bad data, summed over hosts.
    pub bans: u64,
    /// Events processed.
    pub events: u64,
    /// Virtual seconds at the end of the run.
    pub end: f64,
    /// A digest of every event's time, kind and place: equal digests, equal runs.
    pub trace_digest: u64,
    /// The timeline, when the scenario asked for one.
    pub timeline: Vec<Sample>,
}

impl Report {
    /// The downloaders' completion times, sorted; `None` if any did not finish.
    pub fn completion_times(&self) -> Option<Vec<f64>> {
        let mut times: Vec<f64> = self
            .hosts
            .iter()
            .filter(|h| !h.seed)
            .map(|h| h.completed)
            .collect::<Option<_>>()?;
        times.sort_by(f64::total_cmp);
        Some(times)
    }

    /// The downloaders that did not finish.
    pub fn unfinished(&self) -> usize {
        self.hosts
            .iter()
            .filter(|h| !h.seed && h.completed.is_none())
            .count()
    }

    /// The `p`th percentile (nearest rank) of the completion times, seconds.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        let times = self.completion_times()?;
        let rank = (p / 100.0 * times.len() as f64).ceil() as usize;
        times.get(rank.clamp(1, times.len().max(1)) - 1).copied()
    }

    /// The last completion divided by the lower bound.
    pub fn max_ratio(&self) -> Option<f64> {
        self.percentile(100.0).map(|t| t / self.lower_bound)
    }

    /// The seeds' uploaded bytes divided by the artifact's size: 1.0 means every piece left the
    /// seeds once.
    pub fn seed_upload_ratio(&self) -> f64 {
        let up: u64 = self
            .hosts
            .iter()
            .filter(|h| h.seed)
            .map(|h| h.uploaded)
            .sum();
        up as f64 / self.size as f64
    }

    /// Bytes that crossed between sites divided by the artifact's size.
    pub fn inter_site_ratio(&self) -> f64 {
        self.inter_site_bytes as f64 / self.size as f64
    }
}

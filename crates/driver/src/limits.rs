//! Limits every session of one host shares, changeable while transfers run: upload and
//! download rate caps (token buckets the peers' writer and reader tasks draw from), whether the
//! host uploads at all, and the most peers a session keeps.
//!
//! A host's agent builds one [`HostLimits`] and hands it to every session; a central policy
//! change calls [`HostLimits::set`], and running transfers follow within a fraction of a
//! second: sleeping tasks are woken to re-read the rate, and sessions are told through a
//! `watch` channel to choke every peer (no uploads) or to shed peers over the new limit.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// What a host is allowed, as a policy sets it. `None` means no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Upload cap in bytes per second over every connection of the host. `Some(0)` means
    /// the host uploads nothing at all (leech-only: metered or VPN links): every peer is
    /// choked and its requests refused.
    pub upload_rate: Option<u64>,
    /// Download cap in bytes per second over every connection of the host.
    pub download_rate: Option<u64>,
    /// The most peers each session keeps (at most the session's own `max_peers`).
    pub max_peers: Option<usize>,
}

impl Limits {
    /// Returns true if and only if the host may upload.
    pub fn uploads(&self) -> bool {
        self.upload_rate != Some(0)
    }
}

/// The shared limits of one host. Cloning shares them.
#[derive(Clone, Debug)]
pub struct HostLimits {
    upload: Arc<Bucket>,
    download: Arc<Bucket>,
    limits: Arc<watch::Sender<Limits>>,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl HostLimits {
    /// Shared limits starting at `limits`.
    pub fn new(limits: Limits) -> Self {
        let this = Self {
            upload: Arc::new(Bucket::default()),
            download: Arc::new(Bucket::default()),
            limits: Arc::new(watch::Sender::new(limits)),
        };
        this.set(limits);
        this
    }

    /// Changes the limits; running sessions and connections follow at once.
    pub fn set(&self, limits: Limits) {
        // No upload at all is enforced by choking, not by a bucket that never fills (which
        // would stall the writers' protocol messages as well as the data).
        self.upload.set_rate(limits.upload_rate.filter(|&r| r > 0));
        self.download
            .set_rate(limits.download_rate.filter(|&r| r > 0));
        self.limits.send_if_modified(|old| {
            let changed = *old != limits;
            *old = limits;
            changed
        });
    }

    /// The limits now.
    pub fn get(&self) -> Limits {
        *self.limits.borrow()
    }

    /// A receiver that sees each change (sessions watch it).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Limits> {
        self.limits.subscribe()
    }

    /// Waits until `bytes` more may be sent.
    pub(crate) async fn upload(&self, bytes: usize) {
        self.upload.take(bytes).await;
    }

    /// Waits until `bytes` more may be received.
    pub(crate) async fn download(&self, bytes: usize) {
        self.download.take(bytes).await;
    }
}

/// A token bucket whose rate can change at any time. Takers go into debt and sleep it off,
/// so a large write is never refused, and the long-run rate is the cap whatever the sizes.
#[derive(Debug, Default)]
struct Bucket {
    state: Mutex<BucketState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct BucketState {
    /// Bytes per second; `None` for no limit.
    rate: Option<u64>,
    /// Bytes that may go now; negative while in debt.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Option<Instant>,
}

impl BucketState {
    /// How many bytes may build up while nobody sends: a twentieth of a second at the rate,
    /// at least 16 KiB, so the rate holds over short windows too.
    fn burst(rate: u64) -> f64 {
        (rate as f64 / 20.0).max(16_384.0)
    }

    fn refill(&mut self, now: Instant) {
        if let (Some(rate), Some(updated)) = (self.rate, self.updated) {
            let earned = now.saturating_duration_since(updated).as_secs_f64() * rate as f64;
            self.tokens = (self.tokens + earned).min(Self::burst(rate));
        }
        self.updated = Some(now);
    }
}

impl Bucket {
    fn lock(&self) -> MutexGuard<'_, BucketState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_rate(&self, rate: Option<u64>) {
        let mut state = self.lock();
        if state.rate == rate {
            return;
        }
        state.refill(Instant::now());
        state.rate = rate;
        // Debt run up at the old rate is forgiven: the new cap starts now.
        state.tokens = rate.map_or(0.0, |r| state.tokens.clamp(0.0, BucketState::burst(r)));
        drop(state);
        self.changed.notify_waiters();
    }

    async fn take(&self, bytes: usize) {
        // Registered before the state is read, so a rate change in between still wakes us.
        let changed = self.changed.notified();
        let wait = {
            let mut state = self.lock();
            let Some(rate) = state.rate else {
                return;
            };
            state.refill(Instant::now());
            state.tokens -= bytes as f64;
            if state.tokens >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-state.tokens / rate as f64)
        };
        // A rate change wakes us: the debt was forgiven, or the cap lifted.
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = changed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_capped_bucket_lets_through_its_rate_whatever_the_sizes() {
        let limits = HostLimits::new(Limits {
            download_rate: Some(1 << 20),
            ..Limits::default()
        });
        let start = Instant::now();
        // 8 MiB in mixed sizes at 1 MiB/s: about 8 s, less the initial burst.
        for size in [16_384usize, 1 << 20, 100, 300_000].iter().cycle().take(24) {
            limits.download(*size).await;
        }
        let sent: usize = [16_384usize, 1 << 20, 100, 300_000].iter().sum::<usize>() * 6;
        let took = start.elapsed().as_secs_f64();
        let expected = sent as f64 / f64::from(1 << 20);
        assert!(
            (took - expected).abs() < 0.1 + expected * 0.02,
            "sent {sent} bytes in {took:.3} s, expected about {expected:.3} s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_cap_means_no_wait_and_lifting_a_cap_wakes_the_waiters() {
        let limits = HostLimits::default();
        let start = Instant::now();
        limits.upload(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::ZERO);

        limits.set(Limits {
            upload_rate: Some(1000),
            ..Limits::default()
        });
        // A 10 MB debt at 1000 B/s would take hours; lifting the cap ends the wait.
        let waiter = tokio::spawn({
            let limits = limits.clone();
            async move { limits.upload(10_000_000).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        limits.set(Limits::default());
        tokio::time::timeout(Duration::from_millis(1), waiter)
            .await
            .expect("lifting the cap wakes the waiter")
            .expect("waiter");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_cap_applies_to_what_follows() {
        let limits = HostLimits::new(Limits {
            upload_rate: Some(10 << 20),
            ..Limits::default()
        });
        limits.upload(10 << 20).await;
        limits.set(Limits {
            upload_rate: Some(1 << 20),
            ..Limits::default()
        });
        let start = Instant::now();
        for _ in 0..4 {
            limits.upload(1 << 20).await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!(
            (3.8..4.2).contains(&took),
            "4 MiB at 1 MiB/s took {took:.3} s"
        );
    }

    #[test]
    fn zero_upload_means_no_uploads_not_a_bucket_that_never_fills() {
        let limits = HostLimits::new(Limits {
            upload_rate: Some(0),
            ..Limits::default()
        });
        assert!(!limits.get().uploads());
        assert_eq!(limits.upload.lock().rate, None);
        assert!(Limits::default().uploads());
    }
}

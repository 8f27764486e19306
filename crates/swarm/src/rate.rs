//! A transfer-rate estimate: bytes over a sliding window, updated as blocks arrive.

use std::time::Duration;

/// Bytes per second, averaged over roughly the last [`RateMeter::WINDOW`].
#[derive(Clone, Debug, Default)]
pub struct RateMeter {
    window_start: Duration,
    window_bytes: u64,
    rate: f64,
    total: u64,
}

impl RateMeter {
    /// The averaging window.
    pub const WINDOW: Duration = Duration::from_secs(2);

    /// Records `bytes` moved at `now`.
    pub fn add(&mut self, now: Duration, bytes: u64) {
        self.roll(now);
        self.window_bytes += bytes;
        self.total += bytes;
    }

    fn roll(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.window_start);
        if elapsed >= Self::WINDOW {
            let current = self.window_bytes as f64 / elapsed.as_secs_f64();
            // Blend with the previous window so one quiet window does not zero the estimate.
            self.rate = if self.rate == 0.0 {
                current
            } else {
                0.5 * self.rate + 0.5 * current
            };
            self.window_start = now;
            self.window_bytes = 0;
        }
    }

    /// The estimate at `now`, in bytes per second. Counts the current, partial window too, so
    /// the estimate rises from the first block.
    pub fn rate(&self, now: Duration) -> f64 {
        let elapsed = now.saturating_sub(self.window_start).as_secs_f64();
        let current = if elapsed > 0.05 {
            self.window_bytes as f64 / elapsed
        } else {
            0.0
        };
        self.rate.max(current)
    }

    /// All bytes recorded.
    pub fn total(&self) -> u64 {
        self.total
    }
}

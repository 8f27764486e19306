//! Latency samples and their summary (count, percentiles, max) as the report prints them.

use std::time::Duration;

use serde::Serialize;

/// Latencies of one kind of call, in microseconds. Every sample is kept: a 30 s run at
/// 10,000 reports per second is 300,000 of them, a little over a megabyte.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    micros: Vec<u32>,
}

impl Latencies {
    /// Records one call that took `elapsed` (saturating at about 71 minutes).
    pub fn record(&mut self, elapsed: Duration) {
        self.micros
            .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Returns true if and only if there is no sample.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The summary: nearest-rank percentiles over every sample; all zero when there is none.
    pub fn summary(&self) -> Summary {
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = |p: f64| -> u32 {
            if sorted.is_empty() {
                return 0;
            }
            // Nearest rank: the smallest sample with at least p of the samples at or below it.
            let n = sorted.len();
            let index = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            sorted[index]
        };
        let mean = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().map(|&v| f64::from(v)).sum::<f64>() / sorted.len() as f64
        };
        Summary {
            count: sorted.len(),
            mean_us: mean.round(),
            p50_us: rank(0.50),
            p90_us: rank(0.90),
            p99_us: rank(0.99),
            max_us: sorted.last().copied().unwrap_or(0),
        }
    }
}

/// A summary of latencies, in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Their mean.
    pub mean_us: f64,
    /// The median.
    pub p50_us: u32,
    /// The 90th percentile.
    pub p90_us: u32,
    /// The 99th percentile.
    pub p99_us: u32,
    /// The largest.
    pub max_us: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut l = Latencies::default();
        for us in (1..=100).rev() {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(
            (s.count, s.p50_us, s.p90_us, s.p99_us, s.max_us),
            (100, 50, 90, 99, 100)
        );
        assert!((s.mean_us - 51.0).abs() < 1.0);
    }

    #[test]
    fn no_samples_summarise_to_zero() {
        assert_eq!(Latencies::default().summary(), Summary::default());
    }
}

//! What each simulated agent reports, second by second: a download that advances at the
//! agent's own steady rate and finishes at its own tick, a few agents failing once on the
//! way (`disk full`) and retrying, and the finished ones reporting `done`. Deterministic in
//! the agent's index, so two runs send the same reports.

use shoal_api::v1::AssignmentState;

/// One agent's course through the artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Course {
    size: u64,
    /// The tick of its first `done`; at least 1.
    finish: u32,
    /// The tick of its one failure, if it fails.
    fail: Option<u32>,
}

/// The reason failing agents give.
pub const FAILURE: &str = "disk full";

impl Course {
    /// The course of agent `index` over an artifact of `size` bytes when reports run for
    /// `ticks` seconds: it finishes somewhere between `ticks / 2` and `2 * ticks`, so about a
    /// third of the agents finish while the run lasts; one agent in `fail_every` (none when 0)
    /// fails once, halfway to its finish.
    pub fn new(index: u64, size: u64, ticks: u32, fail_every: u64) -> Self {
        let low = (ticks / 2).max(1);
        let span = u64::from(ticks.saturating_mul(2).saturating_sub(low)).max(1);
        let finish = low.saturating_add(u32::try_from(mix(index) % span).unwrap_or(0));
        let fail =
            (fail_every > 0 && index % fail_every == fail_every / 2).then_some((finish / 2).max(1));
        Self { size, finish, fail }
    }

    /// What the agent reports at `tick` (0 is its first report): its state, bytes verified and
    /// failure reason.
    pub fn at(&self, tick: u32) -> (AssignmentState, u64, &'static str) {
        if self.fail == Some(tick) {
            return (AssignmentState::Failed, 0, FAILURE);
        }
        if tick >= self.finish {
            return (AssignmentState::Done, self.size, "");
        }
        let done = u128::from(self.size) * u128::from(tick) / u128::from(self.finish);
        (
            AssignmentState::Downloading,
            u64::try_from(done).unwrap_or(self.size),
            "",
        )
    }
}

/// SplitMix64's finaliser: spreads consecutive indexes over the whole range.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_course_advances_then_finishes() {
        let course = Course::new(3, 1000, 30, 0);
        assert_eq!(course.at(0), (AssignmentState::Downloading, 0, ""));
        let mut last = 0;
        let mut finished = None;
        for tick in 0..=60 {
            match course.at(tick) {
                (AssignmentState::Downloading, done, _) => {
                    assert!(done >= last && done < 1000);
                    last = done;
                }
                (AssignmentState::Done, 1000, _) => {
                    finished.get_or_insert(tick);
                }
                other => panic!("tick {tick}: {other:?}"),
            }
        }
        assert!(
            finished.is_some_and(|t| (15..60).contains(&t)),
            "{finished:?}"
        );
    }

    #[test]
    fn one_agent_in_fail_every_fails_once() {
        let failures: Vec<u64> = (0..1000)
            .filter(|&i| {
                let course = Course::new(i, 1000, 30, 100);
                (0..60).any(|t| course.at(t).0 == AssignmentState::Failed)
            })
            .collect();
        assert_eq!(failures.len(), 10);
        let course = Course::new(failures[0], 1000, 30, 100);
        let failed_ticks = (0..60)
            .filter(|&t| course.at(t).0 == AssignmentState::Failed)
            .count();
        assert_eq!(failed_ticks, 1);
    }
}

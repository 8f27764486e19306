//! Backpressure from the disk to the network: received block bytes not yet written.
//!
//! A reader takes budget for each block before handing it on, and waits when none is left, so
//! its peer's TCP window closes; the storage thread gives the budget back once the block is
//! written (the session gives it back at once for a block the engine did not keep). Without
//! it, a network faster than the disk queues every block in memory.

use std::sync::Arc;

use tokio::sync::Semaphore;

/// Block bytes a session may hold between the sockets and the disk.
pub(crate) const WRITE_BUDGET: usize = 32 << 20;

/// The shared budget. Cloning shares it.
#[derive(Clone, Debug)]
pub(crate) struct WriteBudget(Arc<Semaphore>);

impl WriteBudget {
    /// A budget of `bytes`.
    pub(crate) fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(bytes)))
    }

    /// Waits for `bytes` of budget and takes it (until [`Self::give_back`]).
    pub(crate) async fn take(&self, bytes: usize) {
        // Never more than the whole budget at once (a frame is at most 1 MiB, the budget 32).
        let bytes = u32::try_from(bytes.min(WRITE_BUDGET)).unwrap_or(u32::MAX);
        if let Ok(permit) = self.0.acquire_many(bytes).await {
            permit.forget();
        }
    }

    /// Returns `bytes` of budget taken earlier.
    pub(crate) fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.0.add_permits(bytes.min(WRITE_BUDGET));
        }
    }

    /// Budget left (for tests).
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// The block bytes of a frame payload, when it is a `piece` message (id 7, then piece and
/// offset): what a reader takes budget for.
pub(crate) fn block_bytes(payload: &[u8]) -> usize {
    match payload.first() {
        Some(7) => payload.len().saturating_sub(9),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_waits_until_the_disk_gives_budget_back() {
        let budget = WriteBudget::new(32 * 1024);
        budget.take(16 * 1024).await;
        budget.take(16 * 1024).await;
        assert_eq!(budget.available(), 0);
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take(16 * 1024).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        budget.give_back(16 * 1024);
        waiting.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(budget.available(), 0);
    }

    #[test]
    fn only_piece_messages_count() {
        let mut piece = vec![7, 0, 0, 0, 1, 0, 0, 0, 0];
        piece.extend_from_slice(&[0; 100]);
        assert_eq!(block_bytes(&piece), 100);
        assert_eq!(block_bytes(&[1]), 0);
        assert_eq!(block_bytes(&[]), 0);
    }
}

//! Recycled read buffers for peer connections.
//!
//! A frame handed to the session is a view of the buffer it was read into, and a block's view
//! lives until the block is on disk. When the last view of a buffer is dropped, the buffer goes
//! back to a small pool instead of to the allocator, so a busy connection does not fault in and
//! zero fresh pages for every chunk it reads.

use std::sync::Mutex;

use bytes::Bytes;

/// How much one buffer holds, and how much one read asks the socket for.
pub(crate) const CHUNK: usize = 256 * 1024;
/// Buffers kept for reuse (16 MiB at most).
const MAX_POOLED: usize = 64;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer of [`CHUNK`] capacity, recycled when one is free.
pub(crate) fn take() -> Vec<u8> {
    let recycled = POOL.lock().ok().and_then(|mut pool| pool.pop());
    recycled.unwrap_or_else(|| Vec::with_capacity(CHUNK))
}

/// Freezes `buf` into shared bytes that return it to the pool when the last view is dropped.
pub(crate) fn freeze(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Pooled(buf))
}

/// A buffer on its way back to the pool.
struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Buffers grown for an oversized frame are not kept.
        if self.0.capacity() != CHUNK {
            return;
        }
        let mut buf = std::mem::take(&mut self.0);
        buf.clear();
        if let Ok(mut pool) = POOL.lock()
            && pool.len() < MAX_POOLED
        {
            pool.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_returns_to_the_pool_when_its_last_view_is_dropped() {
        let mut buf = take();
        buf.extend_from_slice(b"hello world");
        let address = buf.as_ptr();
        let bytes = freeze(buf);
        let view = bytes.slice(6..);
        drop(bytes);
        assert_eq!(&view[..], b"world");
        drop(view);
        // Tests run in parallel and share the pool: look for our buffer among those pooled.
        let pool = POOL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(pool.iter().any(|b| b.as_ptr() == address && b.is_empty()));
    }
}

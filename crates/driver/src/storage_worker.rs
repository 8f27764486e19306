//! The storage thread: writes, reads for uploads and hash checks, in the order the engine asked
//! for them, off the async threads.
//!
//! Each written block is hashed right after it is written, while its bytes are still in the
//! cache, so a finished piece is judged from those hashes without reading it back. A piece the
//! hashes cannot judge (blocks written before a restart, overlapping rewrites) is read back and
//! hashed whole, as before.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use shoal_metainfo::{BlockRef, Fed, PieceHasher, PieceIndex, PieceVerifier};
use shoal_storage::PieceStore;
use shoal_swarm::{PeerKey, Verification};
use shoal_wire::Message;
use tokio::sync::mpsc;

use crate::connection::Writer;
use crate::session::Event;
use crate::write_budget::WriteBudget;

/// Work for the storage thread.
pub(crate) enum Op {
    /// Store a block.
    Write { block: BlockRef, data: Bytes },
    /// Read a block and queue it, framed, on the peer's writer.
    Read {
        peer: PeerKey,
        block: BlockRef,
        writer: Writer,
    },
    /// Hash a stored piece; record it as verified if it passes.
    Verify {
        piece: PieceIndex,
        block_digests: bool,
    },
    /// Make everything recorded so far durable.
    Flush,
    /// Expose the finished download at its destination.
    Finish,
}

/// Runs until the op channel closes. Failures are reported as events; the thread keeps going
/// so reads for other peers still work, and the session decides what to do.
pub(crate) fn run(
    store: Arc<dyn PieceStore>,
    verifier: Arc<PieceVerifier>,
    ops: std::sync::mpsc::Receiver<Op>,
    events: mpsc::Sender<Event>,
    budget: WriteBudget,
) {
    let mut piece_buf = Vec::new();
    let mut hashing = Hashing::default();
    for op in ops {
        let event = match op {
            Op::Write { block, data } => {
                let written = store.write(block.piece.get(), block.offset, &data);
                budget.give_back(data.len());
                match written {
                    Ok(()) => {
                        hashing.written(&verifier, block, data);
                        None
                    }
                    // A refused request (a late duplicate of a verified block) changes nothing.
                    Err(e) if e.is_bad_request() => {
                        tracing::debug!(error = %e, "block not stored");
                        None
                    }
                    Err(e) => Some(Event::StorageFailed(e)),
                }
            }
            Op::Read {
                peer,
                block,
                writer,
            } => {
                // Frame header then data, read straight into place.
                let mut frame = Vec::with_capacity(13 + block.len as usize);
                Message::Piece {
                    piece: block.piece.get(),
                    offset: block.offset,
                    data: &[],
                }
                .encode(&mut frame);
                frame.resize(13 + block.len as usize, 0);
                frame[..4].copy_from_slice(&(9 + block.len).to_be_bytes());
                match store.read(block.piece.get(), block.offset, &mut frame[13..]) {
                    // The peer may have gone; then there is nobody to send to.
                    Ok(()) => (!writer.send_block(frame)).then_some(Event::Overflowing { peer }),
                    Err(e) => Some(Event::ReadFailed { peer, error: e }),
                }
            }
            Op::Verify {
                piece,
                block_digests,
            } => {
                let hashed = hashing
                    .take(piece)
                    .and_then(|hasher| verifier.finish(hasher));
                let outcome = match hashed {
                    Some(hashed) if !block_digests || hashed.block_digests.is_some() => Ok((
                        hashed.passed,
                        hashed.block_digests.filter(|_| block_digests),
                    )),
                    // Read back: the hashes could not judge the piece, or the engine wants
                    // block digests a SHA-1 hash does not keep (the verdict is not redone).
                    judged => {
                        let len = verifier.geometry().piece_len(piece) as usize;
                        piece_buf.resize(len, 0);
                        store.read(piece.get(), 0, &mut piece_buf).map(|()| {
                            let passed = judged.map_or_else(
                                || verifier.verify(piece, &piece_buf),
                                |hashed| hashed.passed,
                            );
                            let digests =
                                block_digests.then(|| PieceVerifier::block_digests(&piece_buf));
                            (passed, digests)
                        })
                    }
                };
                match outcome {
                    Ok((passed, block_digests)) => {
                        let recorded = if passed {
                            store.mark_verified(piece.get())
                        } else {
                            Ok(())
                        };
                        match recorded {
                            Ok(()) => Some(Event::Verified {
                                piece,
                                result: Verification {
                                    passed,
                                    block_digests,
                                },
                            }),
                            Err(e) => Some(Event::StorageFailed(e)),
                        }
                    }
                    Err(e) => Some(Event::StorageFailed(e)),
                }
            }
            Op::Flush => store.flush().err().map(Event::StorageFailed),
            Op::Finish => Some(Event::Finished(store.finish())),
        };
        if let Some(event) = event
            && events.blocking_send(event).is_err()
        {
            return;
        }
    }
}

/// The pieces being hashed as their blocks are written.
#[derive(Default)]
struct Hashing {
    pieces: HashMap<PieceIndex, InFlight>,
}

/// One piece's hasher, and blocks that arrived before the bytes SHA-1 needs first (views of
/// received frames, held without a copy until the gap fills).
struct InFlight {
    hasher: PieceHasher,
    early: BTreeMap<u32, Bytes>,
}

impl Hashing {
    /// `data` was stored at `block`: hash it now, or hold it until SHA-1 reaches its offset.
    fn written(&mut self, verifier: &PieceVerifier, block: BlockRef, data: Bytes) {
        let piece = self.pieces.entry(block.piece).or_insert_with(|| InFlight {
            hasher: verifier.hasher(block.piece),
            early: BTreeMap::new(),
        });
        if piece.hasher.update(block.offset, &data) == Fed::Later {
            piece.early.insert(block.offset, data);
            return;
        }
        while let Some(next) = piece.hasher.next_offset()
            && let Some(data) = piece.early.remove(&next)
        {
            piece.hasher.update(next, &data);
        }
    }

    /// The hasher of `piece`, which is being judged; its held blocks are dropped (a piece with
    /// held blocks was not hashed to the end and is read back).
    fn take(&mut self, piece: PieceIndex) -> Option<PieceHasher> {
        self.pieces.remove(&piece).map(|p| p.hasher)
    }
}

/// Hash-checks every piece not yet verified, on `threads` threads, recording those that pass;
/// calls `progress(checked)` as it goes. Returns how many pieces it checked and how many of
/// those failed.
pub(crate) fn recheck(
    store: &dyn PieceStore,
    verifier: &PieceVerifier,
    threads: usize,
    progress: &(dyn Fn(u32) + Sync),
) -> Result<(u32, u32), shoal_storage::StorageError> {
    let verified = store.verified();
    let todo: Vec<PieceIndex> = verifier
        .geometry()
        .pieces()
        .filter(|p| !verified.contains(p.get()))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicU32::new(0);
    let checked = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<(), shoal_storage::StorageError> {
                    let mut buf = Vec::new();
                    loop {
                        let at = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&piece) = todo.get(at) else {
                            return Ok(());
                        };
                        buf.resize(verifier.geometry().piece_len(piece) as usize, 0);
                        store.read(piece.get(), 0, &mut buf)?;
                        if verifier.verify(piece, &buf) {
                            store.mark_verified(piece.get())?;
                        } else {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        progress(checked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })?;
    Ok((checked.into_inner(), failed.into_inner()))
}

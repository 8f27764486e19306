//! Splitting a byte stream into messages.
//!
//! The driver appends what the socket gave it to a buffer and calls [`decode_frame`] until it
//! returns `Ok(None)`; the length prefix is checked against the limit before the frame is
//! sliced, so a hostile `0xFFFFFFFF` prefix costs nothing but the connection.

use crate::error::WireError;
use crate::message::Message;

/// The default frame limit: a 16 KiB block plus its header, a bitfield for 4 million pieces
/// (512 KiB), and BEP 52 `hashes` answers of up to 8,192 hashes with proofs (about 260 KiB),
/// rounded up to 1 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 1 << 20;

/// Returns true if and only if every message in `frames` (whole length-prefixed messages, as
/// the engine emits them) may be sent ahead of `piece` messages queued before it.
///
/// A writer that keeps blocks and other messages in two lanes sends the others first, so that
/// requests, `have`s and (un)choke decisions are not stuck behind hundreds of kilobytes of
/// blocks on the same connection. Three messages are ordered with the blocks and never
/// overtake them: `piece` itself, `choke` (a peer without the fast extension drops the requests
/// a choke finds outstanding, so blocks sent before it must arrive before it) and `reject`
/// (which answers a request for good). Anything that does not decode as whole messages stays
/// in order too.
pub fn may_overtake_blocks(frames: &[u8]) -> bool {
    let mut rest = frames;
    while !rest.is_empty() {
        match decode_frame(rest, u32::MAX) {
            Ok(Some((Message::Choke | Message::Piece { .. } | Message::Reject { .. }, _))) => {
                return false;
            }
            Ok(Some((_, used))) => rest = &rest[used..],
            Ok(None) | Err(_) => return false,
        }
    }
    true
}

/// Decodes the next message from the start of `buf`. Returns the message and the number of
/// bytes it took (prefix included), or `Ok(None)` if `buf` does not yet hold the whole frame.
///
/// # Errors
/// [`WireError::FrameTooLarge`] if the length prefix exceeds `max_frame`, and the errors of
/// [`Message::decode`].
pub fn decode_frame(buf: &[u8], max_frame: u32) -> Result<Option<(Message<'_>, usize)>, WireError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len > max_frame {
        return Err(WireError::FrameTooLarge {
            len,
            max: max_frame,
        });
    }
    // `len` is at most `max_frame`, a u32, so it fits a usize on every supported target.
    let end = 4 + len as usize;
    let Some(frame) = buf.get(4..end) else {
        return Ok(None);
    };
    Ok(Some((Message::decode(frame)?, end)))
}

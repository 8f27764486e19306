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

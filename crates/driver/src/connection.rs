//! One peer connection: the handshake, then a reader task (framing) and a writer task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shoal_swarm::PeerKey;
use shoal_wire::{DEFAULT_MAX_FRAME, HANDSHAKE_LEN, Handshake, WireError, decode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::limits::HostLimits;
use crate::read_buffers;
use crate::session::Event;
use crate::write_budget::{WriteBudget, block_bytes};

/// How long a peer may take to complete the handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a handshake failed (the connection is simply dropped; this is for the log).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("the peer asked for another torrent")]
    WrongTorrent,
    #[error("the peer did not complete the handshake in time")]
    Timeout,
    #[error("connected to ourselves")]
    Ourselves,
}

/// A connection that completed the handshake.
pub(crate) struct Established {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    pub theirs: Handshake,
    /// Bytes that arrived after the handshake, before the reader task started.
    pub leftover: Vec<u8>,
    /// The peer dialled us.
    pub inbound: bool,
}

/// Runs the handshake. Outbound connections send first; inbound ones wait to see which of our
/// info-hashes (`accepted`: v1, and v2 truncated) the peer asks for and answer with that one.
pub(crate) async fn handshake(
    mut stream: TcpStream,
    addr: SocketAddr,
    ours: Handshake,
    accepted: &[[u8; 20]],
    outbound: bool,
) -> Result<Established, HandshakeError> {
    if outbound {
        let mut out = Vec::with_capacity(HANDSHAKE_LEN);
        ours.encode(&mut out);
        stream.write_all(&out).await?;
    }
    let (stream, theirs, leftover) = receive_handshake(stream).await?;
    if !accepted.contains(&theirs.info_hash) {
        return Err(HandshakeError::WrongTorrent);
    }
    complete(stream, addr, ours, theirs, leftover, !outbound).await
}

/// Reads the peer's handshake (within [`HANDSHAKE_TIMEOUT`]); returns it and whatever bytes
/// followed it.
pub(crate) async fn receive_handshake(
    mut stream: TcpStream,
) -> Result<(TcpStream, Handshake, Vec<u8>), HandshakeError> {
    let run = async {
        let mut buf = Vec::with_capacity(1024);
        let theirs = loop {
            if let Some(theirs) = Handshake::decode(&buf)? {
                break theirs;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        let leftover = buf.split_off(HANDSHAKE_LEN);
        Ok((stream, theirs, leftover))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| HandshakeError::Timeout)?
}

/// Finishes a handshake whose info-hash was accepted: refuses ourselves, and when `answer`
/// (the peer dialled us), sends our handshake with the info-hash the peer asked for.
pub(crate) async fn complete(
    mut stream: TcpStream,
    addr: SocketAddr,
    mut ours: Handshake,
    theirs: Handshake,
    leftover: Vec<u8>,
    answer: bool,
) -> Result<Established, HandshakeError> {
    if theirs.peer_id == ours.peer_id {
        return Err(HandshakeError::Ourselves);
    }
    if answer {
        ours.info_hash = theirs.info_hash;
        let mut out = Vec::with_capacity(HANDSHAKE_LEN);
        ours.encode(&mut out);
        tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.write_all(&out))
            .await
            .map_err(|_| HandshakeError::Timeout)??;
    }
    Ok(Established {
        stream,
        addr,
        theirs,
        leftover,
        inbound: answer,
    })
}

/// The most bytes queued for one peer's socket. We tell peers (`reqq`) to keep at most 500
/// requests outstanding: 500 blocks of 16 KiB and their headers, plus room for the other
/// messages. A peer with more queued asked for more than it promised, or reads too slowly to
/// be worth the memory (an upload cap makes the queue wait on the bucket, not on the peer).
pub(crate) const MAX_QUEUED: usize = 9 << 20;

/// The sending side of a peer's write queue, counting the bytes not yet on the socket.
/// Cloning shares the queue.
///
/// The queue has two lanes. Blocks (`piece` messages, from the storage thread) and the
/// messages ordered with them (`choke`, `reject`: see [`shoal_wire::may_overtake_blocks`]) go
/// in order; every other message (requests, `have`s, interest, unchoke) overtakes the blocks
/// waiting, unless an ordered message is waiting too (then it queues behind it, so that no
/// message overtakes another). A peer we upload to hears our requests, and a peer we unchoke
/// our unchoke, without first waiting for every block queued for it: with one lane, a request
/// waited behind up to [`MAX_QUEUED`] bytes of blocks on the same connection.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    ordered: mpsc::UnboundedSender<Queued>,
    urgent: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    /// Messages other than blocks waiting in the ordered lane.
    ordered_messages: Arc<AtomicUsize>,
}

/// A frame in the ordered lane.
#[derive(Debug)]
struct Queued {
    frame: Vec<u8>,
    /// A message other than a block: counted in `Writer::ordered_messages` until written.
    message: bool,
}

/// The receiving side, for the writer task.
pub(crate) struct Queue {
    ordered: mpsc::UnboundedReceiver<Queued>,
    urgent: mpsc::UnboundedReceiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    ordered_messages: Arc<AtomicUsize>,
}

impl Writer {
    /// A new queue.
    pub(crate) fn channel() -> (Self, Queue) {
        let (ordered_tx, ordered) = mpsc::unbounded_channel();
        let (urgent_tx, urgent) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let ordered_messages = Arc::new(AtomicUsize::new(0));
        (
            Self {
                ordered: ordered_tx,
                urgent: urgent_tx,
                queued: queued.clone(),
                ordered_messages: ordered_messages.clone(),
            },
            Queue {
                ordered,
                urgent,
                queued,
                ordered_messages,
            },
        )
    }

    /// Queues `frame`, messages the engine emitted (in either lane, see [`Writer`]). Returns
    /// false, queueing nothing, when the peer already has [`MAX_QUEUED`] bytes waiting: the
    /// caller drops the peer. (A queue whose writer is gone takes the frame and discards it:
    /// the peer is leaving anyway.) Only the session sends messages, so the lane it picks
    /// cannot race another sender's.
    pub(crate) fn send(&self, frame: Vec<u8>) -> bool {
        if !self.reserve(frame.len()) {
            return false;
        }
        if self.ordered_messages.load(Ordering::Acquire) == 0
            && shoal_wire::may_overtake_blocks(&frame)
        {
            let _ = self.urgent.send(frame);
        } else {
            self.ordered_messages.fetch_add(1, Ordering::AcqRel);
            let _ = self.ordered.send(Queued {
                frame,
                message: true,
            });
        }
        true
    }

    /// Queues `frame`, a block, in the ordered lane; false past [`MAX_QUEUED`], as
    /// [`Writer::send`].
    pub(crate) fn send_block(&self, frame: Vec<u8>) -> bool {
        if !self.reserve(frame.len()) {
            return false;
        }
        let _ = self.ordered.send(Queued {
            frame,
            message: false,
        });
        true
    }

    fn reserve(&self, len: usize) -> bool {
        if self.queued.load(Ordering::Relaxed).saturating_add(len) > MAX_QUEUED {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        true
    }
}

/// A live peer connection as the session sees it: the writer's queue, the reader task, and the
/// address.
pub(crate) struct Link {
    pub writer: Writer,
    pub reader: JoinHandle<()>,
    pub addr: SocketAddr,
}

impl Link {
    /// Starts the reader and writer tasks of a connection that completed its handshake; the
    /// reader reports to `events` as `key`.
    pub(crate) fn start(
        done: Established,
        key: PeerKey,
        events: mpsc::Sender<Event>,
        budget: WriteBudget,
        limits: HostLimits,
    ) -> (Self, Handshake) {
        limit_unsent(&done.stream);
        let (read_half, write_half) = done.stream.into_split();
        let (writer, queue) = Writer::channel();
        tokio::spawn(write_frames(write_half, queue, limits.clone()));
        let reader = tokio::spawn(read_frames(
            read_half,
            done.leftover,
            key,
            events,
            budget,
            limits,
        ));
        (
            Self {
                writer,
                reader,
                addr: done.addr,
            },
            done.theirs,
        )
    }

    /// Stops reading; dropping the link drops the writer's queue, which ends the writer task and
    /// shuts the socket down.
    pub(crate) fn close(self) {
        self.reader.abort();
    }
}

/// Connects to `addr` and runs the handshake in the background, reporting success to `events`.
/// The handle tells whether the attempt is still under way.
pub(crate) fn dial(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    ours: Handshake,
    accepted: Arc<Vec<[u8; 20]>>,
    events: mpsc::Sender<Event>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect(addr, source)).await
        else {
            return;
        };
        let _ = stream.set_nodelay(true);
        match handshake(stream, addr, ours, &accepted, true).await {
            Ok(done) => {
                let _ = events.send(Event::Connected(done)).await;
            }
            Err(e) => tracing::debug!(peer = %addr, error = %e, "outbound handshake failed"),
        }
    })
}

/// Connects to `addr` from `source` when given (several agents on one host, each on its own
/// address, must each be seen at their own address, or bans and duplicate checks would lump
/// them together), or from wherever the kernel picks when `source` cannot be bound (an
/// advertised address that belongs to a NAT, say).
async fn connect(addr: SocketAddr, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    if let Some(ip) = source.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4()) {
        let socket = if ip.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }?;
        if socket.bind(SocketAddr::new(ip, 0)).is_ok() {
            return socket.connect(addr).await;
        }
    }
    TcpStream::connect(addr).await
}

/// Reads frames and hands each payload (the bytes after the length prefix) to the session as a
/// view of the buffer it was read into, not a copy. A buffer is frozen once it holds a whole
/// frame; a partial frame at its end starts the next buffer. Ends on EOF, a socket error or a
/// protocol error, reporting why. Every read draws on the host's download cap first, so a
/// capped host stops reading and its peers' TCP windows close.
pub(crate) async fn read_frames(
    mut reader: OwnedReadHalf,
    leftover: Vec<u8>,
    peer: PeerKey,
    events: mpsc::Sender<Event>,
    budget: WriteBudget,
    limits: HostLimits,
) {
    let mut buf = read_buffers::take();
    buf.extend_from_slice(&leftover);
    let error = loop {
        match decode_frame(&buf, DEFAULT_MAX_FRAME) {
            // At least one whole frame: hand out every whole frame as a view.
            Ok(Some(_)) => {
                let chunk = read_buffers::freeze(std::mem::replace(&mut buf, read_buffers::take()));
                let mut at = 0;
                let mut failed = None;
                loop {
                    match decode_frame(&chunk[at..], DEFAULT_MAX_FRAME) {
                        Ok(Some((_, used))) => {
                            let frame = chunk.slice(at + 4..at + used);
                            at += used;
                            // Blocks wait here while the disk is behind.
                            budget.take(block_bytes(&frame)).await;
                            if events.send(Event::Frame { peer, frame }).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    break Some(e);
                }
                buf.extend_from_slice(&chunk[at..]);
            }
            Ok(None) => {}
            Err(e) => break Some(e.to_string()),
        }
        // Room for the frame under way (checked against the limit above) or a chunk's worth.
        let wanted = match buf.get(..4) {
            Some(prefix) => prefix_len(prefix) + 4,
            None => 0,
        };
        let room = wanted.max(buf.len() + 1).max(read_buffers::CHUNK);
        buf.reserve(room - buf.len());
        match reader.read_buf(&mut buf).await {
            Ok(0) => break None,
            Ok(n) => limits.download(n).await,
            Err(e) => break Some(e.to_string()),
        }
    };
    let _ = events.send(Event::Closed { peer, error }).await;
}

/// The length a frame's 4-byte prefix announces.
fn prefix_len(prefix: &[u8]) -> usize {
    let mut len = [0u8; 4];
    len.copy_from_slice(prefix);
    u32::from_be_bytes(len) as usize
}

/// The most bytes of the ordered lane written at once: the next write looks at the urgent
/// lane first.
const ORDERED_BATCH: usize = 64 * 1024;

/// Bytes the kernel may hold unsent for a connection (`TCP_NOTSENT_LOWAT`) before the socket
/// stops taking more: the rest waits in our queue, where urgent messages can overtake it.
/// Sent but unacknowledged data does not count, so this does not limit the window.
const NOT_SENT_LOW_WATER: u32 = 128 * 1024;

/// Writes queued frames: everything waiting in the urgent lane, then up to [`ORDERED_BATCH`]
/// bytes of the ordered lane, each write drawing on the host's upload cap first.
pub(crate) async fn write_frames(mut writer: OwnedWriteHalf, mut queue: Queue, limits: HostLimits) {
    let mut batch = Vec::with_capacity(ORDERED_BATCH + 64 * 1024);
    let mut ordered_open = true;
    let mut urgent_open = true;
    while ordered_open || urgent_open {
        batch.clear();
        let mut messages = 0;
        tokio::select! {
            biased;
            frame = queue.urgent.recv(), if urgent_open => match frame {
                Some(frame) => batch.extend_from_slice(&frame),
                None => urgent_open = false,
            },
            item = queue.ordered.recv(), if ordered_open => match item {
                Some(item) => {
                    messages += usize::from(item.message);
                    batch.extend_from_slice(&item.frame);
                }
                None => ordered_open = false,
            },
        }
        // Whatever else is urgent goes first; then ordered frames up to the batch size.
        while let Ok(frame) = queue.urgent.try_recv() {
            batch.extend_from_slice(&frame);
        }
        while batch.len() < ORDERED_BATCH {
            match queue.ordered.try_recv() {
                Ok(item) => {
                    messages += usize::from(item.message);
                    batch.extend_from_slice(&item.frame);
                }
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        limits.upload(batch.len()).await;
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        queue.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        queue.ordered_messages.fetch_sub(messages, Ordering::AcqRel);
    }
    let _ = writer.shutdown().await;
}

/// Caps what the kernel holds unsent for `stream` ([`NOT_SENT_LOW_WATER`]). Best effort: where
/// the option is missing, urgent messages wait behind the socket's buffer as before.
fn limit_unsent(stream: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_notsent_lowat(NOT_SENT_LOW_WATER) {
        tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (stream, NOT_SENT_LOW_WATER);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_refuses_frames_past_its_limit_and_takes_them_again_once_drained() {
        let (writer, queue) = Writer::channel();
        let frame = || vec![0u8; 1 << 20];
        for n in 0..MAX_QUEUED >> 20 {
            assert!(writer.send(frame()), "frame {n} fits");
        }
        assert!(!writer.send(frame()), "over the limit");
        assert!(
            !writer.send(vec![0; 4]),
            "nothing more, however small, past the limit"
        );
        // The writer task puts frames on the socket and gives their bytes back.
        queue.queued.fetch_sub(1 << 20, Ordering::Relaxed);
        assert!(writer.send(frame()));
    }

    fn encoded(message: &shoal_wire::Message<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        out
    }

    #[tokio::test]
    async fn requests_overtake_queued_blocks_but_never_a_choke() {
        use shoal_wire::Message;

        let block = |piece| {
            encoded(&Message::Piece {
                piece,
                offset: 0,
                data: &[1; 16 * 1024],
            })
        };
        let request = Message::Request {
            piece: 9,
            offset: 0,
            len: 16 * 1024,
        };
        let (writer, queue) = Writer::channel();
        for piece in 0..3 {
            assert!(writer.send_block(block(piece)));
        }
        assert!(writer.send(encoded(&request)));
        assert!(writer.send(encoded(&Message::Choke)));
        // Behind the choke: were it to overtake it, the peer would see it choked for good.
        assert!(writer.send(encoded(&Message::Unchoke)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addr().unwrap();
        let (sending, accepted) = tokio::join!(TcpStream::connect(to), listener.accept());
        let (_, write_half) = sending.unwrap().into_split();
        drop(writer);
        tokio::spawn(write_frames(write_half, queue, HostLimits::default()));
        let mut received = Vec::new();
        accepted
            .unwrap()
            .0
            .read_to_end(&mut received)
            .await
            .unwrap();
        let mut order = Vec::new();
        let mut rest = &received[..];
        while let Some((message, used)) = decode_frame(rest, DEFAULT_MAX_FRAME).unwrap() {
            order.push(match message {
                Message::Piece { piece, .. } => format!("block {piece}"),
                other => format!("{other:?}"),
            });
            rest = &rest[used..];
        }
        let request = format!("{request:?}");
        assert_eq!(
            order,
            [
                &request, "block 0", "block 1", "block 2", "Choke", "Unchoke"
            ]
        );
    }
}

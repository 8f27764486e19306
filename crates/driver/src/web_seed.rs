//! Web seeds (BEP 19): a plain HTTP server holding the torrent's files, used as one more peer.
//!
//! The session gives each web seed a `PeerKey` like a connection, and the engine sees a peer
//! that has every piece (`have all`), never chokes, and speaks the fast extension. This task
//! stands where the socket would be: it reads the engine's `request`s from the peer's queue,
//! fetches each run of contiguous blocks with one ranged GET per file the run touches, and
//! answers with `piece` messages. The data is verified like any peer's, so a server with wrong
//! bytes is banned like a lying peer.
//!
//! When the server fails (refused connection, error status, short body, no range support), the
//! task rejects what it was asked for, chokes, waits (1 s, doubling to 60 s), and unchokes to be
//! asked again. Only `http://` URLs are supported.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::StatusCode;
use hyper::header::{CONTENT_LENGTH, RANGE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use shoal_metainfo::{Info, web_seed};
use shoal_storage::Layout;
use shoal_swarm::PeerKey;
use shoal_wire::{DEFAULT_MAX_FRAME, Message, decode_frame};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::limits::HostLimits;
use crate::session::Event;
use crate::write_budget::WriteBudget;

/// The most bytes one GET asks for: small enough that cancels take effect soon.
const MAX_RUN: u32 = 1 << 20;
/// How long one GET may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often an idle web seed tells the engine it is still there.
const KEEP_ALIVE: Duration = Duration::from_secs(60);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Why a web seed could not serve a range. Logged, then retried after a back-off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebSeedError {
    #[error("{url}: {error}")]
    Http { url: String, error: String },
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("{url} ignores Range requests (answered 200 to a partial request)")]
    NoRanges { url: String },
    #[error("{url} sent {got} bytes where {want} were asked for")]
    Length { url: String, got: u64, want: u64 },
    #[error("{url} did not answer within {FETCH_TIMEOUT:?}")]
    Timeout { url: String },
    #[error("the engine asked for a range outside the torrent: {0}")]
    Range(#[from] shoal_storage::StorageError),
}

/// The configuration of one web seed, checked before its task starts.
pub(crate) struct WebSeed {
    /// The URL as configured (the torrent's `url-list`, a magnet's `ws`, the command line).
    pub url: String,
    /// Each file's URL, indexed like [`Layout::files`].
    files: Vec<hyper::Uri>,
    layout: Arc<Layout>,
}

/// Why a web seed URL is not used at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unusable {
    #[error("only http:// web seeds are supported")]
    Scheme,
    #[error("invalid URL for {path}: {error}")]
    Url { path: String, error: String },
}

impl WebSeed {
    /// The web seed at `url` for the torrent `info` laid out as `layout`.
    pub(crate) fn new(url: &str, info: &Info, layout: Arc<Layout>) -> Result<Self, Unusable> {
        if !url.starts_with("http://") {
            return Err(Unusable::Scheme);
        }
        let files = web_seed::file_urls(url, info)
            .into_iter()
            .zip(layout.files())
            .map(|(file_url, slot)| {
                file_url
                    .parse()
                    .map_err(|e: hyper::http::uri::InvalidUri| Unusable::Url {
                        path: slot.path.display().to_string(),
                        error: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            url: url.to_owned(),
            files,
            layout,
        })
    }
}

/// A running web seed as the session sees it: the queue the engine's frames go to, and the
/// task.
pub(crate) struct WebLink {
    pub writer: mpsc::UnboundedSender<Vec<u8>>,
    pub task: JoinHandle<()>,
    pub url: String,
}

impl WebLink {
    /// Starts the web seed's task, reporting to `events` as `key`.
    pub(crate) fn start(
        seed: WebSeed,
        key: PeerKey,
        events: mpsc::Sender<Event>,
        budget: WriteBudget,
        limits: HostLimits,
    ) -> Self {
        let (writer, queue) = mpsc::unbounded_channel();
        let url = seed.url.clone();
        let task = tokio::spawn(serve(seed, key, queue, events, budget, limits));
        Self { writer, task, url }
    }

    /// Stops the task.
    pub(crate) fn close(self) {
        self.task.abort();
    }
}

/// One block the engine asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wanted {
    piece: u32,
    offset: u32,
    len: u32,
}

/// What the task tracks between fetches.
#[derive(Default)]
struct Asked {
    /// Requests not yet fetched, in the order they came.
    waiting: VecDeque<Wanted>,
    /// Blocks of the run being fetched that were cancelled meanwhile.
    cancelled: Vec<Wanted>,
}

impl Asked {
    /// Takes the engine's messages from one queued frame.
    fn take(&mut self, frame: &[u8]) {
        let mut rest = frame;
        while let Ok(Some((message, used))) = decode_frame(rest, DEFAULT_MAX_FRAME) {
            match message {
                Message::Request { piece, offset, len } => {
                    self.waiting.push_back(Wanted { piece, offset, len });
                }
                Message::Cancel { piece, offset, len } => {
                    let block = Wanted { piece, offset, len };
                    match self.waiting.iter().position(|w| *w == block) {
                        Some(at) => {
                            self.waiting.remove(at);
                        }
                        None => self.cancelled.push(block),
                    }
                }
                // Interest, our bitfield, choking, extension handshakes: nothing to do.
                _ => {}
            }
            rest = &rest[used..];
        }
    }

    /// The next run: the first waiting request and those after it that continue it in the same
    /// piece, up to [`MAX_RUN`] bytes.
    fn next_run(&mut self) -> Vec<Wanted> {
        let mut run: Vec<Wanted> = Vec::new();
        let mut bytes = 0u32;
        while let Some(next) = self.waiting.front().copied() {
            let continues = run.last().is_none_or(|last| {
                last.piece == next.piece && last.offset.checked_add(last.len) == Some(next.offset)
            });
            if !continues || (!run.is_empty() && bytes.saturating_add(next.len) > MAX_RUN) {
                break;
            }
            bytes = bytes.saturating_add(next.len);
            run.push(next);
            self.waiting.pop_front();
        }
        run
    }
}

/// The task: answers requests until the session drops the queue.
async fn serve(
    seed: WebSeed,
    key: PeerKey,
    mut queue: mpsc::UnboundedReceiver<Vec<u8>>,
    events: mpsc::Sender<Event>,
    budget: WriteBudget,
    limits: HostLimits,
) {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let send = |message: Message<'_>| {
        let events = events.clone();
        let mut frame = Vec::new();
        message.encode(&mut frame);
        async move {
            let frame = Bytes::from(frame).slice(4..);
            events.send(Event::Frame { peer: key, frame }).await.is_ok()
        }
    };
    let reject = |w: Wanted| {
        send(Message::Reject {
            piece: w.piece,
            offset: w.offset,
            len: w.len,
        })
    };
    if !(send(Message::HaveAll).await && send(Message::Unchoke).await) {
        return;
    }
    let mut asked = Asked::default();
    let mut backoff = MIN_BACKOFF;
    let mut last_error: Option<String> = None;
    loop {
        if asked.waiting.is_empty() {
            // Idle: a keep-alive now and then, as a connected peer would send.
            tokio::select! {
                frame = queue.recv() => match frame {
                    Some(frame) => asked.take(&frame),
                    None => return,
                },
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    if !send(Message::KeepAlive).await {
                        return;
                    }
                }
            }
        }
        while let Ok(frame) = queue.try_recv() {
            asked.take(&frame);
        }
        let run = asked.next_run();
        let Some(first) = run.first().copied() else {
            continue;
        };
        let len: u32 = run.iter().map(|w| w.len).sum();
        // The host's download cap covers web seeds too: the run is paid for before it is
        // fetched.
        limits.download(len as usize).await;
        match fetch(&client, &seed, first.piece, first.offset, len).await {
            Ok(data) => {
                if last_error.take().is_some() {
                    tracing::info!(web_seed = %seed.url, "web seed answers again");
                }
                backoff = MIN_BACKOFF;
                // Cancels that came during the fetch.
                while let Ok(frame) = queue.try_recv() {
                    asked.take(&frame);
                }
                let mut at = 0usize;
                for block in &run {
                    let data = &data[at..at + block.len as usize];
                    at += block.len as usize;
                    if asked.cancelled.contains(block) {
                        continue;
                    }
                    // Like a peer's reader: wait while the disk is behind.
                    budget.take(data.len()).await;
                    let piece = Message::Piece {
                        piece: block.piece,
                        offset: block.offset,
                        data,
                    };
                    if !send(piece).await {
                        return;
                    }
                }
                asked.cancelled.clear();
            }
            Err(error) => {
                let error = error.to_string();
                if last_error.as_deref() != Some(&error) {
                    tracing::warn!(web_seed = %seed.url, %error, retry_in = ?backoff, "web seed failed");
                }
                last_error = Some(error);
                asked.cancelled.clear();
                // Hand everything back to the engine, and be choked while we wait.
                let rejected: Vec<Wanted> =
                    run.into_iter().chain(asked.waiting.drain(..)).collect();
                for w in rejected {
                    if !reject(w).await {
                        return;
                    }
                }
                if !send(Message::Choke).await {
                    return;
                }
                let wait = tokio::time::sleep(backoff);
                tokio::pin!(wait);
                // Anything asked while choked is refused too (the engine should ask nothing).
                loop {
                    tokio::select! {
                        () = &mut wait => break,
                        frame = queue.recv() => match frame {
                            Some(frame) => asked.take(&frame),
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                for w in std::mem::take(&mut asked.waiting) {
                    if !reject(w).await {
                        return;
                    }
                }
                if !send(Message::Unchoke).await {
                    return;
                }
            }
        }
    }
}

/// Fetches `len` bytes at `offset` of `piece`: one ranged GET per file they touch; padding
/// stays zero.
async fn fetch(
    client: &HttpClient,
    seed: &WebSeed,
    piece: u32,
    offset: u32,
    len: u32,
) -> Result<Bytes, WebSeedError> {
    let mut buf = BytesMut::zeroed(len as usize);
    for segment in seed.layout.segments(piece, offset, len as usize)? {
        let Some(uri) = seed.files.get(segment.file) else {
            continue;
        };
        let file_len = seed.layout.files()[segment.file].length;
        let want = segment.len as u64;
        let body = get_range(client, uri, segment.file_offset, want, file_len).await?;
        buf[segment.at..segment.at + segment.len].copy_from_slice(&body);
    }
    Ok(buf.freeze())
}

/// GETs `want` bytes at `start` of the file at `uri` (which is `file_len` long).
async fn get_range(
    client: &HttpClient,
    uri: &hyper::Uri,
    start: u64,
    want: u64,
    file_len: u64,
) -> Result<Bytes, WebSeedError> {
    let url = || uri.to_string();
    let request = hyper::Request::get(uri.clone())
        .header(RANGE, format!("bytes={start}-{}", start + want - 1))
        .body(Empty::new())
        .map_err(|e| WebSeedError::Http {
            url: url(),
            error: e.to_string(),
        })?;
    let work = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| WebSeedError::Http {
                url: url(),
                error: e.to_string(),
            })?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {}
            // A server that ignores Range sends the whole file: fine only if that is the ask.
            StatusCode::OK if start == 0 && want == file_len => {}
            StatusCode::OK => return Err(WebSeedError::NoRanges { url: url() }),
            status => return Err(WebSeedError::Status { url: url(), status }),
        }
        let announced = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(got) = announced.filter(|&got| got != want) {
            return Err(WebSeedError::Length {
                url: url(),
                got,
                want,
            });
        }
        // Bounded: a server that sends more than it was asked for is cut off, not buffered.
        let limit = usize::try_from(want)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let body = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| WebSeedError::Http {
                url: url(),
                error: e.to_string(),
            })?
            .to_bytes();
        if body.len() as u64 != want {
            return Err(WebSeedError::Length {
                url: url(),
                got: body.len() as u64,
                want,
            });
        }
        Ok(body)
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| WebSeedError::Timeout { url: url() })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(piece: u32, offset: u32, len: u32) -> Vec<u8> {
        let mut frame = Vec::new();
        Message::Request { piece, offset, len }.encode(&mut frame);
        frame
    }

    #[test]
    fn runs_join_contiguous_blocks_of_one_piece_up_to_the_limit() {
        let mut asked = Asked::default();
        for offset in (0..3).map(|b| b * 16384) {
            asked.take(&request(0, offset, 16384));
        }
        asked.take(&request(1, 0, 16384));
        asked.take(&request(1, 32768, 16384));
        let lens = |run: Vec<Wanted>| run.iter().map(|w| (w.piece, w.offset)).collect::<Vec<_>>();
        assert_eq!(lens(asked.next_run()), [(0, 0), (0, 16384), (0, 32768)]);
        assert_eq!(lens(asked.next_run()), [(1, 0)]);
        assert_eq!(lens(asked.next_run()), [(1, 32768)]);
        assert!(asked.next_run().is_empty());

        for offset in (0..100).map(|b| b * 16384) {
            asked.take(&request(2, offset, 16384));
        }
        assert_eq!(asked.next_run().len() as u32, MAX_RUN / 16384);
    }

    #[test]
    fn cancels_remove_waiting_requests_or_mark_the_run() {
        let mut asked = Asked::default();
        asked.take(&request(0, 0, 16384));
        asked.take(&request(0, 16384, 16384));
        let run = asked.next_run();
        assert_eq!(run.len(), 2);
        asked.take(&request(0, 32768, 16384));
        let mut cancel = Vec::new();
        Message::Cancel {
            piece: 0,
            offset: 32768,
            len: 16384,
        }
        .encode(&mut cancel);
        Message::Cancel {
            piece: 0,
            offset: 0,
            len: 16384,
        }
        .encode(&mut cancel);
        asked.take(&cancel);
        assert!(asked.waiting.is_empty());
        assert_eq!(
            asked.cancelled,
            [Wanted {
                piece: 0,
                offset: 0,
                len: 16384
            }]
        );
    }
}

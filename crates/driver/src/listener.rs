//! One listening socket shared by every torrent of a process (the agent): it accepts a
//! connection, reads the peer's handshake, and hands the connection to the session of the
//! info-hash the peer asked for. The session answers the handshake itself.
//!
//! Sessions register their info-hashes ([`PeerListener::register`]) and receive connections
//! on the returned [`Inbound`]; dropping it unregisters them. A connection for an info-hash no
//! session serves is closed after the handshake is read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use shoal_wire::Handshake;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::connection::{self, HandshakeError};

/// How many accepted connections may wait for one session before more are dropped.
const QUEUE: usize = 64;

type Routes = Mutex<HashMap<[u8; 20], mpsc::Sender<Arrival>>>;

/// A connection whose peer has sent its handshake; ours is not sent yet.
pub(crate) struct Arrival {
    pub stream: TcpStream,
    pub addr: SocketAddr,
    pub theirs: Handshake,
    /// Bytes received after the peer's handshake.
    pub leftover: Vec<u8>,
}

/// The shared listener. Cheap to clone; the accept loop runs until every clone is dropped.
#[derive(Clone)]
pub struct PeerListener {
    local: SocketAddr,
    routes: Arc<Routes>,
    _accept: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PeerListener {
    /// Binds `addr` and starts accepting.
    ///
    /// # Errors
    /// When the socket cannot be bound (address in use, no permission).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let routes: Arc<Routes> = Arc::default();
        let accept = tokio::spawn(accept(listener, Arc::downgrade(&routes)));
        Ok(Self {
            local,
            routes,
            _accept: Arc::new(AbortOnDrop(accept)),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Routes connections for `info_hashes` (v1, and v2 truncated to 20 bytes) to the returned
    /// [`Inbound`], replacing an earlier registration of the same hashes.
    pub fn register(&self, info_hashes: &[[u8; 20]]) -> Inbound {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut routes = lock(&self.routes);
        for hash in info_hashes {
            routes.insert(*hash, tx.clone());
        }
        Inbound {
            receiver: rx,
            hashes: info_hashes.to_vec(),
            routes: Arc::downgrade(&self.routes),
            sender: tx,
            listener: self.clone(),
        }
    }
}

/// The connections for one session. Unregisters its info-hashes when dropped.
pub struct Inbound {
    pub(crate) receiver: mpsc::Receiver<Arrival>,
    hashes: Vec<[u8; 20]>,
    routes: Weak<Routes>,
    sender: mpsc::Sender<Arrival>,
    /// Keeps the accept loop alive while a session uses it.
    listener: PeerListener,
}

impl Inbound {
    /// The shared listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        if let Some(routes) = self.routes.upgrade() {
            let mut routes = lock(&routes);
            for hash in &self.hashes {
                // Only our own registration: a newer session may have replaced it.
                if routes
                    .get(hash)
                    .is_some_and(|s| s.same_channel(&self.sender))
                {
                    routes.remove(hash);
                }
            }
        }
    }
}

fn lock(routes: &Routes) -> std::sync::MutexGuard<'_, HashMap<[u8; 20], mpsc::Sender<Arrival>>> {
    // A panic while holding this lock leaves a plain map behind: still consistent.
    routes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept(listener: TcpListener, routes: Weak<Routes>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "cannot accept a peer connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        tokio::spawn(async move {
            match connection::receive_handshake(stream).await {
                Ok((stream, theirs, leftover)) => {
                    let Some(routes) = routes.upgrade() else {
                        return;
                    };
                    let route = lock(&routes).get(&theirs.info_hash).cloned();
                    match route {
                        Some(route) => {
                            let arrival = Arrival {
                                stream,
                                addr,
                                theirs,
                                leftover,
                            };
                            if route.try_send(arrival).is_err() {
                                tracing::debug!(peer = %addr, "session busy; connection dropped");
                            }
                        }
                        None => tracing::debug!(peer = %addr, "{}", HandshakeError::WrongTorrent),
                    }
                }
                Err(e) => tracing::debug!(peer = %addr, error = %e, "inbound handshake failed"),
            }
        });
    }
}

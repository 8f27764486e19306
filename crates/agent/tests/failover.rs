//! The agent's client of a control plane made of several server nodes, over real loopback
//! sockets: fake nodes (the `shoal.v1` node, catalog and assignment services, each answering
//! with its own name or with the error it is told to) behind proxies that can be killed
//! (connections closed, port refused) or frozen (connections accepted and held, nothing
//! forwarded: what a SIGSTOPped server looks like from outside).
//!
//! - A refused connection, a node that never answers, and `UNAVAILABLE` each move the call
//!   to the next node, within a bounded time; the node that answered is used next.
//! - An answer from the control plane itself (`NOT_FOUND`, `PERMISSION_DENIED`,
//!   `ALREADY_EXISTS`, `INVALID_ARGUMENT`) is not retried elsewhere.
//! - When every node fails, the error names each one and why.
//! - An assignment stream whose node dies, or stalls (found by HTTP/2 keep-alive pings, since
//!   the server sends nothing on an idle stream), is reopened on the next node; an idle stream
//!   to a healthy node stays open across many pings.
//!
//! The fakes do not use `shoal-server`, so these tests hold whatever the server does inside.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shoal_agent::config::ControlPlanes;
use shoal_agent::control::{Control, Timeouts};
use shoal_api::v1::assignment_service_server::{AssignmentService, AssignmentServiceServer};
use shoal_api::v1::catalog_service_server::{CatalogService, CatalogServiceServer};
use shoal_api::v1::node_service_server::{NodeService, NodeServiceServer};
use shoal_api::{ApiError, ErrorCode, v1};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status};

/// How long any test may take: a bound that proves "does not hang", not a performance claim.
const LIMIT: Duration = Duration::from_secs(60);

/// Short limits so that the stalled cases finish in seconds. The defaults are the same code
/// with larger numbers.
const FAST: Timeouts = Timeouts {
    connect: Duration::from_secs(1),
    request: Duration::from_secs(2),
    bind: Duration::from_secs(2),
    keepalive_interval: Duration::from_secs(1),
    keepalive_timeout: Duration::from_secs(1),
};

/// How a fake node answers.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// With its name.
    Answer,
    /// With this error.
    Refuse(ErrorCode),
}

/// A fake server node.
struct Fake {
    name: &'static str,
    mode: Mutex<Mode>,
    /// Unary calls received.
    calls: AtomicUsize,
    /// The `authorization` header of the last call.
    authorization: Mutex<Option<String>>,
}

impl Fake {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts the call; the error it is told to answer with, if any.
    fn receive<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        *self.authorization.lock().unwrap() = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(ToOwned::to_owned);
        match *self.mode.lock().unwrap() {
            Mode::Answer => Ok(()),
            Mode::Refuse(code) => Err(ApiError::new(code, format!("{} refuses", self.name)).into()),
        }
    }
}

#[tonic::async_trait]
impl NodeService for Fake {
    async fn list_nodes(
        &self,
        _: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        self.receive(&request)?;
        Ok(Response::new(v1::HeartbeatResponse {
            interval_seconds: 10,
            announce_url: self.name.to_owned(),
            announce_urls: Vec::new(),
        }))
    }
}

#[tonic::async_trait]
impl CatalogService for Fake {
    async fn bind_artifact(
        &self,
        request: Request<v1::BindArtifactRequest>,
    ) -> Result<Response<v1::BindArtifactResponse>, Status> {
        self.receive(&request)?;
        Ok(Response::new(v1::BindArtifactResponse::default()))
    }

    async fn list_artifacts(
        &self,
        request: Request<v1::ListArtifactsRequest>,
    ) -> Result<Response<v1::ListArtifactsResponse>, Status> {
        self.receive(&request)?;
        Ok(Response::new(v1::ListArtifactsResponse::default()))
    }

    async fn get_artifact(
        &self,
        request: Request<v1::GetArtifactRequest>,
    ) -> Result<Response<v1::Artifact>, Status> {
        self.receive(&request)?;
        Ok(Response::new(v1::Artifact {
            name_tag: self.name.to_owned(),
            ..v1::Artifact::default()
        }))
    }
}

type SetStream = Pin<Box<dyn Stream<Item = Result<v1::AssignmentSet, Status>> + Send>>;

#[tonic::async_trait]
impl AssignmentService for Fake {
    type WatchAssignmentsStream = SetStream;

    /// One set naming this node, then silence (as the real server, which sends only changes).
    async fn watch_assignments(
        &self,
        request: Request<v1::WatchAssignmentsRequest>,
    ) -> Result<Response<SetStream>, Status> {
        self.receive(&request)?;
        let set = v1::AssignmentSet {
            assignments: vec![v1::Assignment {
                name_tag: self.name.to_owned(),
                ..v1::Assignment::default()
            }],
            policy: None,
        };
        let stream = tokio_stream::iter([Ok(set)]).chain(futures_util::stream::pending());
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_progress(
        &self,
        request: Request<v1::ReportProgressRequest>,
    ) -> Result<Response<v1::ReportProgressResponse>, Status> {
        self.receive(&request)?;
        Ok(Response::new(v1::ReportProgressResponse::default()))
    }
}

/// What a proxy does with its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// Forwards.
    Up,
    /// Accepts and holds, forwards nothing: a stopped process.
    Frozen,
    /// Closes every connection and the port: a killed process.
    Down,
}

/// A fake node behind a proxy on its own loopback address.
struct Node {
    fake: Arc<Fake>,
    url: String,
    link: watch::Sender<Link>,
}

impl Node {
    async fn start(name: &'static str, host: u8) -> Self {
        let fake = Arc::new(Fake {
            name,
            mode: Mutex::new(Mode::Answer),
            calls: AtomicUsize::new(0),
            authorization: Mutex::new(None),
        });
        let router = tonic::service::Routes::new(NodeServiceServer::from_arc(fake.clone()))
            .add_service(CatalogServiceServer::from_arc(fake.clone()))
            .add_service(AssignmentServiceServer::from_arc(fake.clone()))
            .into_axum_router();
        let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend_addr = backend.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(backend, router).await });

        let front = TcpListener::bind(SocketAddr::from(([127, 0, 0, host], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", front.local_addr().unwrap());
        let (link, state) = watch::channel(Link::Up);
        tokio::spawn(proxy(front, backend_addr, state));
        Self { fake, url, link }
    }

    fn freeze(&self) {
        self.link.send_replace(Link::Frozen);
    }

    fn kill(&self) {
        self.link.send_replace(Link::Down);
    }
}

async fn proxy(front: TcpListener, backend: SocketAddr, state: watch::Receiver<Link>) {
    let mut down = state.clone();
    loop {
        tokio::select! {
            accepted = front.accept() => {
                let Ok((client, _)) = accepted else { return };
                tokio::spawn(relay(client, backend, state.clone()));
            }
            // Dropping the listener: connections are refused from now on.
            _ = down.wait_for(|l| *l == Link::Down) => return,
        }
    }
}

async fn relay(client: TcpStream, backend: SocketAddr, mut state: watch::Receiver<Link>) {
    if *state.borrow() != Link::Up {
        let _ = state.wait_for(|l| *l == Link::Down).await;
        return;
    }
    let Ok(server) = TcpStream::connect(backend).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, state.clone()),
        pump(server_read, client_write, state),
    );
}

/// Copies bytes while the link is up; once frozen, holds both sockets silent until killed.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut state: watch::Receiver<Link>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = state.wait_for(|l| *l != Link::Up) => 0,
        };
        if *state.borrow() != Link::Up {
            let _ = state.wait_for(|l| *l == Link::Down).await;
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A URL on `host` where nothing listens: connections are refused.
async fn dead(host: u8) -> String {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, host], 0)))
        .await
        .unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

fn client(urls: &[&str]) -> Control {
    Control::remote_with(
        &ControlPlanes::from_list(urls).unwrap(),
        Some("agent-token".to_owned()),
        FAST,
    )
    .unwrap()
}

/// Who answered a heartbeat.
async fn heartbeat(control: &Control) -> Result<String, ApiError> {
    control
        .heartbeat(v1::HeartbeatRequest {
            node_id: "edge-1".to_owned(),
            ..v1::HeartbeatRequest::default()
        })
        .await
        .map(|r| r.announce_url)
}

/// The name of the node an assignment stream's first set comes from.
async fn first_set(stream: &mut shoal_agent::control::Assignments) -> String {
    let set = stream.next().await.unwrap().unwrap();
    set.assignments[0].name_tag.clone()
}

#[tokio::test]
async fn a_refused_connection_fails_over_and_the_node_that_answered_is_used_next() {
    tokio::time::timeout(LIMIT, async {
        let down = dead(11).await;
        let b = Node::start("b", 12).await;
        let control = client(&[&down, &b.url]);
        assert_eq!(control.endpoint(), down);

        assert_eq!(heartbeat(&control).await.unwrap(), "b");
        assert_eq!(
            control.endpoint(),
            b.url,
            "the node that answered is remembered"
        );
        assert_eq!(
            b.fake.authorization.lock().unwrap().as_deref(),
            Some("Bearer agent-token"),
            "the retried call carries the agent's credential"
        );
        assert_eq!(heartbeat(&control).await.unwrap(), "b");
        assert_eq!(b.fake.calls(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_node_that_accepts_but_never_answers_is_left_within_the_time_limit() {
    tokio::time::timeout(LIMIT, async {
        let a = Node::start("a", 21).await;
        let b = Node::start("b", 22).await;
        a.freeze();
        let control = client(&[&a.url, &b.url]);
        let started = Instant::now();
        assert_eq!(heartbeat(&control).await.unwrap(), "b");
        println!("left a frozen node after {:?}", started.elapsed());
        assert_eq!(a.fake.calls(), 0, "a frozen node receives nothing");
        // The next call goes straight to the node that answered, not through the frozen one.
        assert_eq!(control.endpoint(), b.url);
        assert_eq!(heartbeat(&control).await.unwrap(), "b");
        assert_eq!(b.fake.calls(), 2);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unavailable_fails_over_and_the_next_call_stays_on_the_node_that_answered() {
    tokio::time::timeout(LIMIT, async {
        let a = Node::start("a", 31).await;
        let b = Node::start("b", 32).await;
        a.fake.set(Mode::Refuse(ErrorCode::ControlPlaneUnavailable));
        let control = client(&[&a.url, &b.url]);

        control
            .bind(v1::BindArtifactRequest::default(), "ci", None)
            .await
            .unwrap();
        assert_eq!((a.fake.calls(), b.fake.calls()), (1, 1));

        // a recovers; the agent stays on b, which answered last.
        a.fake.set(Mode::Answer);
        assert_eq!(heartbeat(&control).await.unwrap(), "b");
        assert_eq!((a.fake.calls(), b.fake.calls()), (1, 2));

        // b loses its quorum in turn: round-robin wraps back to a.
        b.fake.set(Mode::Refuse(ErrorCode::ControlPlaneUnavailable));
        assert_eq!(heartbeat(&control).await.unwrap(), "a");
        assert_eq!(control.endpoint(), a.url);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_answer_from_the_control_plane_itself_is_not_retried_elsewhere() {
    tokio::time::timeout(LIMIT, async {
        let a = Node::start("a", 41).await;
        let b = Node::start("b", 42).await;
        let control = client(&[&a.url, &b.url]);
        for code in [
            ErrorCode::ArtifactNotFound,
            ErrorCode::PermissionDenied,
            ErrorCode::TagBoundToOtherContent,
            ErrorCode::InvalidArgument,
            ErrorCode::Unauthenticated,
        ] {
            a.fake.set(Mode::Refuse(code));
            let e = control
                .get(v1::GetArtifactRequest::default())
                .await
                .unwrap_err();
            assert_eq!(e.code, code, "{e:?}");
            assert_eq!(b.fake.calls(), 0, "{code} was sent to another node");
            assert_eq!(control.endpoint(), a.url);
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn when_every_node_fails_the_error_names_each_and_why() {
    tokio::time::timeout(LIMIT, async {
        let down = dead(51).await;
        let frozen = Node::start("frozen", 52).await;
        frozen.freeze();
        let refusing = Node::start("refusing", 53).await;
        refusing
            .fake
            .set(Mode::Refuse(ErrorCode::ControlPlaneUnavailable));
        let control = client(&[&down, &frozen.url, &refusing.url]);

        let e = heartbeat(&control).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::ControlPlaneUnavailable);
        for url in [&down, &frozen.url, &refusing.url] {
            assert!(e.message.contains(url.as_str()), "{url}: {}", e.message);
        }
        assert!(e.message.contains("no answer within 2 s"), "{}", e.message);
        assert!(e.message.contains("refusing refuses"), "{}", e.message);
        assert_eq!(refusing.fake.calls(), 1, "each node at most once per call");

        // One node: the message speaks of it alone.
        let e = heartbeat(&client(&[&down])).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::ControlPlaneUnavailable);
        assert!(
            e.message
                .starts_with(&format!("the control plane at {down} cannot be reached")),
            "{}",
            e.message
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_assignment_stream_of_a_killed_node_reopens_on_the_next() {
    tokio::time::timeout(LIMIT, async {
        let a = Node::start("a", 61).await;
        let b = Node::start("b", 62).await;
        let control = client(&[&a.url, &b.url]);
        let mut stream = control.watch_assignments("edge-1").await.unwrap();
        assert_eq!(first_set(&mut stream).await, "a");

        a.kill();
        // It breaks or ends: either way it is over, and the next node is preferred.
        assert!(matches!(stream.next().await, None | Some(Err(_))));
        assert_eq!(control.endpoint(), b.url);
        let mut stream = control.watch_assignments("edge-1").await.unwrap();
        assert_eq!(first_set(&mut stream).await, "b");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_assignment_stream_of_a_stalled_node_is_found_by_keepalive_and_reopens_on_the_next() {
    tokio::time::timeout(LIMIT, async {
        let a = Node::start("a", 71).await;
        let b = Node::start("b", 72).await;
        let control = client(&[&a.url, &b.url]);
        let mut stream = control.watch_assignments("edge-1").await.unwrap();
        assert_eq!(first_set(&mut stream).await, "a");

        // A healthy node's idle stream outlives many keep-alive rounds and the call limit.
        let quiet = FAST.request * 2;
        assert!(
            tokio::time::timeout(quiet, stream.next()).await.is_err(),
            "an idle stream to a healthy node stays open"
        );

        a.freeze();
        let started = Instant::now();
        let over = stream.next().await;
        assert!(matches!(over, Some(Err(_))), "{over:?}");
        let took = started.elapsed();
        println!("a stalled stream was found after {took:?}");
        assert_eq!(control.endpoint(), b.url);
        let mut stream = control.watch_assignments("edge-1").await.unwrap();
        assert_eq!(first_set(&mut stream).await, "b");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_assignment_stream_opens_on_the_next_node_when_the_first_is_down() {
    tokio::time::timeout(LIMIT, async {
        let down = dead(81).await;
        let frozen = Node::start("frozen", 82).await;
        frozen.freeze();
        let c = Node::start("c", 83).await;
        let control = client(&[&down, &frozen.url, &c.url]);
        let mut stream = control.watch_assignments("edge-1").await.unwrap();
        assert_eq!(first_set(&mut stream).await, "c");
        // Progress reports follow to the node that answered.
        control
            .report_progress(v1::ReportProgressRequest::default())
            .await
            .unwrap();
        assert_eq!(c.fake.calls(), 2);
    })
    .await
    .unwrap();
}

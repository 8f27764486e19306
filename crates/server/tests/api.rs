//! The control plane's API in-process: every method of `shoal.v1.CatalogService` and
//! `shoal.v1.NodeService`, over REST (the axum router called with `tower::ServiceExt::oneshot`)
//! and over gRPC (a tonic client whose transport is that same router), with no socket. Bad
//! input gets the documented HTTP status, gRPC code and `ErrorInfo` reason, and leaves the
//! catalog and the node registry as they were.
//!
//! Over a real socket (so the access layer sees the caller's address): the authorisation
//! matrix (every role times every mutating method; refusals change nothing), tokens stored
//! hashed, revocation on the next call, loopback trust.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::{Value, json};
use shoal_api::ErrorCode;
use shoal_api::router::Access;
use shoal_api::testing::{array, assert_grpc_error, assert_rest_error, payload, q, request, text};
use shoal_api::v1;
use shoal_api::v1::assignment_service_client::AssignmentServiceClient;
use shoal_api::v1::assignment_service_server::AssignmentService;
use shoal_api::v1::catalog_service_client::CatalogServiceClient;
use shoal_api::v1::credential_service_client::CredentialServiceClient;
use shoal_api::v1::node_service_client::NodeServiceClient;
use shoal_api::v1::placement_service_client::PlacementServiceClient;
use shoal_api::v1::policy_service_client::PolicyServiceClient;
use shoal_control::ArtifactRecord;
use shoal_metainfo::create::{CreateOptions, InputFile, Plan};
use shoal_metainfo::{PathComponent, Torrent, TorrentPath};
use shoal_server::{ControlPlane, ServerConfig};
use tokio_stream::StreamExt as _;
use tonic::service::interceptor::InterceptedService;
use tower::ServiceExt;

/// No single call may take longer than this.
const CALL_LIMIT: Duration = Duration::from_secs(20);

/// The announce URL the control plane puts in torrents and magnets.
const ANNOUNCE: &str = "http://127.0.0.1:6969/announce";

/// An address off loopback.
const REMOTE: ([u8; 4], u16) = ([192, 0, 2, 7], 40_000);

/// One control plane under test and its temporary directory.
struct TestServer {
    _dir: tempfile::TempDir,
    router: Router,
}

impl TestServer {
    fn start(access: Access) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let control: Arc<ControlPlane> = ControlPlane::open(ServerConfig {
            data_dir: dir.path().join("catalog"),
            announce_url: ANNOUNCE.to_owned(),
            announce_urls: Vec::new(),
            tracker: shoal_control::TrackerConfig::default(),
            nodes: shoal_control::NodeConfig::default(),
        })
        .unwrap();
        let router = shoal_server::api_router(&control, access).unwrap();
        Self { _dir: dir, router }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Value) {
        let response = tokio::time::timeout(CALL_LIMIT, self.router.clone().oneshot(request))
            .await
            .expect("the router answers in time")
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
        (parts.status, parts.headers, json)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.send(request(Method::GET, uri, None)).await;
        (status, body)
    }

    async fn post(&self, uri: &str, body: &Value) -> (StatusCode, Value) {
        let (status, _, body) = self.send(request(Method::POST, uri, Some(body))).await;
        (status, body)
    }

    /// Binds over REST; the call must succeed. Answers the response.
    async fn bind(&self, name_tag: &str, torrent: &Torrent) -> Value {
        let (status, body) = self
            .post("/v1/catalog:bind", &bind_body(name_tag, torrent))
            .await;
        assert_eq!(status, StatusCode::OK, "bind {name_tag}: {body}");
        body
    }

    fn catalog(&self) -> CatalogServiceClient<Router> {
        CatalogServiceClient::new(self.router.clone())
    }

    fn nodes(&self) -> NodeServiceClient<Router> {
        NodeServiceClient::new(self.router.clone())
    }

    /// The whole catalog and the whole registry, as REST lists them.
    async fn snapshot(&self) -> (Value, Value) {
        let (status, artifacts) = self.get("/v1/catalog/artifacts?pageSize=1000").await;
        assert_eq!(status, StatusCode::OK, "{artifacts}");
        let (status, nodes) = self.get("/v1/nodes?pageSize=1000").await;
        assert_eq!(status, StatusCode::OK, "{nodes}");
        (artifacts, nodes)
    }
}

/// A hybrid single-file torrent over [`payload`]`(seed, len)`, 16 KiB pieces, built in memory.
fn torrent(name: &str, seed: u64, len: usize) -> Torrent {
    let data = payload(seed, len);
    Plan::new(
        PathComponent::new(name).unwrap(),
        vec![InputFile {
            path: TorrentPath::parse(name).unwrap(),
            length: len as u64,
            executable: false,
        }],
        true,
        CreateOptions {
            piece_length: Some(16 * 1024),
            ..CreateOptions::default()
        },
    )
    .unwrap()
    .finish_in_memory(|_| &data)
    .unwrap()
}

/// A torrent's info dictionary and piece layers, as a bind carries them.
fn parts(torrent: &Torrent) -> (Vec<u8>, Vec<u8>) {
    let record = ArtifactRecord::from_torrent("x:1".parse().unwrap(), torrent, "test", 0).unwrap();
    (record.info, record.piece_layers)
}

fn bind_body(name_tag: &str, torrent: &Torrent) -> Value {
    let (info, layers) = parts(torrent);
    json!({
        "nameTag": name_tag,
        "info": data_encoding::BASE64.encode(&info),
        "pieceLayers": data_encoding::BASE64.encode(&layers),
    })
}

fn content_id(torrent: &Torrent) -> String {
    torrent.info_hashes().v2().unwrap().to_hex()
}

fn heartbeat(node_id: &str, labels: &[(&str, &str)], peer: &str) -> v1::HeartbeatRequest {
    v1::HeartbeatRequest {
        node_id: node_id.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        peer_address: peer.to_owned(),
        agent_api: "127.0.0.1:7420".to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_methods_over_rest_and_grpc() {
    let server = TestServer::start(Access::Open);
    let a = torrent("a.bin", 1, 300 * 1024);
    let b = torrent("b.bin", 2, 300 * 1024);
    let c = torrent("c.bin", 3, 1000);

    // BindArtifact over REST.
    let bound = server.bind("app/a:1", &a).await;
    let artifact = bound["artifact"].clone();
    assert!(bound.get("alreadyBound").is_none(), "{bound}");
    assert_eq!(artifact["nameTag"], "app/a:1");
    assert_eq!(artifact["contentId"], content_id(&a));
    assert_eq!(
        artifact["infoHashV1"],
        a.info_hashes().v1().unwrap().to_hex()
    );
    assert_eq!(artifact["size"], "307200");
    assert_eq!(artifact["pieceLength"], 16384);
    assert_eq!(artifact["createdBy"], "local");
    assert!(
        text(&artifact["magnet"]).contains(&format!("tr={}", q(ANNOUNCE))),
        "{artifact}"
    );

    // The same bind again is idempotent; the same content may take another tag.
    let again = server.bind("app/a:1", &a).await;
    assert_eq!(again["alreadyBound"], true);
    assert_eq!(again["artifact"], artifact);
    server.bind("app/a:2", &a).await;

    // BindArtifact over gRPC (c fits one piece: no piece layers).
    let mut catalog = server.catalog();
    for (name_tag, t) in [("app/b:1", &b), ("app/c:1", &c)] {
        let (info, piece_layers) = parts(t);
        let reply = catalog
            .bind_artifact(v1::BindArtifactRequest {
                name_tag: name_tag.to_owned(),
                info,
                piece_layers,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!reply.already_bound);
        assert_eq!(reply.artifact.unwrap().content_id, content_id(t));
    }
    assert!(parts(&c).1.is_empty());

    // ListArtifacts, one page at a time.
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let (status, page) = server
            .get(&format!(
                "/v1/catalog/artifacts?prefix={}&pageSize=1&pageToken={}",
                q("app/"),
                q(&token)
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let artifacts = array(&page["artifacts"]);
        assert_eq!(artifacts.len(), 1, "{page}");
        names.push(text(&artifacts[0]["nameTag"]).to_owned());
        token = text(&page["nextPageToken"]).to_owned();
        if token.is_empty() {
            break;
        }
        assert!(names.len() < 10, "pagination does not end");
    }
    assert_eq!(names, ["app/a:1", "app/a:2", "app/b:1", "app/c:1"]);

    // GetArtifact by name:tag and by content id prefix; with the torrent.
    let (status, info) = server
        .get(&format!(
            "/v1/catalog/artifacts:info?ref.nameTag={}",
            q("app/a:1")
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info, artifact);
    let (status, info) = server
        .get(&format!(
            "/v1/catalog/artifacts:info?ref.contentId={}",
            &content_id(&b)[..12]
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["nameTag"], "app/b:1");
    let (status, info) = server
        .get(&format!(
            "/v1/catalog/artifacts:info?ref.nameTag={}&includeTorrent=true",
            q("app/a:1")
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    let bytes = data_encoding::BASE64
        .decode(text(&info["torrent"]).as_bytes())
        .unwrap();
    let served = Torrent::from_bytes(&bytes).unwrap();
    assert_eq!(served.info_hashes(), a.info_hashes());
    assert_eq!(served.trackers(), vec![vec![ANNOUNCE.to_owned()]]);

    // gRPC answers are the REST bodies, field for field.
    let grpc = catalog
        .get_artifact(v1::GetArtifactRequest {
            r#ref: Some(v1::ArtifactRef {
                kind: Some(v1::artifact_ref::Kind::NameTag("app/a:1".to_owned())),
            }),
            include_torrent: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serde_json::to_value(&grpc).unwrap(), info);
    let grpc = catalog
        .list_artifacts(v1::ListArtifactsRequest {
            prefix: String::new(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grpc.artifacts.len(), 2);
    let (_, rest) = server.get("/v1/catalog/artifacts?pageSize=2").await;
    let mut grpc = serde_json::to_value(&grpc).unwrap();
    // Page tokens are sealed afresh on each call; compare the rest.
    assert!(!text(&grpc["nextPageToken"]).is_empty());
    grpc["nextPageToken"] = rest["nextPageToken"].clone();
    assert_eq!(grpc, rest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_refuses_bad_input_and_changes_nothing() {
    let server = TestServer::start(Access::Open);
    let a = torrent("a.bin", 1, 300 * 1024);
    let other = torrent("a.bin", 2, 300 * 1024);
    let original = server.bind("app:1", &a).await["artifact"].clone();
    let before = server.snapshot().await;

    let (info, layers) = parts(&a);
    let base64 = |b: &[u8]| data_encoding::BASE64.encode(b);
    let cases = [
        (
            json!({"nameTag": "app:2", "info": base64(b"not a torrent")}),
            ErrorCode::InvalidTorrent,
        ),
        (json!({"nameTag": "app:2"}), ErrorCode::InvalidTorrent),
        (
            json!({"nameTag": "app:2", "info": base64(&info), "pieceLayers": base64(b"garbage")}),
            ErrorCode::InvalidTorrent,
        ),
        (
            json!({"nameTag": "app:2", "info": base64(&info[..info.len() - 1]), "pieceLayers": base64(&layers)}),
            ErrorCode::InvalidTorrent,
        ),
        (bind_body("App:2", &a), ErrorCode::InvalidNameTag),
        (bind_body("app", &a), ErrorCode::InvalidNameTag),
        (bind_body("", &a), ErrorCode::InvalidNameTag),
        (
            bind_body("app:1", &other),
            ErrorCode::TagBoundToOtherContent,
        ),
    ];
    let mut catalog = server.catalog();
    for (body, code) in cases {
        let (status, reply) = server.post("/v1/catalog:bind", &body).await;
        assert_rest_error(status, &reply, code);
        if code == ErrorCode::TagBoundToOtherContent {
            let metadata = &reply["error"]["details"][0]["metadata"];
            assert_eq!(metadata["bound_content_id"], original["contentId"]);
            assert_eq!(metadata["name_tag"], "app:1");
        }
        let request: v1::BindArtifactRequest = serde_json::from_value(body).unwrap();
        assert_grpc_error(catalog.bind_artifact(request).await, code);
    }

    // Bodies that are not the message, and one over the REST limit.
    for body in [
        &b"{"[..],
        br#"{"info": "!!not base64!!"}"#,
        br#"{"nameTag": 1}"#,
    ] {
        let mut req = request(Method::POST, "/v1/catalog:bind", None);
        *req.body_mut() = Body::from(body.to_vec());
        let (status, _, reply) = server.send(req).await;
        assert_rest_error(status, &reply, ErrorCode::InvalidArgument);
    }
    let huge = json!({"nameTag": "app:2", "info": "A".repeat(shoal_api::rest::MAX_BODY_BYTES)});
    let (status, reply) = server.post("/v1/catalog:bind", &huge).await;
    assert_rest_error(status, &reply, ErrorCode::RequestTooLarge);

    // GetArtifact: unknown names and ids, references the catalog does not answer.
    let refs = [
        (json!({"nameTag": "app:9"}), ErrorCode::ArtifactNotFound),
        (
            json!({"contentId": "0123456789ab"}),
            ErrorCode::ArtifactNotFound,
        ),
        (json!({}), ErrorCode::InvalidRef),
        (json!({"contentId": "not-hex"}), ErrorCode::InvalidRef),
        (json!({"contentId": "abc"}), ErrorCode::InvalidRef),
        (json!({"magnet": "magnet:?dn=x"}), ErrorCode::InvalidRef),
        (
            json!({"magnet": text(&original["magnet"])}),
            ErrorCode::InvalidRef,
        ),
        (
            json!({"torrentUrl": "http://example.invalid/a.torrent"}),
            ErrorCode::InvalidRef,
        ),
        (
            json!({"torrent": base64(b"d4:infoe")}),
            ErrorCode::InvalidRef,
        ),
        (json!({"nameTag": "App:1"}), ErrorCode::InvalidNameTag),
    ];
    for (r#ref, code) in refs {
        let query: String = r#ref
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("ref.{k}={}", q(text(v))))
            .collect();
        let (status, reply) = server
            .get(&format!("/v1/catalog/artifacts:info?{query}"))
            .await;
        assert_rest_error(status, &reply, code);
        if code == ErrorCode::ArtifactNotFound && r#ref.get("nameTag").is_some() {
            assert_eq!(
                reply["error"]["details"][0]["metadata"]["name_tag"],
                "app:9"
            );
        }
        let r#ref: Option<v1::ArtifactRef> = serde_json::from_value(r#ref).unwrap();
        assert_grpc_error(
            catalog
                .get_artifact(v1::GetArtifactRequest {
                    r#ref,
                    include_torrent: false,
                })
                .await,
            code,
        );
    }

    // ListArtifacts: page tokens not sealed here, an overlong prefix.
    for token in [
        "garbage",
        "YXBwOjE.AAAAAAAAAAAAAAAAAAAAAA",
        &"x".repeat(2000),
    ] {
        let (status, reply) = server
            .get(&format!("/v1/catalog/artifacts?pageToken={}", q(token)))
            .await;
        assert_rest_error(status, &reply, ErrorCode::InvalidPageToken);
        assert_grpc_error(
            catalog
                .list_artifacts(v1::ListArtifactsRequest {
                    prefix: String::new(),
                    page_size: 0,
                    page_token: token.to_owned(),
                })
                .await,
            ErrorCode::InvalidPageToken,
        );
    }
    let (status, reply) = server
        .get(&format!("/v1/catalog/artifacts?prefix={}", "a".repeat(513)))
        .await;
    assert_rest_error(status, &reply, ErrorCode::InvalidArgument);

    assert_eq!(server.snapshot().await, before);
    let (_, info) = server
        .get(&format!(
            "/v1/catalog/artifacts:info?ref.nameTag={}",
            q("app:1")
        ))
        .await;
    assert_eq!(info, original, "the tag still names the first content");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_list_and_refuse_bad_heartbeats() {
    let server = TestServer::start(Access::Open);

    // Heartbeat over REST registers a node.
    let (status, reply) = server
        .post(
            "/v1/nodes:heartbeat",
            &json!({
                "nodeId": "node-1",
                "labels": {"region": "eu-west", "zone": "a"},
                "peerAddress": "127.0.0.1:6881",
                "agentApi": "127.0.0.1:7420",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["announceUrl"], ANNOUNCE);
    assert_eq!(reply["intervalSeconds"], 10, "a third of the 30 s time-out");

    // And over gRPC.
    let mut nodes = server.nodes();
    for (id, peer) in [("node-2", "127.0.0.2:6881"), ("node-3", "[::1]:6881")] {
        let reply = nodes
            .heartbeat(heartbeat(id, &[("region", "us-east")], peer))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.announce_url, ANNOUNCE);
    }

    // ListNodes shows them with their labels, in id order, one page at a time.
    let (status, list) = server.get("/v1/nodes").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let listed = array(&list["nodes"]);
    assert_eq!(listed.len(), 3, "{list}");
    assert_eq!(listed[0]["nodeId"], "node-1");
    assert_eq!(
        listed[0]["labels"],
        json!({"region": "eu-west", "zone": "a"})
    );
    assert_eq!(listed[0]["peerAddress"], "127.0.0.1:6881");
    assert_eq!(listed[0]["agentApi"], "127.0.0.1:7420");
    assert_eq!(listed[0]["alive"], true);
    // Proto3 JSON: RFC 3339 in UTC with `Z`, 0, 3, 6 or 9 fractional digits.
    let beat = text(&listed[0]["lastHeartbeat"]);
    let parsed: shoal_api::wkt::Timestamp = beat.parse().unwrap();
    assert_eq!(parsed.to_rfc3339().unwrap(), beat);
    assert!(beat.ends_with('Z') && beat.len() >= 20, "{beat}");
    assert_eq!(listed[2]["peerAddress"], "[::1]:6881");
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        let (status, page) = server
            .get(&format!("/v1/nodes?pageSize=1&pageToken={}", q(&token)))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        ids.push(text(&array(&page["nodes"])[0]["nodeId"]).to_owned());
        token = text(&page["nextPageToken"]).to_owned();
        if token.is_empty() {
            break;
        }
        assert!(ids.len() < 10, "pagination does not end");
    }
    assert_eq!(ids, ["node-1", "node-2", "node-3"]);
    let grpc = nodes
        .list_nodes(v1::ListNodesRequest {
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serde_json::to_value(&grpc).unwrap(), list);

    // A new heartbeat with other labels replaces them.
    nodes
        .heartbeat(heartbeat(
            "node-2",
            &[("region", "us-west")],
            "127.0.0.2:6881",
        ))
        .await
        .unwrap();
    let (_, list) = server.get("/v1/nodes").await;
    assert_eq!(
        array(&list["nodes"])[1]["labels"],
        json!({"region": "us-west"})
    );

    // Bad heartbeats are refused and register or change nothing.
    let before = server.snapshot().await;
    let cases = [
        heartbeat("", &[], "127.0.0.9:6881"),
        heartbeat("-node", &[], "127.0.0.9:6881"),
        heartbeat("node 9", &[], "127.0.0.9:6881"),
        heartbeat(&"n".repeat(300), &[], "127.0.0.9:6881"),
        heartbeat("node-1", &[], "nowhere"),
        heartbeat("node-1", &[], "example.com:6881"),
        heartbeat("node-1", &[("bad key!", "x")], "127.0.0.1:6881"),
        heartbeat("node-1", &[("region", "not a value")], "127.0.0.1:6881"),
    ];
    for case in cases {
        let body = serde_json::to_value(&case).unwrap();
        let (status, reply) = server.post("/v1/nodes:heartbeat", &body).await;
        assert_rest_error(status, &reply, ErrorCode::InvalidArgument);
        assert_grpc_error(nodes.heartbeat(case).await, ErrorCode::InvalidArgument);
    }
    for token in ["garbage", "bm9kZS0x.AAAAAAAAAAAAAAAAAAAAAA"] {
        let (status, reply) = server
            .get(&format!("/v1/nodes?pageToken={}", q(token)))
            .await;
        assert_rest_error(status, &reply, ErrorCode::InvalidPageToken);
        assert_grpc_error(
            nodes
                .list_nodes(v1::ListNodesRequest {
                    page_size: 0,
                    page_token: token.to_owned(),
                })
                .await,
            ErrorCode::InvalidPageToken,
        );
    }
    assert_eq!(server.snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_openapi_unknown_routes_and_callers() {
    let server = TestServer::start(Access::LoopbackOrToken(vec!["tok".to_owned()]));
    let response = server
        .router
        .clone()
        .oneshot(request(Method::GET, "/healthz", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, doc) = server.get(shoal_api::router::OPENAPI_PATH).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/v1/catalog:bind",
        "/v1/catalog/artifacts",
        "/v1/catalog/artifacts:info",
        "/v1/nodes",
        "/v1/nodes:heartbeat",
        "/v1/credentials",
        "/v1/credentials:revoke",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} is not in the document"
        );
    }
    for (method, uri) in [
        (Method::GET, "/v1/nope"),
        (Method::GET, "/v1/artifacts"),
        (Method::POST, "/x"),
    ] {
        let (status, _, reply) = server.send(request(method, uri, None)).await;
        assert_rest_error(status, &reply, ErrorCode::NotFound);
    }

    // Off loopback, a caller needs the token, over REST and gRPC alike.
    let a = torrent("a.bin", 1, 1000);
    let before = server.snapshot().await;
    let remote = |auth: Option<&str>, body: &Value| {
        let mut req = request(Method::POST, "/v1/catalog:bind", Some(body));
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(REMOTE)));
        if let Some(auth) = auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, auth.parse().unwrap());
        }
        req
    };
    for auth in [None, Some("Bearer nope"), Some("tok")] {
        let (status, _, reply) = server.send(remote(auth, &bind_body("app:1", &a))).await;
        assert_rest_error(status, &reply, ErrorCode::Unauthenticated);
    }
    let (info, piece_layers) = parts(&a);
    let mut refused = tonic::Request::new(v1::BindArtifactRequest {
        name_tag: "app:1".to_owned(),
        info,
        piece_layers,
    });
    refused
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(REMOTE)));
    assert_grpc_error(
        server.catalog().bind_artifact(refused).await,
        ErrorCode::Unauthenticated,
    );
    let mut refused = tonic::Request::new(heartbeat("node-1", &[], "127.0.0.1:6881"));
    refused
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(REMOTE)));
    assert_grpc_error(
        server.nodes().heartbeat(refused).await,
        ErrorCode::Unauthenticated,
    );
    assert_eq!(server.snapshot().await, before);

    let (status, _, reply) = server
        .send(remote(Some("Bearer tok"), &bind_body("app:1", &a)))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["artifact"]["createdBy"], "token");

    // An open server names remote callers by address.
    let open = TestServer::start(Access::Open);
    let (status, _, reply) = open.send(remote(None, &bind_body("app:1", &a))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["artifact"]["createdBy"], "anonymous@192.0.2.7");
}

/// Placements over REST: created for the nodes a selector matches, idempotent, refused with
/// typed errors (bad selector, bad name, taken name, unknown placement, unregistered
/// reporter) that change nothing; progress reports move the totals; delete ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_follow_selectors_and_reports_and_refuse_bad_input() {
    let server = TestServer::start(Access::Open);
    let t = torrent("site", 9, 100_000);
    let (status, reply) = server
        .post("/v1/catalog:bind", &bind_body("site:1", &t))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    for (node, role, peer) in [
        ("web-1", "web", "127.0.0.1:1"),
        ("db-1", "db", "127.0.0.2:1"),
    ] {
        let body = json!({"nodeId": node, "labels": {"role": role}, "peerAddress": peer});
        let (status, reply) = server.post("/v1/nodes:heartbeat", &body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let create = json!({"name": "site", "ref": "site:1", "selector": "role = web"});
    let (status, placed) = server.post("/v1/placements", &create).await;
    assert_eq!(status, StatusCode::OK, "{placed}");
    assert_eq!(placed["selector"], "role=web", "canonical form");
    assert_eq!(placed["totals"]["nodes"], "1", "{placed}");
    assert_eq!(placed["totals"]["pending"], "1", "{placed}");
    assert_eq!(placed["contentId"], content_id(&t));
    let (status, again) = server.post("/v1/placements", &create).await;
    assert_eq!(
        (status, &again["name"]),
        (StatusCode::OK, &json!("site")),
        "idempotent"
    );

    let bad = [
        (
            json!({"name": "site", "ref": "site:1", "selector": "role=db"}),
            ErrorCode::PlacementExists,
        ),
        (
            json!({"name": "other", "ref": "site:1", "selector": "role in (web"}),
            ErrorCode::InvalidSelector,
        ),
        (
            json!({"name": "Bad_Name", "ref": "site:1", "selector": ""}),
            ErrorCode::InvalidArgument,
        ),
        (
            json!({"name": "other", "ref": "nope:1", "selector": ""}),
            ErrorCode::ArtifactNotFound,
        ),
    ];
    for (body, code) in bad {
        let (status, reply) = server.post("/v1/placements", &body).await;
        assert_rest_error(status, &reply, code);
    }
    let (_, list) = server.get("/v1/placements").await;
    assert_eq!(
        array(&list["placements"]).len(),
        1,
        "refusals changed nothing: {list}"
    );
    let (status, reply) = server.get("/v1/placements:status?name=nope").await;
    assert_rest_error(status, &reply, ErrorCode::PlacementNotFound);

    // Reports move the totals; only registered nodes may report, with valid entries.
    let report = |node: &str, state: &str, done: u64| {
        json!({"nodeId": node, "artifacts": [
            {"contentId": content_id(&t), "state": state, "bytesDone": done.to_string()}
        ]})
    };
    let (status, reply) = server
        .post(
            "/v1/assignments:report",
            &report("web-1", "ASSIGNMENT_STATE_DOWNLOADING", 40_000),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, shown) = server.get("/v1/placements:status?name=site").await;
    assert_eq!(
        shown["placement"]["totals"]["bytesDone"], "40000",
        "{shown}"
    );
    assert_eq!(
        shown["nodes"][0]["state"], "ASSIGNMENT_STATE_DOWNLOADING",
        "{shown}"
    );
    assert_eq!(shown["nodes"][0]["reason"], Value::Null, "{shown}");
    // A stalled download says why, and keeps its bytes.
    let mut stalled = report("web-1", "ASSIGNMENT_STATE_DOWNLOADING", 40_000);
    stalled["artifacts"][0]["reason"] = json!("no peers for 30 s");
    server.post("/v1/assignments:report", &stalled).await;
    let (_, shown) = server.get("/v1/placements:status?name=site").await;
    assert_eq!(shown["nodes"][0]["reason"], "no peers for 30 s", "{shown}");
    assert_eq!(shown["nodes"][0]["bytesDone"], "40000", "{shown}");
    assert_eq!(shown["placement"]["totals"]["downloading"], "1", "{shown}");
    server
        .post(
            "/v1/assignments:report",
            &report("web-1", "ASSIGNMENT_STATE_DONE", 0),
        )
        .await;
    let (_, shown) = server.get("/v1/placements:status?name=site").await;
    assert_eq!(shown["placement"]["totals"]["done"], "1", "{shown}");
    assert_eq!(shown["nodes"][0]["bytesDone"], "100000", "{shown}");
    let (status, reply) = server
        .post(
            "/v1/assignments:report",
            &report("ghost", "ASSIGNMENT_STATE_DONE", 0),
        )
        .await;
    assert_rest_error(status, &reply, ErrorCode::NodeNotFound);
    let mut bad_id = report("web-1", "ASSIGNMENT_STATE_FAILED", 0);
    bad_id["artifacts"][0]["contentId"] = json!("xyz");
    let (status, reply) = server.post("/v1/assignments:report", &bad_id).await;
    assert_rest_error(status, &reply, ErrorCode::InvalidArgument);
    let (_, shown) = server.get("/v1/placements:status?name=site").await;
    assert_eq!(
        shown["placement"]["totals"]["done"], "1",
        "bad reports changed nothing"
    );

    // A node whose labels change into the selector becomes a target.
    let body = json!({"nodeId": "db-1", "labels": {"role": "web"}, "peerAddress": "127.0.0.2:1"});
    server.post("/v1/nodes:heartbeat", &body).await;
    let (_, shown) = server.get("/v1/placements:status?name=site").await;
    assert_eq!(shown["placement"]["totals"]["nodes"], "2", "{shown}");

    let (status, reply) = server
        .post("/v1/placements:delete", &json!({"name": "site"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = server
        .post("/v1/placements:delete", &json!({"name": "site"}))
        .await;
    assert_rest_error(status, &reply, ErrorCode::PlacementNotFound);
}

/// A placement is durable: a control plane opened again on the same directory still has it,
/// with its targets recomputed from the registered nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placements_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let control = ControlPlane::open(ServerConfig {
            data_dir: dir.path().join("catalog"),
            announce_url: ANNOUNCE.to_owned(),
            announce_urls: Vec::new(),
            tracker: shoal_control::TrackerConfig::default(),
            nodes: shoal_control::NodeConfig::default(),
        })
        .unwrap();
        let router = shoal_server::api_router(&control, Access::Open).unwrap();
        (control, router)
    };
    let call = |router: &Router, method: Method, uri: &str, body: Option<&Value>| {
        let request = request(method, uri, body);
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    let t = torrent("durable", 3, 50_000);
    {
        let (_control, router) = open();
        let (status, _) = call(
            &router,
            Method::POST,
            "/v1/catalog:bind",
            Some(&bind_body("d:1", &t)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let node =
            json!({"nodeId": "web-1", "labels": {"role": "web"}, "peerAddress": "127.0.0.1:1"});
        call(&router, Method::POST, "/v1/nodes:heartbeat", Some(&node)).await;
        let create = json!({"name": "kept", "ref": "d:1", "selector": "role=web"});
        let (status, reply) = call(&router, Method::POST, "/v1/placements", Some(&create)).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
    }
    let (_control, router) = open();
    let (status, shown) = call(
        &router,
        Method::GET,
        "/v1/placements:status?name=kept",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["placement"]["selector"], "role=web");
    assert_eq!(shown["placement"]["size"], "50000", "{shown}");
    assert_eq!(shown["placement"]["totals"]["nodes"], "1", "{shown}");
    assert_eq!(shown["nodes"][0]["nodeId"], "web-1");
}

/// Policies over REST: the strictest value of each rule wins for a node, the node's rules
/// travel with its assignments, bad input is refused and changes nothing, and policies
/// survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_combine_strictest_first_reach_assignments_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let try_open = || {
        ControlPlane::open(ServerConfig {
            data_dir: dir.path().join("catalog"),
            announce_url: ANNOUNCE.to_owned(),
            announce_urls: Vec::new(),
            tracker: shoal_control::TrackerConfig::default(),
            nodes: shoal_control::NodeConfig::default(),
        })
        .map(|control| {
            let router = shoal_server::api_router(&control, Access::Open).unwrap();
            (control, router)
        })
    };
    let open = || try_open().unwrap();
    let call = |router: &Router, method: Method, uri: &str, body: Option<&Value>| {
        let request = request(method, uri, body);
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, serde_json::from_slice::<Value>(&body).unwrap())
        }
    };
    {
        let (control, router) = open();
        let node = json!({"nodeId": "vpn-1", "labels": {"net": "vpn", "region": "eu"}, "peerAddress": "127.0.0.1:1"});
        call(&router, Method::POST, "/v1/nodes:heartbeat", Some(&node)).await;
        let set = |body: Value| {
            let call = &call;
            let router = &router;
            async move { call(router, Method::POST, "/v1/policies", Some(&body)).await }
        };
        let (status, reply) = set(json!({"name": "vpn", "selector": "net in (vpn,lte)", "rules": {"uploadRate": "0", "maxPeers": 20}})).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(
            reply["selector"], "net in (lte,vpn)",
            "canonical selector: {reply}"
        );
        let (status, reply) = set(json!({"name": "eu", "selector": "region=eu", "rules": {"uploadRate": "5000000", "downloadRate": "9000000", "maxPeers": 50, "quotaBytes": "1000000000"}})).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let (status, reply) =
            set(json!({"name": "us", "selector": "region=us", "rules": {"downloadRate": "1"}}))
                .await;
        assert_eq!(status, StatusCode::OK, "{reply}");

        // Bad input: each refused with its code, nothing stored.
        let before = call(&router, Method::GET, "/v1/policies", None).await;
        for (body, code) in [
            (
                json!({"name": "empty", "selector": "", "rules": {}}),
                "INVALID_ARGUMENT",
            ),
            (
                json!({"name": "x", "selector": "", "rules": {"maxPeers": 0}}),
                "INVALID_ARGUMENT",
            ),
            (
                json!({"name": "x", "selector": "", "rules": {"downloadRate": "0"}}),
                "INVALID_ARGUMENT",
            ),
            (
                json!({"name": "Bad Name", "selector": "", "rules": {"maxPeers": 1}}),
                "INVALID_ARGUMENT",
            ),
            (
                json!({"name": "x", "selector": "role in (", "rules": {"maxPeers": 1}}),
                "INVALID_SELECTOR",
            ),
        ] {
            let (status, reply) = set(body.clone()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {reply}");
            assert_eq!(
                reply["error"]["details"][0]["reason"], code,
                "{body} -> {reply}"
            );
        }
        let (status, reply) = call(
            &router,
            Method::POST,
            "/v1/policies:delete",
            Some(&json!({"name": "nope"})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
        assert_eq!(reply["error"]["details"][0]["reason"], "POLICY_NOT_FOUND");
        assert_eq!(
            call(&router, Method::GET, "/v1/policies", None).await,
            before
        );

        // vpn-1 matches vpn and eu: leech-only from one, the rest from the other, the lower
        // peer count; us does not match.
        let (status, node) =
            call(&router, Method::GET, "/v1/nodes:policy?nodeId=vpn-1", None).await;
        assert_eq!(status, StatusCode::OK, "{node}");
        assert_eq!(
            node,
            json!({"rules": {"uploadRate": "0", "downloadRate": "9000000", "maxPeers": 20, "quotaBytes": "1000000000"}, "policies": ["eu", "vpn"]})
        );
        let (status, _) = call(&router, Method::GET, "/v1/nodes:policy?nodeId=ghost", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // The node's assignment stream carries its rules.
        let mut stream = AssignmentService::watch_assignments(
            control.as_ref(),
            tonic::Request::new(v1::WatchAssignmentsRequest {
                node_id: "vpn-1".to_owned(),
            }),
        )
        .await
        .unwrap()
        .into_inner();
        let first = stream.next().await.unwrap().unwrap();
        let policy = first.policy.unwrap();
        assert_eq!(policy.policies, ["eu", "vpn"]);
        assert_eq!(policy.rules.unwrap().upload_rate, Some(0));
        // Removing a policy reaches the stream at once.
        let (status, _) = call(
            &router,
            Method::POST,
            "/v1/policies:delete",
            Some(&json!({"name": "vpn"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the change reaches the stream")
            .unwrap()
            .unwrap();
        let rules = next.policy.unwrap().rules.unwrap();
        assert_eq!(
            (rules.upload_rate, rules.max_peers),
            (Some(5_000_000), Some(50))
        );
        // New labels alone (no placement involved) put the node under other policies: its
        // stream hears of it at once.
        let moved =
            json!({"nodeId": "vpn-1", "labels": {"region": "us"}, "peerAddress": "127.0.0.1:1"});
        call(&router, Method::POST, "/v1/nodes:heartbeat", Some(&moved)).await;
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("the relabelling reaches the stream")
            .unwrap()
            .unwrap();
        let policy = next.policy.unwrap();
        assert_eq!(policy.policies, ["us"]);
        assert_eq!(policy.rules.unwrap().download_rate, Some(1));
        // A node's stream opened before it registers gets its rules once it does.
        let mut early = AssignmentService::watch_assignments(
            control.as_ref(),
            tonic::Request::new(v1::WatchAssignmentsRequest {
                node_id: "late-1".to_owned(),
            }),
        )
        .await
        .unwrap()
        .into_inner();
        let first = early.next().await.unwrap().unwrap();
        assert_eq!(first.policy, None, "not registered yet");
        let late =
            json!({"nodeId": "late-1", "labels": {"region": "us"}, "peerAddress": "127.0.0.1:2"});
        call(&router, Method::POST, "/v1/nodes:heartbeat", Some(&late)).await;
        let next = tokio::time::timeout(Duration::from_secs(5), early.next())
            .await
            .expect("the registration reaches the early stream")
            .unwrap()
            .unwrap();
        assert_eq!(next.policy.unwrap().policies, ["us"]);
    }
    // The streams' tasks let go of the first control plane as they notice their clients
    // are gone; the database opens again once they have.
    let start = std::time::Instant::now();
    let (_control, router) = loop {
        match try_open() {
            Ok(opened) => break opened,
            Err(e) => {
                assert!(start.elapsed() < CALL_LIMIT, "cannot open again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (status, list) = call(&router, Method::GET, "/v1/policies", None).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["eu", "us"], "{list}");
}

/// A control plane serving on a real TCP port of 127.0.0.1, so the access layer sees the
/// caller's address.
struct LiveServer {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    /// One connection, shared by every client (each with its own token).
    channel: tonic::transport::Channel,
    /// The bootstrap admin's token, read from `admin.token`.
    bootstrap: String,
    task: tokio::task::JoinHandle<()>,
}

impl LiveServer {
    async fn start(trust_loopback: bool) -> Self {
        Self::serve(tempfile::tempdir().unwrap(), trust_loopback).await
    }

    /// Serves the control plane whose data is in `dir`.
    async fn serve(dir: tempfile::TempDir, trust_loopback: bool) -> Self {
        // After a restart the old server's connection tasks may hold the store for a moment.
        let start = std::time::Instant::now();
        let control = loop {
            match ControlPlane::open(ServerConfig {
                data_dir: dir.path().join("catalog"),
                announce_url: ANNOUNCE.to_owned(),
                announce_urls: Vec::new(),
                tracker: shoal_control::TrackerConfig::default(),
                nodes: shoal_control::NodeConfig::default(),
            }) {
                Ok(control) => break control,
                Err(e) if start.elapsed() < CALL_LIMIT => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        let token_file = dir
            .path()
            .join("catalog")
            .join(shoal_server::ADMIN_TOKEN_FILE);
        if let Some(made) = control.bootstrap_token_file() {
            assert_eq!(made, token_file);
        }
        let bootstrap = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();
        let access = shoal_server::access(&control, trust_loopback);
        let router = shoal_server::api_router(&control, access).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        Self {
            dir,
            addr,
            channel,
            bootstrap,
            task,
        }
    }

    /// Stops serving, waits until the store is closed, and serves the same data again (loopback
    /// not trusted).
    async fn restart(mut self) -> Self {
        self.task.abort();
        let task = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = task.await;
        let dir = tempfile::tempdir().unwrap();
        let dir = std::mem::replace(&mut self.dir, dir);
        drop(self);
        Self::serve(dir, false).await
    }

    fn channel(&self, token: Option<&str>) -> Authed {
        InterceptedService::new(self.channel.clone(), Bearer(token.map(str::to_owned)))
    }

    fn catalog(&self, token: Option<&str>) -> CatalogServiceClient<Authed> {
        CatalogServiceClient::new(self.channel(token)).max_decoding_message_size(64 << 20)
    }

    fn nodes(&self, token: Option<&str>) -> NodeServiceClient<Authed> {
        NodeServiceClient::new(self.channel(token))
    }

    fn placements(&self, token: Option<&str>) -> PlacementServiceClient<Authed> {
        PlacementServiceClient::new(self.channel(token))
    }

    fn assignments(&self, token: Option<&str>) -> AssignmentServiceClient<Authed> {
        AssignmentServiceClient::new(self.channel(token))
    }

    fn credentials(&self, token: Option<&str>) -> CredentialServiceClient<Authed> {
        CredentialServiceClient::new(self.channel(token))
    }

    fn policies(&self, token: Option<&str>) -> PolicyServiceClient<Authed> {
        PolicyServiceClient::new(self.channel(token))
    }

    /// Issues a credential as the bootstrap admin; its token.
    async fn issue(&self, name: &str, role: &str) -> String {
        self.credentials(Some(&self.bootstrap))
            .issue_credential(v1::IssueCredentialRequest {
                name: name.to_owned(),
                role: role.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    /// Everything a forbidden call could change, as the bootstrap admin lists it.
    async fn snapshot(&self) -> String {
        let admin = Some(self.bootstrap.as_str());
        let page = 1000;
        let artifacts = self
            .catalog(admin)
            .list_artifacts(v1::ListArtifactsRequest {
                page_size: page,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let nodes = self
            .nodes(admin)
            .list_nodes(v1::ListNodesRequest {
                page_size: page,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let placements = self
            .placements(admin)
            .list_placements(v1::ListPlacementsRequest {
                page_size: page,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let credentials = self
            .credentials(admin)
            .list_credentials(v1::ListCredentialsRequest {
                page_size: page,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let policies = self
            .policies(admin)
            .list_policies(v1::ListPoliciesRequest {
                page_size: page,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        format!("{artifacts:?}\n{nodes:?}\n{placements:?}\n{credentials:?}\n{policies:?}")
    }

    /// A REST call over TCP with `token` as the bearer; the status and JSON body.
    async fn rest(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        use hyper_util::client::legacy::Client;
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Body>();
        let mut req = request(method, &format!("http://{}{path}", self.addr), body);
        if let Some(token) = token {
            req.headers_mut().insert(
                header::AUTHORIZATION,
                format!("Bearer {token}").parse().unwrap(),
            );
        }
        let response = client.request(req).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(Body::new(response.into_body()), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Adds `Authorization: Bearer TOKEN` to every call, when there is a token.
#[derive(Clone)]
struct Bearer(Option<String>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<tonic::transport::Channel, Bearer>;

/// Every mutating method of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    BindArtifact,
    Heartbeat,
    CreatePlacement,
    DeletePlacement,
    ReportProgress,
    WatchAssignments,
    IssueCredential,
    RevokeCredential,
    SetPolicy,
    DeletePolicy,
}

const MUTATIONS: [Mutation; 10] = [
    Mutation::BindArtifact,
    Mutation::Heartbeat,
    Mutation::CreatePlacement,
    Mutation::DeletePlacement,
    Mutation::ReportProgress,
    Mutation::WatchAssignments,
    Mutation::IssueCredential,
    Mutation::RevokeCredential,
    Mutation::SetPolicy,
    Mutation::DeletePolicy,
];

/// Who may call each mutating method, written out (not derived from the table it tests).
fn allowed(role: &str, method: Mutation) -> bool {
    use Mutation as M;
    match role {
        "admin" => true,
        "publisher" => method == M::BindArtifact,
        "agent" => matches!(
            method,
            M::Heartbeat | M::ReportProgress | M::WatchAssignments
        ),
        _ => false,
    }
}

/// Calls `method` with `token`; `n` makes its names unique. What it needs that only an admin
/// may make (a placement to delete, a credential to revoke) is made first, by the admin.
async fn call(
    server: &LiveServer,
    method: Mutation,
    token: Option<&str>,
    n: usize,
) -> Result<(), tonic::Status> {
    match method {
        Mutation::BindArtifact => {
            let (info, piece_layers) = parts(&torrent("m.bin", n as u64, 1000));
            let request = v1::BindArtifactRequest {
                name_tag: format!("app-{n}:1"),
                info,
                piece_layers,
            };
            server.catalog(token).bind_artifact(request).await.map(drop)
        }
        Mutation::Heartbeat => server
            .nodes(token)
            .heartbeat(heartbeat(&format!("node-{n}"), &[], "127.0.0.1:6881"))
            .await
            .map(drop),
        Mutation::CreatePlacement => server
            .placements(token)
            .create_placement(v1::CreatePlacementRequest {
                name: format!("place-{n}"),
                r#ref: "base:1".to_owned(),
                selector: "role=web".to_owned(),
                until: None,
            })
            .await
            .map(drop),
        Mutation::DeletePlacement | Mutation::RevokeCredential | Mutation::DeletePolicy => {
            unreachable!("prepared")
        }
        Mutation::SetPolicy => server
            .policies(token)
            .set_policy(v1::SetPolicyRequest {
                name: format!("policy-{n}"),
                selector: "metered=true".to_owned(),
                rules: Some(v1::PolicyRules {
                    upload_rate: Some(0),
                    ..v1::PolicyRules::default()
                }),
            })
            .await
            .map(drop),
        Mutation::ReportProgress => server
            .assignments(token)
            .report_progress(v1::ReportProgressRequest {
                node_id: "worker".to_owned(),
                artifacts: vec![v1::ArtifactProgress {
                    content_id: content_id(&torrent("base.bin", 0, 1000)),
                    state: v1::AssignmentState::Done.into(),
                    bytes_done: 1000,
                    reason: String::new(),
                }],
            })
            .await
            .map(drop),
        Mutation::WatchAssignments => {
            let mut stream = server
                .assignments(token)
                .watch_assignments(v1::WatchAssignmentsRequest {
                    node_id: "worker".to_owned(),
                })
                .await?
                .into_inner();
            let first = tokio::time::timeout(CALL_LIMIT, stream.message()).await;
            assert!(matches!(first, Ok(Ok(Some(_)))), "{first:?}");
            Ok(())
        }
        Mutation::IssueCredential => server
            .credentials(token)
            .issue_credential(v1::IssueCredentialRequest {
                name: format!("new-{n}"),
                role: "reader".to_owned(),
            })
            .await
            .map(drop),
    }
}

/// Makes what `method` acts on (as the admin), then calls it with `token`.
async fn prepare_and_call(
    server: &LiveServer,
    method: Mutation,
    token: Option<&str>,
    n: usize,
) -> (String, Result<(), tonic::Status>) {
    let admin = Some(server.bootstrap.as_str());
    match method {
        Mutation::DeletePlacement => {
            let name = format!("victim-{n}");
            server
                .placements(admin)
                .create_placement(v1::CreatePlacementRequest {
                    name: name.clone(),
                    r#ref: "base:1".to_owned(),
                    selector: "role=db".to_owned(),
                    until: None,
                })
                .await
                .unwrap();
            let before = server.snapshot().await;
            let result = server
                .placements(token)
                .delete_placement(v1::DeletePlacementRequest { name })
                .await
                .map(drop);
            (before, result)
        }
        Mutation::DeletePolicy => {
            let name = format!("victim-{n}");
            server
                .policies(admin)
                .set_policy(v1::SetPolicyRequest {
                    name: name.clone(),
                    selector: "role=db".to_owned(),
                    rules: Some(v1::PolicyRules {
                        max_peers: Some(10),
                        ..v1::PolicyRules::default()
                    }),
                })
                .await
                .unwrap();
            let before = server.snapshot().await;
            let result = server
                .policies(token)
                .delete_policy(v1::DeletePolicyRequest { name })
                .await
                .map(drop);
            (before, result)
        }
        Mutation::RevokeCredential => {
            let name = format!("victim-{n}");
            server.issue(&name, "reader").await;
            let before = server.snapshot().await;
            let result = server
                .credentials(token)
                .revoke_credential(v1::RevokeCredentialRequest { name })
                .await
                .map(drop);
            (before, result)
        }
        _ => {
            let before = server.snapshot().await;
            (before, call(server, method, token, n).await)
        }
    }
}

/// The authorisation matrix, over gRPC on a real socket with loopback not trusted: every role
/// (no token, reader, agent, publisher, admin, a revoked credential) times every mutating
/// method. Allowed calls succeed; the others are refused with UNAUTHENTICATED (no valid
/// credential) or PERMISSION_DENIED (the wrong role), and change nothing at all: artifacts,
/// nodes, placements, credentials and policies read the same before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorisation_matrix_every_role_times_every_mutating_method() {
    let server = LiveServer::start(false).await;
    let admin = Some(server.bootstrap.clone());
    // What the methods act on: an artifact, and a registered node.
    server
        .catalog(admin.as_deref())
        .bind_artifact({
            let (info, piece_layers) = parts(&torrent("base.bin", 0, 1000));
            v1::BindArtifactRequest {
                name_tag: "base:1".to_owned(),
                info,
                piece_layers,
            }
        })
        .await
        .unwrap();
    server
        .nodes(admin.as_deref())
        .heartbeat(heartbeat("worker", &[("role", "db")], "127.0.0.1:6881"))
        .await
        .unwrap();
    let mut roles: Vec<(&str, Option<String>)> = vec![("none", None)];
    for role in ["reader", "agent", "publisher", "admin"] {
        roles.push((role, Some(server.issue(&format!("the-{role}"), role).await)));
    }
    let revoked = server.issue("gone", "publisher").await;
    server
        .credentials(admin.as_deref())
        .revoke_credential(v1::RevokeCredentialRequest {
            name: "gone".to_owned(),
        })
        .await
        .unwrap();
    roles.push(("revoked", Some(revoked)));

    let mut n = 0;
    for (role, token) in &roles {
        for method in MUTATIONS {
            n += 1;
            let (before, result) = prepare_and_call(&server, method, token.as_deref(), n).await;
            if allowed(role, method) {
                assert!(result.is_ok(), "{role} / {method:?}: {result:?}");
                continue;
            }
            let code = if matches!(*role, "none" | "revoked") {
                ErrorCode::Unauthenticated
            } else {
                ErrorCode::PermissionDenied
            };
            let status = result.as_ref().err().cloned();
            assert_grpc_error(result, code);
            let message = status.map(|s| s.message().to_owned()).unwrap_or_default();
            if code == ErrorCode::PermissionDenied {
                assert!(
                    message.contains(&format!("the {role} role may not")),
                    "{role} / {method:?}: {message}"
                );
            }
            assert_eq!(
                server.snapshot().await,
                before,
                "{role} / {method:?} changed the state"
            );
        }
    }

    // Reads are open to every valid credential, and to nobody else.
    for (role, token) in &roles {
        let listed = server
            .placements(token.as_deref())
            .list_placements(v1::ListPlacementsRequest::default())
            .await;
        match *role {
            "none" | "revoked" => assert_grpc_error(listed, ErrorCode::Unauthenticated),
            _ => assert!(listed.is_ok(), "{role}: {listed:?}"),
        }
        let credentials = server
            .credentials(token.as_deref())
            .list_credentials(v1::ListCredentialsRequest::default())
            .await;
        match *role {
            "none" | "revoked" => assert_grpc_error(credentials, ErrorCode::Unauthenticated),
            "admin" => assert!(credentials.is_ok()),
            _ => assert_grpc_error(credentials, ErrorCode::PermissionDenied),
        }
    }

    // REST is judged the same way.
    let token = |role: &str| {
        roles
            .iter()
            .find(|(r, _)| *r == role)
            .and_then(|(_, t)| t.clone())
    };
    let body = bind_body("rest:1", &torrent("rest.bin", 99, 1000));
    let before = server.snapshot().await;
    for (role, code) in [
        ("none", ErrorCode::Unauthenticated),
        ("revoked", ErrorCode::Unauthenticated),
        ("reader", ErrorCode::PermissionDenied),
        ("agent", ErrorCode::PermissionDenied),
    ] {
        let (status, reply) = server
            .rest(
                Method::POST,
                "/v1/catalog:bind",
                token(role).as_deref(),
                Some(&body),
            )
            .await;
        assert_rest_error(status, &reply, code);
        let (status, reply) = server
            .rest(
                Method::POST,
                "/v1/credentials",
                token(role).as_deref(),
                Some(&json!({"name": "via-rest", "role": "admin"})),
            )
            .await;
        assert_rest_error(status, &reply, code);
        let (status, reply) = server
            .rest(
                Method::POST,
                "/v1/placements",
                token(role).as_deref(),
                Some(&json!({"ref": "base:1", "selector": ""})),
            )
            .await;
        assert_rest_error(status, &reply, code);
    }
    let (status, reply) = server
        .rest(
            Method::GET,
            "/v1/credentials",
            token("publisher").as_deref(),
            None,
        )
        .await;
    assert_rest_error(status, &reply, ErrorCode::PermissionDenied);
    assert_eq!(
        reply["error"]["details"][0]["metadata"]["role"],
        "publisher"
    );
    assert_eq!(reply["error"]["details"][0]["metadata"]["needed"], "admin");
    assert_eq!(server.snapshot().await, before);
    let (status, reply) = server
        .rest(
            Method::POST,
            "/v1/catalog:bind",
            token("publisher").as_deref(),
            Some(&body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["artifact"]["createdBy"], "the-publisher");
    let (status, reply) = server
        .rest(
            Method::GET,
            "/v1/credentials",
            token("admin").as_deref(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let listed = array(&reply["credentials"]);
    assert!(
        listed.iter().all(|c| c.get("token").is_none()),
        "a list never shows a token: {reply}"
    );
    let gone = listed.iter().find(|c| c["name"] == "gone").unwrap();
    assert!(gone["revokedAt"].is_string(), "{gone}");
}

/// Only the SHA-256 of each token's secret is stored: neither the token's text nor its secret
/// appears anywhere in the database file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_stored_hashed() {
    let server = LiveServer::start(false).await;
    let mut tokens = vec![server.bootstrap.clone()];
    for (i, role) in ["admin", "publisher", "reader", "agent"].iter().enumerate() {
        tokens.push(server.issue(&format!("holder-{i}"), role).await);
    }
    let db = std::fs::read(server.dir.path().join("catalog").join("catalog.redb")).unwrap();
    for token in &tokens {
        let secret_hex = token.rsplit('_').next().unwrap();
        assert_eq!(secret_hex.len(), 64, "{token}");
        let secret = data_encoding::HEXLOWER
            .decode(secret_hex.as_bytes())
            .unwrap();
        for needle in [token.as_bytes(), secret_hex.as_bytes(), &secret[..16]] {
            assert!(
                !db.windows(needle.len()).any(|w| w == needle),
                "the database holds part of a token"
            );
        }
        // The credential works, so the store does hold something that checks it.
        assert!(
            server
                .nodes(Some(token))
                .list_nodes(v1::ListNodesRequest::default())
                .await
                .is_ok()
        );
    }
    // The bootstrap token file is the owner's alone.
    use std::os::unix::fs::PermissionsExt as _;
    let file = server
        .dir
        .path()
        .join("catalog")
        .join(shoal_server::ADMIN_TOKEN_FILE);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A revoked credential is refused from the very next call; a name can be issued again once its
/// credential is revoked; a bad name or role is refused; the bootstrap credential is made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_holds_from_the_next_call_and_bootstrap_happens_once() {
    let server = LiveServer::start(false).await;
    let admin = Some(server.bootstrap.as_str());
    let token = server.issue("ci", "publisher").await;
    let list = || async {
        server
            .catalog(Some(&token))
            .list_artifacts(v1::ListArtifactsRequest::default())
            .await
    };
    assert!(list().await.is_ok());
    assert_grpc_error(
        server
            .credentials(admin)
            .issue_credential(v1::IssueCredentialRequest {
                name: "ci".to_owned(),
                role: "reader".to_owned(),
            })
            .await,
        ErrorCode::CredentialExists,
    );
    let revoked = server
        .credentials(admin)
        .revoke_credential(v1::RevokeCredentialRequest {
            name: "ci".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .credential
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let refused = list().await;
    let message = refused.as_ref().err().map(|s| s.message().to_owned());
    assert_grpc_error(refused, ErrorCode::Unauthenticated);
    assert!(message.unwrap().contains("credential ci was revoked"));
    assert_grpc_error(
        server
            .credentials(admin)
            .revoke_credential(v1::RevokeCredentialRequest {
                name: "ci".to_owned(),
            })
            .await,
        ErrorCode::CredentialNotFound,
    );
    // The name is free again; the new token works, the old one still does not.
    let again = server.issue("ci", "reader").await;
    assert_ne!(again, token);
    assert_grpc_error(list().await, ErrorCode::Unauthenticated);
    for (name, role) in [("ci two", "reader"), ("ok", "root"), ("", "reader")] {
        assert_grpc_error(
            server
                .credentials(admin)
                .issue_credential(v1::IssueCredentialRequest {
                    name: name.to_owned(),
                    role: role.to_owned(),
                })
                .await,
            ErrorCode::InvalidArgument,
        );
    }
    // Garbage and forged tokens are refused with a message that says what to do.
    let forged = format!(
        "{}{}",
        &token[..token.len() - 1],
        if token.ends_with('0') { '1' } else { '0' }
    );
    for bad in ["nope", forged.as_str()] {
        let refused = server
            .nodes(Some(bad))
            .list_nodes(v1::ListNodesRequest::default())
            .await;
        assert_grpc_error(refused, ErrorCode::Unauthenticated);
    }

    // A restart keeps the credentials (and their revocations) and makes no second bootstrap
    // credential: the old bootstrap token still works.
    let bootstrap = server.bootstrap.clone();
    let server = server.restart().await;
    assert_eq!(server.bootstrap, bootstrap);
    let listed = server
        .credentials(Some(&bootstrap))
        .list_credentials(v1::ListCredentialsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .credentials;
    let mut names: Vec<(&str, bool)> = listed
        .iter()
        .map(|c| (c.name.as_str(), c.revoked_at.is_some()))
        .collect();
    names.sort_unstable();
    assert_eq!(names, [("bootstrap", false), ("ci", false), ("ci", true)]);
    assert!(
        server
            .nodes(Some(&again))
            .list_nodes(v1::ListNodesRequest::default())
            .await
            .is_ok()
    );
    assert_grpc_error(
        server
            .nodes(Some(&token))
            .list_nodes(v1::ListNodesRequest::default())
            .await,
        ErrorCode::Unauthenticated,
    );
}

/// With loopback trusted (the default), a loopback caller without a token is the admin
/// `local`; one presenting a token gets that token's role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_loopback_caller_is_admin_unless_it_presents_a_token() {
    let server = LiveServer::start(true).await;
    let reader = server.issue("r", "reader").await;
    let (info, piece_layers) = parts(&torrent("l.bin", 5, 1000));
    let request = v1::BindArtifactRequest {
        name_tag: "loop:1".to_owned(),
        info,
        piece_layers,
    };
    assert_grpc_error(
        server
            .catalog(Some(&reader))
            .bind_artifact(request.clone())
            .await,
        ErrorCode::PermissionDenied,
    );
    let bound = server
        .catalog(None)
        .bind_artifact(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bound.artifact.unwrap().created_by, "local");
    let issued = server
        .credentials(None)
        .issue_credential(v1::IssueCredentialRequest {
            name: "by-local".to_owned(),
            role: "agent".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(issued.credential.unwrap().created_by, "local");
}

/// A backup of one control plane restores into another through the normal write path: every
/// artifact, policy and valid credential arrives; tags the target already binds to other
/// content are kept and reported; a second restore writes nothing. A single node says it is
/// not replicated and refuses membership changes with a message saying how to cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_another_control_plane_and_a_single_node_refuses_cluster_changes() {
    let source = TestServer::start(Access::Open);
    let target = TestServer::start(Access::Open);
    let (a, b, c) = (
        torrent("a.bin", 1, 70_000),
        torrent("b.bin", 2, 50_000),
        torrent("c.bin", 3, 30_000),
    );
    source.bind("app/a:1", &a).await;
    source.bind("app/b:1", &b).await;
    target.bind("app/b:1", &c).await; // the same tag, other content
    let (status, body) = source
        .post(
            "/v1/policies",
            &serde_json::json!({"name": "metered", "selector": "metered=true", "rules": {"maxPeers": 5}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = source
        .post(
            "/v1/credentials",
            &serde_json::json!({"name": "ci", "role": "publisher"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, backup) = source.get("/v1/cluster/snapshot").await;
    assert_eq!(status, StatusCode::OK, "{backup}");
    assert_eq!(backup["artifacts"], "2", "{backup}");
    assert_eq!(backup["policies"], "1", "{backup}");
    let snapshot = backup["snapshot"].as_str().unwrap().to_owned();

    let (status, restored) = target
        .post(
            "/v1/cluster/snapshot",
            &serde_json::json!({ "snapshot": snapshot }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    let conflicts = restored["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{restored}");
    assert!(
        conflicts[0].as_str().unwrap().contains("app/b:1"),
        "{restored}"
    );

    let (_, artifacts) = target.get("/v1/catalog/artifacts?pageSize=1000").await;
    let by_name: std::collections::BTreeMap<String, String> = artifacts["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["nameTag"].as_str().unwrap().to_owned(),
                r["contentId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(by_name["app/a:1"], content_id(&a), "restored");
    assert_eq!(
        by_name["app/b:1"],
        content_id(&c),
        "the target's binding is kept"
    );
    let (_, policies) = target.get("/v1/policies").await;
    assert_eq!(policies["policies"][0]["name"], "metered", "{policies}");
    let (_, credentials) = target.get("/v1/credentials").await;
    let names: Vec<&str> = credentials["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"ci"), "{credentials}");

    // Again: everything is there already.
    let (status, again) = target
        .post(
            "/v1/cluster/snapshot",
            &serde_json::json!({ "snapshot": snapshot }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(
        again["written"].is_null() || again["written"] == "0",
        "{again}"
    );

    // A snapshot that does not read is refused, and changes nothing.
    let (status, refused) = target
        .post(
            "/v1/cluster/snapshot",
            &serde_json::json!({ "snapshot": "AAAA" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");

    let (status, cluster) = source.get("/v1/cluster").await;
    assert_eq!(status, StatusCode::OK, "{cluster}");
    assert!(
        cluster["replicated"].is_null() || cluster["replicated"] == false,
        "{cluster}"
    );
    let (status, refused) = source
        .post(
            "/v1/cluster/servers",
            &serde_json::json!({"id": 4, "address": "10.0.0.4:7421"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused.to_string().contains("--node-id"), "{refused}");
}

//! The agent's API in-process: every method of `shoal.v1.ArtifactService` and
//! `shoal.v1.AgentService`, over REST (the axum router called with `tower::ServiceExt::oneshot`)
//! and over gRPC (a tonic client whose transport is that same router), with no socket between
//! caller and service. Each kind of bad input the error model documents is tried: the test
//! checks the HTTP status, the gRPC code and the `ErrorInfo` reason, and that the catalog, the
//! torrents and every file of the agent are as they were before the call.
//!
//! Each test starts its own agent (embedded control plane, every listener on 127.0.0.1:0) in
//! its own temporary directory, so tests run in parallel.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shoal_agent::config::EmbeddedServer;
use shoal_agent::{AgentConfig, Running};
use shoal_api::ErrorCode;
use shoal_api::testing::{array, assert_grpc_error, assert_rest_error, payload, q, request, text};
use shoal_api::v1;
use shoal_api::v1::agent_service_client::AgentServiceClient;
use shoal_api::v1::artifact_service_client::ArtifactServiceClient;
use tower::ServiceExt;

/// No single call may take longer than this; a hang fails the test instead of stalling it.
const CALL_LIMIT: Duration = Duration::from_secs(20);

/// Bytes of each published test file: a few hundred KiB, many pieces.
const SIZE: usize = 300 * 1024;

/// An address off loopback, for callers that must present a token.
const REMOTE: ([u8; 4], u16) = ([192, 0, 2, 7], 40_000);

/// One agent under test and its temporary directory.
struct TestAgent {
    dir: tempfile::TempDir,
    running: Running,
    router: Router,
}

impl TestAgent {
    async fn start() -> Self {
        Self::with_tokens(Vec::new()).await
    }

    async fn with_tokens(api_tokens: Vec<String>) -> Self {
        Self::with_config(|config| config.api_tokens = api_tokens).await
    }

    /// An agent whose configuration `change` adjusts first.
    async fn with_config(change: impl FnOnce(&mut AgentConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["allowed", "outside"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut config = AgentConfig {
            data_dir: dir.path().join("data"),
            node_id: Some("api-test".to_owned()),
            labels: BTreeMap::from([("region".to_owned(), "test".to_owned())]),
            api_listen: any,
            peer_listen: any,
            allowed_roots: vec![dir.path().join("allowed")],
            server: EmbeddedServer {
                api_listen: any,
                tracker_listen: any,
                ..EmbeddedServer::default()
            },
            ..AgentConfig::default()
        };
        change(&mut config);
        let running = shoal_agent::start(config).await.unwrap();
        let router = shoal_agent::api_router(&running.agent).unwrap();
        Self {
            dir,
            running,
            router,
        }
    }

    async fn stop(self) {
        tokio::time::timeout(CALL_LIMIT, self.running.shutdown())
            .await
            .expect("the agent stops in time");
        drop(self.dir);
    }

    /// The allowed root (publish reads and retrieve writes here).
    fn allowed(&self) -> PathBuf {
        self.dir.path().join("allowed")
    }

    /// A directory outside the allowed roots.
    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `len` deterministic bytes (from `seed`) at `relative` under the allowed root.
    fn write(&self, relative: &str, seed: u64, len: usize) -> PathBuf {
        let path = self.allowed().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, payload(seed, len)).unwrap();
        path
    }

    /// Sends one HTTP request through the router, in-process.
    async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = tokio::time::timeout(CALL_LIMIT, self.router.clone().oneshot(request))
            .await
            .expect("the router answers in time")
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(CALL_LIMIT, body.collect())
            .await
            .expect("the body ends in time")
            .unwrap()
            .to_bytes();
        (parts.status, parts.headers, body.to_vec())
    }

    /// A REST call with an optional JSON body; answers the status and the JSON body.
    async fn rest(&self, method: Method, uri: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let (status, _, body) = self.send(request(method, uri, body)).await;
        (status, json_of(&body))
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.rest(Method::GET, uri, None).await
    }

    async fn post(&self, uri: &str, body: &Value) -> (StatusCode, Value) {
        self.rest(Method::POST, uri, Some(body)).await
    }

    /// Publishes over REST and answers the artifact; the call must succeed.
    async fn publish(&self, path: &Path, name_tag: &str) -> Value {
        let (status, body) = self
            .post(
                "/v1/artifacts:publish",
                &json!({"path": path.to_str().unwrap(), "nameTag": name_tag}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "publish {name_tag}: {body}");
        body["artifact"].clone()
    }

    /// A gRPC client of `ArtifactService` whose transport is the router itself.
    fn artifacts(&self) -> ArtifactServiceClient<Router> {
        ArtifactServiceClient::new(self.router.clone())
    }

    /// A gRPC client of `AgentService` whose transport is the router itself.
    fn agent(&self) -> AgentServiceClient<Router> {
        AgentServiceClient::new(self.router.clone())
    }

    /// What a refused call must leave alone: the whole catalog, the torrents the agent holds
    /// and their states, and every file (path and size) under the test directory except the
    /// catalog database.
    async fn snapshot(&self) -> Snapshot {
        let (status, list) = self.get("/v1/artifacts?pageSize=1000").await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let (status, agent) = self.get("/v1/agent/status").await;
        assert_eq!(status, StatusCode::OK, "{agent}");
        let torrents = array(&agent["torrents"])
            .iter()
            .map(|t| {
                json!({
                    "contentId": t["contentId"], "nameTag": t["nameTag"],
                    "state": t["state"], "bytesVerified": t["bytesVerified"],
                })
            })
            .collect();
        let mut files = BTreeMap::new();
        walk(self.dir.path(), &self.data().join("catalog"), &mut files);
        Snapshot {
            catalog: list["artifacts"].clone(),
            torrents,
            files,
        }
    }
}

/// The state a refused call must not change.
#[derive(Debug, PartialEq)]
struct Snapshot {
    catalog: Value,
    torrents: Vec<Value>,
    files: BTreeMap<PathBuf, u64>,
}

fn walk(dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, u64>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.insert(path.clone(), 0);
            walk(&path, skip, out);
        } else {
            out.insert(path, meta.len());
        }
    }
}

/// The request as if it came from `addr` over a socket (what `serve` attaches).
fn from(addr: impl Into<SocketAddr>, mut request: Request<Body>) -> Request<Body> {
    request.extensions_mut().insert(ConnectInfo(addr.into()));
    request
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        )
    })
}

/// A uint64 field of proto3 JSON: a decimal string, absent when 0.
fn uint64(value: &Value) -> u64 {
    match value {
        Value::Null => 0,
        Value::String(s) => s.parse().unwrap(),
        other => panic!("a uint64 is a JSON string, not {other}"),
    }
}

/// A gRPC `ArtifactRef` by name:tag.
fn by_name(name_tag: &str) -> Option<v1::ArtifactRef> {
    Some(v1::ArtifactRef {
        kind: Some(v1::artifact_ref::Kind::NameTag(name_tag.to_owned())),
    })
}

/// Collects a REST retrieve's NDJSON lines.
async fn retrieve_rest(agent: &TestAgent, body: &Value) -> (StatusCode, HeaderMap, Vec<Value>) {
    let (status, headers, bytes) = agent
        .send(request(Method::POST, "/v1/artifacts:retrieve", Some(body)))
        .await;
    let text = String::from_utf8(bytes).unwrap();
    let lines = if status == StatusCode::OK {
        assert!(
            text.ends_with('\n'),
            "every NDJSON line ends with a newline: {text}"
        );
        text.lines().map(|l| json_of(l.as_bytes())).collect()
    } else {
        vec![json_of(text.as_bytes())]
    };
    (status, headers, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_serves_every_artifact_and_agent_method() {
    let agent = TestAgent::start().await;
    let files = [
        ("app/x:1", "src/x1.bin", 1),
        ("app/x:2", "src/x2.bin", 2),
        ("app/y:1", "src/y1.bin", 3),
        ("tools/z:1", "src/z1.bin", 4),
    ];
    let mut published = BTreeMap::new();
    for (name_tag, relative, seed) in files {
        let path = agent.write(relative, seed, SIZE);
        let artifact = agent.publish(&path, name_tag).await;
        assert_eq!(artifact["nameTag"], name_tag);
        assert_eq!(text(&artifact["contentId"]).len(), 64, "{artifact}");
        assert_eq!(text(&artifact["infoHashV1"]).len(), 40, "{artifact}");
        assert_eq!(uint64(&artifact["size"]), SIZE as u64);
        let files = array(&artifact["files"]);
        assert_eq!(files.len(), 1, "{artifact}");
        assert_eq!(
            files[0]["path"],
            Path::new(relative).file_name().unwrap().to_str().unwrap()
        );
        // In-process calls carry no peer address: the caller is local.
        assert_eq!(artifact["createdBy"], "local");
        assert!(
            text(&artifact["magnet"]).starts_with("magnet:?"),
            "{artifact}"
        );
        published.insert(name_tag, artifact);
    }

    // ListArtifacts: everything, then one page at a time under a prefix.
    let (status, all) = agent.get("/v1/artifacts").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let names: Vec<Value> = array(&all["artifacts"])
        .iter()
        .map(|a| a["nameTag"].clone())
        .collect();
    assert_eq!(names, vec!["app/x:1", "app/x:2", "app/y:1", "tools/z:1"]);
    assert!(all.get("nextPageToken").is_none(), "{all}");
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let (status, page) = agent
            .get(&format!(
                "/v1/artifacts?prefix={}&pageSize=1&pageToken={}",
                q("app/"),
                q(&token)
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let artifacts = array(&page["artifacts"]);
        assert_eq!(artifacts.len(), 1, "{page}");
        assert_eq!(artifacts[0], published[text(&artifacts[0]["nameTag"])]);
        pages.push(artifacts[0]["nameTag"].clone());
        token = text(&page["nextPageToken"]).to_owned();
        if token.is_empty() {
            break;
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(pages, vec!["app/x:1", "app/x:2", "app/y:1"]);

    // GetArtifact: by name:tag, by a content id prefix, by magnet; with the torrent.
    let x1 = &published["app/x:1"];
    let (status, info) = agent
        .get(&format!("/v1/artifacts:info?ref.nameTag={}", q("app/x:1")))
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(&info, x1);
    for prefix in [
        text(&x1["contentId"])[..12].to_owned(),
        text(&x1["contentId"]).to_ascii_uppercase(),
    ] {
        let (status, info) = agent
            .get(&format!("/v1/artifacts:info?ref.contentId={prefix}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{info}");
        assert_eq!(&info, x1);
    }
    let (status, info) = agent
        .get(&format!(
            "/v1/artifacts:info?ref.magnet={}",
            q(text(&x1["magnet"]))
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["contentId"], x1["contentId"]);
    let (status, mut info) = agent
        .get(&format!(
            "/v1/artifacts:info?ref.nameTag={}&includeTorrent=true",
            q("app/x:1")
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    let torrent = info.as_object_mut().unwrap().remove("torrent").unwrap();
    let torrent = data_encoding::BASE64
        .decode(text(&torrent).as_bytes())
        .unwrap();
    assert!(
        torrent.starts_with(b"d"),
        "a .torrent is a bencoded dictionary"
    );
    assert_eq!(&info, x1);

    // Retrieve: NDJSON progress ending in PHASE_DONE, and the bytes at the destination.
    let destination = agent.allowed().join("out/x2.bin");
    let (status, headers, lines) = retrieve_rest(
        &agent,
        &json!({"ref": {"nameTag": "app/x:2"}, "destination": destination.to_str().unwrap()}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{lines:?}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    let last = lines.last().unwrap();
    assert_eq!(last["phase"], "PHASE_DONE", "{lines:?}");
    assert_eq!(last["path"], destination.to_str().unwrap());
    assert_eq!(uint64(&last["bytesVerified"]), SIZE as u64);
    assert_eq!(uint64(&last["bytesTotal"]), SIZE as u64);
    assert!(
        lines.iter().any(|l| l["phase"] == "PHASE_MATERIALIZING"),
        "{lines:?}"
    );
    for line in &lines {
        assert_eq!(
            line["contentId"], published["app/x:2"]["contentId"],
            "{line}"
        );
        assert!(line.get("error").is_none(), "{line}");
    }
    assert_eq!(std::fs::read(&destination).unwrap(), payload(2, SIZE));
    let out: Vec<_> = std::fs::read_dir(agent.allowed().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(out, vec!["x2.bin"], "no partial copy is left behind");

    // GetStatus: every torrent seeding, the disk, the control plane.
    let (status, state) = agent.get("/v1/agent/status").await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["nodeId"], "api-test");
    assert_eq!(state["labels"], json!({"region": "test"}));
    let torrents = array(&state["torrents"]);
    assert_eq!(torrents.len(), 4, "{state}");
    for (name_tag, artifact) in &published {
        let torrent = torrents
            .iter()
            .find(|t| t["contentId"] == artifact["contentId"])
            .unwrap_or_else(|| panic!("{name_tag} is not in {state}"));
        assert_eq!(torrent["nameTag"], *name_tag);
        assert_eq!(torrent["state"], "TORRENT_STATE_SEEDING", "{torrent}");
        assert_eq!(uint64(&torrent["bytesTotal"]), SIZE as u64);
        assert_eq!(uint64(&torrent["bytesVerified"]), SIZE as u64);
    }
    assert!(uint64(&state["disk"]["used"]) >= 4 * SIZE as u64, "{state}");
    assert!(uint64(&state["disk"]["free"]) > 0, "{state}");
    assert_eq!(state["controlPlane"]["endpoint"], "embedded");
    assert_eq!(state["controlPlane"]["embedded"], true);
    assert_eq!(state["controlPlane"]["connected"], true);
    text(&state["peerAddress"]).parse::<SocketAddr>().unwrap();

    // RemoveLocal, by name:tag and by the .torrent's bytes: the local copies go, the catalog
    // entries and the retrieved copy stay.
    let (_, y1) = agent
        .get(&format!(
            "/v1/artifacts:info?ref.nameTag={}&includeTorrent=true",
            q("app/y:1")
        ))
        .await;
    for r#ref in [
        json!({"nameTag": "tools/z:1"}),
        json!({"torrent": y1["torrent"]}),
    ] {
        let (status, removed) = agent
            .post("/v1/artifacts:removeLocal", &json!({"ref": r#ref}))
            .await;
        assert_eq!(status, StatusCode::OK, "{removed}");
        assert_eq!(uint64(&removed["bytesFreed"]), SIZE as u64);
    }
    let (_, state) = agent.get("/v1/agent/status").await;
    let held: Vec<Value> = array(&state["torrents"])
        .iter()
        .map(|t| t["contentId"].clone())
        .collect();
    assert_eq!(held.len(), 2, "{state}");
    for gone in ["tools/z:1", "app/y:1"] {
        let id = &published[gone]["contentId"];
        assert!(!held.contains(id), "{state}");
        assert!(!agent.data().join("store").join(text(id)).exists());
    }
    let (_, after) = agent.get("/v1/artifacts").await;
    assert_eq!(after, all, "removing a local copy leaves the catalog alone");
    assert!(agent.allowed().join("src/z1.bin").exists());
    assert_eq!(std::fs::read(&destination).unwrap(), payload(2, SIZE));

    // A second remove finds nothing to remove, and changes nothing.
    let before = agent.snapshot().await;
    let (status, body) = agent
        .post(
            "/v1/artifacts:removeLocal",
            &json!({"ref": {"nameTag": "tools/z:1"}}),
        )
        .await;
    assert_rest_error(status, &body, ErrorCode::ArtifactNotFound);
    assert_eq!(agent.snapshot().await, before);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_serves_every_method_with_the_json_of_rest() {
    let agent = TestAgent::start().await;
    let path = agent.write("src/g.bin", 7, SIZE);
    let mut artifacts = agent.artifacts();

    // Publish.
    let published = artifacts
        .publish(v1::PublishRequest {
            path: path.to_str().unwrap().to_owned(),
            name_tag: "app/g:1".to_owned(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!published.already_bound);
    let artifact = published.artifact.unwrap();
    assert_eq!(artifact.name_tag, "app/g:1");
    assert_eq!(artifact.size, SIZE as u64);
    assert_eq!(artifact.created_by, "local");

    // The same content again, over both: the same answer, field for field.
    let again = artifacts
        .publish(v1::PublishRequest {
            path: path.to_str().unwrap().to_owned(),
            name_tag: "app/g:1".to_owned(),
            options: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_bound);
    assert_eq!(again.artifact.as_ref(), Some(&artifact));
    let (status, rest) = agent
        .post(
            "/v1/artifacts:publish",
            &json!({"path": path.to_str().unwrap(), "nameTag": "app/g:1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(serde_json::to_value(&again).unwrap(), rest);

    // GetArtifact: the REST body is the proto3 JSON of the gRPC reply.
    let info = artifacts
        .get_artifact(v1::GetArtifactRequest {
            r#ref: by_name("app/g:1"),
            include_torrent: true,
        })
        .await
        .unwrap()
        .into_inner();
    let (status, rest) = agent
        .get(&format!(
            "/v1/artifacts:info?ref.nameTag={}&includeTorrent=true",
            q("app/g:1")
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(serde_json::to_value(&info).unwrap(), rest);
    let fields: BTreeSet<&str> = rest
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "nameTag",
            "contentId",
            "infoHashV1",
            "size",
            "pieceLength",
            "files",
            "createdAt",
            "createdBy",
            "magnet",
            "torrent"
        ])
    );

    // ListArtifacts, both ways.
    let list = artifacts
        .list_artifacts(v1::ListArtifactsRequest {
            prefix: "app/".to_owned(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.artifacts, vec![artifact.clone()]);
    assert!(list.next_page_token.is_empty());
    let (_, rest) = agent
        .get(&format!("/v1/artifacts?prefix={}&pageSize=10", q("app/")))
        .await;
    assert_eq!(serde_json::to_value(&list).unwrap(), rest);

    // Retrieve, naming the artifact by its .torrent's bytes this time: a stream of progress.
    let destination = agent.allowed().join("out/g.bin");
    let mut stream = artifacts
        .retrieve(v1::RetrieveRequest {
            r#ref: Some(v1::ArtifactRef {
                kind: Some(v1::artifact_ref::Kind::Torrent(info.torrent.clone())),
            }),
            destination: destination.to_str().unwrap().to_owned(),
            overwrite: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut phases = Vec::new();
    let mut last = None;
    while let Some(message) = tokio::time::timeout(CALL_LIMIT, stream.message())
        .await
        .expect("progress in time")
        .unwrap()
    {
        assert_eq!(message.content_id, artifact.content_id);
        phases.push(message.phase());
        last = Some(message);
    }
    let last = last.unwrap();
    assert_eq!(
        last.phase(),
        v1::retrieve_progress::Phase::Done,
        "{phases:?}"
    );
    assert_eq!(last.path, destination.to_str().unwrap());
    assert_eq!(last.bytes_verified, SIZE as u64);
    assert_eq!(std::fs::read(&destination).unwrap(), payload(7, SIZE));

    // GetStatus: the torrent seeds; REST shows the same torrents.
    let status = agent
        .agent()
        .get_status(v1::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.node_id, "api-test");
    assert_eq!(status.torrents.len(), 1);
    assert_eq!(status.torrents[0].content_id, artifact.content_id);
    assert_eq!(status.torrents[0].name_tag, "app/g:1");
    assert_eq!(status.torrents[0].state(), v1::TorrentState::Seeding);
    assert!(status.disk.unwrap().used >= SIZE as u64);
    let (_, rest) = agent.get("/v1/agent/status").await;
    let grpc = serde_json::to_value(&status).unwrap();
    for field in ["nodeId", "labels", "torrents", "peerAddress"] {
        assert_eq!(grpc[field], rest[field], "{field}");
    }

    // RemoveLocal by a content id prefix, then once more: nothing left to remove.
    let prefix = artifact.content_id[..16].to_owned();
    let remove = || v1::RemoveLocalRequest {
        r#ref: Some(v1::ArtifactRef {
            kind: Some(v1::artifact_ref::Kind::ContentId(prefix.clone())),
        }),
    };
    let removed = artifacts.remove_local(remove()).await.unwrap().into_inner();
    assert_eq!(removed.bytes_freed, SIZE as u64);
    let before = agent.snapshot().await;
    assert_grpc_error(
        artifacts.remove_local(remove()).await,
        ErrorCode::ArtifactNotFound,
    );
    assert_eq!(agent.snapshot().await, before);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_openapi_metrics_and_unknown_routes() {
    let agent = TestAgent::start().await;

    let (status, headers, body) = agent.send(request(Method::GET, "/healthz", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"ok\n");
    assert!(headers.contains_key("x-request-id"));
    let mut tagged = request(Method::GET, "/healthz", None);
    tagged
        .headers_mut()
        .insert("x-request-id", "test-123".parse().unwrap());
    let (_, headers, _) = agent.send(tagged).await;
    assert_eq!(
        headers["x-request-id"], "test-123",
        "the caller's id is echoed"
    );

    // The OpenAPI document parses and lists every REST route with its gRPC method.
    let (status, doc) = agent.get(shoal_api::router::OPENAPI_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut operations = 0;
    for route in shoal_api::rest::ROUTES {
        let operation = &doc["paths"][route.path][route.verb.to_lowercase()];
        assert!(
            text(&operation["description"]).contains(route.grpc_path),
            "{} {} is not in the document",
            route.verb,
            route.path
        );
        operations += 1;
    }
    let listed: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    assert_eq!(listed, operations, "the document lists exactly the routes");
    for method in [
        "Publish",
        "ListArtifacts",
        "GetArtifact",
        "Retrieve",
        "RemoveLocal",
        "GetStatus",
        "BindArtifact",
        "ListNodes",
        "Heartbeat",
    ] {
        assert!(
            shoal_api::rest::ROUTES
                .iter()
                .any(|r| r.grpc_path.ends_with(&format!("/{method}"))),
            "{method} has no REST route"
        );
    }

    // Metrics: the counters and gauges, with a published artifact counted as seeding.
    let path = agent.write("m.bin", 9, SIZE);
    agent.publish(&path, "app/m:1").await;
    let (status, headers, body) = agent.send(request(Method::GET, "/metrics", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let metrics = String::from_utf8(body).unwrap();
    for counter in [
        "shoal_uploaded_bytes_total",
        "shoal_downloaded_bytes_total",
        "shoal_pieces_failed_total",
        "shoal_peers_banned_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {counter} counter\n")),
            "{metrics}"
        );
    }
    for gauge in [
        "shoal_pieces_verified",
        "shoal_peers",
        "shoal_upload_rate_bytes",
        "shoal_download_rate_bytes",
        "shoal_control_plane_connected",
        "shoal_torrents",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {gauge} gauge\n")),
            "{metrics}"
        );
    }
    assert!(
        metrics.contains("shoal_torrents{state=\"seeding\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("shoal_control_plane_connected 1\n"),
        "{metrics}"
    );

    // An unknown route is a JSON 404 that points at the document.
    let before = agent.snapshot().await;
    for (method, uri) in [
        (Method::GET, "/v1/nope"),
        (Method::POST, "/v1/artifacts:nope"),
        (Method::GET, "/v1/catalog/artifacts"),
    ] {
        let (status, body) = agent.rest(method, uri, None).await;
        assert_rest_error(status, &body, ErrorCode::NotFound);
        assert!(
            text(&body["error"]["message"]).contains(shoal_api::router::OPENAPI_PATH),
            "{body}"
        );
    }
    assert_eq!(agent.snapshot().await, before);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_names_are_not_found_and_change_nothing() {
    let agent = TestAgent::start().await;
    let path = agent.write("known.bin", 11, SIZE);
    agent.publish(&path, "app/known:1").await;
    let destination = agent.allowed().join("never.bin");
    let unknown_id = "0123456789ab";
    let before = agent.snapshot().await;

    let (status, body) = agent
        .get(&format!(
            "/v1/artifacts:info?ref.nameTag={}",
            q("app/unknown:1")
        ))
        .await;
    assert_rest_error(status, &body, ErrorCode::ArtifactNotFound);
    assert_eq!(
        body["error"]["details"][0]["metadata"]["name_tag"],
        "app/unknown:1"
    );
    let (status, body) = agent
        .get(&format!("/v1/artifacts:info?ref.contentId={unknown_id}"))
        .await;
    assert_rest_error(status, &body, ErrorCode::ArtifactNotFound);
    for r#ref in [
        json!({"nameTag": "app/unknown:1"}),
        json!({"contentId": unknown_id}),
    ] {
        let (status, _, lines) = retrieve_rest(
            &agent,
            &json!({"ref": r#ref, "destination": destination.to_str().unwrap()}),
        )
        .await;
        assert_rest_error(status, &lines[0], ErrorCode::ArtifactNotFound);
        let (status, body) = agent
            .post("/v1/artifacts:removeLocal", &json!({"ref": r#ref}))
            .await;
        assert_rest_error(status, &body, ErrorCode::ArtifactNotFound);
    }

    let mut artifacts = agent.artifacts();
    assert_grpc_error(
        artifacts
            .get_artifact(v1::GetArtifactRequest {
                r#ref: by_name("app/unknown:1"),
                include_torrent: false,
            })
            .await,
        ErrorCode::ArtifactNotFound,
    );
    assert_grpc_error(
        artifacts
            .retrieve(v1::RetrieveRequest {
                r#ref: by_name("app/unknown:1"),
                destination: destination.to_str().unwrap().to_owned(),
                overwrite: false,
            })
            .await
            .map(|_| ()),
        ErrorCode::ArtifactNotFound,
    );
    assert_grpc_error(
        artifacts
            .remove_local(v1::RemoveLocalRequest {
                r#ref: by_name("app/unknown:1"),
            })
            .await,
        ErrorCode::ArtifactNotFound,
    );

    assert!(!destination.exists());
    assert_eq!(agent.snapshot().await, before);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_refs_are_refused_with_their_codes() {
    let agent = TestAgent::start().await;
    let path = agent.write("known.bin", 12, SIZE);
    agent.publish(&path, "app/known:1").await;
    let destination = agent.allowed().join("never.bin");
    let garbage = data_encoding::BASE64.encode(b"this is not a torrent");
    let cases = [
        (json!({}), ErrorCode::InvalidRef),
        (json!({"contentId": "xyz"}), ErrorCode::InvalidRef),
        (json!({"contentId": "0123abc"}), ErrorCode::InvalidRef),
        (
            json!({"magnet": "magnet:?dn=nothing"}),
            ErrorCode::InvalidRef,
        ),
        (json!({"magnet": "app/known:1"}), ErrorCode::InvalidRef),
        (
            json!({"torrentUrl": "ftp://example.invalid/a.torrent"}),
            ErrorCode::InvalidRef,
        ),
        (json!({"nameTag": "App/Known:1"}), ErrorCode::InvalidNameTag),
        (json!({"nameTag": "app/known"}), ErrorCode::InvalidNameTag),
        (
            json!({"nameTag": "app/known:1:2"}),
            ErrorCode::InvalidNameTag,
        ),
        (json!({"torrent": garbage}), ErrorCode::InvalidTorrent),
    ];
    let before = agent.snapshot().await;
    let mut artifacts = agent.artifacts();
    for (r#ref, code) in cases {
        let query: String = r#ref
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("ref.{k}={}", q(text(v))))
            .collect();
        let (status, body) = agent.get(&format!("/v1/artifacts:info?{query}")).await;
        assert_rest_error(status, &body, code);
        let (status, _, lines) = retrieve_rest(
            &agent,
            &json!({"ref": r#ref, "destination": destination.to_str().unwrap()}),
        )
        .await;
        assert_rest_error(status, &lines[0], code);
        let (status, body) = agent
            .post("/v1/artifacts:removeLocal", &json!({"ref": r#ref}))
            .await;
        assert_rest_error(status, &body, code);

        let grpc_ref: Option<v1::ArtifactRef> = serde_json::from_value(r#ref.clone()).unwrap();
        assert_grpc_error(
            artifacts
                .get_artifact(v1::GetArtifactRequest {
                    r#ref: grpc_ref.clone(),
                    include_torrent: false,
                })
                .await,
            code,
        );
        assert_grpc_error(
            artifacts
                .retrieve(v1::RetrieveRequest {
                    r#ref: grpc_ref.clone(),
                    destination: destination.to_str().unwrap().to_owned(),
                    overwrite: false,
                })
                .await
                .map(|_| ()),
            code,
        );
        assert_grpc_error(
            artifacts
                .remove_local(v1::RemoveLocalRequest { r#ref: grpc_ref })
                .await,
            code,
        );
    }
    // A request that is not the message at all.
    for body in [
        &b"{"[..],
        br#"{"ref": {"nameTag": 5}}"#,
        br#"{"ref": [], "x": 1}"#,
    ] {
        let mut req = request(Method::POST, "/v1/artifacts:removeLocal", None);
        *req.body_mut() = Body::from(body.to_vec());
        let (status, _, body) = agent.send(req).await;
        assert_rest_error(status, &json_of(&body), ErrorCode::InvalidArgument);
    }
    let (status, body) = agent
        .get(&format!(
            "/v1/artifacts:info?ref.nameTag={}&includeTorrent=yes",
            q("app/known:1")
        ))
        .await;
    assert_rest_error(status, &body, ErrorCode::InvalidArgument);

    assert!(!destination.exists());
    assert_eq!(agent.snapshot().await, before);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_list_refuse_bad_input_and_change_nothing() {
    let agent = TestAgent::start().await;
    let path = agent.write("a.bin", 21, SIZE);
    agent.publish(&path, "app/a:1").await;
    let secret = agent.outside().join("secret.bin");
    std::fs::write(&secret, payload(22, 1000)).unwrap();
    let sneaky = agent.allowed().join("../outside/secret.bin");
    let missing = agent.allowed().join("missing.bin");
    let before = agent.snapshot().await;

    let publish = |path: &str, name_tag: &str| json!({"path": path, "nameTag": name_tag});
    let good = path.to_str().unwrap();
    let cases = [
        (publish(good, "App/A:2"), ErrorCode::InvalidNameTag),
        (publish(good, "app/a"), ErrorCode::InvalidNameTag),
        (publish(good, "app/a:2:3"), ErrorCode::InvalidNameTag),
        (publish(good, "app/a:"), ErrorCode::InvalidNameTag),
        (publish(good, ":2"), ErrorCode::InvalidNameTag),
        (publish(good, "app//a:2"), ErrorCode::InvalidNameTag),
        (publish(good, ""), ErrorCode::InvalidNameTag),
        (
            publish(secret.to_str().unwrap(), "app/a:2"),
            ErrorCode::PathNotAllowed,
        ),
        (
            publish(sneaky.to_str().unwrap(), "app/a:2"),
            ErrorCode::PathNotAllowed,
        ),
        (publish("/", "app/a:2"), ErrorCode::PathNotAllowed),
        (publish("a.bin", "app/a:2"), ErrorCode::InvalidArgument),
        (publish("", "app/a:2"), ErrorCode::InvalidArgument),
        (
            publish(missing.to_str().unwrap(), "app/a:2"),
            ErrorCode::PathNotFound,
        ),
    ];
    let mut artifacts = agent.artifacts();
    for (body, code) in cases {
        let (status, reply) = agent.post("/v1/artifacts:publish", &body).await;
        assert_rest_error(status, &reply, code);
        if code == ErrorCode::PathNotAllowed && body["path"] == secret.to_str().unwrap() {
            assert_eq!(
                reply["error"]["details"][0]["metadata"]["path"],
                secret.to_str().unwrap()
            );
        }
        let request: v1::PublishRequest = serde_json::from_value(body).unwrap();
        assert_grpc_error(artifacts.publish(request).await, code);
    }

    // Oversized: a REST body over 4 MiB is refused before it is read whole.
    let huge = "a".repeat(shoal_api::rest::MAX_BODY_BYTES + 1);
    let (status, reply) = agent
        .post("/v1/artifacts:publish", &publish(&huge, "app/a:2"))
        .await;
    assert_rest_error(status, &reply, ErrorCode::RequestTooLarge);
    // Over gRPC the same message is refused by tonic's decoder before the service runs: its
    // status is OUT_OF_RANGE, without a Shoal ErrorInfo.
    let refused = artifacts
        .publish(v1::PublishRequest {
            path: huge,
            name_tag: "app/a:2".to_owned(),
            options: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::OutOfRange, "{refused:?}");

    // ListArtifacts: a page token that was not sealed by this catalog, an overlong prefix.
    for token in [
        "garbage",
        "YXBwL2E6MQ.AAAAAAAAAAAAAAAAAAAAAA",
        &"x".repeat(2000),
    ] {
        let (status, reply) = agent
            .get(&format!("/v1/artifacts?pageToken={}", q(token)))
            .await;
        assert_rest_error(status, &reply, ErrorCode::InvalidPageToken);
        assert_grpc_error(
            artifacts
                .list_artifacts(v1::ListArtifactsRequest {
                    prefix: String::new(),
                    page_size: 1,
                    page_token: token.to_owned(),
                })
                .await,
            ErrorCode::InvalidPageToken,
        );
    }
    let (status, reply) = agent
        .get(&format!("/v1/artifacts?prefix={}", "a".repeat(513)))
        .await;
    assert_rest_error(status, &reply, ErrorCode::InvalidArgument);
    let (status, reply) = agent.get("/v1/artifacts?pageSize=lots").await;
    assert_rest_error(status, &reply, ErrorCode::InvalidArgument);

    let staging: Vec<_> = std::fs::read_dir(agent.data().join("staging"))
        .unwrap()
        .collect();
    assert!(
        staging.is_empty(),
        "nothing is left in staging: {staging:?}"
    );
    assert_eq!(agent.snapshot().await, before);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_publish_is_refused_and_keeps_the_first_content() {
    let agent = TestAgent::start().await;
    let first = agent.write("first/app.bin", 31, SIZE);
    let second = agent.write("second/app.bin", 32, SIZE);
    let again = agent.write("again/app.bin", 31, SIZE);
    let original = agent.publish(&first, "app:1").await;
    let before = agent.snapshot().await;

    let (status, reply) = agent
        .post(
            "/v1/artifacts:publish",
            &json!({"path": second.to_str().unwrap(), "nameTag": "app:1"}),
        )
        .await;
    assert_rest_error(status, &reply, ErrorCode::TagBoundToOtherContent);
    let metadata = &reply["error"]["details"][0]["metadata"];
    assert_eq!(metadata["name_tag"], "app:1");
    assert_eq!(metadata["bound_content_id"], original["contentId"]);
    assert_grpc_error(
        agent
            .artifacts()
            .publish(v1::PublishRequest {
                path: second.to_str().unwrap().to_owned(),
                name_tag: "app:1".to_owned(),
                options: None,
            })
            .await,
        ErrorCode::TagBoundToOtherContent,
    );

    // The tag still names the first content; the second copy left nothing behind.
    assert_eq!(agent.snapshot().await, before);
    let (_, info) = agent
        .get(&format!("/v1/artifacts:info?ref.nameTag={}", q("app:1")))
        .await;
    assert_eq!(info, original);
    let staging: Vec<_> = std::fs::read_dir(agent.data().join("staging"))
        .unwrap()
        .collect();
    assert!(staging.is_empty(), "{staging:?}");
    let store: BTreeSet<String> = std::fs::read_dir(agent.data().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let id = text(&original["contentId"]);
    assert_eq!(
        store,
        BTreeSet::from([id.to_owned(), format!("{id}.complete")])
    );

    // The same content again (a copy elsewhere) is idempotent: nothing changes.
    let (status, reply) = agent
        .post(
            "/v1/artifacts:publish",
            &json!({"path": again.to_str().unwrap(), "nameTag": "app:1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["alreadyBound"], true);
    assert_eq!(reply["artifact"], original);
    assert_eq!(agent.snapshot().await, before);

    // The refused content can still be published under a tag of its own.
    let other = agent.publish(&second, "app:2").await;
    assert_ne!(other["contentId"], original["contentId"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrieve_refuses_bad_destinations_and_changes_nothing() {
    let agent = TestAgent::start().await;
    let path = agent.write("r.bin", 41, SIZE);
    agent.publish(&path, "app/r:1").await;
    let existing = agent.allowed().join("existing.bin");
    std::fs::write(&existing, b"keep me").unwrap();
    let outside = agent.outside().join("dest.bin");
    let sneaky = agent.allowed().join("../outside/dest.bin");
    let before = agent.snapshot().await;

    let retrieve = |destination: &Path, overwrite: bool| {
        json!({
            "ref": {"nameTag": "app/r:1"},
            "destination": destination.to_str().unwrap(),
            "overwrite": overwrite,
        })
    };
    let cases = [
        (retrieve(&outside, false), ErrorCode::PathNotAllowed),
        (retrieve(&outside, true), ErrorCode::PathNotAllowed),
        (retrieve(&sneaky, false), ErrorCode::PathNotAllowed),
        (
            retrieve(Path::new("dest.bin"), false),
            ErrorCode::InvalidArgument,
        ),
        (retrieve(&existing, false), ErrorCode::DestinationExists),
    ];
    let mut artifacts = agent.artifacts();
    for (body, code) in cases {
        let (status, _, lines) = retrieve_rest(&agent, &body).await;
        assert_rest_error(status, &lines[0], code);
        if code == ErrorCode::DestinationExists {
            assert_eq!(
                lines[0]["error"]["details"][0]["metadata"]["destination"],
                existing.to_str().unwrap()
            );
        }
        let request: v1::RetrieveRequest = serde_json::from_value(body).unwrap();
        assert_grpc_error(artifacts.retrieve(request).await.map(|_| ()), code);
    }
    assert!(!outside.exists());
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
    assert_eq!(agent.snapshot().await, before);

    // Asked to overwrite, the retrieve replaces the file.
    let (status, _, lines) = retrieve_rest(&agent, &retrieve(&existing, true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lines.last().unwrap()["phase"], "PHASE_DONE", "{lines:?}");
    assert_eq!(std::fs::read(&existing).unwrap(), payload(41, SIZE));
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_off_loopback_need_a_token() {
    const TOKEN: &str = "s3cret-token";
    let agent = TestAgent::with_tokens(vec![TOKEN.to_owned()]).await;
    let path = agent.write("t.bin", 51, SIZE);
    agent.publish(&path, "app/t:1").await;
    let before = agent.snapshot().await;
    let publish = json!({"path": path.to_str().unwrap(), "nameTag": "app/t:2"});

    let with_auth = |auth: Option<&str>, method: Method, uri: &str, body: Option<&Value>| {
        let mut req = from(REMOTE, request(method, uri, body));
        if let Some(auth) = auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, auth.parse().unwrap());
        }
        req
    };
    for auth in [
        None,
        Some("Bearer wrong"),
        Some(TOKEN),
        Some("Basic czNjcmV0LXRva2Vu"),
    ] {
        for (method, uri, body) in [
            (Method::GET, "/v1/artifacts", None),
            (Method::POST, "/v1/artifacts:publish", Some(&publish)),
            (Method::GET, "/v1/agent/status", None),
            (Method::GET, "/metrics", None),
        ] {
            let (status, _, reply) = agent.send(with_auth(auth, method, uri, body)).await;
            assert_rest_error(status, &json_of(&reply), ErrorCode::Unauthenticated);
        }
        // Health checks need no credential (load balancers, orchestrators).
        let (status, _, reply) = agent
            .send(with_auth(auth, Method::GET, "/healthz", None))
            .await;
        assert_eq!(
            (status, reply.as_slice()),
            (StatusCode::OK, b"ok\n".as_slice())
        );
    }
    // Over gRPC, the same refusal as a status with its ErrorInfo.
    let mut refused = tonic::Request::new(v1::PublishRequest {
        path: path.to_str().unwrap().to_owned(),
        name_tag: "app/t:2".to_owned(),
        options: None,
    });
    refused
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(REMOTE)));
    assert_grpc_error(
        agent.artifacts().publish(refused).await,
        ErrorCode::Unauthenticated,
    );
    assert_eq!(agent.snapshot().await, before);

    // With the token, a remote caller is served and recorded as "token".
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, reply) = agent
        .send(with_auth(
            Some(&bearer),
            Method::POST,
            "/v1/artifacts:publish",
            Some(&publish),
        ))
        .await;
    let reply = json_of(&reply);
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["artifact"]["createdBy"], "token");
    let mut allowed = tonic::Request::new(v1::GetStatusRequest {});
    allowed
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(REMOTE)));
    allowed
        .metadata_mut()
        .insert("authorization", bearer.parse().unwrap());
    agent.agent().get_status(allowed).await.unwrap();

    // Loopback callers, and in-process calls (no peer address at all), need none.
    for caller in [
        Some(SocketAddr::from(([127, 0, 0, 1], 50_000))),
        Some(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 50_000))),
        None,
    ] {
        let mut req = request(Method::GET, "/v1/artifacts", None);
        if let Some(addr) = caller {
            req = from(addr, req);
        }
        let (status, _, reply) = agent.send(req).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{caller:?}: {}",
            String::from_utf8_lossy(&reply)
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbolic_links_do_not_lead_out_of_the_allowed_roots() {
    let agent = TestAgent::start().await;
    let path = agent.write("s.bin", 61, SIZE);
    agent.publish(&path, "app/s:1").await;
    let secret = agent.outside().join("secret.bin");
    std::fs::write(&secret, payload(62, 1000)).unwrap();
    std::os::unix::fs::symlink(agent.outside(), agent.allowed().join("escape")).unwrap();
    std::os::unix::fs::symlink(&secret, agent.allowed().join("secret-link.bin")).unwrap();
    let before = agent.snapshot().await;

    let mut artifacts = agent.artifacts();
    for source in [
        agent.allowed().join("escape/secret.bin"),
        agent.allowed().join("escape"),
        agent.allowed().join("secret-link.bin"),
    ] {
        let body = json!({"path": source.to_str().unwrap(), "nameTag": "app/s:2"});
        let (status, reply) = agent.post("/v1/artifacts:publish", &body).await;
        assert_rest_error(status, &reply, ErrorCode::PathNotAllowed);
        let request: v1::PublishRequest = serde_json::from_value(body).unwrap();
        assert_grpc_error(artifacts.publish(request).await, ErrorCode::PathNotAllowed);
    }
    for destination in [
        agent.allowed().join("escape/dest.bin"),
        agent.allowed().join("escape/new/dest.bin"),
    ] {
        let body = json!({
            "ref": {"nameTag": "app/s:1"},
            "destination": destination.to_str().unwrap(),
        });
        let (status, _, lines) = retrieve_rest(&agent, &body).await;
        assert_rest_error(status, &lines[0], ErrorCode::PathNotAllowed);
        let request: v1::RetrieveRequest = serde_json::from_value(body).unwrap();
        assert_grpc_error(
            artifacts.retrieve(request).await.map(|_| ()),
            ErrorCode::PathNotAllowed,
        );
    }
    assert_eq!(agent.snapshot().await, before);
    let outside: Vec<_> = std::fs::read_dir(agent.outside())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, vec!["secret.bin"], "nothing was written outside");
    agent.stop().await;
}

/// An agent with an `agent`-role credential cannot publish on its own; a local caller who
/// presents a publisher's token publishes through it, and the catalog names that publisher.
/// The agent's own token registers it (heartbeat) with a control plane that trusts no one
/// without a credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_role_host_publishes_only_with_the_callers_publisher_token() {
    use shoal_api::v1::credential_service_client::CredentialServiceClient;
    use shoal_api::v1::node_service_client::NodeServiceClient;

    // The control-plane host: loopback not trusted, so every call needs a credential.
    let hub = TestAgent::with_config(|c| c.server.trust_loopback = false).await;
    let admin = std::fs::read_to_string(
        hub.data()
            .join("catalog")
            .join(shoal_server::ADMIN_TOKEN_FILE),
    )
    .unwrap();
    let url = format!("http://{}", hub.running.server_api_addr.unwrap());
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .unwrap()
        .connect_lazy();
    let with = |token: &str| {
        let value: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", token.trim()).parse().unwrap();
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
            Ok(request)
        }
    };
    let mut credentials = CredentialServiceClient::with_interceptor(channel.clone(), with(&admin));
    let mut issue = async |name: &str, role: &str| {
        credentials
            .issue_credential(v1::IssueCredentialRequest {
                name: name.to_owned(),
                role: role.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .token
    };
    let agent_token = issue("agent-b", "agent").await;
    let publisher = issue("ci-publisher", "publisher").await;

    let host = TestAgent::with_config(|c| {
        c.node_id = Some("host-b".to_owned());
        c.control_plane = Some(shoal_agent::config::ControlPlanes::parse(&url).unwrap());
        c.server_token = Some(agent_token.clone());
    })
    .await;
    // It registers with its own credential.
    let mut nodes = NodeServiceClient::with_interceptor(channel, with(&admin));
    let start = std::time::Instant::now();
    loop {
        let listed = nodes
            .list_nodes(v1::ListNodesRequest::default())
            .await
            .unwrap()
            .into_inner();
        if listed.nodes.iter().any(|n| n.node_id == "host-b") {
            break;
        }
        assert!(start.elapsed() < CALL_LIMIT, "host-b never registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let path = host.write("p.bin", 61, SIZE);
    let body = json!({"path": path.to_str().unwrap(), "nameTag": "app/p:1"});
    let (status, reply) = host.post("/v1/artifacts:publish", &body).await;
    assert_rest_error(status, &reply, ErrorCode::PermissionDenied);
    assert!(
        text(&reply["error"]["message"]).contains("the agent role may not publish"),
        "{reply}"
    );
    let mut req = request(Method::POST, "/v1/artifacts:publish", Some(&body));
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {publisher}").parse().unwrap(),
    );
    let (status, _, reply) = host.send(req).await;
    let reply = json_of(&reply);
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["artifact"]["createdBy"], "ci-publisher");
    host.stop().await;
    hub.stop().await;
}

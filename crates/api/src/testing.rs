//! Helpers for tests that call a Shoal router in-process (the agent's and the control
//! plane's API tests): building requests, reading proto3 JSON, and asserting that an error
//! has the documented shape on REST (HTTP status, Google JSON error, `ErrorInfo` reason) and
//! on gRPC (status code, `ErrorInfo` detail). Behind the `testing` feature; never in a build
//! that ships.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc,
    reason = "test support: a panic is the failure report"
)]

use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use serde_json::Value;

use crate::error::grpc_status_name;
use crate::{ApiError, ErrorCode};

/// A request to `uri`, with `body` as JSON when given.
pub fn request(method: Method, uri: &str, body: Option<&Value>) -> Request<Body> {
    let builder = Request::builder().method(method).uri(uri);
    match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

/// `len` bytes from an xorshift generator seeded by `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A repeated field of proto3 JSON: absent when empty.
pub fn array(value: &Value) -> Vec<Value> {
    value.as_array().cloned().unwrap_or_default()
}

/// A string field of proto3 JSON: absent when empty.
pub fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// Percent-encodes a query-string value (RFC 3986 unreserved characters stay literal).
pub fn q(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Asserts a REST error: the HTTP status, the Google JSON shape and the reason.
pub fn assert_rest_error(status: StatusCode, body: &Value, code: ErrorCode) {
    assert_eq!(status.as_u16(), code.http_status(), "{code}: {body}");
    let error = &body["error"];
    assert_eq!(error["code"], code.http_status(), "{body}");
    assert_eq!(
        error["status"],
        grpc_status_name(code.grpc_code()),
        "{body}"
    );
    assert!(!text(&error["message"]).is_empty(), "{body}");
    let info = &error["details"][0];
    assert_eq!(
        info["@type"], "type.googleapis.com/google.rpc.ErrorInfo",
        "{body}"
    );
    assert_eq!(info["reason"], code.as_str(), "{body}");
    assert_eq!(info["domain"], "shoal", "{body}");
}

/// Asserts a gRPC error: the status code and the `ErrorInfo` reason it carries.
pub fn assert_grpc_error(result: Result<impl std::fmt::Debug, tonic::Status>, code: ErrorCode) {
    let status = result.expect_err("the call must fail");
    assert_eq!(status.code(), code.grpc_code(), "{code}: {status:?}");
    assert!(!status.details().is_empty(), "no ErrorInfo: {status:?}");
    assert_eq!(ApiError::from_status(&status).code, code, "{status:?}");
}

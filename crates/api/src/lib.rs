//! Shoal's API: the `shoal.v1` protobuf messages and services, and what serves them.
//!
//! - [`v1`]: the messages (prost, with proto3-JSON serde from pbjson), the tonic clients and
//!   the tonic server traits, generated from `proto/shoal/v1/*.proto`.
//! - [`error`]: the error model. Every failure is an [`ApiError`] with a stable
//!   [`ErrorCode`]; it becomes a gRPC status carrying a `google.rpc.ErrorInfo`, or the same
//!   content as a Google-style JSON error with the HTTP status from the code.
//! - [`rest`]: the REST/JSON side. The routes are generated from each method's
//!   `google.api.http` annotation ([`rest::ROUTES`]) and call the same trait implementation
//!   as gRPC, so the two cannot drift apart.
//! - [`router`]: one axum router serving gRPC, REST, the OpenAPI document, gRPC reflection
//!   and health probes on one port, behind one authentication layer.
//! - `testing` (feature `testing`, for other crates' tests): in-process requests and the
//!   assertions that an error has its documented REST and gRPC shape.
//! - [`wkt`]: `google.protobuf.Timestamp` with its canonical proto3 JSON form (`...Z`); the
//!   other well-known types are `pbjson_types`'.
#![forbid(unsafe_code)]

pub mod error;
pub mod rest;
pub mod router;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wkt;

pub use error::{ApiError, ErrorCode};

/// The generated `shoal.v1` package.
#[allow(
    missing_docs,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    unused_qualifications
)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/shoal.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/shoal.v1.serde.rs"));
}

/// The encoded descriptor set of every file behind [`v1`], and of `google.rpc.ErrorInfo` (every
/// error's detail), for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The OpenAPI 3.1 document of the REST routes, generated from the same descriptors.
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

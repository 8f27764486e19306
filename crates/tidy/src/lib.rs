//! House rules, checked by the tests in `tests/tidy.rs`; this library is empty on purpose.
//!
//! Every workspace crate declares its layer in `[package.metadata.shoal] layer = "..."`:
//!
//! - `core`: sans-IO protocol logic. No async runtime, no clock, no files, no sockets, no
//!   threads, no OS randomness, `#![forbid(unsafe_code)]`, and workspace dependencies on other
//!   `core` crates only.
//! - `io`: drivers that move bytes for the core (files, sockets, threads). May not depend on
//!   `bin` crates.
//! - `bin`: the `shoal` binary, and `shoal-loadgen`, the control plane's load generator.
//! - `test`: test-only crates like this one.

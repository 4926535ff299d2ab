//! Examples and cross-crate interop tests for the gateway workspace.
//!
//! This package exists so that `cargo run --example NAME` works from the
//! repository root; the examples live in `examples/` and the interop tests
//! (which drive real web servers) in `tests/`.

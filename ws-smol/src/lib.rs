//! Async WebSocket client and server on smol / async-io, built on `ws-proto`.
//!
//! Not implemented yet: this crate is an empty shell reserved in the
//! workspace; the async adapter is tracked as its own issue.
#![forbid(unsafe_code)]

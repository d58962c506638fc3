//! Blocking WebSocket client and server on `std::net` and threads, built on
//! `ws-proto`.
//!
//! Not implemented yet: this crate is an empty shell reserved in the
//! workspace; the blocking adapter is tracked as its own issue.
#![forbid(unsafe_code)]

//! Helpers shared by ws-smol's loopback tests.
// Each test file uses some of them.
#![allow(dead_code)]

use std::net::TcpListener;
use std::time::Duration;

use async_io::{Async, Timer};
use futures_lite::future;
use ws_smol::{ClientOptions, Proxy};

/// Client options for loopback: no proxy (whatever the environment says),
/// and short connect and handshake limits.
pub fn direct() -> ClientOptions {
    let mut o = ClientOptions::default();
    o.proxy = Proxy::NoProxy;
    o.connect_timeout = Some(Duration::from_secs(5));
    o.handshake_timeout = Some(Duration::from_secs(5));
    o
}

/// Runs a test body with a 20 s limit.
pub fn run<F: std::future::Future<Output = ()>>(f: F) {
    smol::block_on(future::or(f, async {
        Timer::after(Duration::from_secs(20)).await;
        panic!("test timed out");
    }))
}

/// A listener on loopback and its URL.
pub fn listen() -> (Async<TcpListener>, String) {
    let l = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
    let port = l.get_ref().local_addr().unwrap().port();
    (l, format!("ws://127.0.0.1:{port}/"))
}

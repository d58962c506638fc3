//! The futures an application awaits for a connection stay small: a task
//! keeps room for every future it awaits for as long as it lives, so a
//! handshake's state held inline would cost each connection its size until
//! it closes. The handshakes keep their state on the heap while they run.
//! (Sizes on 64-bit targets, session 31; before, `accept_with` over a TCP
//! stream held about a kilobyte inline and `connect_with` 2 680 bytes.)
//! Raise a bound knowingly; the bounds leave some room for another
//! compiler's layout, far below the sizes of the state held inline.
#![cfg(target_pointer_width = "64")]

use std::future::Future;
use std::mem::size_of;
use std::net::TcpStream;
use std::sync::Arc;

use async_io::Async;
use ws_smol::{Accept, ClientOptions, Config, UpgradeRequest};

fn size3<A, B, C, F: Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
    size_of::<F>()
}

fn size2<'a, A: ?Sized + 'a, B: 'a, F: Future>(_: impl FnOnce(&'a A, &'a B) -> F) -> usize {
    size_of::<F>()
}

fn size1<'a, F: Future>(_: impl FnOnce(&'a str) -> F) -> usize {
    size_of::<F>()
}

type Decide = fn(&UpgradeRequest) -> Result<Accept, u16>;

/// The stream, the configuration (a `Config` of its own or a shared one),
/// the closure, the box.
fn accept_with_size<C: Into<Arc<Config>>>() -> (usize, usize) {
    let size = size3(ws_smol::accept_with::<Async<TcpStream>, Decide, C>);
    let args = size_of::<Async<TcpStream>>() + size_of::<C>() + size_of::<Decide>();
    (size, args)
}

#[test]
fn accept_with_holds_its_arguments_and_a_pointer() {
    for (size, args) in [
        accept_with_size::<Config>(),
        accept_with_size::<Arc<Config>>(),
    ] {
        assert!(size <= args + 48, "{size} (arguments {args})");
    }
}

#[test]
fn connecting_holds_little() {
    let with = size2::<str, ClientOptions, _>(ws_smol::connect_with);
    assert!(with <= 64, "connect_with: {with}");
    let plain = size1(ws_smol::connect);
    assert!(plain <= 128, "connect: {plain}");
}

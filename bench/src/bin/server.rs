//! One echo server per contender, each on a single thread (or, for
//! ws-blocking, a thread per connection), for the loopback benchmarks.
//!
//! `server IMPL PORT [--deflate]`; IMPL is ws-smol (on an executor run by
//! the main thread, `Server::start_on`), ws-smol-global (smol's global
//! executor, `Server::start`), ws-smol-cb-lent (the server of ws-smol,
//! answering from a lent callback, `Server::on_message_lent`),
//! ws-smol-tls (the server of ws-smol over TLS, with a certificate made at
//! start; the load generator's `--tls` does not check it),
//! ws-smol-stream (ws-smol's stream API: its
//! own accept loop, `ws_smol::accept`, then `recv`/`send_*` in a task per
//! connection on a `LocalExecutor`, as the peers' servers are written),
//! ws-smol-lent (the same with `recv_with`: each message lent, copied into
//! a buffer the connection keeps, and sent back), ws-smol-reply (the same
//! with `recv_with_reply`: each message lent and answered from inside the
//! lend, no buffer of the server's own), ws-blocking, async-tungstenite,
//! tokio-tungstenite, tokio-tungstenite-tls (over tokio-rustls, with
//! ws-smol's rustls configuration and a certificate made at start),
//! fastwebsockets, ws-proto-tokio (ws-proto's
//! connection driven by hand on tokio, as fastwebsockets is), raw-tcp (answers
//! an upgrade request with a canned response of the same size, then
//! closes: the baseline of the handshake benchmark) or raw-tcp-smol (the
//! same on smol's reactor and a `LocalExecutor`). Prints
//! `listening PORT`; on the stdin line `mem` prints `mem HEAP RSS`; exits
//! when stdin closes.

use std::net::SocketAddr;

use ws_bench::{announce, control_thread, head_end, upgrade_response};

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().expect("usage: server IMPL PORT [--deflate]");
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let deflate = args.any(|a| a == "--deflate");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    control_thread();
    match which.as_str() {
        "ws-smol" => ws_smol_server(addr, deflate, true, false, false),
        "ws-smol-global" => ws_smol_server(addr, deflate, false, false, false),
        "ws-smol-cb-lent" => ws_smol_server(addr, deflate, true, true, false),
        "ws-smol-tls" => ws_smol_server(addr, deflate, true, false, true),
        "ws-smol-stream" => ws_smol_stream_server(addr, deflate, Echo::Owned),
        "ws-smol-lent" => ws_smol_stream_server(addr, deflate, Echo::Lent),
        "ws-smol-reply" => ws_smol_stream_server(addr, deflate, Echo::Reply),
        "ws-blocking" => ws_blocking_server(addr, deflate, false),
        "ws-blocking-cb-lent" => ws_blocking_server(addr, deflate, true),
        "async-tungstenite" => async_tungstenite_server(addr),
        "tokio-tungstenite" => tokio_tungstenite_server(addr, false),
        "tokio-tungstenite-tls" => tokio_tungstenite_server(addr, true),
        "fastwebsockets" => fastwebsockets_server(addr),
        "ws-proto-tokio" => ws_proto_tokio_server(addr),
        "raw-tcp" => raw_tcp_server(addr),
        "raw-tcp-smol" => raw_tcp_smol_server(addr),
        other => panic!("unknown server {other}"),
    }
}

/// Runs the accept loop `serve` makes as a task of its own on a
/// `LocalExecutor` that this thread drives (its main future only waits). An
/// accept loop in the main future would be polled at every wake-up of the
/// executor, and async-io retries an accept after any poll (its
/// `read_with` is optimistic): an `accept4` that finds nothing and an
/// `epoll_ctl` to re-arm the listener per wake-up, one per echo with one
/// connection.
fn run_local<F>(serve: impl FnOnce(&'static smol::LocalExecutor<'static>) -> F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    let ex: &'static smol::LocalExecutor = Box::leak(Box::new(smol::LocalExecutor::new()));
    ex.spawn(serve(ex)).detach();
    smol::block_on(ex.run(futures_lite::future::pending::<()>()))
}

fn deflate_config(on: bool) -> Option<ws_proto::DeflateConfig> {
    on.then(|| ws_proto::DeflateConfig {
        threshold: 0,
        ..ws_proto::DeflateConfig::default()
    })
}

/// The callback servers' echo, on ws-smol's or ws-blocking's `Server`
/// (the same API, different types): a lent callback answering through its
/// `Reply` (`lent`), or an owned one answering through the handle's
/// `$text` / `$binary`.
macro_rules! echo_callbacks {
    ($server:expr, $lent:expr, $text:ident, $binary:ident) => {
        if $lent {
            $server.on_message_lent(|_, m, reply| {
                let _ = match m {
                    MessageRef::Text(t) => reply.send_text(t),
                    MessageRef::Binary(b) => reply.send_binary(b),
                    _ => Ok(()),
                };
            });
        } else {
            let handle = $server.handle();
            $server.on(ServerEventKind::MessageReceive, move |event| match event {
                ServerEvent::Message(conn, Message::Text(t)) => {
                    let _ = handle.$text(conn, t);
                }
                ServerEvent::Message(conn, Message::Binary(b)) => {
                    let _ = handle.$binary(conn, b);
                }
                _ => {}
            });
        }
    };
}

fn ws_smol_server(addr: SocketAddr, deflate: bool, own_executor: bool, lent: bool, tls: bool) {
    use std::sync::Arc;
    use ws_smol::{Message, MessageRef, Server, ServerEvent, ServerEventKind, ServerOptions};
    let ex = Arc::new(smol::Executor::new());
    smol::block_on(ex.run(async {
        let mut options = ServerOptions::default();
        options.ip = addr.ip();
        options.port = addr.port();
        options.max_clients = 20_000;
        options.max_connections_per_ip = 20_000;
        options.config.deflate = deflate_config(deflate);
        // A certificate made now (the load generator does not check it);
        // its files are read at start and removed once it has started.
        let pki = tls.then(ws_test_support::pki);
        if let Some(pki) = &pki {
            options.cert = Some(ws_smol::ServerCert {
                cert_path: pki.server_cert.clone(),
                key_path: pki.server_key.clone(),
            });
        }
        let server = if own_executor {
            Server::start_on(ex.clone(), options).await
        } else {
            Server::start(options).await
        }
        .expect("start");
        drop(pki);
        echo_callbacks!(server, lent, queue_text, queue_binary);
        announce(server.local_addr().port());
        futures_lite::future::pending::<()>().await;
    }))
}

/// ws-smol-lent: each message lent by `recv_with` (no `String` or buffer
/// allocated per message) and copied into one buffer per connection, which
/// is sent back.
async fn echo_lent<S>(mut ws: ws_smol::WebSocket<S>)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    use ws_smol::MessageRef;
    enum Echo {
        Text,
        Binary,
        Nothing,
        End,
    }
    let mut text = String::new();
    let mut binary = Vec::new();
    loop {
        let echo = ws
            .recv_with(|m| match m {
                MessageRef::Text(t) => {
                    text.clear();
                    text.push_str(t);
                    Echo::Text
                }
                MessageRef::Binary(b) => {
                    binary.clear();
                    binary.extend_from_slice(b);
                    Echo::Binary
                }
                MessageRef::Closed(_) => Echo::End,
                MessageRef::Ping(_) | MessageRef::Pong(_) => Echo::Nothing,
            })
            .await;
        let sent = match echo {
            Ok(Echo::Text) => ws.send_text(&text).await,
            Ok(Echo::Binary) => ws.send_binary(&binary).await,
            Ok(Echo::Nothing) => Ok(()),
            Ok(Echo::End) | Err(_) => break,
        };
        if sent.is_err() {
            break;
        }
    }
}

/// How a ws-smol stream server echoes.
#[derive(Clone, Copy)]
enum Echo {
    /// `recv`, then `send_string` / `send_bytes`.
    Owned,
    /// `recv_with`, a copy, then `send_text` / `send_binary`.
    Lent,
    /// `recv_with_reply`.
    Reply,
}

/// ws-smol-reply: each message lent by `recv_with_reply` and answered
/// from inside the lend (one copy, into the output).
async fn echo_reply<S>(mut ws: ws_smol::WebSocket<S>)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    use ws_smol::MessageRef;
    loop {
        let go_on = ws
            .recv_with_reply(|m, reply| match m {
                MessageRef::Text(t) => reply.send_text(t).is_ok(),
                MessageRef::Binary(b) => reply.send_binary(b).is_ok(),
                MessageRef::Closed(_) => false,
                MessageRef::Ping(_) | MessageRef::Pong(_) => true,
            })
            .await;
        if !matches!(go_on, Ok(true)) {
            break;
        }
    }
}

fn ws_smol_stream_server(addr: SocketAddr, deflate: bool, echo: Echo) {
    let mut config = ws_smol::Config::default();
    config.deflate = deflate_config(deflate);
    let config = std::sync::Arc::new(config);
    run_local(move |ex| async move {
        let listener = async_io::Async::<std::net::TcpListener>::bind(addr).expect("bind");
        announce(listener.get_ref().local_addr().unwrap().port());
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.get_ref().set_nodelay(true);
            let config = config.clone();
            // A task type per server, so that neither echo loop changes how
            // the compiler lays out the other's.
            match echo {
                Echo::Lent => ex
                    .spawn(async move {
                        if let Some(ws) = upgrade(sock, config).await {
                            echo_lent(ws).await;
                        }
                    })
                    .detach(),
                Echo::Reply => ex
                    .spawn(async move {
                        if let Some(ws) = upgrade(sock, config).await {
                            echo_reply(ws).await;
                        }
                    })
                    .detach(),
                Echo::Owned => ex
                    .spawn(async move {
                        if let Some(ws) = upgrade(sock, config).await {
                            echo_owned(ws).await;
                        }
                    })
                    .detach(),
            }
        }
    })
}

/// ws-smol-stream and ws-smol-lent: the server handshake, every connection
/// sharing one configuration.
async fn upgrade(
    sock: async_io::Async<std::net::TcpStream>,
    config: std::sync::Arc<ws_smol::Config>,
) -> Option<ws_smol::WebSocket<async_io::Async<std::net::TcpStream>>> {
    ws_smol::accept_with(sock, config, |_| Ok(ws_smol::Accept::new()))
        .await
        .ok()
}

/// ws-smol-stream: each message received whole (`recv`) and sent back,
/// taken over by the connection (`send_string` / `send_bytes`: from 2 KiB
/// on, written from its own memory, not copied).
async fn echo_owned<S>(mut ws: ws_smol::WebSocket<S>)
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    use ws_smol::Message;
    loop {
        let sent = match ws.recv().await {
            Ok(Message::Text(t)) => ws.send_string(t).await,
            Ok(Message::Binary(b)) => ws.send_bytes(b).await,
            Ok(Message::Closed(_)) | Err(_) => break,
            Ok(_) => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
}

fn ws_blocking_server(addr: SocketAddr, deflate: bool, lent: bool) {
    use ws_blocking::{Message, MessageRef, Server, ServerEvent, ServerEventKind, ServerOptions};
    let mut options = ServerOptions::default();
    options.ip = addr.ip();
    options.port = addr.port();
    options.max_clients = 20_000;
    options.max_connections_per_ip = 20_000;
    options.config.deflate = deflate_config(deflate);
    let server = Server::start(options).expect("start");
    echo_callbacks!(server, lent, send_text, send_binary);
    announce(server.local_addr().port());
    loop {
        std::thread::park();
    }
}

fn async_tungstenite_server(addr: SocketAddr) {
    use futures_util::StreamExt;
    run_local(move |ex| async move {
        let listener = async_net::TcpListener::bind(addr).await.expect("bind");
        announce(listener.local_addr().unwrap().port());
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            ex.spawn(async move {
                let Ok(mut ws) = async_tungstenite::accept_async(sock).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
    })
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// tokio-tungstenite, over TLS (tokio-rustls) when `tls`: the same rustls
/// configuration as ws-smol's server (ws-proto's `server_config`) and a
/// certificate made at start.
fn tokio_tungstenite_server(addr: SocketAddr, tls: bool) {
    tokio_runtime().block_on(async {
        let pki = tls.then(ws_test_support::pki);
        let acceptor = pki.as_ref().map(|p| {
            let cert = ws_proto::api::ServerCert {
                cert_path: p.server_cert.clone(),
                key_path: p.server_key.clone(),
            };
            let config = ws_proto::api::tls::server_config(&cert, None).expect("certificate");
            tokio_rustls::TlsAcceptor::from(config)
        });
        drop(pki);
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        announce(listener.local_addr().unwrap().port());
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor {
                    None => tokio_tungstenite_echo(sock).await,
                    Some(a) => {
                        if let Ok(s) = a.accept(sock).await {
                            tokio_tungstenite_echo(s).await
                        }
                    }
                }
            });
        }
    })
}

async fn tokio_tungstenite_echo<S>(sock: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Reads an HTTP head from a tokio stream; the bytes after it are not
/// expected (clients wait for the answer).
async fn read_head(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if head_end(&buf).is_some() {
            return Some(buf);
        }
        if buf.len() > 16 << 10 {
            return None;
        }
    }
}

/// A server on a current-thread tokio runtime that answers each upgrade
/// request with the canned 101 (`upgrade_response`) and then runs `serve`
/// on the stream in a task of its own: the fastwebsockets and
/// ws-proto-tokio servers.
fn canned_upgrade_server<F, Fut>(addr: SocketAddr, serve: F)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    tokio_runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        announce(listener.local_addr().unwrap().port());
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                let Some(head) = read_head(&mut sock).await else {
                    return;
                };
                let Some(resp) = upgrade_response(&head) else {
                    return;
                };
                if sock.write_all(&resp).await.is_err() {
                    return;
                }
                serve(sock).await;
            });
        }
    })
}

fn fastwebsockets_server(addr: SocketAddr) {
    use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket};
    canned_upgrade_server(addr, |sock| async move {
        let mut ws = WebSocket::after_handshake(sock, Role::Server);
        ws.set_auto_close(true);
        ws.set_auto_pong(true);
        let mut ws = FragmentCollector::new(ws);
        while let Ok(frame) = ws.read_frame().await {
            let echo = matches!(frame.opcode, OpCode::Text | OpCode::Binary);
            if frame.opcode == OpCode::Close || echo && ws.write_frame(frame).await.is_err() {
                break;
            }
        }
    })
}

/// ws-proto's connection driven by hand on tokio's reactor, as the
/// fastwebsockets server is (the same canned upgrade, a task per
/// connection on a current-thread runtime): each read is handed to
/// `handle_data_reply`, each message echoed from inside its lend, the
/// output written in one `write_all`. Not an adapter of ours: it
/// measures the protocol core on the reactor tokio-tungstenite and
/// fastwebsockets use, beside ws-smol on async-io.
fn ws_proto_tokio_server(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use ws_proto::{Config, Connection, MessageRef, Reply, Role, Transmit};
    fn echo(m: MessageRef<'_>, reply: &mut Reply<'_>) {
        let _ = match m {
            MessageRef::Text(t) => reply.send_text(t),
            MessageRef::Binary(b) => reply.send_binary(b),
            _ => Ok(()),
        };
    }
    canned_upgrade_server(addr, |mut sock| async move {
        let now = std::time::Instant::now();
        let mut conn = Connection::new(Role::Server, Config::default(), now, [0; 32]);
        let mut buf = vec![0u8; 16 << 10];
        let mut out = Vec::new();
        loop {
            let n = match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let now = std::time::Instant::now();
            if conn.handle_data_reply(now, &mut buf[..n], echo).is_some() {
                while conn.poll_message_reply(echo).is_some() {}
            }
            out.clear();
            // Until it has nothing more: after a Close, `Shutdown` comes on
            // the call after the one that hands out the Close reply.
            let end = loop {
                match conn.poll_transmit(&mut out) {
                    Transmit::Data(_) => {}
                    Transmit::Nothing => break false,
                    Transmit::Shutdown => break true,
                }
            };
            if !out.is_empty() && sock.write_all(&out).await.is_err() || end {
                let _ = sock.shutdown().await;
                return;
            }
        }
    })
}

fn raw_tcp_server(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Same size as the 101 answer to the generator's request.
    let canned = upgrade_response(&ws_bench::upgrade_request("127.0.0.1", None)).unwrap();
    let canned: &'static [u8] = Box::leak(canned.into_boxed_slice());
    tokio_runtime().block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        announce(listener.local_addr().unwrap().port());
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                if read_head(&mut sock).await.is_none() {
                    return;
                }
                if sock.write_all(canned).await.is_err() {
                    return;
                }
                let mut rest = [0u8; 256];
                while let Ok(n) = sock.read(&mut rest).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    })
}

/// raw-tcp's exchange on smol's reactor and a `LocalExecutor` run by this
/// thread (as `ws-smol` runs): the runtime's share of a handshake, without
/// any WebSocket work.
fn raw_tcp_smol_server(addr: SocketAddr) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let canned = upgrade_response(&ws_bench::upgrade_request("127.0.0.1", None)).unwrap();
    let canned: &'static [u8] = Box::leak(canned.into_boxed_slice());
    run_local(move |ex| async move {
        let listener = async_net::TcpListener::bind(addr).await.expect("bind");
        announce(listener.local_addr().unwrap().port());
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let _ = sock.set_nodelay(true);
            ex.spawn(async move {
                let mut buf = Vec::with_capacity(512);
                let mut chunk = [0u8; 1024];
                loop {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if head_end(&buf).is_some() {
                        break;
                    }
                    if buf.len() > 16 << 10 {
                        return;
                    }
                }
                if sock.write_all(canned).await.is_err() {
                    return;
                }
                let mut rest = [0u8; 256];
                while let Ok(n) = sock.read(&mut rest).await {
                    if n == 0 {
                        break;
                    }
                }
            })
            .detach();
        }
    })
}

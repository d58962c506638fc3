//! Embeds the sans-IO core in plain `std::net` on loopback: a server thread
//! and a client perform the opening handshake, exchange messages and close
//! cleanly, printing every event. Run with
//! `cargo run -p ws-proto --example loopback`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ws_proto::{
    Accept, Assembler, ClientHandshake, ClientRequest, CloseCode, Config, Connection, Incoming,
    Message, ServerHandshake, Transmit,
};

/// A seed for the masking keys, from the operating system's entropy (via
/// `rand`'s thread generator, itself seeded by the OS): "the masking key
/// MUST be derived from a strong source of entropy" (RFC 6455 §10.3).
fn seed() -> [u8; 32] {
    rand::random()
}

/// Writes everything the connection has queued.
fn flush(conn: &mut Connection, sock: &mut TcpStream) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        match conn.poll_transmit(&mut buf) {
            Transmit::Data(_) => {
                sock.write_all(&buf)?;
                buf.clear();
            }
            Transmit::Shutdown => sock.shutdown(Shutdown::Write)?,
            Transmit::Nothing => return Ok(()),
        }
    }
}

/// The run loop: drain events, flush, wait for bytes or the next timer.
/// Calls `on_message` for each whole message; it may queue replies.
fn run(
    name: &str,
    mut conn: Connection,
    mut sock: TcpStream,
    mut on_message: impl FnMut(&mut Connection, &Message),
) -> io::Result<()> {
    let mut asm = Assembler::new();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        while let Some(event) = conn.poll_event() {
            if let Some(msg) = asm.push(event) {
                println!("[{name}] {msg:?}");
                on_message(&mut conn, &msg);
            }
        }
        flush(&mut conn, &mut sock)?;
        if conn.is_finished() {
            return Ok(());
        }
        let timeout = conn.poll_timeout().map(|t| {
            t.saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        });
        sock.set_read_timeout(timeout)?;
        match sock.read(&mut buf) {
            Ok(0) => conn.handle_eof(Instant::now()),
            Ok(n) => conn.handle_data(Instant::now(), &buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                conn.handle_timeout(Instant::now())
            }
            Err(e) => return Err(e),
        }
    }
}

fn server(listener: TcpListener) -> Result<(), Box<dyn std::error::Error>> {
    let (mut sock, peer) = listener.accept()?;
    println!("[server] connection from {peer}");
    let mut hs = ServerHandshake::new(Config::default());
    let mut buf = [0u8; 4096];
    let incoming = loop {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err(hs.handle_eof().into());
        }
        match hs.handle_data(&buf[..n]) {
            Ok(Some(incoming)) => break incoming,
            Ok(None) => continue,
            Err(e) => {
                let mut out = Vec::new();
                e.write_response(&mut out);
                sock.write_all(&out)?;
                return Err(e.into());
            }
        }
    };
    let upgrade = match incoming {
        Incoming::Upgrade(u) => u,
        Incoming::Http(req) => {
            let mut out = Vec::new();
            req.respond(
                200,
                &[("Content-Type", "text/plain")],
                b"a WebSocket server\n",
                &mut out,
            )?;
            sock.write_all(&out)?;
            return Ok(());
        }
    };
    println!(
        "[server] upgrade to {} offering {:?}",
        upgrade.path(),
        upgrade.protocols()
    );
    let mut out = Vec::new();
    let conn = upgrade.accept(Instant::now(), &Accept::new().protocol("echo"), &mut out)?;
    sock.write_all(&out)?;
    // Echo every message back.
    run("server", conn, sock, |conn, msg| {
        let _ = match msg {
            Message::Text(t) => conn.send_text(t),
            Message::Binary(b) => conn.send_binary(b),
            _ => Ok(()),
        };
    })?;
    Ok(())
}

fn client(addr: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let request = ClientRequest::new(&format!("ws://{addr}/demo"))?.protocol("echo");
    let mut hs = ClientHandshake::new(&request, Config::default(), seed())?;
    let mut sock = TcpStream::connect(addr)?;
    sock.write_all(hs.request())?;
    let mut buf = [0u8; 4096];
    let (response, mut conn) = loop {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err(hs.handle_eof().into());
        }
        if let Some(done) = hs.handle_data(Instant::now(), &buf[..n])? {
            break done;
        }
    };
    println!(
        "[client] open: {} {} protocol {:?}",
        response.status, response.reason, response.protocol
    );
    conn.send_text("hello over loopback")?;
    conn.send_binary(&[0xde, 0xad, 0xbe, 0xef])?;
    conn.ping(b"are you there?")?;
    let mut replies = 0;
    run("client", conn, sock, |conn, msg| {
        if matches!(msg, Message::Text(_) | Message::Binary(_)) {
            replies += 1;
            if replies == 2 {
                conn.close(Instant::now(), CloseCode::NORMAL, "done")
                    .expect("close");
            }
        }
    })?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || server(listener).map_err(|e| e.to_string()));
    client(addr)?;
    server.join().expect("server thread")?;
    println!("both sides closed cleanly");
    Ok(())
}

//! The load generator (not a contender): one thread, many connections.
//!
//! - `loadgen echo ADDR --conns N --size BYTES [--binary] [--depth D]
//!   [--secs T] [--warmup W] [--interval I] [--reactor epoll|async-io]`: N
//!   connections, each with D masked messages in flight, closed loop. Prints
//!   `start` when the warm-up ends, a `sample RATE` line per interval, then
//!   `end ECHOES SECONDS`. The echo loop runs on a level-triggered epoll
//!   instance of its own (`epoll`, the default: per echo one `read` and one
//!   `write`, and an `epoll_wait` shared by the connections ready at once),
//!   or on async-io (`async-io`: a task per connection; async-io's one-shot
//!   registration adds a `read` that finds nothing and an `epoll_ctl` to
//!   re-arm per echo, so the generator spends more of its core per echo and
//!   caps the fastest servers sooner). `--tls`: over TLS (the server's
//!   certificate is not checked), on either loop (in the epoll loop each
//!   connection's rustls session is driven by hand).
//! - `loadgen idle ADDR --conns N [--deflate]`: opens N upgraded
//!   connections (with `--deflate`, offers permessage-deflate and exchanges
//!   one compressed message on each), prints `ready N`, and holds them until
//!   stdin closes.
//! - `loadgen handshake ADDR --conns C [--secs T] [--warmup W] [--tls]`: C
//!   clients each repeating connect, (TLS handshake,) upgrade request,
//!   response, close. Prints `end HANDSHAKES SECONDS`.

use std::cell::Cell;
use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_io::{Async, Timer};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::rustls;
use ws_bench::{client_frame, head_end, server_frame_len, upgrade_request};

struct Args {
    mode: String,
    addr: SocketAddr,
    conns: usize,
    size: usize,
    binary: bool,
    depth: usize,
    secs: f64,
    warmup: f64,
    interval: f64,
    deflate: bool,
    epoll: bool,
    tls: bool,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().expect("mode: echo, idle or handshake");
    let addr = it.next().expect("ADDR").parse().expect("ADDR is ip:port");
    let mut a = Args {
        mode,
        addr,
        conns: 1,
        size: 20,
        binary: false,
        depth: 1,
        secs: 3.0,
        warmup: 0.5,
        interval: 0.5,
        deflate: false,
        epoll: true,
        tls: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().expect("flag value");
        match flag.as_str() {
            "--conns" => a.conns = val().parse().unwrap(),
            "--size" => a.size = val().parse().unwrap(),
            "--depth" => a.depth = val().parse().unwrap(),
            "--secs" => a.secs = val().parse().unwrap(),
            "--warmup" => a.warmup = val().parse().unwrap(),
            "--interval" => a.interval = val().parse().unwrap(),
            "--binary" => a.binary = true,
            "--deflate" => a.deflate = true,
            "--tls" => a.tls = true,
            "--reactor" => {
                a.epoll = match val().as_str() {
                    "epoll" => true,
                    "async-io" => false,
                    other => panic!("unknown reactor {other}"),
                }
            }
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn upgrade(addr: SocketAddr, extensions: Option<&str>) -> io::Result<Async<TcpStream>> {
    let s = Async::<TcpStream>::connect(addr).await?;
    s.get_ref().set_nodelay(true)?;
    upgrade_on(s, addr, extensions).await
}

/// The upgrade over TLS, not checking the server's certificate.
async fn upgrade_tls(
    addr: SocketAddr,
) -> io::Result<futures_rustls::client::TlsStream<Async<TcpStream>>> {
    let s = Async::<TcpStream>::connect(addr).await?;
    s.get_ref().set_nodelay(true)?;
    let mut o = ws_proto::api::ClientOptions::default();
    o.skip_server_cert_verification = true;
    let config = ws_proto::api::tls::client_config(&o).map_err(io::Error::other)?;
    let name = ws_proto::api::tls::server_name("localhost").map_err(io::Error::other)?;
    let s = futures_rustls::TlsConnector::from(config)
        .connect(name, s)
        .await?;
    upgrade_on(s, addr, None).await
}

async fn upgrade_on<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin>(
    mut s: S,
    addr: SocketAddr,
    extensions: Option<&str>,
) -> io::Result<S> {
    s.write_all(&upgrade_request(&addr.to_string(), extensions))
        .await?;
    // TLS holds what it could not write yet until a flush.
    s.flush().await?;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head) {
            if !head.starts_with(b"HTTP/1.1 101") {
                return Err(io::Error::other(
                    String::from_utf8_lossy(&head).into_owned(),
                ));
            }
            if end != head.len() {
                return Err(io::Error::other("bytes after the 101 head"));
            }
            return Ok(s);
        }
    }
}

fn payload(size: usize, binary: bool) -> Vec<u8> {
    (0..size)
        .map(|i| {
            if binary {
                (i.wrapping_mul(2654435761) >> 7) as u8
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}

fn main() {
    let a = args();
    let ex = Rc::new(smol::LocalExecutor::new());
    match a.mode.as_str() {
        "echo" if a.epoll => echo_epoll(&a, &ex),
        "echo" => smol::block_on(ex.run(echo(&a, &ex))),
        "idle" => smol::block_on(ex.run(idle(&a, &ex))),
        "handshake" => smol::block_on(ex.run(handshakes(&a, &ex))),
        other => panic!("unknown mode {other}"),
    }
}

async fn echo(a: &Args, ex: &Rc<smol::LocalExecutor<'static>>) {
    let frame = Rc::new(client_frame(
        if a.binary { 2 } else { 1 },
        false,
        &payload(a.size, a.binary),
    ));
    let echo_len = server_frame_len(a.size);
    let count = Rc::new(Cell::new(0u64));
    let failed = Rc::new(Cell::new(0u32));
    let ready = Rc::new(Cell::new(0usize));
    for _ in 0..a.conns {
        let (frame, count, failed, ready) =
            (frame.clone(), count.clone(), failed.clone(), ready.clone());
        let (addr, depth) = (a.addr, a.depth);
        let tls = a.tls;
        ex.spawn(async move {
            let r = if tls {
                match upgrade_tls(addr).await {
                    Ok(s) => echo_conn(s, &frame, echo_len, depth, &count, &ready).await,
                    Err(e) => Err(e),
                }
            } else {
                match upgrade(addr, None).await {
                    Ok(s) => echo_conn(s, &frame, echo_len, depth, &count, &ready).await,
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = r {
                if failed.get() == 0 {
                    eprintln!("connection failed: {e}");
                }
                failed.set(failed.get() + 1);
            }
        })
        .detach();
    }
    echo_report(a, &count, &failed, &ready).await
}

/// One connection of the async-io echo loop, once upgraded.
async fn echo_conn<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin>(
    mut s: S,
    frame: &[u8],
    echo_len: usize,
    depth: usize,
    count: &Cell<u64>,
    ready: &Cell<usize>,
) -> io::Result<()> {
    ready.set(ready.get() + 1);
    let mut batch = Vec::with_capacity(frame.len() * depth);
    for _ in 0..depth {
        batch.extend_from_slice(frame);
    }
    s.write_all(&batch).await?;
    s.flush().await?;
    let mut buf = vec![0u8; (echo_len * depth).clamp(4096, 1 << 20)];
    let mut partial = 0usize;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        partial += n;
        let done = partial / echo_len;
        partial %= echo_len;
        if done > 0 {
            count.set(count.get() + done as u64);
            batch.clear();
            for _ in 0..done {
                batch.extend_from_slice(frame);
            }
            s.write_all(&batch).await?;
            s.flush().await?;
        }
    }
}

async fn echo_report(a: &Args, count: &Cell<u64>, failed: &Cell<u32>, ready: &Cell<usize>) {
    while ready.get() + (failed.get() as usize) < a.conns {
        Timer::after(Duration::from_millis(5)).await;
    }
    Timer::after(Duration::from_secs_f64(a.warmup)).await;
    say("start");
    let start = Instant::now();
    let first = count.get();
    let mut last = first;
    let mut t = start;
    while t.duration_since(start).as_secs_f64() < a.secs {
        Timer::after(Duration::from_secs_f64(a.interval)).await;
        let now = Instant::now();
        let c = count.get();
        say(&format!(
            "sample {:.0}",
            (c - last) as f64 / now.duration_since(t).as_secs_f64()
        ));
        last = c;
        t = now;
    }
    say(&format!(
        "end {} {:.6} failed={}",
        count.get() - first,
        t.duration_since(start).as_secs_f64(),
        failed.get()
    ));
    std::process::exit(0);
}

/// One connection of the epoll echo loop.
struct EchoConn {
    stream: TcpStream,
    /// The TLS session (`--tls`), taken over from the upgrade's stream: it
    /// holds what it has not yet written to the socket.
    tls: Option<Box<rustls::ClientConnection>>,
    /// Bytes of an echo read so far.
    partial: usize,
    /// Frames to write, and how much of them is written.
    out: Vec<u8>,
    sent: usize,
    /// Registered for writability too (a write found the socket full).
    want_write: bool,
}

impl EchoConn {
    /// Bytes wait to be written to the socket (over TLS: records in the
    /// session, or frames not yet given to it).
    fn pending(&self) -> bool {
        match &self.tls {
            Some(t) => t.wants_write() || !self.out.is_empty(),
            None => self.sent < self.out.len(),
        }
    }
}

/// The echo loop on a level-triggered epoll instance of its own, on this
/// thread: per echo one `read` and one `write`, and one `epoll_wait` for
/// all the connections ready at once. The connections are opened and
/// upgraded on async-io first (in batches, so the listen backlog never
/// overflows), then taken out of it. Over TLS (`--tls`) each connection's
/// rustls session is taken over too: its records are written as plain
/// frames are, and read until a record is whole (rustls takes at most
/// 4 KiB from the socket per call, so a 16 KiB echo takes about five
/// reads).
fn echo_epoll(a: &Args, ex: &Rc<smol::LocalExecutor<'static>>) {
    let frame = client_frame(
        if a.binary { 2 } else { 1 },
        false,
        &payload(a.size, a.binary),
    );
    let echo_len = server_frame_len(a.size);
    let mut failed = 0u32;
    let mut fail = |e: &io::Error| {
        if failed == 0 {
            eprintln!("connection failed: {e}");
        }
        failed += 1;
    };
    let mut conns: Vec<EchoConn> = Vec::with_capacity(a.conns);
    let mut opened = 0;
    while opened < a.conns {
        let n = (a.conns - opened).min(100);
        let (addr, tls) = (a.addr, a.tls);
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                ex.spawn(async move {
                    if tls {
                        let (s, mut session) = upgrade_tls(addr).await?.into_inner();
                        // Whatever `--depth` and `--size` queue at once is
                        // taken (by default rustls refuses past 64 KiB).
                        session.set_buffer_limit(None);
                        Ok((s.into_inner()?, Some(Box::new(session))))
                    } else {
                        Ok((upgrade(addr, None).await?.into_inner()?, None))
                    }
                })
            })
            .collect();
        for t in tasks {
            match smol::block_on(ex.run(t)) {
                Ok((stream, tls)) => conns.push(EchoConn {
                    stream,
                    tls,
                    partial: 0,
                    out: Vec::with_capacity(frame.len() * a.depth),
                    sent: 0,
                    want_write: false,
                }),
                Err(e) => fail(&e),
            }
        }
        opened += n;
    }
    // SAFETY: plain system calls on descriptors this function owns; every
    // pointer passed points to a live local of the right type and length.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epfd >= 0, "epoll_create1: {}", io::Error::last_os_error());
    let ctl = |op: libc::c_int, c: &EchoConn, i: usize| {
        use std::os::fd::AsRawFd as _;
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | if c.want_write { libc::EPOLLOUT } else { 0 }) as u32,
            u64: i as u64,
        };
        // SAFETY: see above.
        let r = unsafe { libc::epoll_ctl(epfd, op, c.stream.as_raw_fd(), &mut ev) };
        assert!(r == 0, "epoll_ctl: {}", io::Error::last_os_error());
    };
    // Writes what is queued, up to a full socket; an error when the
    // connection broke. Over TLS the frames go into the session first, as
    // records that wait there until the socket takes them.
    let flush = |c: &mut EchoConn| -> io::Result<()> {
        if let Some(t) = &mut c.tls {
            t.writer().write_all(&c.out)?;
            c.out.clear();
            while t.wants_write() {
                match t.write_tls(&mut &c.stream) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        }
        while c.sent < c.out.len() {
            match (&c.stream).write(&c.out[c.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        c.out.clear();
        c.sent = 0;
        Ok(())
    };
    let mut live = vec![true; conns.len()];
    for (i, c) in conns.iter_mut().enumerate() {
        c.stream.set_nonblocking(true).expect("non-blocking");
        for _ in 0..a.depth {
            c.out.extend_from_slice(&frame);
        }
        match flush(c) {
            Ok(()) => {
                c.want_write = c.pending();
                ctl(libc::EPOLL_CTL_ADD, c, i);
            }
            Err(e) => {
                live[i] = false;
                fail(&e);
            }
        }
    }
    let mut buf = vec![0u8; (echo_len * a.depth).clamp(4096, 1 << 20)];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; conns.len().clamp(1, 1024)];
    let mut count = 0u64;
    let warm_end = Instant::now() + Duration::from_secs_f64(a.warmup);
    let interval = Duration::from_secs_f64(a.interval);
    // (start, count at start, last sample's time and count) once warm.
    let mut run: Option<(Instant, u64, Instant, u64)> = None;
    loop {
        let now = Instant::now();
        let deadline = match &mut run {
            None if now >= warm_end => {
                say("start");
                run = Some((now, count, now, count));
                now + interval
            }
            None => warm_end,
            Some((start, first, t, last)) => {
                if now >= *t + interval {
                    say(&format!(
                        "sample {:.0}",
                        (count - *last) as f64 / now.duration_since(*t).as_secs_f64()
                    ));
                    *t = now;
                    *last = count;
                    if now.duration_since(*start).as_secs_f64() >= a.secs {
                        say(&format!(
                            "end {} {:.6} failed={failed}",
                            count - *first,
                            now.duration_since(*start).as_secs_f64()
                        ));
                        std::process::exit(0);
                    }
                }
                *t + interval
            }
        };
        let wait_ms = deadline
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000) as libc::c_int;
        // SAFETY: see above; `events` outlives the call and its length is
        // what is passed.
        let n = unsafe {
            libc::epoll_wait(
                epfd,
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                wait_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            assert!(e.kind() == io::ErrorKind::Interrupted, "epoll_wait: {e}");
            continue;
        }
        for ev in &events[..n as usize] {
            let (i, flags) = (ev.u64 as usize, ev.events);
            if !live[i] {
                continue;
            }
            let c = &mut conns[i];
            let had_write = c.want_write;
            let mut r = Ok(());
            if flags & (libc::EPOLLOUT as u32) != 0 {
                r = flush(c);
            }
            if r.is_ok() && flags & ((libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP) as u32) != 0
            {
                r = match read(c, &mut buf) {
                    Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(got) => {
                        c.partial += got;
                        let done = c.partial / echo_len;
                        c.partial %= echo_len;
                        count += done as u64;
                        for _ in 0..done {
                            c.out.extend_from_slice(&frame);
                        }
                        if !c.out.is_empty() && !c.want_write {
                            flush(c)
                        } else {
                            Ok(())
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
            }
            match r {
                Ok(()) => {
                    c.want_write = c.pending();
                    if c.want_write != had_write {
                        ctl(libc::EPOLL_CTL_MOD, c, i);
                    }
                }
                Err(e) => {
                    ctl(libc::EPOLL_CTL_DEL, c, i);
                    live[i] = false;
                    fail(&e);
                }
            }
        }
    }
}

/// One read from the socket: how many bytes came; 0 at the end. Over
/// TLS, how many bytes of plaintext the records read held: rustls takes at
/// most 4 KiB from the socket per call, so it reads until a record is
/// whole (or the socket is empty: `WouldBlock`, nothing to count yet), and
/// takes all the plaintext out (only its length counts, so `buf` is
/// reused): none may stay in the session, where no event would report it.
fn read(c: &mut EchoConn, buf: &mut [u8]) -> io::Result<usize> {
    let Some(t) = &mut c.tls else {
        return (&c.stream).read(buf);
    };
    loop {
        if t.read_tls(&mut &c.stream)? == 0 {
            return Ok(0);
        }
        t.process_new_packets().map_err(io::Error::other)?;
        let mut got = 0;
        loop {
            match t.reader().read(buf) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if got > 0 {
            return Ok(got);
        }
    }
}

/// A compressed text message (RFC 7692: raw DEFLATE, sync flush, tail
/// removed) from a fresh context.
fn compressed_frame() -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let text = "{\"id\": 1, \"name\": \"an idle client says hello\"} ".repeat(20);
    let mut c = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(4096);
    c.compress_vec(text.as_bytes(), &mut out, FlushCompress::Sync)
        .unwrap();
    out.truncate(out.len() - 4);
    client_frame(1, true, &out)
}

async fn idle(a: &Args, ex: &Rc<smol::LocalExecutor<'static>>) {
    let held = Rc::new(std::cell::RefCell::new(Vec::with_capacity(a.conns)));
    let frame = Rc::new(compressed_frame());
    let mut opened = 0;
    // Batches, so the listen backlog never overflows.
    while opened < a.conns {
        let n = (a.conns - opened).min(100);
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (held, frame, addr, deflate) = (held.clone(), frame.clone(), a.addr, a.deflate);
            tasks.push(ex.spawn(async move {
                let ext = deflate.then_some("permessage-deflate; client_max_window_bits");
                let mut s = upgrade(addr, ext).await.expect("upgrade");
                if deflate {
                    s.write_all(&frame).await.unwrap();
                    let mut buf = [0u8; 4096];
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0 && buf[0] & 0x40 != 0, "a compressed echo");
                }
                held.borrow_mut().push(s);
            }));
        }
        for t in tasks {
            t.await;
        }
        opened += n;
    }
    say(&format!("ready {}", held.borrow().len()));
    // Hold until stdin closes.
    let mut sink = [0u8; 64];
    while io::stdin().read(&mut sink).map(|n| n > 0).unwrap_or(false) {}
}

async fn handshakes(a: &Args, ex: &Rc<smol::LocalExecutor<'static>>) {
    let count = Rc::new(Cell::new(0u64));
    for _ in 0..a.conns {
        let (count, addr, tls) = (count.clone(), a.addr, a.tls);
        ex.spawn(async move {
            loop {
                match upgrade_or_exchange(addr, tls).await {
                    Ok(()) => count.set(count.get() + 1),
                    Err(e) => {
                        eprintln!("handshake failed: {e}");
                        Timer::after(Duration::from_millis(10)).await;
                    }
                }
            }
        })
        .detach();
    }
    Timer::after(Duration::from_secs_f64(a.warmup)).await;
    let first = count.get();
    let start = Instant::now();
    Timer::after(Duration::from_secs_f64(a.secs)).await;
    say(&format!(
        "end {} {:.6}",
        count.get() - first,
        start.elapsed().as_secs_f64()
    ));
    std::process::exit(0);
}

/// One upgrade (or, against the raw-tcp server, the same-sized exchange),
/// then close; over TLS (`--tls`) after a full TLS handshake (a new
/// session each time: the generator keeps no session tickets), closed
/// without a close_notify, as the plain one closes without a Close.
async fn upgrade_or_exchange(addr: SocketAddr, tls: bool) -> io::Result<()> {
    if tls {
        drop(upgrade_tls(addr).await?);
    } else {
        drop(upgrade(addr, None).await?);
    }
    Ok(())
}

//! The load generator's echo loops against real servers of the bench, on
//! loopback, for a fraction of a second each: every connection upgrades
//! and none fails, over plain TCP and over TLS, in the epoll loop and on
//! async-io, and echoes go on in every interval (a connection that stalls
//! stops them: each case has one connection, or several in flight).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to listen, or the generator to finish.
const LIMIT: Duration = Duration::from_secs(60);

/// A bench server; it exits when its stdin closes (on drop).
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(which: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args([which, "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the server binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(LIMIT).unwrap_or_default();
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok());
        // Dropped if it did not announce a port: its stdin closes.
        let mut server = Server { child, port: 0 };
        match port {
            Some(port) => server.port = port,
            None => panic!("{which} printed {line:?}"),
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `loadgen echo` for 0.6 s with `args`; each interval's echoes.
fn samples(server: &Server, args: &[&str]) -> Vec<f64> {
    let addr = format!("127.0.0.1:{}", server.port);
    let mut all = vec!["echo", &addr, "--secs", "0.6", "--warmup", "0"];
    all.extend(["--interval", "0.2"]);
    all.extend(args);
    let text = run_loadgen(&all);
    let end = text
        .lines()
        .find_map(|l| l.strip_prefix("end "))
        .unwrap_or_else(|| panic!("{args:?}: no end line: {text}"));
    assert!(end.ends_with(" failed=0"), "{args:?}: {text}");
    let rates: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("sample "))
        .map(|r| r.parse().unwrap())
        .collect();
    assert!(rates.len() >= 2, "{args:?}: {text}");
    rates
}

/// Runs the load generator with `args` (for at most [`LIMIT`]); what it
/// printed, then its standard error (where it reports failures). Its
/// output is small: it fits the pipes while it runs.
fn run_loadgen(args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the loadgen binary");
    let end = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loadgen {args:?} still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut text).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
    assert!(status.success(), "{args:?}: {text}");
    text
}

/// Every interval had echoes.
fn echoes_throughout(server: &Server, args: &[&str]) {
    let rates = samples(server, args);
    assert!(rates.iter().all(|&r| r > 0.0), "{args:?}: {rates:?}");
}

#[test]
fn the_epoll_loop_echoes_over_plain_tcp_and_tls() {
    let plain = Server::start("ws-smol");
    echoes_throughout(&plain, &["--conns", "1", "--size", "2000"]);
    echoes_throughout(&plain, &["--conns", "1", "--size", "20000", "--depth", "8"]);
    for which in ["ws-smol-tls", "tokio-tungstenite-tls"] {
        let server = Server::start(which);
        echoes_throughout(&server, &["--conns", "1", "--size", "2000", "--tls"]);
        // Several 20 000-byte echoes in flight: records over rustls' read
        // size, over its 64 KiB default send limit, and reads that bring
        // more than one echo or part of one.
        let deep = ["--conns", "1", "--size", "20000", "--depth", "8", "--tls"];
        echoes_throughout(&server, &deep);
    }
}

#[test]
fn the_async_io_loop_echoes_over_tls() {
    let server = Server::start("ws-smol-tls");
    let args = [
        "--conns",
        "1",
        "--size",
        "2000",
        "--tls",
        "--reactor",
        "async-io",
    ];
    echoes_throughout(&server, &args);
}

#[test]
fn handshakes_complete_over_plain_tcp_and_tls() {
    for (which, tls) in [("ws-smol", false), ("ws-smol-tls", true)] {
        let server = Server::start(which);
        let addr = format!("127.0.0.1:{}", server.port);
        let mut args = vec!["handshake", &addr, "--conns", "2", "--secs", "0.3"];
        args.extend(["--warmup", "0"]);
        if tls {
            args.push("--tls");
        }
        let text = run_loadgen(&args);
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("end "))
            .and_then(|e| e.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{args:?}: {text}"));
        assert!(n > 0, "{which}: no handshakes: {text}");
        assert!(!text.contains("failed"), "{which}: {text}");
    }
}

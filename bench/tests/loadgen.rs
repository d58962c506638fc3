//! The load generator's echo loops against real servers of the bench, on
//! loopback, for a fraction of a second each: every connection upgrades,
//! echoes and none fails, over plain TCP and over TLS, in the epoll loop
//! and on async-io.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("{which} printed {line:?}"));
        Server { child, port }
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

/// Runs `loadgen echo` with `extra` for 0.3 s; the echoes it counted.
fn echoes(server: &Server, extra: &[&str]) -> u64 {
    let addr = format!("127.0.0.1:{}", server.port);
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["echo", &addr, "--conns", "3", "--size", "2000"])
        .args(["--secs", "0.3", "--warmup", "0", "--interval", "0.1"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("the loadgen binary");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let end = text
        .lines()
        .find_map(|l| l.strip_prefix("end "))
        .unwrap_or_else(|| panic!("no end line: {text}"));
    let fields: Vec<&str> = end.split_whitespace().collect();
    assert_eq!(fields.get(2), Some(&"failed=0"), "{text}");
    fields[0].parse().unwrap()
}

#[test]
fn the_epoll_loop_echoes_over_plain_tcp_and_tls() {
    for (which, tls) in [
        ("ws-smol", false),
        ("ws-smol-tls", true),
        ("tokio-tungstenite-tls", true),
    ] {
        let server = Server::start(which);
        let extra: &[&str] = if tls { &["--tls"] } else { &[] };
        let n = echoes(&server, extra);
        assert!(n > 0, "{which}: no echoes");
    }
}

#[test]
fn the_async_io_loop_echoes_over_tls() {
    let server = Server::start("ws-smol-tls");
    assert!(echoes(&server, &["--tls", "--reactor", "async-io"]) > 0);
}

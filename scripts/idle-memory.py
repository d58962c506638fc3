#!/usr/bin/env python3
"""Server memory per idle WebSocket connection.

Starts an echo server binary on 127.0.0.1:PORT, opens N upgraded
connections from this (separate) process, leaves them idle, and prints the
server's RSS growth per connection.

    cargo build --release -p ws-smol --example echo_server
    python3 scripts/idle-memory.py target/release/examples/echo_server 9051 5000
"""
import base64
import os
import socket
import subprocess
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode())
    head = s.recv(4096)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"not upgraded: {head[:40]!r}")
    return s


def main():
    binary, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    server = subprocess.Popen([binary, f"127.0.0.1:{port}"], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        warm = [connect(port) for _ in range(50)]  # runtime pieces created lazily
        time.sleep(0.5)
        before = rss_kib(server.pid)
        idle = [connect(port) for _ in range(n)]
        time.sleep(1.0)
        after = rss_kib(server.pid)
        print(f"{n} idle connections: server RSS {before} KiB -> {after} KiB, "
              f"{(after - before) * 1024 / n:.0f} bytes per connection")
        del warm, idle
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()

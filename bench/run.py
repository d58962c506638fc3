#!/usr/bin/env python3
"""Runs benchmark tables B, C, D (and the permessage-deflate rows) and
prints them as markdown.

  python3 bench/run.py [--rounds 3] [--secs 2] [--tables BCDZ] [--quick]

Also: --tables T (table B's echo over TLS: ws-smol's server against
tokio-tungstenite over tokio-rustls, 10 and 100 connections), --tables H
(table D's handshakes over TLS, the same two servers), --tables S
(system calls per echo under strace -c), --tables P (the
same counted with perf's syscall tracepoints, without slowing the server),
--tables I (the server's user-space instructions per echo under callgrind,
by crate: a measure of CPU per echo that does not move with the noise),
--tables K (the server's first-level cache misses per echo, callgrind's
cache simulation), --tables R (the server's atomic read-modify-write
instructions per echo, under callgrind; needs objdump).

--base BIN: servers named `base-IMPL` run IMPL from BIN, a server binary
built from another commit (copy target/release/server away first); with
it, table D also runs `base-ws-smol` and gives ws-smol's ratio to it, a
before-and-after measured in the same rounds.

Every server runs pinned to core 1 (taskset), the load generator to core 0.
Contenders are interleaved: each round runs every configuration against
every server, in an order rotated per round. Needs: a release build of
ws-bench (`cargo build --release -p ws-bench --bins`), Node's ws
(scripts/install-node-ws.sh), taskset.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
NODE_DIR = os.path.join(ROOT, "scripts", "node")
TICK = os.sysconf("SC_CLK_TCK")
SERVER_CORE, GEN_CORE = "1", "0"
# The load generator's echo loop: "epoll" (its own level-triggered loop, the
# default) or "async-io" (a task per connection, as before session 26).
REACTOR = "epoll"
# A server binary from another commit, run for servers named base-IMPL (--base).
BASE_BIN = None

SERVERS = ["ws-smol", "ws-smol-cb-lent", "ws-smol-stream", "ws-smol-lent", "ws-smol-reply", "ws-smol-global", "ws-blocking", "ws-blocking-cb-lent", "async-tungstenite", "tokio-tungstenite", "fastwebsockets", "ws-proto-tokio", "node-ws"]


def proc_cpu(pid):
    """User and system seconds so far of a process (all threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


class Server:
    def __init__(self, impl, deflate=False, wrap=()):
        self.impl = impl
        env = dict(os.environ, SMOL_THREADS="1")
        if impl == "node-ws":
            opts = json.dumps({"deflate": {"threshold": 0} if deflate else False})
            cmd = ["node", os.path.join(NODE_DIR, "echo_server.js"), "0", opts]
        else:
            if impl.startswith("base-"):
                if not BASE_BIN:
                    sys.exit(f"{impl}: a base- server needs --base BIN")
                cmd = [BASE_BIN, impl[len("base-"):], "0"]
            else:
                cmd = [os.path.join(BIN, "server"), impl, "0"]
            cmd += ["--deflate"] if deflate else []
        self.p = subprocess.Popen(["taskset", "-c", SERVER_CORE] + list(wrap) + cmd, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, env=env,
                                  stderr=subprocess.DEVNULL if wrap else None)
        line = self.p.stdout.readline().split()
        self.port = int(line[-1])
        self.addr = f"127.0.0.1:{self.port}"

    def cpu(self):
        """User and system seconds so far (all threads)."""
        return proc_cpu(self.p.pid)

    def mem(self):
        """(heap bytes or None, RSS bytes)."""
        if self.impl == "node-ws":
            with open(f"/proc/{self.p.pid}/status") as f:
                for l in f:
                    if l.startswith("VmRSS:"):
                        return None, int(l.split()[1]) * 1024
        self.p.stdin.write("mem\n")
        self.p.stdin.flush()
        _, heap, rss = self.p.stdout.readline().split()
        return int(heap), int(rss)

    def stop(self):
        try:
            self.p.stdin.close()
        except Exception:
            pass
        self.p.kill()
        self.p.wait()


def loadgen(args, tls=False):
    # A server over TLS ("-tls") gets the generator's TLS mode, on the same
    # loop as the others.
    if args[0] == "echo":
        args = args + (["--tls"] if tls else []) + ["--reactor", REACTOR]
    return subprocess.Popen(["taskset", "-c", GEN_CORE, os.path.join(BIN, "loadgen")] + args,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def echo_count(s, conns, size, secs, depth=1):
    """Echoes made by the load generator against `s` without warm-up."""
    g = loadgen(["echo", s.addr, "--conns", str(conns), "--size", str(size), "--secs", str(secs),
                 "--warmup", "0", "--depth", str(depth)], tls=s.impl.endswith("-tls"))
    echoes = 0
    for line in g.stdout:
        w = line.split()
        if w[0] == "end":
            echoes = int(w[1])
    g.wait()
    return echoes


def echo_run(impl, conns, size, secs, depth=1):
    s = Server(impl)
    try:
        g = loadgen(["echo", s.addr, "--conns", str(conns), "--size", str(size), "--secs", str(secs),
                     "--warmup", "0.5", "--depth", str(depth)], tls=impl.endswith("-tls"))
        cpu0 = None
        samples = []
        for line in g.stdout:
            w = line.split()
            if w[0] == "start":
                cpu0, gen0 = s.cpu(), proc_cpu(g.pid)
            elif w[0] == "sample":
                samples.append(float(w[1]))
            elif w[0] == "end":
                cpu1, gen1 = s.cpu(), proc_cpu(g.pid)
                echoes, dur = int(w[1]), float(w[2])
                break
        g.wait()
        user = (cpu1[0] - cpu0[0]) / max(echoes, 1) * 1e6
        sys_ = (cpu1[1] - cpu0[1]) / max(echoes, 1) * 1e6
        busy = (cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1]) / dur
        gen_busy = (gen1[0] - gen0[0] + gen1[1] - gen0[1]) / dur
        return {"rate": echoes / dur, "user_us": user, "sys_us": sys_, "busy": busy, "gen_busy": gen_busy,
                "samples": samples}
    finally:
        s.stop()


def fmt_rate(r):
    return f"{r / 1000:.1f}k" if r >= 1000 else f"{r:.0f}"


# Table T: the echo over TLS (rustls on both sides, the same server
# configuration; the generator does not check the certificate).
TLS_SERVERS = ["ws-smol-tls", "tokio-tungstenite-tls"]


def table_b(rounds, secs, quick, only=None, tls=False):
    conns_list = [1, 10, 100] if quick else [1, 10, 100, 1000]
    sizes = [20, 1024, 16384]
    servers = SERVERS
    base_impl = "tokio-tungstenite"
    if tls:
        conns_list = [10] if quick else [10, 100]
        servers = TLS_SERVERS
        base_impl = "tokio-tungstenite-tls"
    if only:
        # "CONNSxSIZE,...:server,server" reruns a few rows.
        rows, names = only.split(":")
        pairs = [tuple(int(x) for x in r.split("x")) for r in rows.split(",")]
        conns_list = sorted({c for c, _ in pairs})
        sizes = sorted({z for _, z in pairs})
        servers = names.split(",")
    rows = [(c, z) for c in conns_list for z in sizes if not only or (c, z) in pairs]
    results = {}
    for rnd in range(rounds):
        order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
        for conns, size in rows:
            for impl in order:
                if impl.removeprefix("base-").startswith("ws-blocking") and conns > 100:
                    continue
                r = echo_run(impl, conns, size, secs)
                results.setdefault((conns, size, impl), []).append(r)
                print(f"round {rnd + 1} {conns}x{size} {impl}: {r['rate']:.0f}/s busy {r['busy']:.2f}"
                      f" generator {r['gen_busy']:.2f}",
                      file=sys.stderr)
    if tls:
        print("### T. Loopback echo over TLS: echoes per second (median of rounds)\n")
        print("As table B, over TLS: rustls on both sides (ws-smol's server configuration for both servers, "
              "tokio-tungstenite's through tokio-rustls), a certificate made at the server's start. ")
    else:
        print("### B. Loopback echo: echoes per second (median of rounds)\n")
    print("Server pinned to one core, generator to the other; one masked text message in flight per connection. "
          f"Ratio: to {base_impl} in the same round, median over rounds. "
          "CPU: the server's user / system microseconds per echo. "
          "† marks a server that was not CPU-bound (below 90% of its core), where the rate measures latency, not cost; "
          f"‡ marks a load generator ({REACTOR} loop) at 90% of its core or more, the limit of that cell.\n")
    print("| conns x size | " + " | ".join(servers) + " |")
    print("|---|" + "---|" * len(servers))
    for conns, size in rows:
        cells = []
        base = results.get((conns, size, base_impl))
        for impl in servers:
            rs = results.get((conns, size, impl))
            if not rs:
                cells.append("-")
                continue
            rate = statistics.median(r["rate"] for r in rs)
            ratio = statistics.median(r["rate"] / b["rate"] for r, b in zip(rs, base)) if base else 0
            user = statistics.median(r["user_us"] for r in rs)
            sys_ = statistics.median(r["sys_us"] for r in rs)
            busy = statistics.median(r["busy"] for r in rs)
            gen_busy = statistics.median(r["gen_busy"] for r in rs)
            mark = ("" if busy >= 0.9 else " †") + (" ‡" if gen_busy >= 0.9 else "")
            cells.append(f"{fmt_rate(rate)} ({ratio:.2f}x) {user:.1f}/{sys_:.1f} µs{mark}")
        print(f"| {conns} x {size} B | " + " | ".join(cells) + " |")
    print()
    # Ours against fastwebsockets, per round.
    ours = [i for i in servers if i.removeprefix("base-").startswith("ws-")]
    if "fastwebsockets" in servers and ours:
        print("Ratio to fastwebsockets in the same round (median over rounds, then the range):\n")
        print("| conns x size | " + " | ".join(ours) + " |")
        print("|---|" + "---|" * len(ours))
        for conns, size in rows:
            fws = results.get((conns, size, "fastwebsockets"))
            cells = []
            for impl in ours:
                rs = results.get((conns, size, impl))
                if not rs or not fws:
                    cells.append("-")
                    continue
                ratios = [r["rate"] / f["rate"] for r, f in zip(rs, fws)]
                cells.append(f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
            print(f"| {conns} x {size} B | " + " | ".join(cells) + " |")
        print()


def idle_memory(impl, conns, deflate=False):
    s = Server(impl, deflate=deflate)
    try:
        time.sleep(0.3)
        heap0, rss0 = s.mem()
        g = loadgen(["idle", s.addr, "--conns", str(conns)] + (["--deflate"] if deflate else []))
        line = g.stdout.readline()
        assert line.startswith("ready"), line
        time.sleep(1.0)
        heap1, rss1 = s.mem()
        g.stdin.close()
        g.kill()
        g.wait()
        return (None if heap0 is None else (heap1 - heap0) / conns), (rss1 - rss0) / conns
    finally:
        s.stop()


def table_c(conns):
    print(f"### C. Memory per idle connection ({conns} upgraded idle connections)\n")
    print("Server RSS growth and malloc'd bytes in use (glibc mallinfo2; not available for Node) per connection.\n")
    print("| server | heap bytes / conn | RSS bytes / conn |")
    print("|---|---|---|")
    for impl in ["ws-smol", "ws-smol-stream", "tokio-tungstenite", "fastwebsockets", "node-ws"]:
        heap, rss = idle_memory(impl, conns)
        print(f"| {impl} | {'-' if heap is None else f'{heap:.0f}'} | {rss:.0f} |")
    print()


def handshake_rate(impl, clients, secs):
    s = Server(impl)
    try:
        tls = ["--tls"] if impl.endswith("-tls") else []
        g = loadgen(["handshake", s.addr, "--conns", str(clients), "--secs", str(secs), "--warmup", "0.3"] + tls)
        out = g.stdout.read().split()
        g.wait()
        return int(out[1]) / float(out[2])
    finally:
        s.stop()


def table_h(rounds, secs):
    """Table D over TLS: a full TLS handshake, then the upgrade, each time."""
    results = {}
    impls = TLS_SERVERS
    for rnd in range(rounds):
        order = impls[rnd % len(impls):] + impls[:rnd % len(impls)]
        for clients in [1, 4]:
            for impl in order:
                r = handshake_rate(impl, clients, secs)
                results.setdefault((clients, impl), []).append(r)
                print(f"round {rnd + 1} handshakes {clients} {impl}: {r:.0f}/s", file=sys.stderr)
    print("### H. Handshakes per second over TLS\n")
    print("Each client repeats: connect, a full TLS handshake (no resumption), upgrade request, 101 response, "
          "close. Both servers use ws-smol's rustls configuration and a certificate made at start. "
          "Ratio per round, median (then the range).\n")
    print("| clients | ws-smol-tls | tokio-tungstenite-tls | ws-smol-tls / tokio-tungstenite-tls |")
    print("|---|---|---|---|")
    for clients in [1, 4]:
        ours, peer = results[(clients, "ws-smol-tls")], results[(clients, "tokio-tungstenite-tls")]
        ratios = [a / b for a, b in zip(ours, peer)]
        print(f"| {clients} | {statistics.median(ours):.0f} | {statistics.median(peer):.0f} | "
              f"**{statistics.median(ratios):.2f}x** ({min(ratios):.2f}-{max(ratios):.2f}) |")
    print()


def table_d(rounds, secs):
    # raw-tcp-smol: raw-tcp's exchange on smol's reactor and executor, as
    # ws-smol runs: what the runtime alone costs against tokio's raw-tcp.
    impls = ["raw-tcp", "raw-tcp-smol", "ws-smol", "tokio-tungstenite"] + (["base-ws-smol"] if BASE_BIN else [])
    res = {}
    for rnd in range(rounds):
        order = impls[rnd % len(impls):] + impls[:rnd % len(impls)]
        for clients in [1, 4]:
            for impl in order:
                res.setdefault((impl, clients), []).append(handshake_rate(impl, clients, secs))
    print("### D. Handshakes per second\n")
    print("Each client repeats: connect, upgrade request, 101 response, close. raw-tcp answers the same request "
          "with a canned response of the same size (on tokio); raw-tcp-smol does the same on smol's reactor and a "
          "`LocalExecutor`, as ws-smol runs. Ratios per round, median.\n")
    print("| clients | raw-tcp | raw-tcp-smol | ws-smol | tokio-tungstenite | ws-smol / raw-tcp | "
          "ws-smol / tokio-tungstenite | raw-tcp-smol / raw-tcp | ws-smol / raw-tcp-smol |")
    print("|---|---|---|---|---|---|---|---|---|")

    def ratio(a, b, clients):
        return statistics.median(x / y for x, y in zip(res[(a, clients)], res[(b, clients)]))

    for clients in [1, 4]:
        med = {i: statistics.median(res[(i, clients)]) for i in impls}
        print(f"| {clients} | {med['raw-tcp']:.0f} | {med['raw-tcp-smol']:.0f} | {med['ws-smol']:.0f} | "
              f"{med['tokio-tungstenite']:.0f} | **{ratio('ws-smol', 'raw-tcp', clients):.2f}x** | "
              f"**{ratio('ws-smol', 'tokio-tungstenite', clients):.2f}x** | "
              f"{ratio('raw-tcp-smol', 'raw-tcp', clients):.2f}x | {ratio('ws-smol', 'raw-tcp-smol', clients):.2f}x |")
    print()
    if BASE_BIN:
        print(f"Before and after: base-ws-smol is `{BASE_BIN}`'s ws-smol, in the same rounds.\n")
        print("| clients | ws-smol | base-ws-smol | ws-smol / base-ws-smol (median, range) |")
        print("|---|---|---|---|")
        for clients in [1, 4]:
            rs = [x / y for x, y in zip(res[("ws-smol", clients)], res[("base-ws-smol", clients)])]
            print(f"| {clients} | {statistics.median(res[('ws-smol', clients)]):.0f} | "
                  f"{statistics.median(res[('base-ws-smol', clients)]):.0f} | "
                  f"{statistics.median(rs):.2f}x ({min(rs):.2f}-{max(rs):.2f}) |")
        print()


IO_CALLS = ["recvfrom", "recvmsg", "readv", "sendto", "sendmsg", "writev"]
# read/write: async-io's eventfd notifier (every server reads and writes its
# sockets with recvfrom/sendto); timerfd_settime: polling's wait timeout.
WAIT_CALLS = ["read", "write", "epoll_ctl", "epoll_wait", "epoll_pwait", "timerfd_settime", "futex"]
# A blocking server's per-read timeout (setsockopt) or switch to
# non-blocking and back (ioctl), if it makes them.
OTHER_CALLS = ["setsockopt", "ioctl"]


def strace_run(impl, conns, depth, secs):
    """System calls per echo of a server, by `strace -c -f` attached while the generator runs."""
    s = Server(impl)
    out = f"/tmp/bench-strace-{os.getpid()}.txt"
    try:
        st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(s.p.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        echoes = echo_count(s, conns, 20, secs, depth)
        st.send_signal(2)
        st.wait()
        calls = {}
        with open(out) as f:
            for line in f:
                w = line.split()
                if len(w) >= 5 and w[-1].isidentifier() and w[3].isdigit():
                    calls[w[-1]] = int(w[3])
        os.unlink(out)
        return {k: v / max(echoes, 1) for k, v in calls.items()}
    finally:
        s.stop()


def table_s(secs):
    print("### S. System calls per echo (20 B text; `strace -c -f` on the server)\n")
    print("strace slows every server, so rates are not comparable here; the counts per echo are. "
          "Socket I/O is recvfrom/sendto for every server; `read` and `write` are async-io's eventfd notifier, "
          "and `timerfd_settime` its poller's timeout, not socket I/O.\n")
    print("| server | load | socket I/O calls | all calls | " + " | ".join(IO_CALLS + WAIT_CALLS) + " |")
    print("|---|---|---|---|" + "---|" * len(IO_CALLS + WAIT_CALLS))
    for conns, depth in [(1, 1), (100, 1), (10, 8)]:
        for impl in ["ws-smol", "ws-smol-global", "tokio-tungstenite", "fastwebsockets"]:
            c = strace_run(impl, conns, depth, secs)
            io_total = sum(c.get(k, 0) for k in IO_CALLS)
            everything = c.get("total", sum(c.values()))
            cells = [f"{c.get(k, 0):.2f}" for k in IO_CALLS + WAIT_CALLS]
            print(f"| {impl} | {conns} conn x {depth} in flight | **{io_total:.2f}** | {everything:.2f} | "
                  + " | ".join(cells) + " |")
    print()


def perf_syscalls_run(impl, conns, depth, secs):
    """System calls per echo of a server, counted by perf's syscall tracepoints while the generator
    runs at full speed (strace stops the server at every call, which changes how many events each
    wait returns)."""
    s = Server(impl)
    out = f"/tmp/bench-perf-{os.getpid()}.txt"
    names = IO_CALLS + WAIT_CALLS + OTHER_CALLS
    try:
        g = loadgen(["echo", s.addr, "--conns", str(conns), "--size", "20", "--secs", str(secs + 1.0),
                     "--warmup", "0.5", "--depth", str(depth)], tls=impl.endswith("-tls"))
        for line in g.stdout:
            if line.split()[0] == "start":
                break
        events = ",".join(f"syscalls:sys_enter_{n}" for n in names)
        subprocess.run(["perf", "stat", "-x", ",", "-o", out, "-e", events, "-p", str(s.p.pid), "--",
                        "sleep", str(secs)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        g.stdout.read()
        g.wait()
        calls = {}
        with open(out) as f:
            for line in f:
                w = line.strip().split(",")
                if len(w) > 2 and w[2].startswith("syscalls:sys_enter_") and w[0].isdigit():
                    calls[w[2][len("syscalls:sys_enter_"):]] = int(w[0])
        os.unlink(out)
        return calls
    finally:
        s.stop()


def table_p(secs):
    print("### P. System calls per echo, counted without slowing the server "
          "(20 B text; perf's syscall tracepoints)\n")
    print("One message in flight per connection; counts divided by the replies the server wrote in the same "
          "window (one write per echo). `read` is async-io's eventfd notifier and `timerfd_settime` its "
          "poller's timeout; async-io registers a source one-shot, so each of its waits re-arms it with an "
          "`epoll_ctl` (ws-smol's server registers plain sockets once, edge triggered, in an epoll instance per "
          "group, collected with an `epoll_pwait` without a timeout, and re-arms only that instance in "
          "async-io).\n")
    names = IO_CALLS + WAIT_CALLS + OTHER_CALLS
    print("| server | load | all calls | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for conns, depth in [(1, 1), (100, 1), (10, 1)]:
        for impl in ["ws-smol", "ws-smol-cb-lent", "ws-smol-tls", "ws-smol-stream", "ws-smol-lent", "ws-smol-reply",
                     "ws-blocking", "ws-blocking-cb-lent", "tokio-tungstenite", "fastwebsockets"]:
            calls = perf_syscalls_run(impl, conns, depth, secs)
            echoes = max(calls.get("sendto", 0) + calls.get("sendmsg", 0) + calls.get("writev", 0), 1)
            per = {k: calls.get(k, 0) / echoes for k in names}
            print(f"| {impl} | {conns} conn x {depth} in flight | **{sum(per.values()):.2f}** | "
                  + " | ".join(f"{per[k]:.2f}" for k in names) + " |")
    print()


def table_z(conns):
    """permessage-deflate: compression and idle memory against Node's ws."""
    print("### Z. permessage-deflate (RFC 7692) against Node's ws (perMessageDeflate on)\n")
    out = subprocess.run([os.path.join(BIN, "deflate")], capture_output=True, text=True, check=True).stdout
    node = subprocess.run(["node", os.path.join(NODE_DIR, "deflate_bench.js")], capture_output=True, text=True,
                          check=True).stdout
    ours = {l.split()[0]: l.split()[1:] for l in out.splitlines() if l.strip()}
    theirs = {l.split()[0]: l.split()[1:] for l in node.splitlines() if l.strip()}
    print("Compress then decompress each message of a text-heavy corpus (JSON records, prose), "
          "one context per direction with context takeover, level 6 / 15-bit windows on both; single thread.\n")
    print("| corpus | ws-proto ratio | Node ws ratio | ws-proto MB/s | Node ws MB/s | ws-proto / Node ws |")
    print("|---|---|---|---|---|---|")
    for name in ours:
        o, t = ours[name], theirs.get(name)
        if not t:
            continue
        print(f"| {name} | {float(o[0]):.3f} | {float(t[0]):.3f} | {float(o[1]):.0f} | {float(t[1]):.0f} | "
              f"**{float(o[1]) / float(t[1]):.2f}x** |")
    print()
    print(f"Memory per idle connection after one compressed message each way ({conns} connections):\n")
    print("| server | heap bytes / conn | RSS bytes / conn |")
    print("|---|---|---|")
    for impl in ["ws-smol", "node-ws"]:
        heap, rss = idle_memory(impl, conns, deflate=True)
        print(f"| {impl} (deflate) | {'-' if heap is None else f'{heap:.0f}'} | {rss:.0f} |")
    print()


def crate_of(function, obj, path=""):
    """The group a callgrind_annotate function line belongs to: by the
    function's crate, except a std shim (a closure called through `&mut F`,
    say) whose code lies in one of our crates, which goes to that crate."""
    if any(k in function for k in ("memmove", "memcpy", "memset")):
        return "libc memcpy"
    if function in ("malloc", "free", "_int_free", "_int_malloc", "realloc", "_int_realloc",
                    "malloc_consolidate", "calloc", "unlink_chunk"):
        return "malloc"
    if "libc.so" in obj or "ld-linux" in obj:
        return "libc other"
    name = function.lstrip("<(&*")
    if name.startswith("F as "):
        name = name[5:]
    krate = name.split("::")[0]
    if krate in ("core", "std", "alloc"):
        for ours in ("ws-proto", "ws-smol", "ws-blocking"):
            if path.startswith(ours + "/") or f"/{ours}/src/" in path:
                return ours.replace("-", "_")
    return krate


RUNTIME = {"async_io", "async_executor", "async_task", "concurrent_queue", "polling", "parking",
           "futures_lite", "tokio", "mio", "futures_util", "futures_core", "async_lock", "event_listener"}
OURS = {"ws_proto", "ws_smol", "ws_blocking"}
PEERS = {"tungstenite", "tokio_tungstenite", "fastwebsockets", "async_tungstenite"}


def echoes_under_callgrind(impl, conns, size, secs, out, options=()):
    """The echoes a server made under callgrind (with `options`), which
    writes its counts to `out`."""
    if os.path.exists(out):
        os.remove(out)
    s = Server(impl, wrap=("valgrind", "--tool=callgrind", *options, f"--callgrind-out-file={out}"))
    try:
        echoes = echo_count(s, conns, size, secs)
        s.p.stdin.close()
        s.p.wait(timeout=120)
    finally:
        if s.p.poll() is None:
            s.p.kill()
    return echoes


def callgrind_echo(impl, conns, size, secs):
    """(echoes, {group: instructions}) for a server run under callgrind."""
    out = f"/tmp/ws-bench-callgrind.{impl}.{conns}x{size}.out"
    echoes = echoes_under_callgrind(impl, conns, size, secs, out)
    ann = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=no", "--threshold=100", out], capture_output=True,
                         text=True).stdout
    groups = {}
    for line in ann.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        n = int(m.group(1).replace(",", ""))
        rest = m.group(2)
        obj = rest[rest.rfind("[") + 1:-1] if rest.endswith("]") else ""
        loc = rest[:rest.rfind(" [")] if obj else rest
        path, function = loc.split(":", 1) if ":" in loc else ("", loc)
        k = crate_of(function, obj, path)
        groups[k] = groups.get(k, 0) + n
    return echoes, groups


def table_i(secs):
    print("#### I. User-space instructions per echo (callgrind on the server)")
    print()
    print(f"One masked text message in flight per connection, {secs:g} s under callgrind "
          "(startup and handshakes included: under 1% of the count). Groups: the library itself (ours: "
          "ws_proto + ws_smol; peers: their crates), the runtime (async-io, async-executor, "
          "async-task, concurrent-queue, polling / tokio, mio), libc's memcpy, malloc and "
          "free, the rest of libc (system call wrappers), everything else (std, bytes, "
          "simdutf8, ...).")
    print()
    print("| conns x size | server | echoes | instructions / echo | library | runtime | memcpy | malloc | libc other | rest |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for conns, size in [(100, 20), (10, 1024)]:
        # tokio-tungstenite made about 400 echoes in 4 s under callgrind
        # (against 50 000-140 000 for these two): not comparable here.
        for impl in ["ws-smol", "ws-smol-cb-lent", "ws-smol-stream", "ws-smol-lent", "ws-smol-reply", "fastwebsockets"]:
            echoes, g = callgrind_echo(impl, conns, size, secs)
            e = max(echoes, 1)
            total = sum(g.values())
            lib = sum(v for k, v in g.items() if k in OURS or k in PEERS)
            rt = sum(v for k, v in g.items() if k in RUNTIME)
            mc, ma, lo = g.get("libc memcpy", 0), g.get("malloc", 0), g.get("libc other", 0)
            rest = total - lib - rt - mc - ma - lo
            print(f"| {conns} x {size} B | {impl} | {echoes} | {total / e:.0f} | {lib / e:.0f} | "
                  f"{rt / e:.0f} | {mc / e:.0f} | {ma / e:.0f} | {lo / e:.0f} | {rest / e:.0f} |",
                  flush=True)
    print()


def table_k(secs):
    print("#### K. Cache misses per echo (callgrind's cache simulation on the server)")
    print()
    print(f"One masked text message in flight per connection, {secs:g} s under `valgrind --tool=callgrind "
          "--cache-sim=yes` (the host's cache sizes). Slower under the simulation, the servers batch "
          "fewer echoes per wake-up than in table I.")
    print()
    print("| conns x size | server | echoes | instructions | L1 instruction misses | L1 data read misses | "
          "L1 data write misses | last-level misses |")
    print("|---|---|---|---|---|---|---|---|")
    for conns, size in [(100, 20), (10, 1024)]:
        for impl in ["ws-smol", "ws-smol-cb-lent", "ws-smol-reply", "fastwebsockets"]:
            out = f"/tmp/ws-bench-cachesim.{impl}.{conns}x{size}.out"
            echoes = echoes_under_callgrind(impl, conns, size, secs, out, ("--cache-sim=yes",))
            ann = subprocess.run(["callgrind_annotate", "--auto=no", out], capture_output=True,
                                 text=True).stdout
            events, totals = [], []
            for line in ann.splitlines():
                if line.startswith("Events shown:"):
                    events = line.split(":", 1)[1].split()
                if "PROGRAM TOTALS" in line:
                    totals = [int(x.replace(",", "")) for x in
                              re.findall(r"([\d,]+) \(", line)]
            t = dict(zip(events, totals))
            e = max(echoes, 1)
            last = t.get("ILmr", 0) + t.get("DLmr", 0) + t.get("DLmw", 0)
            print(f"| {conns} x {size} B | {impl} | {echoes} | {t.get('Ir', 0) / e:.0f} | "
                  f"{t.get('I1mr', 0) / e:.1f} | {t.get('D1mr', 0) / e:.1f} | {t.get('D1mw', 0) / e:.1f} | "
                  f"{last / e:.1f} |", flush=True)
    print()


def atomic_sites(binary):
    """{address: function} of the atomic read-modify-write instructions in
    `binary` (lock-prefixed, and xchg with memory, which locks implicitly)."""
    dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", binary], capture_output=True,
                         text=True).stdout
    sites, func = {}, ""
    for line in dis.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if m:
            func = m.group(1)
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
        if m and (m.group(2).startswith("lock ") or (m.group(2).startswith("xchg") and "(" in m.group(2))):
            sites[int(m.group(1), 16)] = func
    return sites


def executed_at(out, sites, binary):
    """{function: executions} of the instructions at `sites` in `binary`,
    from a callgrind output written with --dump-instr=yes. Addresses are
    per object (the binary, libc, ...), so only the binary's lines count.
    A cost line starts with its positions (the instruction address,
    absolute or relative to the line before, then the source line), then
    the counts; the line after a `calls=` line is the call's inclusive
    cost, not an execution."""
    counts, npos, addr, after_call = {}, 1, 0, False
    objects, in_binary = {}, False
    with open(out) as f:
        for line in f:
            if line.startswith("positions:"):
                npos = len(line.split()[1:])
                continue
            if line.startswith(("ob=", "cob=")):
                # "ob=(n) name" (or cob=, a call's object) names object n;
                # "ob=(n)" refers to it.
                key, _, rest = line.strip().partition("=")
                m = re.match(r"\((\d+)\)\s*(.*)$", rest)
                if m and m.group(2):
                    objects[m.group(1)] = m.group(2)
                if key == "ob":
                    name = objects.get(m.group(1), "") if m else rest
                    in_binary = bool(name) and os.path.realpath(name) == os.path.realpath(binary)
                continue
            if line.startswith("calls="):
                after_call = True
                continue
            toks = line.split()
            if not toks or not re.match(r"^(0x[0-9a-f]+|[+-]\d+|\*)$", toks[0]):
                continue
            p = toks[0]
            if p.startswith("0x"):
                addr = int(p, 16)
            elif p[0] in "+-":
                addr += int(p)
            if after_call:
                after_call = False
                continue
            if in_binary and len(toks) > npos and addr in sites:
                counts[sites[addr]] = counts.get(sites[addr], 0) + int(toks[npos])
    return counts


def table_r(secs):
    print("#### R. Atomic read-modify-write instructions per echo (callgrind on the server)")
    print()
    print(f"One masked text message in flight per connection, {secs:g} s under `valgrind --tool=callgrind "
          "--dump-instr=yes`: the executions of the server binary's lock-prefixed instructions (and `xchg` "
          "with memory). One costs 8-10 ns back to back on this host, uncontended (`atomic_cost` in the bench "
          "crate), which an instruction count does not show; contended, a cache-line transfer between cores. libc's are not counted (glibc's "
          "malloc takes none on its per-thread cache path). The sites are named by the function they lie in "
          "after inlining (a lock taken in an inlined closure carries the caller's name), and the linker "
          "folds identical functions, so a few carry another function's name. Under callgrind, async-io's "
          "helper thread runs too (its `main_loop` and condition variable), which at full speed stays "
          "asleep.")
    print()
    print("| conns x size | server | echoes | atomics / echo | where (per echo) |")
    print("|---|---|---|---|---|")
    binary = os.path.join(BIN, "server")
    sites = atomic_sites(binary)
    for conns, size in [(100, 20), (10, 1024)]:
        for impl in ["ws-smol", "ws-smol-cb-lent", "ws-smol-reply", "fastwebsockets"]:
            out = f"/tmp/ws-bench-atomics.{impl}.{conns}x{size}.out"
            echoes = echoes_under_callgrind(impl, conns, size, secs, out, ("--dump-instr=yes",))
            counts = executed_at(out, sites, binary)
            e = max(echoes, 1)
            top = [(fn, n / e) for fn, n in sorted(counts.items(), key=lambda x: -x[1]) if n / e >= 0.5]
            where = "; ".join(f"`{re.sub(r'<[^<>]*>', '', fn)[:70]}` {x:.1f}" for fn, x in top)
            print(f"| {conns} x {size} B | {impl} | {echoes} | {sum(counts.values()) / e:.1f} | {where} |",
                  flush=True)
    print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=float, default=2.0)
    ap.add_argument("--tables", default="BCDZ")
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="rows and servers of table B (or T), as 100x20,10x1024:ws-smol,tokio-tungstenite")
    ap.add_argument("--reactor", choices=["epoll", "async-io"], default="epoll",
                    help="the load generator's echo loop")
    ap.add_argument("--base", help="a server binary from another commit, run as base-IMPL")
    a = ap.parse_args()
    global REACTOR, BASE_BIN
    REACTOR = a.reactor
    BASE_BIN = os.path.abspath(a.base) if a.base else None
    if "B" in a.tables:
        table_b(a.rounds, a.secs, a.quick, a.only)
    if "T" in a.tables:
        table_b(a.rounds, a.secs, a.quick, a.only, tls=True)
    if "C" in a.tables:
        table_c(a.idle)
    if "D" in a.tables:
        table_d(a.rounds, a.secs)
    if "H" in a.tables:
        table_h(a.rounds, a.secs)
    if "Z" in a.tables:
        table_z(min(a.idle, 2000))
    if "P" in a.tables:
        table_p(a.secs)
    if "S" in a.tables:
        table_s(a.secs)
    if "I" in a.tables:
        table_i(a.secs)
    if "K" in a.tables:
        table_k(a.secs)
    if "R" in a.tables:
        table_r(a.secs)


if __name__ == "__main__":
    main()

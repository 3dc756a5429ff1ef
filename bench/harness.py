#!/usr/bin/env python3
"""The benchmark driver behind bench/run.sh (issue 6).

Runs each workload against hub and the anchors (mosquitto, redis, nats) through
their own command-line clients, on loopback, one fresh broker per run, and
writes the raw numbers to bench/results/<stamp>.json; bench/report.py turns
them into BENCHMARKS.md.

How a run is measured, the same way for every system:
- subscribers are real CLI processes (`hub-sub`, `mosquitto_sub`,
  `redis-cli SUBSCRIBE`) whose stdout is a pipe this program drains; a
  message counts as received when its line has come out of that pipe;
- the clock starts when the publisher process is spawned and stops when the
  last subscriber has printed its last expected line;
- every message carries `"seq"`; after the run the printed lines are checked
  for lost, duplicated and reordered messages;
- every wait is bounded; every process started here is killed at the end, even
  when this program dies (PR_SET_PDEATHSIG) or is interrupted (finally/atexit).
"""

import argparse
import atexit
import ctypes
import fcntl
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import resource

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HUB_BIN = os.path.join(TARGET, "release")

SEQ_RE = re.compile(rb'"seq":(\d+)')
T_RE = re.compile(rb'"t":(\d+)')
PROBE = b'{"probe":1}'

_libc = ctypes.CDLL("libc.so.6", use_errno=True)
PROCS = []


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no broker outlives the harness


def spawn(cmd, **kw):
    """Starts a process that is killed with the harness. Call from the main thread."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    p = subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kw)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=5.0):
    """Stops p (sig, then SIGKILL after timeout) and reaps it; returns seconds taken."""
    if p is None or p.returncode is not None:
        return 0.0
    t0 = time.monotonic()
    try:
        p.send_signal(sig)
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)
    except ProcessLookupError:
        pass
    return time.monotonic() - t0


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.terminate()
            except ProcessLookupError:
                pass
    end = time.monotonic() + 3
    for p in PROCS:
        try:
            p.wait(max(0.05, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def reap(p, timeout):
    """Waits for p (killing it after timeout); returns (exit code, its CPU seconds)."""
    end = time.monotonic() + timeout
    killed = False
    while True:
        try:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        except ChildProcessError:
            return p.returncode, 0.0
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return p.returncode, ru.ru_utime + ru.ru_stime
        if not killed and time.monotonic() > end:
            p.kill()
            killed = True
        time.sleep(0.002)


def proc_cpu(pid):
    """utime + stime of a live process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def proc_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, deadline, proc=None):
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def http_get(port, path, timeout=2.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def http_post(port, path, body, timeout=60.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers={"Content-Type": "application/x-ndjson"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))
    return s[k]


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Brokers. Each start() launches a fresh broker on a free loopback port.

class Broker:
    name = "?"
    label = "?"
    fmt = "json"  # input format of the lines publisher

    def __init__(self, tmp):
        self.tmp = tmp
        self.proc = None
        self.port = None

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        stop(self.proc)


class Mosquitto(Broker):
    name = "mosquitto"

    def __init__(self, tmp, nodelay=False):
        super().__init__(tmp)
        self.nodelay = nodelay
        self.label = "mosquitto (nodelay)" if nodelay else "mosquitto"

    def start(self):
        self.port = free_port()
        conf = os.path.join(self.tmp, f"mosquitto-{self.port}.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "log_dest none\n")
            if self.nodelay:
                f.write("set_tcp_nodelay true\n")
        self.proc = spawn(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        wait_port(self.port, time.monotonic() + 10, self.proc)

    def sub_cmd(self, topic, count, idx):
        return ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-t", topic]

    def pub_lines_cmd(self, topic):
        return ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-t", topic, "-l"]

    def oneshot_cmds(self, topic):
        base = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-t", topic]
        return [("mosquitto_pub (QoS 0)", base + ["-m", "hello"]),
                ("mosquitto_pub -q 1 (PUBACK)", base + ["-q", "1", "-m", "hello"])]

    def wait_subscribed(self, sinks, topic, deadline):
        # mosquitto_sub says nothing when subscribed: publish probes until every
        # subscriber has printed one. Probes carry no "seq", so they are not counted.
        while time.monotonic() < deadline:
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-t",
                            topic, "-m", PROBE.decode()], check=False)
            pump(sinks, None, time.monotonic() + 0.1)
            if all(s.probes > 0 for s in sinks):
                return
        raise RuntimeError("mosquitto_sub never received a probe")

    def idle_open(self, sock, i):
        cid = b"idle-%d" % i
        var = b"\x00\x04MQTT\x04\x02\x02\x58"  # MQTT 3.1.1, clean session, keepalive 600 s
        payload = len(cid).to_bytes(2, "big") + cid
        sock.sendall(b"\x10" + _mqtt_len(len(var) + len(payload)) + var + payload)
        _read_exact(sock, 4)  # CONNACK
        topic = b"bench/idle"
        body = b"\x00\x01" + len(topic).to_bytes(2, "big") + topic + b"\x00"
        sock.sendall(b"\x82" + _mqtt_len(len(body)) + body)
        _read_exact(sock, 5)  # SUBACK


def _mqtt_len(n):
    out = b""
    while True:
        d, n = n % 128, n // 128
        out += bytes([d | (0x80 if n else 0)])
        if not n:
            return out


def _read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed during handshake")
        buf += chunk
    return buf


def _read_until(sock, marker):
    buf = b""
    while marker not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"connection closed before {marker!r}")
        buf += chunk
    return buf


class Redis(Broker):
    name = label = "redis"
    fmt = "resp"

    def start(self):
        self.port = free_port()
        self.proc = spawn(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--daemonize", "no",
                           "--maxclients", "20000", "--dir", self.tmp, "--logfile", ""],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, time.monotonic() + 10, self.proc)

    def sub_cmd(self, topic, count, idx):
        return ["redis-cli", "-p", str(self.port), "SUBSCRIBE", topic]

    def pub_lines_cmd(self, topic):
        return ["redis-cli", "-p", str(self.port), "--pipe"]

    def oneshot_cmds(self, topic):
        return [("redis-cli PUBLISH", ["redis-cli", "-p", str(self.port), "PUBLISH", topic,
                                       "hello"])]

    def numsub(self, topic):
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            s.sendall(b"PUBSUB NUMSUB %s\r\n" % topic.encode())
            buf = b""
            while True:
                m = re.search(rb"\r\n:(\d+)\r\n", buf)
                if m:
                    return int(m.group(1))
                chunk = s.recv(4096)
                if not chunk:
                    return 0
                buf += chunk

    def wait_subscribed(self, sinks, topic, deadline):
        while time.monotonic() < deadline:
            pump(sinks, None, time.monotonic() + 0.02)
            if self.numsub(topic) >= len(sinks):
                return
        raise RuntimeError("redis-cli SUBSCRIBE never subscribed")

    def idle_open(self, sock, i):
        sock.sendall(b"SUBSCRIBE bench:idle\r\n")
        _read_until(sock, b":1\r\n")


class Nats(Broker):
    name = label = "nats"

    def start(self):
        self.port = free_port()
        self.proc = spawn(["nats-server", "-a", "127.0.0.1", "-p", str(self.port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, time.monotonic() + 10, self.proc)

    def idle_open(self, sock, i):
        _read_until(sock, b"\r\n")  # INFO
        sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB bench.idle 1\r\nPING\r\n')
        _read_until(sock, b"PONG\r\n")


class Hub(Broker):
    name = label = "hub"

    def __init__(self, tmp, extra=(), data_dir=None):
        super().__init__(tmp)
        self.extra = list(extra)
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="hub-data-", dir=tmp)
        self.ready_files = {}

    def start(self, port=0):
        err = os.path.join(self.tmp, f"hub-serve-{time.monotonic_ns()}.stderr")
        self.stderr_path = err
        t0 = time.monotonic()
        where = [] if ("--memory" in self.extra or "--nats" in self.extra) else ["--data-dir", self.data_dir]
        self.proc = spawn([os.path.join(HUB_BIN, "hub-serve"), "--listen", f"127.0.0.1:{port}"]
                          + where + self.extra,
                          stdout=subprocess.DEVNULL, stderr=open(err, "wb"))
        deadline = t0 + 30
        self.port = None
        while self.port is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub-serve exited {self.proc.returncode}: "
                                   f"{open(err, errors='replace').read()[-2000:]}")
            with open(err, "rb") as f:
                m = re.search(rb"listening on ws://127\.0\.0\.1:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
            elif time.monotonic() > deadline:
                raise RuntimeError("hub-serve printed no 'listening on' line")
            else:
                time.sleep(0.001)
        self.listen_s = time.monotonic() - t0
        while True:
            try:
                if http_get(self.port, "/health", 0.5)[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("hub-serve /health never answered 200")
            time.sleep(0.001)
        self.ready_s = time.monotonic() - t0

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}"

    def bin(self, name):
        return os.path.join(HUB_BIN, name)

    def sub_cmd(self, topic, count, idx):
        rf = os.path.join(self.tmp, f"ready-{self.port}-{idx}-{time.monotonic_ns()}")
        self.ready_files[idx] = rf
        cmd = [self.bin("hub-sub"), "--url", self.url, topic, "--ready-file", rf]
        if count:
            cmd += ["--count", str(count)]
        return cmd

    def pub_lines_cmd(self, topic):
        return [self.bin("hub-emit"), "--url", self.url, topic, "--lines"]

    def oneshot_cmds(self, topic):
        emit = [self.bin("hub-emit"), "--url", self.url, topic, "msg=hello"]
        return [("hub-emit (durable ack)", emit),
                # Diagnostics: the cost of starting the process at all.
                ("hub-emit --version (start and exit only)", [self.bin("hub-emit"), "--version"]),
                ("/bin/true (process spawn floor)", ["/bin/true"])]

    def wait_subscribed(self, sinks, topic, deadline):
        files = list(self.ready_files.values())
        while time.monotonic() < deadline:
            pump(sinks, None, time.monotonic() + 0.005)
            if all(os.path.exists(f) for f in files):
                self.ready_files = {}
                return
            dead = [s for s in sinks if s.proc.poll() is not None]
            if dead:
                raise RuntimeError(f"hub-sub exited {dead[0].proc.returncode} before ready")
        raise RuntimeError("hub-sub never created its --ready-file")

    def status(self):
        return json.loads(http_get(self.port, "/status")[1])

    def idle_open(self, sock, i):
        sock.sendall(b"GET /ws?topic=bench:idle HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n" % self.port)
        buf = _read_until(sock, b"\r\n\r\n")
        if b" 101 " not in buf.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"hub refused the upgrade: {buf[:200]!r}")
        if b"subscribed" not in buf:
            _read_until(sock, b"subscribed")


class JetStreamServers:
    """nats-server -js: one, or a cluster of three on loopback (scale-out.md §6)."""

    def __init__(self, tmp, n):
        self.tmp, self.n, self.procs, self.ports = tmp, n, [], []

    def start(self):
        d = tempfile.mkdtemp(prefix="js-", dir=self.tmp)
        ports = [(free_port(), free_port()) for _ in range(self.n)]
        routes = ", ".join(f"nats-route://127.0.0.1:{c}" for _, c in ports)
        logs = []
        for i, (port, cport) in enumerate(ports):
            conf = os.path.join(d, f"n{i}.conf")
            with open(conf, "w") as f:
                f.write(f"server_name: n{i}\nlisten: 127.0.0.1:{port}\n"
                        f"jetstream {{ store_dir: \"{d}/n{i}\" }}\n")
                if self.n > 1:
                    f.write(f"cluster {{ name: hubjs, listen: 127.0.0.1:{cport}, routes: [{routes}] }}\n")
            log_path = os.path.join(d, f"n{i}.log")
            logs.append(log_path)
            self.procs.append(spawn(["nats-server", "-c", conf], stdout=subprocess.DEVNULL,
                                    stderr=open(log_path, "wb")))
            self.ports.append(port)
        deadline = time.monotonic() + 60
        for port, proc in zip(self.ports, self.procs):
            wait_port(port, deadline, proc)
        want = b"metadata leader" if self.n > 1 else b"Server is ready"
        while not any(want in open(p, "rb").read() for p in logs):
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server cluster had no JetStream leader within 60 s")
            time.sleep(0.05)

    @property
    def urls(self):
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.ports)

    def stop(self):
        for p in self.procs:
            stop(p)


class HubOverNats(Broker):
    """Two hub-serve --nats nodes over one JetStream: publish to A, subscribe on B."""

    def __init__(self, tmp, servers):
        super().__init__(tmp)
        self.js = JetStreamServers(tmp, servers)
        self.label = "hub --nats" + (" R3" if servers > 1 else "")
        self.nodes = []

    def start(self):
        self.js.start()
        extra = ["--nats", self.js.urls, "--nats-replicas", str(self.js.n)]
        for _ in range(2):
            h = Hub(self.tmp, extra=extra)
            h.start()
            self.nodes.append(h)
        self.proc = self.nodes[0].proc
        self.port = self.nodes[0].port

    def sub_cmd(self, topic, count, idx):
        return self.nodes[1].sub_cmd(topic, count, idx)

    def pub_lines_cmd(self, topic):
        return self.nodes[0].pub_lines_cmd(topic)

    def wait_subscribed(self, sinks, topic, deadline):
        return self.nodes[1].wait_subscribed(sinks, topic, deadline)

    def stop(self):
        for h in self.nodes:
            h.stop()
        self.js.stop()


class JetStreamDirect(Broker):
    """The anchor: the same lines through the same JetStream with async-nats alone."""

    def __init__(self, tmp, servers):
        super().__init__(tmp)
        self.js = JetStreamServers(tmp, servers)
        self.label = "async-nats direct" + (" R3" if servers > 1 else "")
        self.ready_files = []
        self.pipe = os.path.join(TARGET, "release", "examples", "jetstream-pipe")

    def start(self):
        self.js.start()
        self.proc = self.js.procs[0]
        self.port = self.js.ports[0]
        env = dict(os.environ, JS_REPLICAS=str(self.js.n))
        # Creates the stream (an empty publish run).
        r = subprocess.run([self.pipe, "pub", self.js.urls, "BENCH", "bench.direct"],
                           stdin=subprocess.DEVNULL, env=env, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("jetstream-pipe could not create the stream")

    def sub_cmd(self, topic, count, idx):
        rf = os.path.join(self.tmp, f"ready-js-{idx}-{time.monotonic_ns()}")
        self.ready_files.append(rf)
        return [self.pipe, "sub", self.js.urls, "BENCH", str(count), rf]

    def pub_lines_cmd(self, topic):
        return [self.pipe, "pub", self.js.urls, "BENCH", "bench.direct"]

    def wait_subscribed(self, sinks, topic, deadline):
        while time.monotonic() < deadline:
            pump(sinks, None, time.monotonic() + 0.005)
            if all(os.path.exists(f) for f in self.ready_files):
                self.ready_files = []
                return
        raise RuntimeError("jetstream-pipe sub never created its ready file")

    def stop(self):
        self.js.stop()


def nats_systems(ctx):
    out = []
    for servers in (1, 3):
        out.append(lambda s=servers: JetStreamDirect(ctx.tmp, s))
        out.append(lambda s=servers: HubOverNats(ctx.tmp, s))
    return out


def n1(ctx):
    """W1 (pipe) over JetStream: two hub nodes vs async-nats directly."""
    a = ctx.args
    n = a.n1_n
    path = json_lines_file(ctx.tmp, n)
    for rep in range(a.n_reps):
        for make in nats_systems(ctx):
            b = make()
            try:
                r = with_broker(b, lambda br: run_pipe(ctx, br, "bench:n1", n, 1, 120, path))
            except Exception as e:
                r = {"error": str(e)}
            r.pop("_lat", None)
            ctx.record("n1", b.label, rep=rep, **r)


def n3(ctx):
    """W3 (latency at 1,000/s) over JetStream: two hub nodes vs async-nats directly."""
    a = ctx.args
    pooled = {}
    for rep in range(a.n_reps):
        for make in nats_systems(ctx):
            b = make()
            try:
                r = with_broker(b, lambda br: run_pipe(ctx, br, "bench:n3", a.w3_n, 1,
                                                        a.w3_n / a.w3_rate + 30, None,
                                                        latency=True, nap=0))
            except Exception as e:
                r = {"error": str(e)}
            lat = r.pop("_lat", [])
            pooled.setdefault(b.label, []).extend(lat)
            ctx.record("n3", b.label, rep=rep, **r)
    for label, lat in pooled.items():
        ctx.record("n3_pooled", label, n=len(lat), p50_ms=pct(lat, 50), p99_ms=pct(lat, 99),
                   p999_ms=pct(lat, 99.9), max_ms=max(lat) if lat else None)


# ---------------------------------------------------------------------------
# Reading subscribers' stdout.

class Sink:
    """One subscriber process whose stdout is drained and counted here."""

    def __init__(self, proc, latency=False, seq_marker=b'"seq":', t_re=T_RE):
        self.proc = proc
        self.seq_marker = seq_marker
        self.t_re = t_re
        self.fd = proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        try:
            fcntl.fcntl(self.fd, 1031, 1 << 20)  # F_SETPIPE_SZ: fewer wake-ups
        except OSError:
            pass
        self.latency = latency
        self.chunks = []
        self.rest = b""
        self.count = 0
        self.probes = 0
        self.lat_ns = []
        self.done_at = None
        self.eof = False

    def read(self):
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            now = time.time_ns()
            if not chunk:
                self.eof = True
                return
            self.chunks.append(chunk)
            data = self.rest + chunk
            cut = data.rfind(b"\n") + 1
            full, self.rest = data[:cut], data[cut:]
            if not full:
                continue
            self.count += full.count(self.seq_marker)
            self.probes += full.count(b'"probe"')
            if self.latency:
                self.lat_ns.extend(now - int(m) for m in self.t_re.findall(full))

    def seqs(self):
        return [int(m) for m in SEQ_RE.findall(b"".join(self.chunks))]


def pump(sinks, target, deadline, nap=0.0):
    """Drains sinks until each has `target` seq lines (or EOF) or the deadline passes."""
    poller = select.poll()
    byfd = {}
    for s in sinks:
        if not s.eof:
            poller.register(s.fd, select.POLLIN)
            byfd[s.fd] = s
    while byfd:
        if target is not None and all(s.count >= target or s.eof for s in sinks):
            break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for fd, _ in poller.poll(min(50, max(1, int(left * 1000)))):
            s = byfd[fd]
            s.read()
            if target is not None and s.done_at is None and s.count >= target:
                s.done_at = time.monotonic()
            if s.eof:
                poller.unregister(fd)
                del byfd[fd]
        if nap:
            time.sleep(nap)


def check_order(seqs, n):
    uniq = set(seqs)
    lost = sum(1 for i in range(n) if i not in uniq)
    dup = len(seqs) - len(uniq)
    reordered = sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
    return lost, dup, reordered


# ---------------------------------------------------------------------------
# Input files.

def json_lines_file(tmp, n):
    path = os.path.join(tmp, f"lines-{n}.json")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            for i in range(n):
                head = b'{"seq":%d,"src":"bench","msg":"' % i
                f.write(head + b"x" * (98 - len(head)) + b'"}\n')  # 100 bytes + newline
    return path


def resp_file(tmp, n, topic):
    """The same lines as PUBLISH commands in RESP, what `redis-cli --pipe` reads."""
    path = os.path.join(tmp, f"lines-{n}-{topic.replace(':', '_')}.resp")
    if not os.path.exists(path):
        t = topic.encode()
        with open(json_lines_file(tmp, n), "rb") as src, open(path, "wb") as f:
            for line in src:
                p = line.rstrip(b"\n")
                f.write(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(t), t, len(p), p))
    return path


# ---------------------------------------------------------------------------
# Workloads.

class Ctx:
    def __init__(self, args, tmp, systems):
        self.args = args
        self.tmp = tmp
        self.systems = systems  # name -> factory(tmp) -> Broker
        self.results = []

    def record(self, workload, system, **fields):
        rec = {"workload": workload, "system": system, **fields}
        self.results.append(rec)
        brief = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in fields.items()}
        log(workload, system, json.dumps(brief))


WARMUP = 5  # lines pace.py sends before the timed ones (hub-sub --count includes them)


def run_pipe(ctx, broker, topic, n, nsubs, timeout, input_path=None, latency=False, nap=0.001):
    """Publisher process fed from a file (or pace.py), nsubs subscriber processes."""
    count = n if input_path else n + WARMUP
    sinks = [Sink(spawn(broker.sub_cmd(topic, count, i), stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL), latency) for i in range(nsubs)]
    try:
        broker.wait_subscribed(sinks, topic, time.monotonic() + 20)
        cpu0 = proc_cpu(broker.pid)
        sys0 = cpu_busy_jiffies()
        me0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        if input_path is None:
            pace = spawn([sys.executable, os.path.join(BENCH, "pace.py"), "--count", str(n),
                          "--rate", str(ctx.args.w3_rate), "--format", broker.fmt, "--topic", topic,
                          "--warmup", str(WARMUP), "--start-delay", "0.5"],
                         stdout=subprocess.PIPE)
            pub = spawn(broker.pub_lines_cmd(topic), stdin=pace.stdout, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
            pace.stdout.close()
            t0 += 0.5  # the timed lines start after pace.py's --start-delay
        else:
            pace = None
            with open(input_path, "rb") as f:
                pub = spawn(broker.pub_lines_cmd(topic), stdin=f, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
        pump(sinks, n, t0 + timeout, nap=nap)
        done = [s.done_at for s in sinks]
        elapsed = (max(done) - t0) if all(done) else None
        pub_rc, pub_cpu = reap(pub, 10)
        pub_s = time.monotonic() - t0
        pace_cpu = reap(pace, 5)[1] if pace else 0.0
        cpu_broker = proc_cpu(broker.pid) - cpu0
    finally:
        sub_cpu = 0.0
        for s in sinks:
            if s.proc.returncode is None:
                try:
                    os.kill(s.proc.pid, signal.SIGTERM)  # not terminate(): it would reap
                except ProcessLookupError:
                    pass
                sub_cpu += reap(s.proc, 5)[1]
    # CPU the whole machine used during the run, minus every process of this run
    # (broker, publisher, subscribers, pace.py, this harness): what others used.
    me1 = resource.getrusage(resource.RUSAGE_SELF)
    harness = (me1.ru_utime + me1.ru_stime) - (me0.ru_utime + me0.ru_stime)
    machine = (cpu_busy_jiffies() - sys0) / os.sysconf("SC_CLK_TCK")
    other = max(0.0, machine - cpu_broker - pub_cpu - sub_cpu - pace_cpu - harness)
    lost = dup = reord = 0
    for s in sinks:
        l, d, r = check_order(s.seqs(), n)
        lost, dup, reord = lost + l, dup + d, reord + r
    out = dict(n=n, subs=nsubs, elapsed_s=elapsed, lost=lost, dup=dup, reordered=reord,
               received=sum(s.count for s in sinks), pub_rc=pub_rc, pub_wall_s=pub_s,
               cpu_broker_s=cpu_broker, cpu_pub_s=pub_cpu, cpu_subs_s=sub_cpu,
               cpu_harness_s=harness, cpu_other_s=other)
    if elapsed:
        out["rate"] = n * nsubs / elapsed
    if latency:
        lat = [x / 1e6 for s in sinks for x in s.lat_ns]
        out.update(p50_ms=pct(lat, 50), p99_ms=pct(lat, 99), max_ms=max(lat) if lat else None,
                   _lat=lat)
    return out


def with_broker(broker, fn):
    broker.start()
    try:
        return fn(broker)
    finally:
        broker.stop()


def hub_missing(*bins):
    return [b for b in bins if not os.access(os.path.join(HUB_BIN, b), os.X_OK)]


def cli_systems(ctx, extra_mosq_nodelay=False, hub_bins=("hub-emit", "hub-sub")):
    out = []
    for name in ctx.args.systems:
        if name == "hub" and hub_missing(*hub_bins):
            continue
        if name == "mosquitto":
            out.append(lambda: Mosquitto(ctx.tmp))
            if extra_mosq_nodelay:
                out.append(lambda: Mosquitto(ctx.tmp, nodelay=True))
        elif name == "redis":
            out.append(lambda: Redis(ctx.tmp))
        elif name == "hub":
            out.append(lambda: Hub(ctx.tmp))
    return out


def w_throughput(ctx, key, n, nsubs, reps, timeout):
    path = json_lines_file(ctx.tmp, n)
    for rep in range(reps):
        for make in cli_systems(ctx):
            b = make()
            topic = f"bench:{key}"
            inp = resp_file(ctx.tmp, n, topic) if b.fmt == "resp" else path
            try:
                r = with_broker(b, lambda br: run_pipe(ctx, br, topic, n, nsubs, timeout, inp))
            except Exception as e:  # one failing system must not stop the others
                r = {"error": str(e)}
            r.pop("_lat", None)
            ctx.record(key, b.label, rep=rep, **r)


def w1(ctx):
    a = ctx.args
    w_throughput(ctx, "w1", a.w1_n, 1, a.w1_reps, 120)


def w2(ctx):
    a = ctx.args
    w_throughput(ctx, "w2", a.w2_n, a.w2_subs, a.w2_reps, 180)


def w3_run(ctx, b):
    """One W3 run against broker `b`: its record, with the latencies in "_lat"."""
    a = ctx.args
    try:
        return with_broker(b, lambda br: run_pipe(ctx, br, "bench:w3", a.w3_n, 1,
                                                  a.w3_n / a.w3_rate + 30, None,
                                                  latency=True, nap=0))
    except Exception as e:  # one failing system must not stop the others
        return {"error": str(e)}


def w3(ctx):
    a = ctx.args
    pooled = {}
    for rep in range(a.reps):
        for make in cli_systems(ctx, extra_mosq_nodelay=True):
            for attempt in range(W3_ATTEMPTS):
                b = make()
                r = w3_run(ctx, b)
                lat = r.pop("_lat", [])
                if attempt + 1 < W3_ATTEMPTS and r.get("cpu_other_s", 0) > DISTURBED_CPU_S:
                    ctx.record("w3_disturbed", b.label, rep=rep, attempt=attempt, **r)
                    foreign_cpu(10)
                    continue
                pooled.setdefault(b.label, []).extend(lat)
                ctx.record("w3", b.label, rep=rep, attempts=attempt + 1, **r)
                break
    # One run's p99 rests on its 20 slowest messages; all runs together are steadier.
    for label, lat in pooled.items():
        ctx.record("w3_pooled", label, n=len(lat), p50_ms=pct(lat, 50), p99_ms=pct(lat, 99),
                   p999_ms=pct(lat, 99.9), max_ms=max(lat) if lat else None)


# A W3 run during which the rest of the machine (other processes, or the hypervisor's
# steal time) used more than DISTURBED_CPU_S measures the machine more than the broker:
# one message in a hundred decides p99. Such a run is made again once the machine is
# quiet, up to W3_ATTEMPTS in all, for every system alike; the last attempt counts
# either way, and the repeated ones are kept in the results as "w3_disturbed".
DISTURBED_CPU_S = 0.1
W3_ATTEMPTS = 4


def h_w3_modes(ctx):
    """W3 for hub alone with each durability setting: where does its p99 come from?"""
    a = ctx.args
    for rep in range(a.reps):
        for mode in [["--fsync", "batch"], ["--fsync", "never"], ["--fsync", "always"], ["--memory"]]:
            r = w3_run(ctx, Hub(ctx.tmp, extra=mode))
            r.pop("_lat", None)
            ctx.record("w3_modes", "hub", rep=rep, mode=" ".join(mode), **r)


def w4(ctx):
    a = ctx.args
    for make in cli_systems(ctx, hub_bins=("hub-emit",)):
        b = make()

        def run(br):
            for label, cmd, *env in br.oneshot_cmds("bench:w4"):
                js = os.path.join(ctx.tmp, f"hyperfine-{br.port}.json")
                p = subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(a.w4_runs),
                                    "--export-json", js, "-n", label, " ".join(cmd)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
                                   env={**os.environ, **(env[0] if env else {})})
                if p.returncode != 0:
                    ctx.record("w4", label, error=p.stderr.decode()[-500:])
                    continue
                res = json.load(open(js))["results"][0]
                ctx.record("w4", label, median_ms=res["median"] * 1e3, min_ms=res["min"] * 1e3,
                           max_ms=res["max"] * 1e3, mean_ms=res["mean"] * 1e3,
                           runs=len(res["times"]))
        try:
            with_broker(b, run)
        except Exception as e:
            ctx.record("w4", b.label, error=str(e))


def open_idle(broker, n, conns):
    while len(conns) < n:
        s = socket.create_connection(("127.0.0.1", broker.port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        broker.idle_open(s, len(conns))
        conns.append(s)


def w5(ctx):
    a = ctx.args
    makers = []
    for name in a.systems + ["nats"]:
        if name == "mosquitto":
            makers.append(lambda: Mosquitto(ctx.tmp))
        elif name == "redis":
            makers.append(lambda: Redis(ctx.tmp))
        elif name == "nats" and "nats" not in a.skip:
            makers.append(lambda: Nats(ctx.tmp))
        elif name == "hub":
            makers.append(lambda: Hub(ctx.tmp, extra=["--max-connections", str(a.w5_max + 100)]))
    for make in makers:
        b = make()

        def run(br):
            conns = []
            try:
                # One connection first, so that lazily allocated per-process state is in
                # the baseline and not charged to the idle connections.
                open_idle(br, 1, conns)
                time.sleep(0.5)
                base = proc_rss_kib(br.pid)
                out = dict(rss_base_kib=base)
                for n in a.w5_counts:
                    t0 = time.monotonic()
                    open_idle(br, n + 1, conns)
                    opened = time.monotonic() - t0
                    time.sleep(1.0)
                    rss = proc_rss_kib(br.pid)
                    out[f"rss_{n}_kib"] = rss
                    out[f"kib_per_conn_{n}"] = (rss - base) / n
                    out[f"open_{n}_s"] = opened
                return out
            finally:
                for s in conns:
                    s.close()
        try:
            r = with_broker(b, run)
        except Exception as e:
            r = {"error": str(e)}
        ctx.record("w5", b.label, **r)


# --- hub only ---------------------------------------------------------------

def fill_hub(hub, n, batch=100_000):
    t0 = time.monotonic()
    i = 0
    while i < n:
        k = min(batch, n - i)
        body = b"".join(b'{"topic":"bench:fill","data":{"seq":%d,"msg":"restart-test"}}\n' % j
                        for j in range(i, i + k))
        st, resp = http_post(hub.port, "/publish", body, timeout=120)
        if st != 200:
            raise RuntimeError(f"POST /publish: {st} {resp[:200]!r}")
        i += k
    return time.monotonic() - t0


def h_restart(ctx):
    a = ctx.args
    hub = Hub(ctx.tmp)
    hub.start()
    try:
        fill_s = fill_hub(hub, a.restart_events)
        st = hub.status()
    finally:
        stop_s = stop(hub.proc)
    ctx.record("restart", "hub", phase="fill", events=a.restart_events, fill_s=fill_s,
               fill_rate=a.restart_events / fill_s, stop_s=stop_s, status_events=st.get("events"),
               last_id=st.get("last_id"), log_bytes=st.get("log_bytes"))
    for rep in range(a.reps):
        h2 = Hub(ctx.tmp, data_dir=hub.data_dir)
        try:
            h2.start()
            st = h2.status()
            ctx.record("restart", "hub", rep=rep, listen_s=h2.listen_s, ready_s=h2.ready_s,
                       status_events=st.get("events"), last_id=st.get("last_id"),
                       rss_kib=proc_rss_kib(h2.pid))
        except Exception as e:
            ctx.record("restart", "hub", rep=rep, error=str(e))
        finally:
            h2.stop()


def h_fsync(ctx):
    """Publish throughput to ack (no subscriber) with each --fsync mode."""
    a = ctx.args
    path = json_lines_file(ctx.tmp, a.fsync_n)
    for rep in range(a.reps):
        for mode in ["batch", "always", "never"]:
            for npub in [1, a.fsync_pubs]:
                hub = Hub(ctx.tmp, extra=["--fsync", mode])
                try:
                    hub.start()
                    per = a.fsync_n // npub
                    t0 = time.monotonic()
                    pubs = []
                    for k in range(npub):
                        f = open(path, "rb")
                        pubs.append(spawn(hub.pub_lines_cmd(f"bench:fsync{k}"), stdin=f,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                                    if npub == 1 else
                                    spawn(["sh", "-c", f"head -n {per} | exec \"$0\" \"$@\""] +
                                          hub.pub_lines_cmd(f"bench:fsync{k}"), stdin=f,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                        f.close()
                    rcs = [reap(p, 120)[0] for p in pubs]
                    el = time.monotonic() - t0
                    total = per * npub
                    ctx.record("fsync", "hub", rep=rep, mode=mode, publishers=npub, n=total,
                               elapsed_s=el, rate=total / el, rcs=rcs,
                               events=hub.status().get("events"))
                except Exception as e:
                    ctx.record("fsync", "hub", rep=rep, mode=mode, publishers=npub, error=str(e))
                finally:
                    hub.stop()


def h_tail(ctx):
    """hub-tail --from-start catching up on a big file: lines/s until the hub has all."""
    a = ctx.args
    path = os.path.join(ctx.tmp, "big.log")
    line = b"2026-11-21T22:30:00.123Z INFO  worker[42]: request handled path=/api/v1/items status=200 ms=12\n"
    nlines = a.tail_bytes // len(line)
    if not os.path.exists(path):
        block = line * 10_000
        with open(path, "wb") as f:
            for _ in range(nlines // 10_000):
                f.write(block)
            f.write(line * (nlines % 10_000))
    hub = Hub(ctx.tmp)
    hub.start()
    tail = None
    try:
        t0 = time.monotonic()
        tail = spawn([hub.bin("hub-tail"), "--url", hub.url, path, "--from-start", "--topic",
                      "bench:tail", "--state", os.path.join(ctx.tmp, "tail.state")],
                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(ctx.tmp, "tail.err"), "wb"))
        cpu_b0 = proc_cpu(hub.pid)
        last = 0
        deadline = t0 + a.tail_timeout
        while time.monotonic() < deadline:
            last = hub.status().get("last_id") or 0
            if last >= nlines or tail.poll() is not None:
                break
            time.sleep(0.2)
        el = time.monotonic() - t0
        tail_cpu = proc_cpu(tail.pid)
        ctx.record("tail", "hub", bytes=nlines * len(line), lines=nlines, published=last,
                   elapsed_s=el, rate=last / el, mib_s=last * len(line) / el / 2**20,
                   complete=last >= nlines, cpu_hub_s=proc_cpu(hub.pid) - cpu_b0,
                   cpu_tail_s=tail_cpu)
    except Exception as e:
        ctx.record("tail", "hub", error=str(e))
    finally:
        stop(tail)
        hub.stop()


def h_tail_latency(ctx):
    """Write → hub-sub stdout latency through hub-tail, with inotify and with --poll."""
    a = ctx.args
    for mode, flags in [("inotify", []), ("--poll (default interval)", ["--poll"]),
                        ("--poll --poll-interval 100ms", ["--poll", "--poll-interval", "100ms"])]:
        hub = Hub(ctx.tmp)
        tail = None
        try:
            hub.start()
            path = os.path.join(ctx.tmp, f"lat-{len(flags)}.log")
            open(path, "wb").close()
            cmd = [hub.bin("hub-tail"), "--url", hub.url, path, "--topic", "bench:taillat",
                   "--state", os.path.join(ctx.tmp, f"lat-{len(flags)}.state")] + flags
            tail = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # hub-tail publishes each line as a string in data.line, so the line is
            # plain text (inside JSON, `"seq":` would arrive escaped).
            sink = Sink(spawn(hub.sub_cmd("bench:taillat", a.tail_lat_n, 0),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL), latency=True,
                        seq_marker=b"seq=", t_re=re.compile(rb"sent=(\d+)"))
            hub.wait_subscribed([sink], "bench:taillat", time.monotonic() + 20)
            time.sleep(1.0)  # let hub-tail settle on the file's end
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            start = time.monotonic()
            for i in range(a.tail_lat_n):
                due = start + i / a.tail_lat_rate
                while True:
                    d = due - time.monotonic()
                    if d <= 0:
                        break
                    pump([sink], None, time.monotonic() + d)
                os.write(fd, b"bench line seq=%d sent=%d\n" % (i, time.time_ns()))
            os.close(fd)
            pump([sink], a.tail_lat_n, time.monotonic() + 10)
            reap(sink.proc, 2)
            lat = [x / 1e6 for x in sink.lat_ns]
            ctx.record("tail_latency", "hub", mode=mode, n=a.tail_lat_n, received=sink.count,
                       p50_ms=pct(lat, 50), p99_ms=pct(lat, 99), max_ms=max(lat) if lat else None)
        except Exception as e:
            ctx.record("tail_latency", "hub", mode=mode, error=str(e))
        finally:
            stop(tail)
            hub.stop()


def h_tail_idle(ctx):
    """CPU of hub-tail (and the hub) while following 100 idle files for a while."""
    a = ctx.args
    d = os.path.join(ctx.tmp, "idle-files")
    os.makedirs(d, exist_ok=True)
    files = []
    for i in range(100):
        p = os.path.join(d, f"f{i:03d}.log")
        open(p, "ab").close()
        files.append(p)
    for mode in ["inotify", "poll"]:
        hub = Hub(ctx.tmp)
        tail = None
        try:
            hub.start()
            cmd = [hub.bin("hub-tail"), "--url", hub.url] + files + [
                "--state", os.path.join(ctx.tmp, f"idle-{mode}.state")]
            if mode == "poll":
                cmd.append("--poll")
            tail = spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(2.0)
            c0, h0, t0 = proc_cpu(tail.pid), proc_cpu(hub.pid), time.monotonic()
            time.sleep(a.idle_seconds)
            el = time.monotonic() - t0
            alive = tail.poll() is None
            ctx.record("tail_idle", "hub", mode=mode, files=100, seconds=el, alive=alive,
                       cpu_tail_pct=100 * (proc_cpu(tail.pid) - c0) / el,
                       cpu_hub_pct=100 * (proc_cpu(hub.pid) - h0) / el,
                       rss_tail_kib=proc_rss_kib(tail.pid) if alive else None)
        except Exception as e:
            ctx.record("tail_idle", "hub", mode=mode, error=str(e))
        finally:
            stop(tail)
            hub.stop()


def h_fanout100(ctx):
    """Issue 2: one stream to 100 hub-sub processes: deliveries/s flat out, and
    publish→print latency at a steady 1,000 events/s (100,000 deliveries/s)."""
    a = ctx.args
    saved = a.w3_rate
    for rep in range(a.w2_reps):
        for phase, rate, n in [("flat out", 0, a.fan_n), ("1,000 events/s", 1000, a.w3_n)]:
            hub = Hub(ctx.tmp)
            try:
                hub.start()
                a.w3_rate = rate  # pace.py's rate; 0 = as fast as it can
                r = run_pipe(ctx, hub, "bench:fan100", n, 100, 180, None, latency=True,
                             nap=0.001 if rate == 0 else 0)
                r.pop("_lat", None)
                ctx.record("fanout100", "hub", rep=rep, phase=phase, **r)
            except Exception as e:
                ctx.record("fanout100", "hub", rep=rep, phase=phase, error=str(e))
            finally:
                a.w3_rate = saved
                hub.stop()


def h_ws_publish(ctx):
    """Issue 2: publish frames over one WebSocket with pipelined acks (window of 1000)."""
    a = ctx.args
    for rep in range(a.reps):
        hub = Hub(ctx.tmp)
        try:
            hub.start()
            c0 = proc_cpu(hub.pid)
            p = subprocess.run([sys.executable, os.path.join(BENCH, "ws_publish.py"), hub.url,
                                str(a.ws_n), "1000"], capture_output=True, timeout=120)
            if p.returncode != 0:
                raise RuntimeError(p.stderr.decode()[-500:])
            ctx.record("ws_publish", "hub", rep=rep, cpu_broker_s=proc_cpu(hub.pid) - c0,
                       **json.loads(p.stdout))
        except Exception as e:
            ctx.record("ws_publish", "hub", rep=rep, error=str(e))
        finally:
            hub.stop()


WORKLOADS = {
    "w1": w1, "w2": w2, "w3": w3, "w3_modes": h_w3_modes, "w4": w4, "w5": w5,
    "restart": h_restart, "fsync": h_fsync, "ws_publish": h_ws_publish,
    "fanout100": h_fanout100, "tail": h_tail, "tail_latency": h_tail_latency,
    "tail_idle": h_tail_idle, "n1": n1, "n3": n3,
}
HUB_ONLY = {"n1", "n3", "w3_modes", "restart", "fsync", "ws_publish", "fanout100", "tail", "tail_latency", "tail_idle"}
# The hub binaries each workload needs; without them hub is left out of it.
NEEDS = {
    "w1": ["hub-serve", "hub-emit", "hub-sub"], "w2": ["hub-serve", "hub-emit", "hub-sub"],
    "w3": ["hub-serve", "hub-emit", "hub-sub"], "w4": ["hub-serve", "hub-emit"],
    "w3_modes": ["hub-serve", "hub-emit", "hub-sub"],
    "w5": ["hub-serve"], "restart": ["hub-serve"], "ws_publish": ["hub-serve"],
    "fsync": ["hub-serve", "hub-emit"], "fanout100": ["hub-serve", "hub-emit", "hub-sub"],
    "tail": ["hub-serve", "hub-tail"], "tail_latency": ["hub-serve", "hub-tail", "hub-sub"],
    "tail_idle": ["hub-serve", "hub-tail"],
    "n1": ["hub-serve", "hub-emit", "hub-sub"], "n3": ["hub-serve", "hub-emit", "hub-sub"],
}


def cpu_busy_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return sum(v[:8]) - idle


def foreign_cpu(wait_s):
    """CPUs busy over one second, waiting up to wait_s for that to fall below 0.25."""
    hz = os.sysconf("SC_CLK_TCK")
    end = time.monotonic() + wait_s
    while True:
        b0 = cpu_busy_jiffies()
        time.sleep(1.0)
        busy = (cpu_busy_jiffies() - b0) / hz
        if busy < 0.25 or time.monotonic() >= end:
            return busy


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    def ver(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except Exception:
            return None
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    # Only what goes into the hub binaries makes a build "dirty".
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no",
                            "--", "src", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, text=True).stdout.strip()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": os.uname().release,
        "mem_gib": round(mem / 2**30, 1), "os": ver(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
        "git_rev": rev + ("-dirty" if dirty else ""),
        "versions": {
            "mosquitto": ver(["sh", "-c", "mosquitto -h | head -1"]),
            "redis": ver(["redis-server", "--version"]),
            "nats-server": ver(["nats-server", "--version"]),
            "hyperfine": ver(["hyperfine", "--version"]),
            "python": sys.version.split()[0],
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated workloads")
    ap.add_argument("--systems", default="hub,mosquitto,redis")
    ap.add_argument("--skip", default="", help="systems to leave out (e.g. hub,nats)")
    ap.add_argument("--quick", action="store_true", help="small sizes, one rep: a smoke test")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--w1-n", type=int, default=200_000)
    # W1 takes seconds a run; more runs steady its medians on a machine with steal.
    ap.add_argument("--w1-reps", type=int, default=9)
    ap.add_argument("--w2-n", type=int, default=20_000)
    ap.add_argument("--w2-subs", type=int, default=50)
    ap.add_argument("--w2-reps", type=int, default=3)
    ap.add_argument("--w3-n", type=int, default=2000)
    ap.add_argument("--n1-n", type=int, default=100_000)
    ap.add_argument("--n-reps", type=int, default=3)
    ap.add_argument("--w3-rate", type=float, default=1000)
    ap.add_argument("--w4-runs", type=int, default=30)
    ap.add_argument("--w5-counts", default="1000,10000")
    ap.add_argument("--restart-events", type=int, default=1_000_000)
    ap.add_argument("--fsync-n", type=int, default=100_000)
    ap.add_argument("--fsync-pubs", type=int, default=8)
    ap.add_argument("--ws-n", type=int, default=100_000)
    ap.add_argument("--fan-n", type=int, default=5_000)
    ap.add_argument("--tail-bytes", type=int, default=2**30)
    ap.add_argument("--tail-timeout", type=float, default=180)
    ap.add_argument("--tail-lat-n", type=int, default=300)
    ap.add_argument("--tail-lat-rate", type=float, default=100)
    ap.add_argument("--idle-seconds", type=float, default=10)
    ap.add_argument("--results", default=os.path.join(BENCH, "results"))
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--quiet-wait", type=float, default=20,
                    help="seconds to wait before each workload for other processes to go idle")
    ap.add_argument("--label", default="", help="what this build is (e.g. an experimental patch);"
                    " shown in the history table")
    a = ap.parse_args()
    a.skip = [s for s in a.skip.split(",") if s]
    a.systems = [s for s in a.systems.split(",") if s and s not in a.skip]
    a.w5_counts = [int(x) for x in a.w5_counts.split(",")]
    a.w5_max = max(a.w5_counts)
    if a.quick:
        a.reps, a.w1_reps, a.w2_reps, a.w1_n, a.w2_n, a.w2_subs = 1, 1, 1, 20_000, 2_000, 10
        a.w3_n, a.w4_runs, a.w5_counts, a.w5_max = 500, 10, [200], 200
        a.restart_events, a.fsync_n, a.ws_n, a.fan_n = 50_000, 10_000, 10_000, 1000
        a.tail_bytes, a.tail_lat_n, a.idle_seconds = 20 * 2**20, 100, 3
        a.n1_n, a.n_reps = 10_000, 1

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, 2 * a.w5_max + 1000)  # each side of a connection is one process
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        if hard < a.w5_max + 100:
            log(f"open-file limit is {hard} (hard) < {a.w5_max + 100}: W5 may fail")

    only = [w for w in a.only.split(",") if w]
    notes = []
    if "hub" in a.systems:
        skipped, missing = [], set()
        for w in list(only):
            miss = hub_missing(*NEEDS[w])
            if miss:
                skipped.append(w)
                missing.update(miss)
                if w in HUB_ONLY:
                    only.remove(w)
        if skipped:
            notes.append(f"hub not measured in {', '.join(skipped)}: {', '.join(sorted(missing))} "
                         f"not built (yet) in {HUB_BIN}")
        if hub_missing("hub-serve"):
            a.systems.remove("hub")
    if "hub" not in a.systems:
        only = [w for w in only if w not in HUB_ONLY]
    for n in notes:
        log(n)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    atexit.register(cleanup)
    tmp = tempfile.mkdtemp(prefix="hub-bench-")
    ctx = Ctx(a, tmp, a.systems)
    meta = machine()
    started = time.time()
    loads = []
    log(f"systems {a.systems}, workloads {only}, scratch {tmp}")
    try:
        for w in only:
            t = time.monotonic()
            # Between workloads nothing of ours runs, so CPU in use now is someone else's
            # (builds, tests): wait a bounded while for it to stop, and record it.
            busy = foreign_cpu(a.quiet_wait)
            loads.append((w, busy))
            if busy > 0.25:
                log(f"machine busy: {busy:.2f} CPUs used by other processes; {w} will be noisy")
            log(f"--- {w}")
            try:
                WORKLOADS[w](ctx)
            except Exception as e:
                ctx.record(w, "-", error=f"{type(e).__name__}: {e}")
            log(f"--- {w} took {time.monotonic() - t:.1f}s")
    except KeyboardInterrupt:
        notes.append("interrupted")
    finally:
        cleanup()
        if not a.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    meta.update(started=time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
                duration_s=round(time.time() - started, 1), notes=notes,
                argv=sys.argv[1:], quick=a.quick, label=a.label, foreign_cpu=loads, workloads=only, systems=a.systems)
    if a.quick and a.results == os.path.join(BENCH, "results"):
        a.results = os.path.join(BENCH, "results", "quick")  # smoke tests stay out of history
    os.makedirs(a.results, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    out = os.path.join(a.results, f"{stamp}-{meta['git_rev']}.json")
    with open(out, "w") as f:
        json.dump({"meta": meta, "results": ctx.results}, f, indent=1)
    print(out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Browser bench of the hub dashboard: floods events into an open page and measures
what the tab pays for it, in a real headless Chromium driven over the DevTools
protocol (Python standard library only: the CDP WebSocket client is below).

    python3 bench/dashboard_bench.py                      # 100,000 events, events view
    python3 bench/dashboard_bench.py --events 20000 --view logs
    python3 bench/dashboard_bench.py --screenshot docs/dashboard.png

It starts `target/release/hub-serve` (or `--hub-serve PATH`) with `--memory` on a
free port, opens `/?view=events&topic=flood` (or the view given), installs a
requestAnimationFrame watcher and a long-task observer in the page, publishes the
events in batches of `--batch` with POST /publish as fast as the hub takes them,
waits until the page has shown the last one, and reports as JSON:

- `worst_frame_gap_ms`: the longest time between two animation frames while the
  flood arrived (a main-thread stall is what makes a tab freeze);
- `worst_long_task_ms`: the longest task the Long Tasks API saw;
- `dom_elements`: `document.getElementsByTagName('*').length` at the end;
- `js_heap_used_mib`: `JSHeapUsedSize` of CDP `Performance.getMetrics` at the end,
  after a `HeapProfiler.collectGarbage`;
- `seconds`: flood start to the last event on the page.

Targets (issue 16): no stall over 200 ms, under 20,000 DOM elements, under 100 MiB
of JS heap after 100,000 events. The exit status is 1 when a target is missed.
Run it under the cargo lock on a shared machine (see the repo's helper rules).
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class WebSocket:
    """A minimal RFC 6455 client: text frames out (masked), any frames in."""

    def __init__(self, url, timeout=30):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        # No Origin header: Chromium refuses DevTools connections from origins.
        req = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(head.decode(errors="replace"))

    def send(self, text):
        data = text.encode()
        n = len(data)
        hdr = bytearray([0x81])
        if n < 126:
            hdr.append(0x80 | n)
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes(hdr) + mask + body)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            op = b0 & 0x0F
            if op == 8:
                raise ConnectionError("DevTools closed the connection")
            if op in (9, 10):
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()


class Browser:
    """Headless Chromium with a fresh profile, one page, driven over CDP."""

    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp(prefix="hub-dash-bench-")
        self.proc = subprocess.Popen(
            [chromium, *CHROME_FLAGS, "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "--window-size=1280,800", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 30
        while True:
            try:
                with open(port_file) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[1]:
                    break
            except FileNotFoundError:
                pass
            if time.time() > deadline:
                raise RuntimeError("Chromium wrote no DevToolsActivePort within 30 s")
            time.sleep(0.05)
        self.ws = WebSocket(f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}")
        self.next_id = 0
        self.session = None
        self.errors = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Performance"):
            self.call(f"{domain}.enable")

    def call(self, method, params=None, timeout=60):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        self.ws.send(json.dumps(msg))
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = json.loads(self.ws.recv())
            if m.get("method") == "Runtime.exceptionThrown":
                self.errors.append(m["params"]["exceptionDetails"].get("exception", {})
                                   .get("description") or str(m["params"]))
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
        raise TimeoutError(method)

    def eval(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, limit, what):
        deadline = time.time() + limit
        while time.time() < deadline:
            if self.eval(expr):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{what} not within {limit} s")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


WATCH = r"""
(() => {
  window.__bench = {worstGap: 0, worstTask: 0, last: performance.now(), on: true};
  const b = window.__bench;
  const frame = (t) => {
    const gap = t - b.last; b.last = t;
    if (b.on && gap > b.worstGap) b.worstGap = gap;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame((t) => { b.last = t; requestAnimationFrame(frame); });
  try {
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) if (e.duration > b.worstTask) b.worstTask = e.duration;
    }).observe({type: "longtask", buffered: false});
  } catch (e) { b.noLongTasks = String(e); }
  return true;
})()
"""


def start_hub(binary):
    proc = subprocess.Popen([binary, "--memory", "--listen", "127.0.0.1:0", "-q"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"ws://(\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"hub-serve did not say where it listens: {line!r}")
    return proc, m.group(1)


def publish(addr, lines):
    req = urllib.request.Request(f"http://{addr}/publish", data="\n".join(lines).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["ids"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--view", choices=["events", "logs", "tasks"], default="events")
    ap.add_argument("--hub-serve", default=os.path.join(ROOT, "target/release/hub-serve"))
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    ap.add_argument("--screenshot", help="write a PNG of the page at the end here")
    args = ap.parse_args()
    if not os.path.exists(args.hub_serve):
        sys.exit(f"{args.hub_serve} is missing: cargo build --release --bin hub-serve")
    if not os.path.exists(args.chromium):
        sys.exit(f"{args.chromium} is missing: apt-get install chromium")

    hub, addr = start_hub(args.hub_serve)
    browser = Browser(args.chromium)
    try:
        topic = {"events": "flood", "logs": "log:flood", "tasks": "task:flood-*"}[args.view]
        browser.call("Page.navigate", {"url": f"http://{addr}/?view={args.view}&topic={topic}"})
        browser.wait("document.getElementById('conn')?.dataset.state === 'live'", 30, "live")
        browser.eval(WATCH)
        time.sleep(0.5)
        t0 = time.time()
        sent = 0
        last_id = 0
        while sent < args.events:
            n = min(args.batch, args.events - sent)
            lines = []
            for i in range(sent, sent + n):
                if args.view == "tasks":
                    ev = {"topic": f"task:flood-{i % 1000}", "type": "progress",
                          "data": {"percent": (i // 1000) % 101, "message": f"step {i}"}}
                elif args.view == "logs":
                    ev = {"topic": topic, "type": "log",
                          "data": {"line": f"line {i} " + "x" * 60, "file": "/var/log/flood.log"}}
                else:
                    ev = {"topic": topic, "type": "message", "source": "bench",
                          "data": {"message": f"event {i}", "n": i}}
                lines.append(json.dumps(ev))
            last_id = publish(addr, lines)[-1]
            sent += n
        published_s = time.time() - t0
        if args.view == "tasks":
            done = f"document.querySelector('li[data-topic=\"task:flood-{(args.events - 1) % 1000}\"] .msg')?.textContent === 'step {args.events - 1}'"
        else:
            done = f"!!document.querySelector('[data-id=\"{last_id}\"]')"
        browser.wait(done, 120, "the last event on the page")
        shown_s = time.time() - t0
        time.sleep(0.3)
        b = browser.eval("({gap: window.__bench.worstGap, task: window.__bench.worstTask,"
                         " lt: window.__bench.noLongTasks || null,"
                         " dom: document.getElementsByTagName('*').length,"
                         " more: document.querySelector('.more:not([hidden])')?.textContent || null})")
        browser.call("HeapProfiler.collectGarbage")
        metrics = {m["name"]: m["value"]
                   for m in browser.call("Performance.getMetrics")["metrics"]}
        if args.screenshot:
            png = browser.call("Page.captureScreenshot", {"format": "png"})["data"]
            with open(args.screenshot, "wb") as f:
                f.write(base64.b64decode(png))
        result = {
            "view": args.view,
            "events": args.events,
            "batch": args.batch,
            "publish_seconds": round(published_s, 2),
            "seconds": round(shown_s, 2),
            "worst_frame_gap_ms": round(b["gap"], 1),
            "worst_long_task_ms": round(b["task"], 1),
            "dom_elements": b["dom"],
            "js_heap_used_mib": round(metrics["JSHeapUsedSize"] / 2**20, 1),
            "js_heap_total_mib": round(metrics["JSHeapTotalSize"] / 2**20, 1),
            "older_row": b["more"],
            "page_errors": browser.errors,
            "chromium": subprocess.run([args.chromium, "--version"], capture_output=True,
                                       text=True).stdout.strip(),
        }
        if b["lt"]:
            result["long_tasks_unavailable"] = b["lt"]
        print(json.dumps(result, indent=2))
        ok = (result["worst_frame_gap_ms"] <= 200 and result["dom_elements"] < 20000
              and result["js_heap_used_mib"] < 100 and not browser.errors)
        sys.exit(0 if ok else 1)
    finally:
        browser.close()
        hub.kill()
        hub.wait()


if __name__ == "__main__":
    main()

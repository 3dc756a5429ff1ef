#!/usr/bin/env python3
"""Heap profile of hub-serve holding N idle WebSocket subscribers (heaptrack).

    apt-get install heaptrack
    python3 bench/profile_idle.py 2000 > /tmp/idle-peaks.txt

Starts target/release/hub-serve under heaptrack, opens N idle subscribers as
W5 does, stops the hub with SIGTERM and prints heaptrack's peak consumers; the
allocation sites with "consumed over N calls" (N = the connection count) are
the per-connection costs.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
tmp = tempfile.mkdtemp(prefix="hub-heap-")
err = os.path.join(tmp, "stderr")
out = os.path.join(tmp, "heap")
p = H.spawn(["heaptrack", "-o", out, os.path.join(H.HUB_BIN, "hub-serve"), "--listen",
             "127.0.0.1:0", "--data-dir", os.path.join(tmp, "data"), "--max-connections",
             str(n + 100)], stdout=open(err + ".out", "wb"), stderr=open(err, "wb"))
hub = H.Hub.__new__(H.Hub)
hub.port = None
for _ in range(3000):
    m = re.search(rb"listening on ws://127\.0\.0\.1:(\d+)", open(err, "rb").read())
    if m:
        hub.port = int(m.group(1))
        break
    time.sleep(0.01)
conns = []
H.open_idle(hub, n, conns)
time.sleep(2)
# heaptrack is a shell script; the hub is a descendant of it. Stop that process only.
serve = subprocess.run(["pgrep", "-x", "hub-serve", "-P", str(p.pid)], capture_output=True,
                       text=True).stdout.split()
for s in conns:
    s.close()
for pid in serve:
    os.kill(int(pid), signal.SIGTERM)
p.wait(60)
files = [f for f in os.listdir(tmp) if f.startswith("heap")]
subprocess.run(["heaptrack_print", "-f", os.path.join(tmp, files[0]), "--print-peaks", "1",
                "--peak-limit", "12", "--print-allocators", "0", "--print-leaks", "0",
                "--print-temporary", "0"])

#!/usr/bin/env python3
"""CPU profile (perf) of W1: hub-serve, hub-emit --lines and hub-sub on N lines.

    apt-get install linux-perf   # Debian's `perf`
    python3 bench/profile_cpu.py 200000 > /tmp/w1-profile.txt
    python3 bench/profile_cpu.py 2000 1000 > /tmp/w3-profile.txt   # paced: W3

With a second argument (lines/s) the lines come from pace.py at that rate, as
in W3, and the latency percentiles are printed too.

Runs the W1 pipe once with every hub process under `perf record`, then
prints, per process, where its CPU time went (`perf report --no-children`,
entries above 1%) and the CPU seconds each used. Uses the binaries in
$CARGO_TARGET_DIR/release (default target/release).
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
rate = float(sys.argv[2]) if len(sys.argv) > 2 else 0
tmp = tempfile.mkdtemp(prefix="hub-perf-")
PERF = ["perf", "record", "-q", "-F", "1999"]


def perf(name):
    return PERF + ["--call-graph", "dwarf,16384", "-o", os.path.join(tmp, f"{name}.data"), "--"]


H.atexit.register(H.cleanup)
hub = H.Hub(tmp)
hub.start()
# The hub with call stacks (DWARF: release builds keep no frame pointers), so that the
# inclusive cost of hub's own functions shows, not only malloc and memmove.
rec = H.spawn(PERF + ["--call-graph", "dwarf,32768", "-o", os.path.join(tmp, "hub-serve.data"),
                      "-p", str(hub.pid)],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.0)
path = H.json_lines_file(tmp, n)
count = n + H.WARMUP if rate else n
sub = H.Sink(H.spawn(perf("hub-sub") + hub.sub_cmd("bench:prof", count, 0), stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL), latency=bool(rate))
hub.wait_subscribed([sub], "bench:prof", time.monotonic() + 30)
t0 = time.monotonic()
c0 = H.proc_cpu(hub.pid)
if rate:
    pace = H.spawn([sys.executable, os.path.join(H.BENCH, "pace.py"), "--count", str(n), "--rate",
                    str(rate), "--topic", "bench:prof", "--warmup", str(H.WARMUP),
                    "--start-delay", "0.5"], stdout=subprocess.PIPE)
    pub = H.spawn(perf("hub-emit") + hub.pub_lines_cmd("bench:prof"), stdin=pace.stdout,
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pace.stdout.close()
else:
    with open(path, "rb") as f:
        pub = H.spawn(perf("hub-emit") + hub.pub_lines_cmd("bench:prof"), stdin=f,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
H.pump([sub], n, t0 + 120, nap=0.001)
el = time.monotonic() - t0
hub_cpu = H.proc_cpu(hub.pid) - c0
H.reap(pub, 30)
H.reap(sub.proc, 30)
rec.send_signal(signal.SIGINT)
rec.wait(60)
hub.stop()
print(f"# {'W3' if rate else 'W1'} under perf: {n} lines in {el:.2f} s ({n / el:,.0f}/s, slowed by "
      f"perf); hub-serve used {hub_cpu:.2f} CPU s ({hub_cpu / n * 1e6:.1f} us per event)")
if rate:
    lat = [x / 1e6 for x in sub.lat_ns]
    print(f"# latency ms: p50 {H.pct(lat, 50):.3f}, p99 {H.pct(lat, 99):.3f}, max {max(lat):.3f}")
print()
MALLOC = ("_int_malloc", "_int_free", "malloc", "cfree", "free", "realloc", "unlink_chunk",
          "malloc_consolidate", "_int_realloc", "__libc_malloc", "__libc_free")


def report(name, *extra):
    out = subprocess.run(["perf", "report", "-i", os.path.join(tmp, f"{name}.data"), "--stdio",
                          "--percent-limit", "1.5", *extra], capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        line = line.rstrip().rstrip("-").rstrip()
        if line and not line.startswith("#"):
            rows.append(line)
    return rows


for name in ["hub-serve", "hub-emit", "hub-sub"]:
    print(f"\n## {name}: self time by symbol (perf report --no-children)\n")
    rows = report(name, "--no-children", "--sort", "dso,symbol", "-g", "none")
    alloc = sum(float(r.split("%")[0]) for r in rows
                if r.split()[-1].split("@")[0].split(".")[0] in MALLOC)
    print("\n".join(rows[:40]))
    print(f"\n(malloc/free family among the entries above: {alloc:.1f}%)")
for name in ["hub-serve", "hub-emit", "hub-sub"]:
    print(f"\n## {name}: inclusive time of hub's, serde's and tungstenite's functions "
          "(perf report --children)\n")
    rows = [r for r in report(name, "--children", "--sort", "symbol", "-g", "none")
            if ("hub::" in r or "serde" in r or "tungstenite" in r or "memset" in r)
            and "catch_unwind" not in r and "call_once" not in r and "do_call" not in r]
    print("\n".join(rows[:40]))

#!/usr/bin/env python3
"""Render BENCHMARKS.md from the results files written by bench/harness.py.

    python3 bench/report.py                 # newest file in bench/results/
    python3 bench/report.py --latest FILE   # that file
    python3 bench/report.py --out PATH      # write elsewhere (default: BENCHMARKS.md)

Every number in BENCHMARKS.md comes from a results file; the history table at
the end (the before/after of hub's changes) comes from all of them.
"""

import argparse
import glob
import json
import os
import statistics

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)

ORDER = ["hub", "mosquitto", "mosquitto (nodelay)", "redis", "nats"]


def load(path):
    with open(path) as f:
        return json.load(f)


def ok(r):
    return "error" not in r


def group(results, workload, **match):
    out = {}
    for r in results:
        if r["workload"] != workload or not all(r.get(k) == v for k, v in match.items()):
            continue
        if "phase" in r and "phase" not in match:
            continue
        out.setdefault(r["system"], []).append(r)
    return dict(sorted(out.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99))


def vals(rows, key):
    return [r[key] for r in rows if ok(r) and isinstance(r.get(key), (int, float))]


def med(rows, key):
    v = vals(rows, key)
    return statistics.median(v) if v else None


def fmt(x, unit="", digits=None):
    if x is None:
        return "–"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    s = f"{x:,.{digits}f}"
    return s + unit


def spread(rows, key, unit="", digits=None):
    v = vals(rows, key)
    if not v:
        errs = [r["error"] for r in rows if not ok(r)]
        return "failed" if errs else "–"
    m = statistics.median(v)
    if len(v) == 1:
        return fmt(m, unit, digits)
    return f"{fmt(m, unit, digits)} ({fmt(min(v), '', digits)}–{fmt(max(v), '', digits)})"


def ratio(hub, other):
    if hub is None or other is None or other == 0:
        return "–"
    return f"{hub / other:.2f}×"


def integrity(rows):
    good = [r for r in rows if ok(r)]
    if not good:
        return "–"
    lost = sum(r.get("lost", 0) for r in good)
    dup = sum(r.get("dup", 0) for r in good)
    reo = sum(r.get("reordered", 0) for r in good)
    return f"{lost} / {dup} / {reo}"


def exit_codes(rows):
    codes = [c for r in rows if ok(r) for c in r.get("rcs", [])]
    errs = [r["error"] for r in rows if not ok(r)]
    if errs:
        return "failed: " + errs[0][:100]
    return "all 0" if codes and all(c == 0 for c in codes) else ", ".join(map(str, codes))


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def throughput_section(res, key, unit):
    g = group(res, key)
    if not g:
        return None
    hub = med(g.get("hub", []), "rate")
    rows = []
    for sysname, rs in g.items():
        cpu = "/".join(fmt(med(rs, k), "", 2) for k in ["cpu_broker_s", "cpu_pub_s", "cpu_subs_s"])
        rows.append([sysname, spread(rs, "rate"), spread(rs, "elapsed_s", " s"), integrity(rs),
                     cpu, fmt(med(rs, "cpu_other_s"), "", 2),
                     "" if sysname == "hub" else ratio(hub, med(rs, "rate")),
                     len(vals(rs, "rate"))])
    return table(["system", f"{unit} median (min–max)", "time to last line", "lost / dup / reordered (all runs)",
                  "CPU s broker/pub/subs", "other processes' CPU s", "hub ÷ this", "runs"], rows)


def summary(res):
    rows = []
    def row(target, hubv, anchor_name, anchorv, met):
        rows.append([target, hubv, anchor_name, anchorv,
                     "–" if met is None else ("yes" if met else "**no**")])

    g1 = group(res, "w1")
    h, r = med(g1.get("hub", []), "rate"), med(g1.get("redis", []), "rate")
    row("W1 pipe ≥ redis rate", fmt(h, " msg/s"), "redis", fmt(r, " msg/s"),
        None if h is None or r is None else h >= r)
    g2 = group(res, "w2")
    h, r = med(g2.get("hub", []), "rate"), med(g2.get("redis", []), "rate")
    row("W2 fan-out ≥ redis rate", fmt(h, " deliveries/s"), "redis", fmt(r, " deliveries/s"),
        None if h is None or r is None else h >= r)
    g3 = group(res, "w3_pooled") or group(res, "w3")
    h, r = med(g3.get("hub", []), "p99_ms"), med(g3.get("redis", []), "p99_ms")
    row("W3 p99 ≤ 2 ms (all runs pooled)", fmt(h, " ms"), "redis", fmt(r, " ms"), None if h is None else h <= 2.0)
    g4 = group(res, "w4")
    h = med(g4.get("hub-emit (durable ack)", []), "median_ms")
    m = med(g4.get("mosquitto_pub (QoS 0)", []), "median_ms")
    row("W4 one-shot ≤ mosquitto_pub", fmt(h, " ms"), "mosquitto_pub", fmt(m, " ms"),
        None if h is None or m is None else h <= m)
    g5 = group(res, "w5")
    h = med(g5.get("hub", []), "kib_per_conn_10000") or med(g5.get("hub", []), "kib_per_conn_1000")
    m = med(g5.get("mosquitto", []), "kib_per_conn_10000") or med(g5.get("mosquitto", []), "kib_per_conn_1000")
    row("W5 ≤ 8 KiB per idle connection", fmt(h, " KiB"), "mosquitto", fmt(m, " KiB"),
        None if h is None else h <= 8)
    gr = group(res, "restart")
    h = med(gr.get("hub", []), "ready_s")
    row("restart with 1 M events < 1 s", fmt(h, " s"), "", "", None if h is None else h < 1)
    return table(["target", "hub", "anchor", "anchor value", "met"], rows)


def history(files):
    rows = []
    for path in files:
        try:
            d = load(path)
        except (OSError, ValueError):
            continue
        res, meta = d["results"], d["meta"]
        if meta.get("quick"):
            continue
        hub = lambda w, k: med(group(res, w).get("hub", []), k)
        w4 = group(res, "w4").get("hub-emit (durable ack)", [])
        cells = [hub("w1", "rate"), hub("w2", "rate"), hub("w3", "p99_ms"), med(w4, "median_ms"),
                 hub("w5", "kib_per_conn_10000"), hub("restart", "ready_s"), hub("tail", "rate")]
        if all(c is None for c in cells):
            continue
        rev = f"`{meta.get('git_rev', '?')}`" + (f" {meta['label']}" if meta.get("label") else "")
        fc, la = meta.get("foreign_cpu"), meta.get("loadavg")
        if fc:
            quiet = "busy" if max(l for _, l in fc) > 0.25 else "quiet"
        elif la:
            quiet = "busy" if max(l for _, l in la) > 1.0 else "quiet"
        else:
            quiet = "not recorded"
        only = ",".join(meta.get("workloads", []))
        rows.append([meta.get("started", "?"), rev, quiet, only,
                     fmt(cells[0]), fmt(cells[1]), fmt(cells[2]), fmt(cells[3]), fmt(cells[4]),
                     fmt(cells[5]), fmt(cells[6])])
    if not rows:
        return None
    return table(["run", "hub rev", "machine", "workloads run", "W1 msg/s", "W2 deliveries/s", "W3 p99 ms", "W4 ms",
                  "W5 KiB/conn", "restart s", "tail lines/s"], rows)


def render(data, files):
    meta, res = data["meta"], data["results"]
    v = meta.get("versions", {})
    L = []
    L.append("# Benchmarks: hub beside mosquitto, Redis and NATS\n")
    label = f" ({meta['label']})" if meta.get("label") else ""
    L.append(f"Generated by `bench/run.sh` on {meta['started']} from hub `{meta['git_rev']}`{label} "
             f"(the run took {meta['duration_s']:.0f} s{'; **quick mode**: small sizes' if meta.get('quick') else ''}). "
             "Every number below comes from the script; to refresh them run `bench/run.sh` "
             "(as root: it installs the anchors from Debian's packages). Do not edit by hand.\n")
    L.append(f"Machine: {meta['nproc']} CPUs ({meta['cpu']}), {meta['mem_gib']} GiB, "
             f"kernel {meta['kernel']}, {meta['os']}.  ")
    L.append(f"Anchors: {v.get('mosquitto')}; {v.get('redis')}; {v.get('nats-server')}; "
             f"{v.get('hyperfine')}; harness Python {v.get('python')}.\n")
    loads = meta.get("foreign_cpu")
    if loads:
        busy = ", ".join(f"{w} {l:.2f}" for w, l in loads if l > 0.25)
        L.append("CPUs used by other processes in the second before each workload: "
                 f"{min(l for _, l in loads):.2f}–{max(l for _, l in loads):.2f}"
                 + (f". **Busy before {busy}**: something else ran on this {meta['nproc']}-CPU "
                    "machine (the harness waits up to `--quiet-wait` for it), so those numbers are "
                    "noisier." if busy else " (quiet).") + "\n")
    elif meta.get("loadavg"):
        loads = meta["loadavg"]
        busy = ", ".join(f"{w} {l:.1f}" for w, l in loads if l > 1.0)
        L.append(f"1-minute load average when each workload started: {min(l for _, l in loads):.1f}–"
                 f"{max(l for _, l in loads):.1f}" + (f" (**busy**: {busy}: something else was "
                 f"running on this {meta['nproc']}-CPU machine, so those numbers are noisier)."
                 if busy else ".") + "\n")
    for n in meta.get("notes", []):
        L.append(f"> **Note:** {n}\n")
    L.append("All brokers listen on 127.0.0.1; each run gets a fresh broker. hub runs with its "
             "defaults (durable log in a fresh `--data-dir`, `--fsync batch`); mosquitto with "
             "`persistence false`; redis with `--save '' --appendonly no`. Medians over runs, "
             "(min–max) across runs. A ratio `hub ÷ this` above 1 means hub is higher (better for "
             "rates, worse for times and memory).\n")

    L.append("## Summary: hub against the targets of issue 6\n")
    L.append(summary(res) + "\n")

    t = throughput_section(res, "w1", "msg/s")
    if t:
        n = next((r.get("n") for r in res if r["workload"] == "w1" and ok(r)), "?")
        L.append(f"## W1 pipe: {n:,} JSON lines through one publisher and one subscriber process\n")
        L.append("`hub-emit T --lines < file` → `hub-sub T --count N`; `mosquitto_pub -t T -l < file` → "
                 "`mosquitto_sub -t T` (QoS 0); `redis-cli --pipe < file` (the same lines as RESP "
                 "`PUBLISH T line`, converted beforehand) → `redis-cli SUBSCRIBE T`. Lines are 100 "
                 "bytes of JSON with a `seq`. Time from starting the publisher until the subscriber "
                 "has printed the last line; CPU is user+system of each process during the run, and "
                 "\"other processes\" is what the rest of the machine used meanwhile (well above 0: "
                 "that run was disturbed).\n")
        L.append(t + "\n")
    t = throughput_section(res, "w2", "deliveries/s")
    if t:
        r0 = next((r for r in res if r["workload"] == "w2" and ok(r)), {})
        L.append(f"## W2 fan-out: {r0.get('subs', '?')} subscriber processes × {r0.get('n', 0):,} messages\n")
        L.append("As W1, with every subscriber started and confirmed subscribed before the publisher "
                 "starts (hub: `--ready-file`; redis: `PUBSUB NUMSUB`; mosquitto: a probe message "
                 "seen by each). Rate = subscribers × messages ÷ time until the last subscriber has "
                 "all; lost/dup/reordered summed over all subscribers.\n")
        L.append(t + "\n")

    g = group(res, "w3")
    if g:
        r0 = next((r for r in res if r["workload"] == "w3" and ok(r)), {})
        L.append(f"## W3 latency: {r0.get('n', '?'):,} messages at a steady 1,000/s\n")
        L.append("`bench/pace.py` writes one line per millisecond (absolute schedule), each with its "
                 "send time (`time.time_ns()`), into the publisher's stdin (`hub-emit --lines`, "
                 "`mosquitto_pub -l`, `redis-cli --pipe`); latency = time the line comes out of the "
                 "subscriber's stdout − send time. \"mosquitto (nodelay)\" is the broker with "
                 "`set_tcp_nodelay true`. A run during which the rest of the machine (other "
                 "processes and steal time) used more than 0.1 CPU-seconds is made again once it "
                 "is quiet, up to four attempts, for every system alike; the last attempt counts.")
        gd = group(res, "w3_disturbed")
        if gd:
            L[-1] += " Runs made again: " + ", ".join(f"{s} {len(rs)}" for s, rs in gd.items()) + "."
        L[-1] += "\n"
        hub = med(g.get("hub", []), "p99_ms")
        gp = group(res, "w3_pooled")
        rows = [[s, spread(rs, "p50_ms", "", 3), spread(rs, "p99_ms", "", 2), spread(rs, "max_ms", "", 1),
                 fmt(med(gp.get(s, []), "p99_ms"), "", 2), fmt(med(gp.get(s, []), "p999_ms"), "", 2),
                 integrity(rs), "" if s == "hub" else ratio(hub, med(rs, "p99_ms")), len(vals(rs, "p99_ms"))]
                for s, rs in g.items()]
        L.append(table(["system", "p50 ms", "p99 ms", "max ms", "p99 ms, all runs pooled",
                        "p99.9 ms, pooled", "lost / dup / reordered", "hub p99 ÷ this", "runs"], rows) + "\n")

    wm = [r for r in res if r["workload"] == "w3_modes"]
    if wm:
        L.append("### W3 for hub by durability setting\n")
        L.append("The same workload against hub alone, with each `--fsync` mode and `--memory`: "
                 "what the log costs in latency.\n")
        rows = []
        for mode in ["--fsync batch", "--fsync never", "--fsync always", "--memory"]:
            rs = [r for r in wm if r.get("mode") == mode]
            if rs:
                rows.append([f"`{mode}`", spread(rs, "p50_ms", "", 3), spread(rs, "p99_ms", "", 2),
                             spread(rs, "max_ms", "", 1), fmt(med(rs, "cpu_broker_s"), " s", 2),
                             integrity(rs), len(vals(rs, "p99_ms"))])
        L.append(table(["hub-serve", "p50 ms", "p99 ms", "max ms", "hub-serve CPU",
                        "lost / dup / reordered", "runs"], rows) + "\n")

    g = group(res, "w4")
    if g:
        r0 = next((r for r in res if r["workload"] == "w4" and ok(r)), {})
        L.append("## W4 one-shot: a fresh publisher process publishing one message\n")
        L.append(f"hyperfine `-N --warmup 3 --runs {r0.get('runs', '?')}` per command; median and "
                 "(min–max) over its runs. `hub-emit` exits only after the hub acknowledged the event "
                 "as written to its log; `mosquitto_pub` at QoS 0 waits for nothing, with `-q 1` for "
                 "the broker's PUBACK (no persistence); `redis-cli PUBLISH` for the reply.\n")
        hub = med(g.get("hub-emit (durable ack)", []), "median_ms")
        rows = []
        for s, rs in g.items():
            if "MIMALLOC_ALLOW_THP" in s:
                continue  # older runs measured it; hub-emit does not use mimalloc
            good = [r for r in rs if ok(r)]
            if not good:
                rows.append([f"`{s}`", "failed", "", ""])
                continue
            r = good[0]
            rows.append([f"`{s}`", fmt(r["median_ms"], " ms", 2),
                         f"{fmt(r['min_ms'], '', 2)}–{fmt(r['max_ms'], '', 2)}",
                         "" if s.startswith(("hub", "/bin")) else ratio(hub, r["median_ms"])])
        L.append(table(["command", "median", "min–max", "hub ÷ this"], rows) + "\n")
        L.append("The rows after the first hub row are diagnostics: the cost of starting and "
                 "exiting `hub-emit` without any network, and the floor of spawning a process.\n")

    g = group(res, "w5")
    if g:
        counts = sorted({int(k.split("_")[1]) for r in res if r["workload"] == "w5"
                         for k in r if k.startswith("rss_") and k != "rss_base_kib"})
        L.append("## W5 memory: broker RSS per idle subscriber\n")
        L.append("Raw sockets from one Python process, each connected and subscribed to one topic, "
                 "then idle (MQTT CONNECT+SUBSCRIBE; RESP `SUBSCRIBE`; NATS `CONNECT`+`SUB`; hub "
                 "`GET /ws?topic=` upgrade, waiting for `subscribed`). Per connection = (RSS with N "
                 "− RSS with one) ÷ N, RSS from `/proc/PID/status` one second after the last "
                 "connection. hub runs with `--max-connections` just above N (its default is 10,000).\n")
        hubv = {n: med(g.get("hub", []), f"kib_per_conn_{n}") for n in counts}
        header = ["broker", "RSS with 1"]
        for n in counts:
            header += [f"RSS with {n:,}", f"KiB/conn @{n:,}"]
        header += ["hub ÷ this (@%s)" % f"{counts[-1]:,}" if counts else "hub ÷ this"]
        rows = []
        for s, rs in g.items():
            row = [s, fmt(med(rs, "rss_base_kib") and med(rs, "rss_base_kib") / 1024, " MiB", 1)]
            if not vals(rs, "rss_base_kib"):
                row = [s, "failed: " + rs[0].get("error", "")[:120]] + [""] * (len(header) - 2)
                rows.append(row)
                continue
            for n in counts:
                rss = med(rs, f"rss_{n}_kib")
                row += [fmt(rss and rss / 1024, " MiB", 1), fmt(med(rs, f"kib_per_conn_{n}"), "", 2)]
            row.append("" if s == "hub" or not counts else
                       ratio(hubv[counts[-1]], med(rs, f"kib_per_conn_{counts[-1]}")))
            rows.append(row)
        L.append(table(header, rows) + "\n")

    hub_only = []
    g = group(res, "restart")
    fill = [r for r in res if r["workload"] == "restart" and r.get("phase") == "fill" and ok(r)]
    if g or fill:
        s = "### Restart with a full log\n\n"
        if fill:
            f = fill[0]
            s += (f"The log was filled with {f['events']:,} events by `POST /publish` (JSON lines, "
                  f"100,000 per request) at {fmt(f['fill_rate'])} events/s; `/status` then said "
                  f"events={f.get('status_events')}, last_id={f.get('last_id')}, "
                  f"log_bytes={f.get('log_bytes')}. SIGTERM took {fmt(f['stop_s'], ' s')}.\n\n")
        rs = g.get("hub", [])
        s += ("Time from spawning `hub-serve` on that data dir until its `listening` line, and "
              "until `GET /health` answers 200:\n\n")
        s += table(["to `listening` line", "to /health 200 (target < 1 s)", "events after restart",
                    "RSS after restart", "runs"],
                   [[spread(rs, "listen_s", " s", 3), spread(rs, "ready_s", " s", 3),
                     ", ".join(str(r.get("status_events")) for r in rs if ok(r)) or "–",
                     fmt(med(rs, "rss_kib") and med(rs, "rss_kib") / 1024, " MiB", 1),
                     len(vals(rs, "ready_s"))]]) + "\n"
        hub_only.append(s)
    fs = [r for r in res if r["workload"] == "fsync"]
    if fs:
        s = ("### Publish throughput by `--fsync` mode (group commit)\n\n"
             "Events acknowledged per second, no subscriber: one `hub-emit --lines` with the whole "
             "input, or several in parallel on different topics with a share each; the clock stops "
             "when the last publisher has exited (all acked).\n\n")
        rows = []
        for mode in ["batch", "always", "never"]:
            for npub in sorted({r.get("publishers") for r in fs}):
                rs = [r for r in fs if r.get("mode") == mode and r.get("publishers") == npub]
                if rs:
                    rows.append([f"`--fsync {mode}`", npub, fmt(med(rs, "n")), spread(rs, "rate"),
                                 exit_codes(rs)])
        s += table(["mode", "publishers", "events", "events/s", "exit codes"], rows) + "\n"
        hub_only.append(s)
    g = group(res, "ws_publish")
    if g:
        rs = g["hub"]
        s = ("### One WebSocket, pipelined publishes (issue 2)\n\n"
             "`bench/ws_publish.py` (Python `websockets`) sends `publish` frames with at most 1,000 "
             "unacknowledged; the clock stops at the last `ack`. The Python client may be the "
             "limit: its CPU time is shown.\n\n")
        s += table(["events", "acked events/s", "client CPU s", "hub-serve CPU s", "errors", "runs"],
                   [[fmt(med(rs, "n")), spread(rs, "rate"), fmt(med(rs, "cpu_client_s")),
                     fmt(med(rs, "cpu_broker_s")),
                     fmt(med(rs, "errors"), "", 0), len(vals(rs, "rate"))]]) + "\n"
        hub_only.append(s)
    fo = [r for r in res if r["workload"] == "fanout100"]
    if fo:
        s = ("### Fan-out of one stream to 100 `hub-sub` processes (issue 2)\n\n"
             "Lines with their send time from `pace.py` into one `hub-emit --lines`; 100 "
             "`hub-sub` processes; latency to each subscriber's stdout. Flat out, latency is mostly "
             "queueing (all lines are written at once); at 1,000 events/s it is the path's own.\n\n")
        rows = []
        for phase in sorted({r.get("phase", "flat out") for r in fo}, reverse=True):
            rs = [r for r in fo if r.get("phase", "flat out") == phase]
            r0 = next((r for r in rs if ok(r)), {})
            rows.append([phase, fmt(r0.get("n")), spread(rs, "rate"), spread(rs, "p50_ms", "", 2),
                         spread(rs, "p99_ms", "", 2), spread(rs, "max_ms", "", 1), integrity(rs),
                         len(vals(rs, "rate"))])
        s += table(["publishing", "events", "deliveries/s", "p50 ms", "p99 ms", "max ms",
                    "lost / dup / reordered", "runs"], rows) + "\n"
        hub_only.append(s)
    g = group(res, "tail")
    if g:
        rs = g["hub"]
        r0 = next((r for r in rs if ok(r)), {})
        s = ("### hub-tail catching up on a big file (issue 4)\n\n"
             f"`hub-tail FILE --from-start` on a {fmt(r0.get('bytes', 0) / 2**20, ' MiB')} file of "
             f"{fmt(r0.get('lines'))} 100-byte log lines; the clock stops when `/status` shows "
             "the last id (or at the time limit).\n\n")
        s += table(["lines/s", "MiB/s", "published", "complete", "CPU s hub-tail / hub-serve"],
                   [[spread(rs, "rate"), spread(rs, "mib_s"), fmt(med(rs, "published")),
                     ", ".join(str(r.get("complete")) for r in rs if ok(r)) or
                     "failed: " + rs[0].get("error", "")[:100],
                     f"{fmt(med(rs, 'cpu_tail_s'))} / {fmt(med(rs, 'cpu_hub_s'))}"]]) + "\n"
        hub_only.append(s)
    tl = [r for r in res if r["workload"] == "tail_latency"]
    if tl:
        s = ("### Write → hub-sub latency through hub-tail (issue 4)\n\n"
             f"`hub-tail FILE --topic T` following a file to which {tl[0].get('n', '?')} lines are "
             "appended at 100/s, each carrying its write time; latency measured at `hub-sub`'s "
             "stdout.\n\n")
        s += table(["mode", "p50 ms", "p99 ms", "max ms", "received"],
                   [[r["mode"], fmt(r.get("p50_ms"), "", 2), fmt(r.get("p99_ms"), "", 2),
                     fmt(r.get("max_ms"), "", 1), r.get("received", "failed: " + r.get("error", "")[:100])]
                    for r in tl]) + "\n"
        hub_only.append(s)
    ti = [r for r in res if r["workload"] == "tail_idle"]
    if ti:
        s = ("### CPU while following 100 idle files (issue 4)\n\n")
        s += table(["mode", "hub-tail CPU %", "hub-serve CPU %", "hub-tail RSS", "seconds"],
                   [[r["mode"], fmt(r.get("cpu_tail_pct"), "", 2), fmt(r.get("cpu_hub_pct"), "", 2),
                     fmt(r.get("rss_tail_kib") and r["rss_tail_kib"] / 1024, " MiB", 1),
                     fmt(r.get("seconds")) if ok(r) else "failed: " + r["error"][:100]]
                    for r in ti]) + "\n"
        hub_only.append(s)
    n1 = group(res, "n1")
    n3 = group(res, "n3_pooled")
    if n1 or n3:
        L.append("## hub over NATS JetStream (`hub-serve --nats`, issue 18)\n")
        L.append("Two `hub-serve --nats` nodes over one JetStream: `hub-emit --lines` publishes to "
                 "node A, `hub-sub` reads from node B (each event crosses A → JetStream → B), beside "
                 "the same lines published and read directly with async-nats through the same "
                 "servers in the same run (`bench/jetstream_pipe.rs`: pipelined acks, an ordered "
                 "consumer): the anchor, what hub's hop costs. One `nats-server -js`, and a "
                 "3-server cluster with the stream at 3 replicas (\"R3\"), all on this machine.\n")
        if n1:
            rows = []
            for sysname, rs in n1.items():
                anchor_name = sysname.replace("hub --nats", "async-nats direct")
                direct = med(n1.get(anchor_name, []), "rate")
                rows.append([sysname, spread(rs, "rate"), integrity(rs),
                             "" if sysname == anchor_name else ratio(med(rs, "rate"), direct),
                             len(vals(rs, "rate"))])
            n = next((r.get("n") for r in res if r["workload"] == "n1" and ok(r)), 0)
            L.append(f"### W1 pipe over JetStream: {n:,} lines (target: hub at least half the direct rate)\n")
            L.append(table(["system", "msg/s median (min–max)", "lost / dup / reordered",
                            "hub ÷ direct", "runs"], rows) + "\n")
        if n3:
            rows = [[sysname, rs[0].get("n"), fmt(rs[0].get("p50_ms"), " ms"),
                     fmt(rs[0].get("p99_ms"), " ms"), fmt(rs[0].get("max_ms"), " ms")]
                    for sysname, rs in n3.items()]
            L.append("### W3 latency over JetStream at 1,000/s, all runs pooled (target: hub p99 ≤ 5 ms on one server)\n")
            L.append(table(["system", "messages", "p50", "p99", "max"], rows) + "\n")

    if hub_only:
        L.append("## hub only\n")
        L.extend(hub_only)

    errs = [r for r in res if not ok(r)]
    if errs:
        L.append("## Failed runs\n")
        for r in errs:
            L.append(f"- {r['workload']} / {r['system']}: `{r['error'][:300].strip()}`")
        L.append("")

    h = history(files)
    if h:
        L.append("## hub over time (before / after)\n")
        L.append("One row per full run kept in `bench/results/` (medians), oldest first: the "
                 "effect of each change to hub, measured by the same script.\n")
        L.append(h + "\n")

    L.append("## Not measured, and why\n")
    L.append("- NATS in W1–W4: Debian has `nats-server` but no NATS command-line client; a Python "
             "client would measure Python, not NATS. NATS appears in W5 (memory), over raw sockets.")
    L.append("- websocat: not packaged in Debian 12.")
    L.append("")
    return "\n".join(L)


# Written by hand from scripts outside harness.py, appended as they are.
EXTRA_SECTIONS = ["dashboard.md"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latest")
    ap.add_argument("--results", default=os.path.join(BENCH, "results"))
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.results, "*.json")))
    latest = a.latest or (files[-1] if files else None)
    if not latest:
        raise SystemExit("report: no results file; run bench/run.sh first")
    text = render(load(latest), files)
    # Sections measured by hand (the browser bench): kept in their own files.
    for extra in EXTRA_SECTIONS:
        path = os.path.join(BENCH, extra)
        if os.path.exists(path):
            with open(path) as f:
                text = text.rstrip("\n") + "\n\n" + f.read()
    with open(a.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Write COUNT lines at RATE lines/s on stdout, each carrying its send time.

    python3 bench/pace.py --count 2000 --rate 1000 | hub-emit bench:lat --lines

Each line is a JSON object {"seq":N,"t":UNIX_NS,"pad":"..."}; the receive side
subtracts "t" from its own clock (same machine, same CLOCK_REALTIME). With
--format resp the same object is wrapped in a RESP `PUBLISH TOPIC PAYLOAD`
command for `redis-cli --pipe`. --rate 0 writes as fast as it can.

With --warmup K it first writes K lines without "seq" and waits --start-delay,
so that the publisher's start-up and connect are not counted as latency.

The schedule is absolute (line i is due at start + i/rate), so a late line does
not push the later ones back: the offered rate stays what was asked for.
"""

import argparse
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--format", choices=["json", "resp"], default="json")
    ap.add_argument("--topic", default="bench:lat")
    ap.add_argument("--pad", type=int, default=40, help="filler bytes per line")
    ap.add_argument("--warmup", type=int, default=0,
                    help="first write this many {\"warmup\":1} lines (no seq, no t), then pause")
    ap.add_argument("--start-delay", type=float, default=0.0, help="pause before the timed lines")
    args = ap.parse_args()

    out = sys.stdout.buffer
    fd = out.fileno()
    topic = args.topic.encode()
    pad = b"x" * args.pad
    for _ in range(args.warmup):
        # Lets the publisher connect (and the path warm up) before the clock matters.
        w = b'{"warmup":1}'
        if args.format == "resp":
            w = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(topic), topic, len(w), w)
        else:
            w += b"\n"
        os.write(fd, w)
    if args.start_delay:
        time.sleep(args.start_delay)
    start = time.monotonic()
    for i in range(args.count):
        if args.rate > 0:
            due = start + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        payload = b'{"seq":%d,"t":%d,"pad":"%s"}' % (i, time.time_ns(), pad)
        if args.format == "resp":
            line = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
                len(topic), topic, len(payload), payload)
        else:
            line = payload + b"\n"
        try:
            os.write(fd, line)  # unbuffered: one write per line, as a shell loop does
        except BrokenPipeError:
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

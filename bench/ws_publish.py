#!/usr/bin/env python3
"""Publish N events over one WebSocket with at most WINDOW unacknowledged.

    python3 bench/ws_publish.py ws://127.0.0.1:7357 100000 1000

Prints one JSON object: n, elapsed_s, rate (acked events/s), errors. The frames
are the SPEC's `{"type":"publish","req":N,"event":{...}}`, answered by
`{"type":"ack","req":N,"id":..}`. The client is Python (websockets), so at high
rates it may be the limit; its own CPU time is reported as cpu_client_s.
"""

import asyncio
import json
import resource
import sys
import time

import websockets


async def main(url, n, window):
    url = url.rstrip("/") + ("" if url.endswith("/ws") else "/ws")
    async with websockets.connect(url, max_size=2**24, compression=None) as ws:
        free = asyncio.Semaphore(window)
        acked = 0
        errors = 0
        done = asyncio.Event()

        async def reader():
            nonlocal acked, errors
            async for msg in ws:
                f = json.loads(msg)
                t = f.get("type")
                if t == "ack":
                    acked += 1
                    free.release()
                elif t == "error":
                    errors += 1
                    free.release()
                    if "req" not in f:
                        continue
                    acked += 1
                if acked >= n:
                    done.set()
                    return

        task = asyncio.create_task(reader())
        t0 = time.monotonic()
        for i in range(n):
            await free.acquire()
            await ws.send('{"type":"publish","req":%d,"event":{"topic":"bench:ws","data":'
                          '{"seq":%d,"msg":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}}' % (i, i))
        await asyncio.wait_for(done.wait(), 60)
        el = time.monotonic() - t0
        task.cancel()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"n": n, "window": window, "elapsed_s": el, "rate": n / el,
                      "errors": errors, "cpu_client_s": ru.ru_utime + ru.ru_stime}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))

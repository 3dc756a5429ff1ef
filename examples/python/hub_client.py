#!/usr/bin/env python3
"""A small Python client for hub, made to be copied into a bot.

Needs Python 3.9+ and the `websockets` package (13 or newer); HTTP goes through the
standard library. The wire it speaks is described in docs/protocol.md.

    import asyncio
    from hub_client import Hub

    async def main():
        hub = Hub("ws://127.0.0.1:7357", token=None)
        async with hub.publisher() as pub:          # pipelined, acked, idempotent
            await pub.send("deploy:web", "deployed", {"version": "1.4.2"})
        async with hub.task("task:report") as task:  # task_started ... task_completed
            await task.progress(50, "halfway")       # (task_failed if the block raises)
        async for event in hub.subscribe("task:*", since=0):
            print(event["id"], event["type"], event["data"])

    asyncio.run(main())

What it does for you:

- Subscribing resumes after any drop from the last event it handed out
  (`since=ID`), so a hub restart neither loses nor repeats an event; gaps the hub
  reports (ids trimmed by retention or lost to disk damage) go to `on_gap`.
- Reconnects wait 0.5 s, doubling to 30 s, each with +-20 % jitter, and obey the
  close codes: after 1001, 1006, 4429 and 4500 it reconnects; after 1003, 1008, 1009,
  4400, 4401 and 4403 it stops with `Refused` (retrying cannot help).
- When WebSocket upgrades are refused (say a proxy that does not pass them), it
  long-polls `GET /events` (and publishes with `POST /publish`), trying the WebSocket
  again every `ws_retry` seconds, and goes back to it once it works.
- Publishing pipelines up to `window` events, each with an idempotency key, and
  keeps each until the hub acknowledges it; after a reconnect the unacknowledged
  ones are sent again with the same key, so the hub stores each once.
- A hub that stays unreachable for `timeout` seconds raises `Unreachable`.

Command line (exit codes: 0 ok, 2 usage, 3 hub unreachable, 4 refused by the hub):

    python3 hub_client.py sub 'task:*' --where data.percent=100 --since 0
    python3 hub_client.py pub task:build-42 progress --data '{"percent": 50}'
    printf '%s\\n' '{"topic":"log:bot","data":{"line":"hi"}}' | python3 hub_client.py pub --lines
    python3 hub_client.py demo
"""

import argparse
import asyncio
import collections
import json
import os
import random
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

try:
    from websockets.asyncio.client import connect as _ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
except ImportError:  # websockets < 13 or not installed
    _ws_connect = None

DEFAULT_URL = "ws://127.0.0.1:7357"
#: Close codes after which retrying cannot help (docs/protocol.md, "Close codes").
STOP_CODES = {1003, 1008, 1009, 4400, 4401, 4403}

EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 2, 3, 4


class HubError(Exception):
    """Base of the errors this client raises; `exit_code` is the CLI's exit status."""

    exit_code = 1


class Unreachable(HubError):
    """No connection could be made for `timeout` seconds."""

    exit_code = EXIT_UNREACHABLE


class Refused(HubError):
    """The hub said no (bad token, limits, an invalid event or subscription)."""

    exit_code = EXIT_REFUSED

    def __init__(self, code, message):
        super().__init__(f"refused by the hub: {message} ({code})")
        self.code, self.message = code, message


class _Transient(Exception):
    """A failure worth retrying (connection refused or dropped, 5xx, 429)."""


class _UpgradeRefused(Exception):
    """The WebSocket handshake got an HTTP answer other than 101."""

    def __init__(self, status):
        super().__init__(f"WebSocket upgrade refused (HTTP {status})")
        self.status = status


def normalize_url(url):
    """`ws://h:p`, `ws://h:p/ws`, `http://h:p` and `h:p` name the same hub.

    Returns (WebSocket URL ending in /ws, HTTP base URL).
    """
    if "://" not in url:
        url = "ws://" + url
    u = urllib.parse.urlsplit(url)
    scheme = {"ws": "ws", "http": "ws", "wss": "wss", "https": "wss"}.get(u.scheme)
    if scheme is None or not u.netloc:
        raise ValueError(
            f"invalid hub URL {url!r}: use ws://HOST:PORT, http://HOST:PORT or HOST:PORT"
        )
    path = u.path.rstrip("/")
    if not path.endswith("/ws"):
        path += "/ws"
    base = ("https" if scheme == "wss" else "http") + "://" + u.netloc + path[: -len("/ws")]
    return f"{scheme}://{u.netloc}{path}", base


class _Backoff:
    """0.5 s doubling to 30 s, each delay with +-20 % jitter; reset after a success."""

    def __init__(self, first=0.5, limit=30.0):
        self.first, self.limit, self.next = first, limit, first

    def reset(self):
        self.next = self.first

    async def sleep(self):
        await asyncio.sleep(self.next * random.uniform(0.8, 1.2))
        self.next = min(self.next * 2, self.limit)


class _Outage:
    """Measures how long the hub has been out of reach; raises past `limit`."""

    def __init__(self, url, limit):
        self.url, self.limit, self.since = url, limit, None

    def ok(self):
        self.since = None

    def failed(self, cause):
        now = time.monotonic()
        if self.since is None:
            self.since = now
        if self.limit is not None and now - self.since >= self.limit:
            raise Unreachable(
                f"cannot reach the hub at {self.url} (gave up after {self.limit:g}s): {cause}"
            )


def _close_code(exc):
    """The close code of a ConnectionClosed: the hub's, or 1006 when none came."""
    return exc.rcvd.code if exc.rcvd is not None else 1006


def _hub_error(body):
    """(code, message) of a hub error body `{"code":..., "message":...}`."""
    try:
        v = json.loads(body)
        return v.get("code", ""), v.get("message", "")
    except (ValueError, AttributeError):
        return "", body.decode("utf-8", "replace").strip() if isinstance(body, bytes) else str(body)


class Hub:
    """One hub: its URL, token and retry settings. Cheap; makes no connection itself.

    - `timeout`: seconds the hub may stay unreachable before `Unreachable` is raised
      (None: retry for ever).
    - `ws_retry`: while polling because WebSocket upgrades are refused, how often to
      try the WebSocket again.
    - `on_notice(text)`: told about reconnects and mode switches (default: nothing).
    - `on_gap(from_id, to_id, reason)`: told about ids that are gone for good
      (`retention` or `corrupt`); default: a notice.
    """

    def __init__(self, url=DEFAULT_URL, token=None, timeout=10.0, ws_retry=30.0,
                 on_notice=None, on_gap=None):
        if _ws_connect is None:
            raise RuntimeError(
                "hub_client needs the websockets package (13 or newer): pip install websockets"
            )
        self.ws_url, self.http_url = normalize_url(url)
        self.token = token
        self.timeout = timeout
        self.ws_retry = ws_retry
        self.notice = on_notice or (lambda text: None)
        self.on_gap = on_gap or (
            lambda a, b, reason: self.notice(f"events {a}..{b} are gone ({reason})")
        )

    # -- transport --------------------------------------------------------------

    def _headers(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _open_ws(self):
        """A connected WebSocket; raises _UpgradeRefused or _Transient."""
        try:
            ws = await _ws_connect(
                self.ws_url,
                additional_headers=self._headers(),
                compression=None,
                open_timeout=10,
                max_size=16 << 20,
                proxy=None,
            )
        except InvalidStatus as e:
            raise _UpgradeRefused(e.response.status_code) from None
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as e:
            raise _Transient(str(e) or type(e).__name__) from None
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:  # events are small and latency matters
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ws

    def _http_blocking(self, method, path, body, timeout):
        req = urllib.request.Request(self.http_url + path, data=body, method=method,
                                     headers=self._headers())
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()
        except (urllib.error.URLError, OSError) as e:
            raise _Transient(str(getattr(e, "reason", e))) from None

    async def _http(self, method, path, body=None, timeout=30.0):
        """(status, headers, body); raises _Transient, or Refused on 4xx but 429."""
        status, headers, data = await asyncio.to_thread(
            self._http_blocking, method, path, body, timeout)
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}: {_hub_error(data)[1]}")
        if status >= 400 and not (method == "POST" and status in (400, 413)):
            code, message = _hub_error(data)
            raise Refused(code or str(status), message or f"HTTP {status}")
        return status, headers, data

    # -- the API ----------------------------------------------------------------

    def subscribe(self, *topics, where=(), types=(), since=None, last=None):
        """Events matching any of `topics` (globs; none: all) and every `where`
        filter (`FIELD=VALUE`, `FIELD!=VALUE`), of any of `types`.

        `since=ID` replays what follows ID, `last=N` the last N matching events;
        neither: live only. Iterate it with `async for`; `.last_id` is the id of the
        last event handed out (persist it to resume in a later run).
        """
        return Subscription(self, list(topics), list(where), list(types), since, last)

    def publisher(self, window=1000, source=None):
        """A pipelining publisher: `async with hub.publisher() as pub: ...`."""
        return Publisher(self, window, source)

    async def publish(self, topic, type=None, data=None, source=None, key=None):
        """Publishes one event; returns its id once it is in the hub's log."""
        async with self.publisher() as pub:
            return await pub.send(topic, type, data, source=source, key=key)

    def task(self, topic, source=None, data=None):
        """Reports a task's life: `async with hub.task("task:x") as t: await t.progress(50)`.

        task_started on entry; task_completed (with duration_seconds) when the block
        ends, task_failed (error, exit_code, duration_seconds) when it raises.
        """
        return Task(self, topic, source, data)


class Subscription:
    """An async iterator of events that resumes by itself; see `Hub.subscribe`."""

    def __init__(self, hub, topics, where, types, since, last):
        if since is not None and last is not None:
            raise ValueError("give since or last, not both")
        self.hub, self.topics, self.where, self.types = hub, topics, where, types
        self.last = last
        #: The id of the last event handed out (or skipped past): the resume point.
        self.last_id = since
        self._subs = 0
        self._ready = None

    async def ready(self):
        """Waits until the hub has confirmed the subscription (for the first time):
        from then on nothing published is missed. Runs only while it is iterated."""
        if self._ready is None:
            self._ready = asyncio.Event()
        await self._ready.wait()

    def __aiter__(self):
        return self._run()

    def _take(self, event):
        """Whether `event` is new (not at or below the resume point)."""
        if self.last_id is not None and event["id"] <= self.last_id:
            return False
        self.last_id = event["id"]
        return True

    def _skip_to(self, last_id):
        self.last_id = max(self.last_id or 0, last_id)

    async def _run(self):
        hub = self.hub
        backoff, outage = _Backoff(), _Outage(hub.ws_url, hub.timeout)
        polling, next_ws = False, 0.0
        while True:
            if not polling or time.monotonic() >= next_ws:
                try:
                    ws = await hub._open_ws()
                except _UpgradeRefused as e:
                    if not polling:
                        hub.notice(f"{e}: long-polling GET /events instead")
                    polling, next_ws = True, time.monotonic() + hub.ws_retry
                except _Transient as e:
                    await self._pause(outage, backoff, f"cannot connect ({e}); retrying", e)
                    continue
                else:
                    if polling:
                        hub.notice("WebSocket upgrades work again: leaving polling")
                    polling = False
                    try:
                        async for ev in self._session(ws, backoff, outage):
                            yield ev
                    except _Transient as e:
                        await self._pause(
                            outage, backoff, f"connection lost ({e}); resuming after id {self.last_id}", e
                        )
                    finally:
                        await ws.close()
                    continue
            try:
                async for ev in self._poll(outage, backoff, next_ws):
                    yield ev
            except _Transient as e:
                await self._pause(outage, backoff, f"polling failed ({e}); retrying", e)

    async def _pause(self, outage, backoff, notice, error):
        """A failed attempt: counted against the outage limit, said, waited out."""
        outage.failed(error)
        self.hub.notice(notice)
        await backoff.sleep()

    async def _session(self, ws, backoff, outage):
        """One WebSocket connection's subscription; raises _Transient when it drops."""
        self._subs += 1
        name = f"s{self._subs}"
        frame = {"type": "subscribe", "sub": name, "batch": True}
        for k, v in (("topics", self.topics), ("where", self.where), ("types", self.types)):
            if v:
                frame[k] = v
        if self.last_id is not None:
            frame["since"] = self.last_id
        elif self.last is not None:
            frame["last"] = self.last
        try:
            await ws.send(json.dumps(frame))
            while True:
                f = json.loads(await ws.recv())
                kind = f.get("type")
                if f.get("sub") not in (None, name):
                    continue  # a frame of an earlier subscription on this connection
                if kind == "event":
                    if self._take(f["event"]):
                        yield f["event"]
                elif kind == "events":
                    for ev in f["events"]:
                        if self._take(ev):
                            yield ev
                elif kind == "subscribed":
                    backoff.reset()
                    outage.ok()
                    if self._ready is None:
                        self._ready = asyncio.Event()
                    self._ready.set()
                    if self.last_id is not None and f["last_id"] < self.last_id:
                        # Ids never go back on a hub that keeps its log: this one lost
                        # it (--memory, or a new data dir). Start over from its start.
                        self.hub.notice(
                            f"the hub's newest id {f['last_id']} is below {self.last_id}: "
                            "it lost its log; reading it from the start")
                        self.last_id = 0
                        await ws.send(json.dumps({"type": "unsubscribe", "sub": name}))
                        self._subs += 1
                        name = f"s{self._subs}"
                        await ws.send(json.dumps({**frame, "sub": name, "since": 0}))
                    elif self.last_id is None and self.last is None:
                        self.last_id = f["last_id"]  # live: everything after this comes
                elif kind == "live":
                    self._skip_to(f["last_id"])
                elif kind == "gap":
                    self.hub.on_gap(f["from"], f["to"], f.get("reason", "retention"))
                    self._skip_to(f["to"])
                elif kind == "error":
                    if f.get("sub") == name:
                        raise Refused(f.get("code", ""), f.get("message", ""))
                    self.hub.notice(f"hub error: {f.get('message')}")
        except ConnectionClosed as e:
            code = _close_code(e)
            reason = e.rcvd.reason if e.rcvd is not None else "connection dropped"
            if code in STOP_CODES:
                raise Refused(str(code), reason or f"closed with {code}") from None
            raise _Transient(f"closed {code} {reason}".strip()) from None

    async def _poll(self, outage, backoff, until):
        """Long-polls GET /events until `until` (monotonic time) has passed."""
        hub = self.hub
        if self.last_id is None:
            _, _, body = await hub._http("GET", "/status")
            status = json.loads(body)
            # `last=N` by polling: the last N events of the hub, of which the matching
            # ones (an approximation: /events has no `last`).
            back = self.last or 0
            self.last_id = max(status["first_id"] - 1, status["last_id"] - back, 0)
        while time.monotonic() < until:
            wait = max(1, min(25, int(until - time.monotonic() + 0.999)))
            q = [("topic", t) for t in self.topics] + [("where", w) for w in self.where]
            q += [("type", t) for t in self.types]
            q += [("since", str(self.last_id)), ("wait", f"{wait}s")]
            _, headers, body = await hub._http(
                "GET", "/events?" + urllib.parse.urlencode(q), timeout=wait + 15)
            backoff.reset()
            outage.ok()
            gap = headers.get("X-Hub-Gap")
            if gap:
                # "10-19,40-42" with "X-Hub-Gap-Reason: retention,corrupt".
                reasons = (headers.get("X-Hub-Gap-Reason") or "").split(",")
                for i, part in enumerate(gap.split(",")):
                    a, _, b = part.strip().partition("-")
                    why = reasons[i].strip() if i < len(reasons) else ""
                    hub.on_gap(int(a), int(b), why or "reported by GET /events")
            for line in body.decode().splitlines():
                if line.strip():
                    ev = json.loads(line)
                    if self._take(ev):
                        yield ev
            last = headers.get("X-Hub-Last-Id")
            if last is not None:
                self._skip_to(int(last))


class Publisher:
    """Pipelined publishing with acks; use as `async with hub.publisher() as pub`.

    `await pub.publish(...)` queues an event and returns a future of its id at once
    (waiting only while `window` events are unacknowledged); `await pub.send(...)`
    waits for the id. Leaving the block waits until every event is acknowledged.
    A refused event fails its own future with `Refused`; an unreachable hub fails
    all of them with `Unreachable`.
    """

    def __init__(self, hub, window=1000, source=None):
        self.hub, self.source = hub, source
        self._room = asyncio.Semaphore(window)
        self._prefix = uuid.uuid4().hex[:16]
        self._seq = 0
        self._unacked = {}  # req -> (event, future), in the order published
        self._to_send = collections.deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task = None
        self._failed = None

    async def __aenter__(self):
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def publish(self, topic, type=None, data=None, source=None, key=None):
        """Queues one event; returns an asyncio future of its id."""
        if self._failed is not None:
            raise self._failed
        await self._room.acquire()
        self._seq += 1
        event = {"topic": topic}
        if type is not None:
            event["type"] = type
        if source or self.source:
            event["source"] = source or self.source
        event["key"] = key or f"{self._prefix}-{self._seq}"
        event["data"] = data
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda _: self._room.release())
        self._unacked[self._seq] = (event, fut)
        self._to_send.append(self._seq)
        self._wake.set()
        return fut

    async def publish_event(self, event):
        """Queues a whole event object (`topic`, `type`, `data`, `source`, `key`)."""
        extra = set(event) - {"topic", "type", "data", "source", "key"}
        if extra:
            raise ValueError(f"unknown event fields {sorted(extra)}: an event has "
                             "topic, type, data, source, key")
        return await self.publish(event.get("topic"), event.get("type"), event.get("data"),
                                  event.get("source"), event.get("key"))

    async def send(self, topic, type=None, data=None, source=None, key=None):
        """Publishes one event and waits for its id."""
        return await (await self.publish(topic, type, data, source, key))

    async def close(self):
        """Waits until every event is acknowledged (or failed), then disconnects."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def _resolve(self, req, result=None, error=None):
        item = self._unacked.pop(req, None)
        if item is None:
            return  # an ack for an event answered already (a resend's twin)
        fut = item[1]
        if not fut.done():
            fut.set_exception(error) if error else fut.set_result(result)

    def _fail_all(self, error):
        self._failed = error
        for req in list(self._unacked):
            self._resolve(req, error=error)

    async def _run(self):
        hub = self.hub
        backoff, outage = _Backoff(), _Outage(hub.ws_url, hub.timeout)
        next_ws = 0.0
        try:
            while not (self._closing and not self._unacked):
                if not self._unacked:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                if time.monotonic() >= next_ws:
                    try:
                        ws = await hub._open_ws()
                    except _UpgradeRefused as e:
                        hub.notice(f"{e}: publishing with POST /publish")
                        next_ws = time.monotonic() + hub.ws_retry
                    except _Transient as e:
                        outage.failed(e)
                        hub.notice(f"cannot connect ({e}); retrying")
                        await backoff.sleep()
                        continue
                    else:
                        try:
                            await self._session(ws, backoff, outage)
                        except _Transient as e:
                            outage.failed(e)
                            hub.notice(f"connection lost ({e}); sending "
                                       f"{len(self._unacked)} unacknowledged events again")
                            await backoff.sleep()
                        finally:
                            await ws.close()
                        continue
                try:
                    await self._post()
                    backoff.reset()
                    outage.ok()
                except _Transient as e:
                    outage.failed(e)
                    await backoff.sleep()
        except HubError as e:
            self._fail_all(e)

    async def _session(self, ws, backoff, outage):
        """Sends and acks on one connection until nothing is left or it drops."""
        self._to_send = collections.deque(self._unacked)  # everything unacknowledged, again, in order
        reader = asyncio.create_task(self._read_acks(ws, backoff, outage))
        try:
            while not (self._closing and not self._unacked):
                while self._to_send:
                    req = self._to_send.popleft()
                    if req in self._unacked:
                        frame = {"type": "publish", "req": req, "event": self._unacked[req][0]}
                        await ws.send(json.dumps(frame, separators=(",", ":")))
                self._wake.clear()
                waker = asyncio.create_task(self._wake.wait())
                done, _ = await asyncio.wait({reader, waker}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                if reader in done:
                    reader.result()  # raises why the connection ended
                    return
        except ConnectionClosed:
            await asyncio.wait({reader})
            reader.result()
            raise _Transient("connection dropped") from None
        finally:
            reader.cancel()

    async def _read_acks(self, ws, backoff, outage):
        try:
            async for msg in ws:
                f = json.loads(msg)
                kind = f.get("type")
                if kind == "ack":
                    backoff.reset()
                    outage.ok()
                    self._resolve(f.get("req"), result=f.get("id"))
                    self._wake.set()
                elif kind == "error" and "req" in f:
                    if f.get("code") in ("shutting_down", "internal"):
                        # Nothing was stored: reconnect, and send it again.
                        raise _Transient(f"the hub answered {f.get('code')}: {f.get('message')}")
                    self._resolve(f["req"], error=Refused(f.get("code"), f.get("message")))
                    self._wake.set()
            raise _Transient("closed 1000")
        except ConnectionClosed as e:
            code = _close_code(e)
            reason = e.rcvd.reason if e.rcvd is not None else "connection dropped"
            if code in STOP_CODES:
                raise Refused(str(code), reason or f"closed with {code}") from None
            raise _Transient(f"closed {code} {reason}".strip()) from None

    async def _post(self):
        """Publishes what is unacknowledged with POST /publish (JSON lines)."""
        reqs = list(self._unacked)[:1000]
        body = "".join(json.dumps(self._unacked[r][0]) + "\n" for r in reqs).encode()
        status, _, data = await self.hub._http("POST", "/publish", body)
        if status == 200:
            for req, id_ in zip(reqs, json.loads(data)["ids"]):
                self._resolve(req, result=id_)
            return
        # 400/413: the answer names the line refused; nothing of the body was stored.
        code, message = _hub_error(data)
        line = 1
        if message.startswith("line "):
            line = int(message[5:].split(":")[0])
        self._resolve(reqs[line - 1], error=Refused(code, message))


class Task:
    """A task's lifecycle on one topic; see `Hub.task`."""

    def __init__(self, hub, topic, source=None, data=None):
        self.hub, self.topic, self.data = hub, topic, data
        self._pub = Publisher(hub, source=source)

    async def __aenter__(self):
        await self._pub.__aenter__()
        self._started = time.monotonic()
        await self._pub.send(self.topic, "task_started", self.data or {})
        return self

    async def progress(self, percent, message=None):
        """A `progress` event (pipelined: does not wait for the ack)."""
        data = {"percent": percent}
        if message is not None:
            data["message"] = message
        await self._pub.publish(self.topic, "progress", data)

    async def __aexit__(self, exc_type, exc, tb):
        duration = round(time.monotonic() - self._started, 3)
        try:
            if exc is None:
                await self._pub.send(self.topic, "task_completed",
                                     {"duration_seconds": duration, "exit_code": 0})
            else:
                code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
                await self._pub.send(self.topic, "task_failed", {
                    "error": str(exc) or exc_type.__name__,
                    "exit_code": code,
                    "duration_seconds": duration,
                })
        finally:
            await self._pub.close()
        return False


# -- command line -------------------------------------------------------------------


def _parser():
    p = argparse.ArgumentParser(
        prog="hub_client.py",
        description="Talk to a hub from Python: subscribe, publish, or run a demo.",
        epilog="Exit codes: 0 ok, 2 usage or bad input, 3 hub unreachable within "
               "--timeout, 4 refused by the hub (bad token, limits, invalid event).")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=os.environ.get("HUB_URL", DEFAULT_URL),
                        help="hub URL (env HUB_URL; default %(default)s)")
    common.add_argument("--token", default=os.environ.get("HUB_TOKEN"),
                        help="token (env HUB_TOKEN)")
    common.add_argument("--token-file", help="read the token from this file's first line")
    common.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="give up when the hub is unreachable this long "
                             "(default 10; 0: never)")
    common.add_argument("--ws-retry", type=float, default=30.0, metavar="SECONDS",
                        help="while polling, try the WebSocket again this often (default 30)")
    common.add_argument("-v", "--verbose", action="store_true",
                        help="say on stderr what the client does (reconnects, polling)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sub", parents=[common], help="print matching events as JSON lines")
    s.add_argument("patterns", nargs="*", metavar="PATTERN", help="topic globs (none: all)")
    s.add_argument("--where", action="append", default=[], metavar="F=V")
    s.add_argument("--type", action="append", default=[], dest="types", metavar="TYPE")
    start = s.add_mutually_exclusive_group()
    start.add_argument("--since", type=int, metavar="ID", help="replay after ID, then live")
    start.add_argument("--last", type=int, metavar="N", help="replay the last N, then live")
    s.add_argument("--count", type=int, metavar="N", help="exit 0 after N events")

    u = sub.add_parser("pub", parents=[common], help="publish events; exit 0 once all are acked")
    u.add_argument("topic", nargs="?")
    u.add_argument("type", nargs="?")
    u.add_argument("--data", type=json.loads, help="the event's data, as JSON")
    u.add_argument("--source")
    u.add_argument("--key", help="idempotency key (default: one made up per event)")
    u.add_argument("--lines", action="store_true",
                   help="each stdin line is a whole event object (topic, type, data, ...)")
    u.add_argument("--window", type=int, default=1000,
                   help="most events in flight unacknowledged (default %(default)s)")
    u.add_argument("--print-ids", action="store_true", help="print each event's id")

    sub.add_parser("demo", parents=[common],
                   help="a task reported from start to end, watched by a subscriber")
    return p


def _hub(args):
    token = args.token
    if args.token_file:
        with open(args.token_file) as f:
            token = f.readline().strip()
    notice = (lambda t: print(f"hub_client: {t}", file=sys.stderr, flush=True)) \
        if args.verbose else None

    def gap(a, b, reason):
        print(f"hub_client: events {a}..{b} are gone ({reason})", file=sys.stderr, flush=True)

    return Hub(args.url, token, timeout=args.timeout or None, ws_retry=args.ws_retry,
               on_notice=notice, on_gap=gap)


async def _sub(args):
    n = 0
    async for ev in _hub(args).subscribe(*args.patterns, where=args.where, types=args.types,
                                         since=args.since, last=args.last):
        sys.stdout.write(json.dumps(ev, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        n += 1
        if args.count is not None and n >= args.count:
            return


async def _pub(args):
    hub = _hub(args)
    if args.lines == (args.topic is not None):
        raise ValueError("give TOPIC [TYPE] or --lines (whole events on stdin), one of them")
    refused = []
    async with hub.publisher(window=args.window, source=args.source) as pub:
        futures = []
        if args.lines:
            loop = asyncio.get_running_loop()
            n = 0
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
                n += 1
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                    if not isinstance(ev, dict):
                        raise ValueError("not a JSON object")
                    futures.append(await pub.publish_event(ev))
                except ValueError as e:
                    raise ValueError(f"stdin line {n}: {e}") from None
        else:
            futures.append(await pub.publish(args.topic, args.type, args.data, key=args.key))
        for fut in futures:
            try:
                id_ = await fut
                if args.print_ids:
                    print(id_, flush=True)
            except Refused as e:
                refused.append(e)
            except Unreachable:
                raise
    if refused:
        for e in refused[1:]:
            print(f"hub_client: {e}", file=sys.stderr)
        raise refused[0]  # printed by main()


async def _demo(args):
    hub = _hub(args)
    topic = f"task:demo-{uuid.uuid4().hex[:6]}"
    seen = hub.subscribe(topic)
    watcher = seen.__aiter__()
    first = asyncio.ensure_future(watcher.__anext__())
    # Wait until the subscription is in place, so nothing published below is missed.
    ready = asyncio.ensure_future(seen.ready())
    await asyncio.wait({first, ready}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if first.done():
        first.result()  # raises why it could not subscribe
    print(f"watching {topic}; reporting a task on it", file=sys.stderr)
    async with hub.task(topic, data={"command": "demo"}) as task:
        for pct in (25, 50, 75, 100):
            await task.progress(pct, f"step {pct // 25} of 4")
    ev = await first
    while True:
        print(f"{ev['id']:>6} {ev['type']:<15} {json.dumps(ev['data'])}", flush=True)
        if ev["type"] in ("task_completed", "task_failed"):
            break
        ev = await watcher.__anext__()
    await watcher.aclose()


def main(argv=None):
    args = _parser().parse_args(argv)
    if _ws_connect is None:
        print("hub_client: needs the websockets package (13 or newer): pip install websockets",
              file=sys.stderr)
        return EXIT_USAGE
    run = {"sub": _sub, "pub": _pub, "demo": _demo}[args.command]
    try:
        asyncio.run(run(args))
    except HubError as e:
        print(f"hub_client: {e}", file=sys.stderr)
        return e.exit_code
    except (ValueError, OSError) as e:
        if isinstance(e, BrokenPipeError):  # `| head -1`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        print(f"hub_client: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

// The hub dashboard: plain JavaScript, no framework, no build step.
//
// One WebSocket per tab (`/ws`), shared by every view: the current view holds one
// subscription, and the connection resumes it from the last id the page has shown
// (`since`), so a reconnect neither loses nor repeats an event. After three failed
// WebSocket attempts while HTTP still answers, it long-polls `GET /events` with the
// same filters and tries the WebSocket again every 30 s.
//
// Everything that comes from events is put on the page as text (textContent, text
// nodes), never parsed as HTML. DOM updates are batched per animation frame and the
// number of rows kept is capped, with a row that says how many older ones are gone.
"use strict";
(() => {
  const MAX_ROWS = 1500; // events view
  const MAX_LINES = 2000; // logs view and a task's log
  const MAX_TIMELINE = 1000; // a task's timeline
  const MAX_TASKS = 500; // rows of the tasks view
  const PER_FRAME = 300; // rows built per animation frame
  const RENDER_TASKS_MS = 200; // the tasks view redraws at most this often
  const BACKOFF = [1, 2, 4, 8, 16, 30]; // seconds, with jitter
  const POLL_RETRY_WS = 30; // seconds between WebSocket attempts while polling
  const POLL_WAIT = "25s";
  const TASK_TYPES = ["task_started", "progress", "task_completed", "task_failed"];
  const TOKEN_KEY = "hub-token";
  const VIEWS = ["tasks", "task", "events", "logs"];

  const $ = (id) => document.getElementById(id);

  // --- DOM helpers: strings become text nodes, never markup. -----------------
  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = String(v);
        else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of kids) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function localTime(ts) {
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return String(ts);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }
  function localDateTime(ts) {
    if (!ts) return "–";
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return String(ts);
    const today = new Date();
    const day = d.toDateString() === today.toDateString() ? "" :
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `;
    return day + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function seconds(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return "–";
    if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    if (h) return `${h}h ${pad(m % 60)}m`;
    return `${m}m ${pad(Math.floor(s % 60))}s`;
  }
  const text = (v) => v === null || v === undefined ? null : typeof v === "string" ? v : JSON.stringify(v);
  const dataOf = (ev) => ev.data !== null && typeof ev.data === "object" && !Array.isArray(ev.data) ? ev.data : {};
  function summary(ev) {
    const d = dataOf(ev);
    if (typeof d.message === "string") return d.message;
    if (typeof d.line === "string") return d.line;
    const s = ev.data === undefined ? "" : JSON.stringify(ev.data);
    return s.length > 500 ? s.slice(0, 500) + "…" : s;
  }
  function globRegex(glob) {
    let r = "";
    for (let i = 0; i < glob.length; i++) {
      const c = glob[i];
      if (c === "*") r += ".*";
      else if (c === "?") r += ".";
      else if (c === "[") {
        const j = glob.indexOf("]", i + 1);
        if (j < 0) { r += "\\["; continue; }
        r += "[" + glob.slice(i + 1, j).replace(/\\/g, "\\\\") + "]";
        i = j;
      } else r += c.replace(/[.+^${}()|\\\]]/g, "\\$&");
    }
    return new RegExp("^" + r + "$");
  }

  // --- URL state --------------------------------------------------------------
  const notices = [];
  function readParams() {
    notices.length = 0;
    const q = new URLSearchParams(location.search);
    let view = q.get("view") || "tasks";
    if (!VIEWS.includes(view)) {
      notices.push(`view=${view} is not a view; accepted: ${VIEWS.join(", ")}`);
      view = "tasks";
    }
    const num = (k) => {
      const v = q.get(k);
      if (v === null || v === "") return null;
      if (!/^\d+$/.test(v)) { notices.push(`${k}=${v} is not a whole number; ignored`); return null; }
      return Number(v);
    };
    const p = {
      view,
      topics: q.getAll("topic").filter(Boolean),
      where: q.getAll("where").filter(Boolean),
      types: q.getAll("type").filter(Boolean),
      since: num("since"),
      last: num("last"),
    };
    if (p.since !== null && p.last !== null) {
      notices.push("give since or last, not both; since is used");
      p.last = null;
    }
    return p;
  }
  function queryOf(p) {
    const q = new URLSearchParams();
    q.set("view", p.view);
    for (const t of p.topics) q.append("topic", t);
    for (const w of p.where) q.append("where", w);
    for (const t of p.types) q.append("type", t);
    if (p.since !== null) q.set("since", p.since);
    if (p.last !== null) q.set("last", p.last);
    return "?" + q.toString();
  }
  function go(search, push = true) {
    if (push) history.pushState(null, "", location.pathname + search);
    else history.replaceState(null, "", location.pathname + search);
    route();
  }

  // --- token ------------------------------------------------------------------
  function takeTokenFromFragment() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return;
    try { sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1])); } catch (_) { /* storage off */ }
    history.replaceState(history.state, "", location.pathname + location.search);
  }
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (_) { return ""; }
  }
  class Unauthorized extends Error {}
  async function api(path, opts = {}) {
    const t = token();
    const headers = t ? { Authorization: "Bearer " + t } : {};
    const r = await fetch(path, { ...opts, headers, cache: "no-store" });
    if (r.status === 401) { conn.unauthorized("the hub answered 401: missing or wrong token"); throw new Unauthorized(); }
    if (!r.ok) {
      let msg = `${r.status}`;
      try { msg += ": " + (await r.json()).message; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    return r;
  }

  // --- rendering is batched per animation frame ---------------------------------
  let frameAsked = false;
  function schedule() {
    if (frameAsked) return;
    frameAsked = true;
    requestAnimationFrame(() => {
      frameAsked = false;
      if (view && view.render) view.render();
    });
  }

  // --- the connection ------------------------------------------------------------
  // A subscription: {id, spec: {topics, where, types, since, last}, cursor}. The
  // cursor is the newest id the view has been handed; events at or below it are
  // dropped, and every (re)subscription asks `since` it.
  const conn = {
    state: "connecting",
    ws: null,
    sub: null,
    failures: 0, // consecutive failed WebSocket attempts
    timer: null,
    nextAt: 0,
    polling: false,
    pollCtl: null,
    stopped: false,

    setState(state, label) {
      this.state = state;
      const c = $("conn");
      c.dataset.state = state;
      c.textContent = label || state;
      $("retry").hidden = !(state === "reconnecting" || state === "polling");
    },
    start() {
      this.connect();
    },
    setSub(sub) {
      const old = this.sub;
      this.sub = sub;
      if (this.ws && this.ws.readyState === WebSocket.OPEN && this.live) {
        if (old) this.send({ type: "unsubscribe", sub: old.id });
        if (sub) this.subscribe(sub);
      }
      if (this.polling) this.poll();
    },
    send(f) {
      try { this.ws.send(JSON.stringify(f)); } catch (_) { /* closing */ }
    },
    subscribe(s) {
      const f = { type: "subscribe", sub: s.id, batch: true };
      if (s.spec.topics.length) f.topics = s.spec.topics;
      if (s.spec.where.length) f.where = s.spec.where;
      if (s.spec.types.length) f.types = s.spec.types;
      if (s.cursor !== null) f.since = s.cursor;
      else if (s.spec.since !== null) f.since = s.spec.since;
      else if (s.spec.last !== null) f.last = s.spec.last;
      this.send(f);
    },
    connect() {
      clearTimeout(this.timer);
      this.timer = null;
      if (this.stopped) return;
      if (!this.polling) this.setState("connecting", "connecting");
      const u = new URL("ws", location.href);
      u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
      u.search = "";
      u.hash = "";
      const t = token();
      if (t) u.searchParams.set("token", t);
      let ws;
      try { ws = new WebSocket(u.href); } catch (_) { this.failed(); return; }
      this.ws = ws;
      this.live = false;
      ws.onopen = () => {
        this.live = true;
        if (this.sub) this.subscribe(this.sub);
        else this.succeeded();
      };
      ws.onmessage = (m) => { if (this.ws === ws) this.frame(m.data); };
      ws.onclose = (e) => {
        if (this.ws !== ws) return;
        this.ws = null;
        this.live = false;
        this.closed(e.code, e.reason);
      };
    },
    succeeded() {
      this.failures = 0;
      if (this.polling) this.stopPolling();
      this.setState("live", "live");
    },
    frame(data) {
      let f;
      try { f = JSON.parse(data); } catch (_) { return; }
      const s = this.sub;
      if (f.type === "error") { if (view) view.notice(`the hub: ${f.message}`); return; }
      if (!s || f.sub !== s.id) return;
      switch (f.type) {
        case "subscribed":
          if (s.cursor !== null && f.last_id < s.cursor) {
            // The hub's log is behind what the page has shown: it was restarted
            // without its log (--memory). Start the view over.
            s.cursor = null;
            this.succeeded();
            route();
            return;
          }
          if (s.cursor === null && s.spec.since === null && s.spec.last === null) s.cursor = f.last_id;
          this.succeeded();
          break;
        case "event": deliver(s, [f.event]); break;
        case "events": deliver(s, f.events); break;
        case "live":
          if (s.cursor === null || f.last_id > s.cursor) s.cursor = f.last_id;
          break;
        case "gap":
          if (view) view.gap(f.from, f.to, f.reason || "retention");
          if (s.cursor === null || f.to > s.cursor) s.cursor = f.to;
          break;
        default: break;
      }
    },
    closed(code, reason) {
      if (code === 4401) { this.unauthorized("the hub closed the connection: unauthorized (4401)"); return; }
      if ([1003, 1008, 1009, 4400, 4403].includes(code)) {
        this.stopped = true;
        this.setState("stopped", `stopped: the hub refused the connection (${code}${reason ? ": " + reason : ""})`);
        return;
      }
      // A connection that got as far as `subscribed` reset the count to 0.
      this.failures++;
      this.failed();
    },
    async failed() {
      if (this.polling) { this.later(POLL_RETRY_WS); return; }
      if (this.failures >= 3) {
        // Three failed attempts: is it the WebSocket alone, or the hub?
        let http = false;
        try {
          const r = await fetch("health", { cache: "no-store" });
          http = r.ok;
        } catch (_) { http = false; }
        if (this.stopped || this.ws) return;
        if (http) { this.startPolling(); this.later(POLL_RETRY_WS); return; }
      }
      const base = BACKOFF[Math.min(Math.max(0, this.failures - 1), BACKOFF.length - 1)];
      this.later(base * (0.8 + 0.4 * Math.random()));
    },
    later(secs) {
      clearTimeout(this.timer);
      this.nextAt = Date.now() + secs * 1000;
      this.timer = setTimeout(() => this.connect(), secs * 1000);
      this.tick();
    },
    tick() {
      if (this.state === "reconnecting" || this.state === "connecting") {
        if (this.timer) {
          const left = Math.max(0, Math.ceil((this.nextAt - Date.now()) / 1000));
          this.setState("reconnecting", `reconnecting in ${left} s`);
        }
      }
    },
    retryNow() {
      this.failures = Math.min(this.failures, 2);
      this.connect();
    },
    unauthorized(why) {
      this.stopped = true;
      clearTimeout(this.timer);
      this.stopPolling();
      if (this.ws) { const w = this.ws; this.ws = null; try { w.close(); } catch (_) { /* gone */ } }
      this.setState("unauthorized", "unauthorized");
      $("token-why").textContent = token() ? `unauthorized: ${why}. Enter the right token.` : "This hub needs a token.";
      $("token-form").hidden = false;
      $("token-input").focus();
    },
    useToken(t) {
      try { sessionStorage.setItem(TOKEN_KEY, t); } catch (_) { /* storage off */ }
      $("token-form").hidden = true;
      this.stopped = false;
      this.failures = 0;
      this.connect();
      route();
    },

    // Long polling with GET /events while the WebSocket fails.
    startPolling() {
      if (this.polling) return;
      this.polling = true;
      // The "polling" label waits for the first cursor (poll() sets it): an event
      // published once the page says "polling" is after that cursor, so it shows.
      this.poll();
    },
    stopPolling() {
      this.polling = false;
      if (this.pollCtl) this.pollCtl.abort();
      this.pollCtl = null;
    },
    async poll() {
      if (this.pollCtl) this.pollCtl.abort();
      const ctl = new AbortController();
      this.pollCtl = ctl;
      let errors = 0;
      while (this.polling && this.pollCtl === ctl) {
        const s = this.sub;
        if (!s) return;
        try {
          if (s.cursor === null) {
            if (s.spec.since !== null) s.cursor = s.spec.since;
            else {
              const st = await (await api("status", { signal: ctl.signal })).json();
              s.cursor = s.spec.last !== null ? Math.max(0, st.last_id - s.spec.last) : st.last_id;
            }
          }
          if (this.state !== "polling" && this.state !== "polling-down") this.setState("polling", "Live updates unavailable -- polling");
          const q = new URLSearchParams();
          for (const t of s.spec.topics) q.append("topic", t);
          for (const w of s.spec.where) q.append("where", w);
          for (const t of s.spec.types) q.append("type", t);
          q.set("since", s.cursor);
          q.set("wait", POLL_WAIT);
          q.set("limit", "1000");
          const r = await api("events?" + q, { signal: ctl.signal });
          const body = await r.text();
          if (this.pollCtl !== ctl || this.sub !== s) continue;
          // X-Hub-Gap: 10-19,40-42 and X-Hub-Gap-Reason: retention,corrupt
          const reasons = (r.headers.get("x-hub-gap-reason") || "").split(",");
          let k = 0;
          for (const g of (r.headers.get("x-hub-gap") || "").matchAll(/(\d+)-(\d+)/g)) {
            if (view) view.gap(Number(g[1]), Number(g[2]), reasons[k] || "retention");
            k++;
          }
          const evs = [];
          for (const line of body.split("\n")) if (line) { try { evs.push(JSON.parse(line)); } catch (_) { /* skip */ } }
          deliver(s, evs);
          const after = Number(r.headers.get("x-hub-last-id"));
          if (Number.isFinite(after) && after > s.cursor) s.cursor = after;
          errors = 0;
          if (this.state === "polling-down") this.setState("polling", "Live updates unavailable -- polling");
        } catch (e) {
          if (ctl.signal.aborted || e instanceof Unauthorized) return;
          errors++;
          this.setState("reconnecting", "reconnecting (the hub does not answer)");
          this.state = "polling-down";
          await new Promise((res) => setTimeout(res, Math.min(30, 2 ** errors) * 1000));
        }
      }
    },
  };

  // Hands a subscription's new events to the view: no id twice, in id order.
  function deliver(s, evs) {
    const fresh = [];
    for (const ev of evs) {
      if (!ev || typeof ev.id !== "number") continue;
      if (s.cursor !== null && ev.id <= s.cursor) continue;
      s.cursor = ev.id;
      fresh.push(ev);
    }
    if (fresh.length && view && view.sub === s) view.add(fresh);
  }

  // --- status strip ------------------------------------------------------------
  const rates = [];
  let lastCount = null;
  async function status() {
    if (conn.state === "unauthorized") return;
    let st;
    try { st = await (await api("status")).json(); } catch (_) { return; }
    const now = Date.now();
    $("st-version").textContent = st.version ?? "–";
    $("st-uptime").textContent = typeof st.uptime_seconds === "number" && st.uptime_seconds < 60 ? `${st.uptime_seconds} s` : seconds(st.uptime_seconds);
    $("st-connections").textContent = st.connections ?? "–";
    $("st-events").textContent = st.events ?? "–";
    $("st-lagged").textContent = st.lagged_total ?? "–";
    $("st-gaps").textContent = st.gaps_total ?? "–";
    const count = st.published_total ?? st.last_id;
    if (lastCount && typeof count === "number" && count >= lastCount.n) {
      rates.push((count - lastCount.n) / Math.max(0.001, (now - lastCount.t) / 1000));
      if (rates.length > 30) rates.shift();
    }
    lastCount = typeof count === "number" ? { n: count, t: now } : null;
    const r = rates.length ? rates[rates.length - 1] : null;
    $("st-rate").textContent = r === null ? "–" : r >= 100 ? Math.round(r).toString() : r.toFixed(1);
    const max = Math.max(1, ...rates);
    const pts = rates.map((v, i) => `${(i * 60) / 29},${(16 - (v / max) * 15).toFixed(1)}`);
    $("spark").querySelector("polyline").setAttribute("points", pts.join(" "));
  }

  // --- views ---------------------------------------------------------------------
  let view = null;
  let gen = 0;

  function baseView(p) {
    const root = el("div", { class: "view", "data-view": p.view });
    const noticeEl = el("div", { class: "notice", role: "alert" });
    noticeEl.textContent = notices.join("; ");
    return {
      p,
      root,
      noticeEl,
      sub: null,
      notice(msg) { noticeEl.textContent = msg; },
      gap() {},
      add() {},
      render: null,
      tick() {},
      togglePause: null,
    };
  }
  function newSub(spec) {
    gen++;
    return { id: `v${gen}`, spec, cursor: null };
  }

  // A capped, following list of rows (events view, logs view, a task's log):
  // pause keeps receiving and counts; scrolling up stops following.
  function rowList(cap, makeRow, what) {
    const scroll = el("div", { class: "scroll", tabindex: "0", role: "log", "aria-live": "off" });
    const more = el("div", { class: "more", hidden: true });
    const body = el("div", { class: "rows" });
    scroll.append(more, body);
    const list = {
      scroll, more, body, cap, pending: [], hidden: 0, paused: false, follow: true, held: 0,
      onPauseChange: null,
      add(items) {
        for (const it of items) this.pending.push(it);
        if (this.pending.length > this.cap) {
          const drop = this.pending.length - this.cap;
          this.pending.splice(0, drop);
          this.hidden += drop;
        }
        if (this.paused) {
          this.held += items.length;
          if (this.onPauseChange) this.onPauseChange();
          return;
        }
        schedule();
      },
      render() {
        if (this.paused || !this.pending.length) return;
        // At most PER_FRAME rows per frame; the rest waits for the next one.
        const items = this.pending.length > PER_FRAME ? this.pending.splice(0, PER_FRAME) : this.pending;
        if (items === this.pending) this.pending = [];
        else schedule();
        const frag = document.createDocumentFragment();
        for (const it of items) frag.append(makeRow(it));
        body.append(frag);
        let extra = body.childElementCount - this.cap;
        while (extra-- > 0) { body.firstElementChild.remove(); this.hidden++; }
        this.showMore();
        if (this.follow) scroll.scrollTop = scroll.scrollHeight;
      },
      showMore() {
        more.hidden = this.hidden === 0;
        more.textContent = `${this.hidden} older ${what} not shown`;
      },
      setPaused(v) {
        this.paused = v;
        if (!v) { this.held = 0; schedule(); }
        if (this.onPauseChange) this.onPauseChange();
      },
    };
    scroll.addEventListener("scroll", () => {
      const atBottom = scroll.scrollHeight - scroll.scrollTop - scroll.clientHeight < 24;
      list.follow = atBottom;
      if (list.onPauseChange) list.onPauseChange();
    });
    return list;
  }
  function pauseControls(list) {
    const btn = el("button", { type: "button", "aria-pressed": "false", text: "Pause" });
    const count = el("span", { class: "held", "aria-live": "polite" });
    const live = el("button", { type: "button", hidden: true, text: "Jump to live" });
    btn.addEventListener("click", () => list.setPaused(!list.paused));
    live.addEventListener("click", () => {
      list.follow = true;
      list.scroll.scrollTop = list.scroll.scrollHeight;
      live.hidden = true;
    });
    list.onPauseChange = () => {
      btn.setAttribute("aria-pressed", String(list.paused));
      btn.textContent = list.paused ? "Resume" : "Pause";
      count.textContent = list.paused ? `paused, ${list.held} new` : "";
      live.hidden = list.follow || list.paused;
    };
    return [btn, count, live];
  }

  // tasks -----------------------------------------------------------------------
  function foldTask(map, ev) {
    if (!TASK_TYPES.includes(ev.type)) return null;
    const d = dataOf(ev);
    let t = map.get(ev.topic);
    if (!t) {
      t = { topic: ev.topic, status: "running", percent: null, message: null, started_at: null,
        updated_at: ev.ts, ended_at: null, duration_seconds: null, exit_code: null, error: null, last_id: ev.id };
      map.set(ev.topic, t);
    }
    const startMs = t.started_at ? Date.parse(t.started_at) : null;
    const dur = typeof d.duration_seconds === "number" ? d.duration_seconds
      : startMs !== null ? (Date.parse(ev.ts) - startMs) / 1000 : null;
    const msg = text(d.message);
    switch (ev.type) {
      case "task_started":
        Object.assign(t, { status: "running", percent: 0, message: msg, started_at: ev.ts, ended_at: null,
          duration_seconds: null, exit_code: null, error: null });
        break;
      case "progress":
        t.status = "running";
        t.ended_at = null;
        if (typeof d.percent === "number") t.percent = Math.min(100, Math.max(0, d.percent));
        if (msg !== null) t.message = msg;
        if (!t.started_at) t.started_at = ev.ts;
        break;
      case "task_completed":
        t.status = "completed";
        t.percent = 100;
        t.ended_at = ev.ts;
        t.duration_seconds = dur;
        if (Number.isInteger(d.exit_code)) t.exit_code = d.exit_code;
        if (msg !== null) t.message = msg;
        break;
      case "task_failed":
        t.status = "failed";
        t.ended_at = ev.ts;
        t.duration_seconds = dur;
        t.exit_code = Number.isInteger(d.exit_code) ? d.exit_code : null;
        t.error = text(d.error);
        if (msg !== null) t.message = msg;
        break;
      default: break;
    }
    t.updated_at = ev.ts;
    t.last_id = ev.id;
    return t;
  }
  function pctText(t) {
    return t.percent === null || t.percent === undefined ? "–" : `${Math.round(t.percent)}%`;
  }
  // A running task without a percent has an indeterminate bar; an ended one, 0.
  function setProgress(p, t) {
    if (t.percent !== null && t.percent !== undefined) p.value = t.percent;
    else if (t.status === "running") p.removeAttribute("value");
    else p.value = 0;
  }
  function progressEl(t) {
    const p = el("progress", { max: "100", "aria-label": `${t.topic} progress` });
    setProgress(p, t);
    return p;
  }
  function duration(t) {
    if (t.duration_seconds !== null && t.duration_seconds !== undefined) return t.duration_seconds;
    if (t.status === "running" && t.started_at) return (Date.now() - Date.parse(t.started_at)) / 1000;
    return null;
  }
  function taskMeta(t) {
    const m = el("div", { class: "meta" },
      el("span", { text: `started ${localDateTime(t.started_at)}` }),
      el("span", { text: `updated ${localDateTime(t.updated_at)}` }),
      el("span", { class: "dur", text: `duration ${seconds(duration(t))}` }));
    if (t.exit_code !== null && t.exit_code !== undefined) m.append(el("span", { text: `exit code ${t.exit_code}` }));
    if (t.error) m.append(el("span", { class: "error", text: `error: ${t.error}` }));
    return m;
  }
  const taskHref = (topic) => queryOf({ view: "task", topics: [topic], where: [], types: [], since: null, last: null });

  function tasksView(p) {
    const v = baseView(p);
    const tasks = new Map();
    const items = new Map(); // topic -> {li, sig}
    const filter = el("input", { type: "search", placeholder: "filter tasks ( / )", "data-filter": "", "aria-label": "Filter tasks" });
    const count = el("span", { class: "count" });
    const list = el("ul", { class: "tasks", "aria-label": "Tasks" });
    const more = el("div", { class: "more", hidden: true });
    const empty = el("p", { class: "more", text: "No tasks yet. hub-emit task:NAME --run -- CMD reports one." });
    const scroll = el("div", { class: "scroll" }, list, more, empty);
    v.root.append(el("div", { class: "toolbar" }, el("h2", { text: "Tasks" }), filter, count), v.noticeEl, scroll);
    const topicRes = p.topics.map(globRegex);
    const wanted = (t) => !topicRes.length || topicRes.some((r) => r.test(t.topic));
    filter.addEventListener("input", () => schedule());
    list.addEventListener("animationend", (e) => e.target.classList.remove("fresh"));
    list.addEventListener("click", (e) => {
      if (e.target.closest("a")) return;
      const li = e.target.closest("li");
      if (li) go(taskHref(li.dataset.topic));
    });
    let dirty = true;
    v.add = (evs) => { for (const ev of evs) if (foldTask(tasks, ev)) dirty = true; if (dirty) schedule(); };
    v.gap = () => { load(); };
    v.tick = () => {
      for (const [topic, it] of items) {
        const t = tasks.get(topic);
        if (t && t.status === "running") it.meta.querySelector(".dur").textContent = `duration ${seconds(duration(t))}`;
      }
    };
    let lastRender = -Infinity;
    let throttle = null;
    const fill = (it, t) => {
      it.li.dataset.status = t.status;
      it.status.dataset.status = t.status;
      it.status.textContent = t.status;
      setProgress(it.prog, t);
      it.pct.textContent = pctText(t);
      it.msg.textContent = t.message || "";
      it.meta.replaceWith((it.meta = taskMeta(t)));
      it.sig = t.last_id;
    };
    v.render = () => {
      // A list of tasks is redrawn at most every RENDER_TASKS_MS, however fast
      // their events come.
      const now = performance.now();
      if (now - lastRender < RENDER_TASKS_MS) {
        if (!throttle) throttle = setTimeout(() => { throttle = null; schedule(); }, RENDER_TASKS_MS - (now - lastRender));
        return;
      }
      lastRender = now;
      const q = filter.value.trim().toLowerCase();
      let shown = [...tasks.values()].filter(wanted);
      if (q) shown = shown.filter((t) => [t.topic, t.message, t.status, t.error].some((s) => s && s.toLowerCase().includes(q)));
      shown.sort((a, b) => (a.status === "running") !== (b.status === "running") ? (a.status === "running" ? -1 : 1)
        : b.updated_at < a.updated_at ? -1 : b.updated_at > a.updated_at ? 1 : b.last_id - a.last_id);
      const total = shown.length;
      shown = shown.slice(0, MAX_TASKS);
      const keep = new Set(shown.map((t) => t.topic));
      for (const [topic, it] of items) if (!keep.has(topic)) { it.li.remove(); items.delete(topic); }
      let prev = null;
      for (const t of shown) {
        let it = items.get(t.topic);
        if (!it) {
          const li = el("li", { "data-topic": t.topic },
            el("a", { class: "task-topic", href: taskHref(t.topic), text: t.topic }));
          it = { li, status: el("span", { class: "status" }), prog: progressEl(t), pct: el("span", { class: "pct" }),
            msg: el("span", { class: "msg" }), meta: el("div"), sig: null };
          li.append(it.status, it.prog, it.pct, it.msg, it.meta);
          fill(it, t);
          items.set(t.topic, it);
        } else if (it.sig !== t.last_id) {
          if (it.li.dataset.status !== t.status) it.li.classList.add("fresh");
          fill(it, t);
        }
        const want = prev ? prev.nextSibling : list.firstChild;
        if (want !== it.li) list.insertBefore(it.li, want);
        prev = it.li;
      }
      more.hidden = total <= MAX_TASKS;
      more.textContent = `${total - MAX_TASKS} more tasks not shown: filter to narrow`;
      empty.hidden = tasks.size > 0;
      count.textContent = `${total} of ${tasks.size}`;
      dirty = false;
    };
    let loading = false;
    async function load() {
      if (loading) return;
      loading = true;
      try {
        for (;;) {
          try {
            const snap = await (await api("tasks")).json();
            if (view !== v) return;
            tasks.clear();
            for (const t of snap.tasks || []) tasks.set(t.topic, { ...t });
            const sub = newSub({ topics: p.topics, where: p.where, types: TASK_TYPES, since: null, last: null });
            sub.cursor = typeof snap.last_id === "number" ? snap.last_id : 0;
            v.sub = sub;
            conn.setSub(sub);
            schedule();
            return;
          } catch (e) {
            if (e instanceof Unauthorized || view !== v) return;
            v.notice(`waiting for the hub: ${e.message}`);
            await new Promise((res) => setTimeout(res, 2000));
            v.notice(notices.join("; "));
          }
        }
      } finally { loading = false; }
    }
    load();
    return v;
  }

  // task ------------------------------------------------------------------------
  function timelineText(ev) {
    const d = dataOf(ev);
    const msg = text(d.message);
    switch (ev.type) {
      case "task_started": {
        const cmd = Array.isArray(d.command) ? d.command.join(" ") : text(d.command);
        return "started" + (cmd ? `: ${cmd}` : "") + (msg && !cmd ? `: ${msg}` : "");
      }
      case "progress":
        return `progress ${typeof d.percent === "number" ? Math.round(d.percent) + "%" : ""}${msg ? " " + msg : ""}`;
      case "task_completed":
        return `completed${Number.isInteger(d.exit_code) ? ` (exit code ${d.exit_code})` : ""}` +
          (typeof d.duration_seconds === "number" ? ` in ${seconds(d.duration_seconds)}` : "");
      case "task_failed":
        return `failed${d.error !== undefined ? `: ${text(d.error)}` : ""}` +
          (Number.isInteger(d.exit_code) ? ` (exit code ${d.exit_code})` : "") +
          (typeof d.duration_seconds === "number" ? ` after ${seconds(d.duration_seconds)}` : "");
      default:
        return `${ev.type}: ${summary(ev)}`;
    }
  }
  function logLine(ev, showFile) {
    const d = dataOf(ev);
    if (ev.type === "rotated") {
      const f = text(d.file);
      return el("div", { class: "line rotated", "data-id": ev.id, title: ev.ts }, `— rotated${f ? ": " + f : ""} —`);
    }
    const line = el("div", { class: "line" + (d.stream === "stderr" ? " err" : ""), "data-id": ev.id, title: ev.ts });
    if (showFile && typeof d.file === "string") line.append(el("span", { class: "f", text: d.file.split("/").pop() }));
    line.append(el("span", { class: "lt", text: ev.type === "log" ? (text(d.line) ?? "") : summary(ev) }));
    return line;
  }

  function taskView(p) {
    const v = baseView(p);
    const topic = p.topics[0];
    if (!topic) {
      v.root.append(v.noticeEl);
      v.notice("view=task needs topic=TASK (e.g. ?view=task&topic=task:build-42)");
      return v;
    }
    const tasks = new Map();
    const head = el("div", { class: "task-head" });
    const meta = el("div", { class: "task-meta" });
    const back = el("a", { href: "?view=tasks", text: "← all tasks" });
    const tl = el("ol", { class: "timeline", "aria-label": "Timeline" });
    const tlMore = el("div", { class: "more", hidden: true });
    let tlHidden = 0;
    const logs = rowList(MAX_LINES, (ev) => logLine(ev, false), "lines");
    const [pauseBtn, held, live] = pauseControls(logs);
    v.root.append(
      el("div", { class: "toolbar" }, back, el("h2", { class: "grow", text: topic }), pauseBtn, held, live),
      v.noticeEl, head, meta,
      el("div", { class: "task-split" },
        el("section", { "aria-label": "Timeline" }, el("h3", { text: "Timeline" }), el("div", { class: "scroll" }, tlMore, tl)),
        el("section", { "aria-label": "Log" }, el("h3", { text: "Log" }), logs.scroll)));
    let pendingTl = [];
    v.togglePause = () => logs.setPaused(!logs.paused);
    v.add = (evs) => {
      const lines = [];
      for (const ev of evs) {
        if (ev.type === "log" || ev.type === "rotated") lines.push(ev);
        else { foldTask(tasks, ev); pendingTl.push(ev); }
      }
      if (lines.length) logs.add(lines);
      if (pendingTl.length > MAX_TIMELINE) { tlHidden += pendingTl.length - MAX_TIMELINE; pendingTl = pendingTl.slice(-MAX_TIMELINE); }
      schedule();
    };
    v.gap = (from, to, reason) => { pendingTl.push({ gap: true, from, to, reason }); schedule(); };
    const drawHead = () => {
      const t = tasks.get(topic);
      if (!t) { head.replaceChildren(el("span", { class: "more", text: "no lifecycle events for this task yet" })); meta.replaceChildren(); return; }
      head.replaceChildren(el("span", { class: "status", "data-status": t.status, text: t.status }), progressEl(t),
        el("span", { class: "pct", text: pctText(t) }), el("span", { class: "msg", text: t.message || "" }));
      meta.replaceChildren(taskMeta(t));
    };
    v.tick = () => { const t = tasks.get(topic); if (t && t.status === "running") drawHead(); };
    v.render = () => {
      if (pendingTl.length) {
        const frag = document.createDocumentFragment();
        for (const ev of pendingTl) {
          if (ev.gap) { frag.append(el("li", { class: "gap", text: `ids ${ev.from}–${ev.to} are gone: ${ev.reason}` })); continue; }
          frag.append(el("li", { "data-type": ev.type, "data-id": ev.id },
            el("span", { class: "t", title: ev.ts, text: localTime(ev.ts) }), timelineText(ev)));
        }
        pendingTl = [];
        tl.append(frag);
        let extra = tl.childElementCount - MAX_TIMELINE;
        while (extra-- > 0) { tl.firstElementChild.remove(); tlHidden++; }
        tlMore.hidden = tlHidden === 0;
        tlMore.textContent = `${tlHidden} older entries not shown`;
        drawHead();
      }
      logs.render();
    };
    drawHead();
    v.sub = newSub({ topics: [topic], where: p.where, types: p.types, since: p.last === null ? (p.since ?? 0) : null, last: p.last });
    conn.setSub(v.sub);
    return v;
  }

  // events ----------------------------------------------------------------------
  function shellQuote(s) {
    return /^[A-Za-z0-9_\-.:/@=,+%]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'";
  }
  function hubSubCommand(p) {
    const parts = ["hub-sub"];
    for (const t of p.topics) parts.push(shellQuote(t));
    for (const w of p.where) parts.push("--where", shellQuote(w));
    for (const t of p.types) parts.push("--type", shellQuote(t));
    if (p.since !== null) parts.push("--since", String(p.since));
    if (p.last !== null) parts.push("--last", String(p.last));
    const u = new URL(".", location.href);
    parts.push("--url", shellQuote(`${u.protocol === "https:" ? "wss" : "ws"}://${u.host}`));
    if (token()) parts.push("--token-file", "FILE");
    return parts.join(" ");
  }
  function eventRow(ev) {
    if (ev.gap) return el("div", { class: "gap", text: `ids ${ev.from}–${ev.to} are gone: ${ev.reason}` });
    const row = el("div", { class: "row", "data-id": ev.id });
    const sum = el("div", { class: "sum", tabindex: "0", role: "button", "aria-expanded": "false" },
      el("span", { class: "t", title: `${ev.ts} (UTC)`, text: localTime(ev.ts) }),
      el("span", { class: "tp", text: ev.topic }),
      el("span", { class: "ty", text: ev.type }),
      el("span", { class: "src", text: ev.source ?? "" }),
      el("span", { class: "txt", text: summary(ev) }));
    row.append(sum);
    rowEvents.set(row, ev);
    return row;
  }
  // The event behind each row, for expanding it; rows that leave the DOM go with it.
  const rowEvents = new WeakMap();
  function toggleRow(sum) {
    const row = sum.parentElement;
    const pre = row.querySelector("pre");
    if (pre) { pre.remove(); sum.setAttribute("aria-expanded", "false"); return; }
    row.append(el("pre", { text: JSON.stringify(rowEvents.get(row), null, 2) }));
    sum.setAttribute("aria-expanded", "true");
  }
  document.addEventListener("click", (e) => {
    const sum = e.target.closest && e.target.closest(".row > .sum");
    if (sum && !(window.getSelection && String(window.getSelection()))) toggleRow(sum);
  });
  document.addEventListener("keydown", (e) => {
    if ((e.key === "Enter" || e.key === " ") && e.target.matches && e.target.matches(".row > .sum")) {
      e.preventDefault();
      e.stopImmediatePropagation();
      toggleRow(e.target);
    }
  }, true);
  function filterForm(p, fields) {
    const form = el("form", { class: "filters" });
    const inputs = {};
    const add = (name, label, value, attrs) => {
      const i = el("input", { name, value, "aria-label": label, ...attrs });
      inputs[name] = i;
      form.append(el("label", null, label, i));
    };
    if (fields.includes("topic")) add("topic", "topic", p.topics.join(" "), { placeholder: "task:* log:nginx", "data-filter": p.view === "events" ? "" : null, size: "16" });
    if (fields.includes("where")) add("where", "where", p.where.join(" "), { placeholder: "data.status=failed", size: "16" });
    if (fields.includes("type")) add("type", "type", p.types.join(" "), { placeholder: "progress", size: "10" });
    if (fields.includes("since")) add("since", "since", p.since ?? "", { inputmode: "numeric", size: "7" });
    if (fields.includes("last")) add("last", "last", p.last ?? "", { inputmode: "numeric", size: "5" });
    form.append(el("button", { type: "submit", text: "Apply" }));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const split = (n) => (inputs[n] ? inputs[n].value.trim().split(/\s+/).filter(Boolean) : []);
      const n = (k) => (inputs[k] && /^\d+$/.test(inputs[k].value.trim()) ? Number(inputs[k].value.trim()) : null);
      const since = n("since");
      go(queryOf({ view: p.view, topics: split("topic"), where: split("where"), types: split("type"), since, last: since === null ? n("last") : null }));
    });
    return form;
  }

  function eventsView(p) {
    const v = baseView(p);
    const rows = rowList(MAX_ROWS, eventRow, "events");
    const [pauseBtn, held, live] = pauseControls(rows);
    const copyBtn = el("button", { type: "button", class: "copy", text: "copy as hub-sub" });
    const cli = el("div", { class: "cli" });
    copyBtn.addEventListener("click", async () => {
      const cmd = hubSubCommand(p);
      cli.replaceChildren(el("code", { text: cmd }));
      try { await navigator.clipboard.writeText(cmd); cli.append(" (copied)"); } catch (_) { cli.append(" (select it to copy)"); }
    });
    v.root.append(el("div", { class: "toolbar" }, filterForm(p, ["topic", "where", "type", "since", "last"]),
      el("span", { class: "grow" }), pauseBtn, held, live, copyBtn), cli, v.noticeEl, rows.scroll);
    v.togglePause = () => rows.setPaused(!rows.paused);
    v.add = (evs) => rows.add(evs);
    v.gap = (from, to, reason) => rows.add([{ gap: true, from, to, reason }]);
    v.render = () => rows.render();
    v.sub = newSub({ topics: p.topics, where: p.where, types: p.types, since: p.since, last: p.last });
    conn.setSub(v.sub);
    return v;
  }

  // logs ------------------------------------------------------------------------
  function highlight(span, q) {
    const s = span.textContent;
    if (!q) { if (span.childElementCount) span.replaceChildren(s); return false; }
    const lower = s.toLowerCase();
    let i = lower.indexOf(q);
    if (i < 0) { if (span.childElementCount) span.replaceChildren(s); return false; }
    const parts = [];
    let at = 0;
    while (i >= 0) {
      parts.push(s.slice(at, i), el("mark", { text: s.slice(i, i + q.length) }));
      at = i + q.length;
      i = lower.indexOf(q, at);
    }
    parts.push(s.slice(at));
    span.replaceChildren(...parts);
    return true;
  }

  function logsView(p) {
    const v = baseView(p);
    if (!p.topics.length) p.topics = ["log:*"];
    let last = p.last;
    if (p.since === null && last === null) last = 100;
    if (last !== null && last > 1000) { notices.push(`last=${last} is more than 1000; showing the last 1000`); last = 1000; }
    v.noticeEl.textContent = notices.join("; ");
    const many = p.topics.length > 1 || /[*?[]/.test(p.topics[0]);
    let query = "";
    const lines = rowList(MAX_LINES, (ev) => {
      const line = ev.gap ? el("div", { class: "gap", text: `ids ${ev.from}–${ev.to} are gone: ${ev.reason}` }) : logLine(ev, many);
      const span = line.querySelector(".lt");
      if (span && query) highlight(span, query);
      return line;
    }, "lines");
    const search = el("input", { type: "search", placeholder: "search ( / )", "data-filter": "", "aria-label": "Search the lines" });
    const found = el("span", { class: "found", "aria-live": "polite" });
    const wrap = el("input", { type: "checkbox", checked: true });
    const [pauseBtn, held, live] = pauseControls(lines);
    const showFound = () => {
      if (!query) { found.textContent = ""; return; }
      let n = 0;
      for (const span of lines.body.querySelectorAll(".lt")) if (span.firstElementChild) n++;
      found.textContent = `${n} matching lines`;
    };
    search.addEventListener("input", () => {
      query = search.value.toLowerCase();
      for (const span of lines.body.querySelectorAll(".lt")) highlight(span, query);
      showFound();
    });
    wrap.addEventListener("change", () => lines.scroll.classList.toggle("nowrap", !wrap.checked));
    v.root.append(el("div", { class: "toolbar" }, filterForm(p, ["topic", "last"]), search, found,
      el("label", null, wrap, "wrap"), el("span", { class: "grow" }), pauseBtn, held, live), v.noticeEl, lines.scroll);
    v.togglePause = () => lines.setPaused(!lines.paused);
    v.add = (evs) => lines.add(evs);
    v.gap = (from, to, reason) => lines.add([{ gap: true, from, to, reason }]);
    v.render = () => {
      const had = lines.pending.length;
      lines.render();
      if (query && had) showFound();
    };
    v.sub = newSub({ topics: p.topics, where: p.where, types: p.types, since: p.since, last });
    conn.setSub(v.sub);
    return v;
  }

  // --- routing ----------------------------------------------------------------------
  function route() {
    const p = readParams();
    for (const a of document.querySelectorAll("#strip nav a")) {
      if (a.dataset.view === p.view || (p.view === "task" && a.dataset.view === "tasks")) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const make = { tasks: tasksView, task: taskView, events: eventsView, logs: logsView }[p.view];
    view = null;
    conn.setSub(null);
    const v = make(p);
    view = v;
    if (v.sub) conn.setSub(v.sub);
    $("main").replaceChildren(v.root);
    document.title = `hub: ${p.view}${p.topics.length ? " " + p.topics.join(" ") : ""}`;
  }

  document.addEventListener("click", (e) => {
    const a = e.target.closest && e.target.closest("a[href^='?']");
    if (!a || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    go(a.getAttribute("href"));
  });
  window.addEventListener("popstate", () => route());
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
    if (e.key === "Escape" && typing) { t.blur(); return; }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "/") {
      const f = $("main").querySelector("[data-filter]");
      if (f) { e.preventDefault(); f.focus(); }
    } else if (e.key === " " && view && view.togglePause) {
      const interactive = t instanceof HTMLButtonElement || t instanceof HTMLAnchorElement || t.getAttribute("role") === "button";
      if (interactive) return;
      e.preventDefault();
      view.togglePause();
    }
  });
  $("retry").addEventListener("click", () => conn.retryNow());
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const t = $("token-input").value.trim();
    if (t) conn.useToken(t);
  });

  takeTokenFromFragment();
  route();
  conn.start();
  status();
  setInterval(() => { status(); }, 2000);
  setInterval(() => { conn.tick(); if (view) view.tick(); }, 1000);
})();

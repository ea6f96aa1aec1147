/* emostream dashboard: plain JS, no build step, no external code.
 *
 * Built for a floor of hundreds of live calls. The monitor feed (/ws/monitor, docs/monitor.md) is
 * the source of truth: one `snapshot` on connect, then deltas (`session_started`, `session_ended`,
 * `alert`, `alert_acknowledged`, `digest`). The session list is never polled. Only the selected call's
 * full event stream is subscribed to (`subscribe` / `subscribed` / `unsubscribe`). The call list is
 * virtualized: fixed row height, one spacer, only the visible rows in the DOM, redrawn in
 * requestAnimationFrame. History is searched through the paged `GET /api/sessions`.
 *
 * Sections: constants & helpers · token/auth · API · model warning · calls · alerts · selected call ·
 * monitor feed · history · microphone · timeline chart · rendering · file analysis · state for tests · boot.
 * Server data is always inserted with textContent (never innerHTML): metadata and ids come
 * from callers and must not be able to inject markup. Styles are set through the CSSOM only
 * (the page's Content-Security-Policy allows no inline style or script).
 */
"use strict";

(() => {
  // ---------------------------------------------------------------- constants & helpers
  const LABELS = ["angry", "disgusted", "fearful", "happy", "neutral", "other", "sad", "surprised", "unknown"];
  const EMOJI = {
    angry: "😠", disgusted: "🤢", fearful: "😨", happy: "😊", neutral: "😐",
    other: "🤔", sad: "😢", surprised: "😲", unknown: "❓",
  };
  const COLORS = {
    angry: "#d62728", disgusted: "#5f8f1f", fearful: "#8e5cc4", happy: "#e0a000", neutral: "#6b7280",
    other: "#0f9fb0", sad: "#1f6fc0", surprised: "#d6559e", unknown: "#8c564b",
  };
  const ACCEPTED_RATES = [8000, 16000, 32000, 44100, 48000];
  const FOLLOW_SECONDS = 60;
  const ALERT_KINDS = ["flagged", "review", "dual", "withheld"];
  const ROW_HEIGHT = 76; // px: every row of the call list is this tall (virtualized list)
  const ROW_OVERSCAN = 4; // rows drawn above and below the visible ones
  const MAX_ENDED = 200; // ended calls kept in the call list (oldest dropped first)
  const ALERT_PAGE = 100; // open alerts drawn at once ("Show more" adds as many)
  const MAX_ACKED = 50; // recently acknowledged alerts kept on the page
  // Open alerts the page holds (newest first); older ones stay in the catalog and "Load older" fetches them, so
  // a floor that leaves alerts unacknowledged for hours never grows the page (`#maxOpenAlerts=N` lowers it).
  const MAX_OPEN_ALERTS = Number((location.hash.match(/(?:^#|&)maxOpenAlerts=(\d+)/) || [])[1]) || 1000;
  const HISTORY_LIMIT = 50; // sessions per page of a history search
  const HISTORY_SLICE = 250; // events of a subscription's history taken in per animation frame
  const MAX_WINDOWS = 6000; // windows a lane of the selected call keeps (10 min at a 0.1 s hop); older ones are dropped

  const $ = (sel, root = document) => root.querySelector(sel);

  /** Create an element: h("li", {class: "x", onclick: f}, "text", child). */
  function h(tag, attrs = {}, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "style") el.style.cssText = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`);
  const secs = (x) => (x === null || x === undefined ? "–" : `${Number(x).toFixed(1)} s`);
  const emo = (label) => `${EMOJI[label] || "❓"} ${label || "unknown"}`;
  const metaText = (v) => (typeof v === "string" ? v : JSON.stringify(v));
  const profileName = (p) => (typeof p === "string" ? p : p && typeof p === "object" && p.name ? String(p.name) : null);

  function clock(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }

  // ---------------------------------------------------------------- token / auth
  const auth = {
    token: null,
    error: null, // text of the visible auth/data error, or null

    init() {
      const m = location.hash.match(/(?:^#|&)token=([^&]*)/);
      if (m) {
        sessionStorage.setItem("emostream-token", decodeURIComponent(m[1]));
        // Keep the token out of the address bar (and out of screenshots / shared links).
        window.history.replaceState(null, "", location.pathname + location.search);
      }
      this.token = sessionStorage.getItem("emostream-token") || null;
      $("#token-input").value = this.token || "";
    },
    set(token) {
      this.token = token || null;
      if (token) sessionStorage.setItem("emostream-token", token);
      else sessionStorage.removeItem("emostream-token");
    },
    headers() {
      return this.token ? { Authorization: `Bearer ${this.token}` } : {};
    },
    wsUrl(path) {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const q = this.token ? `?token=${encodeURIComponent(this.token)}` : "";
      return `${proto}//${location.host}${path}${q}`;
    },
    showError(text) {
      this.error = text;
      const el = $('[data-testid="auth-error"]');
      el.textContent = text || "";
      el.hidden = !text;
    },
  };

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options = {}) {
    let resp;
    try {
      resp = await fetch(path, { ...options, headers: { ...auth.headers(), ...(options.headers || {}) } });
    } catch (err) {
      throw new ApiError(0, "network", `cannot reach the server (${err.message})`);
    }
    if (resp.status === 401) {
      auth.showError(
        auth.token
          ? "Access denied: the access token is wrong. Enter the server's token above and press Connect."
          : "Access denied: this server needs an access token. Enter it above and press Connect (or open the page as …/#token=YOUR_TOKEN).",
      );
      setConnection("unauthorized");
      throw new ApiError(401, "unauthorized", "missing or wrong token");
    }
    if (!resp.ok) {
      let body = {};
      try { body = await resp.json(); } catch { /* not JSON */ }
      throw new ApiError(resp.status, body.code || "http", body.message || `HTTP ${resp.status}`);
    }
    return resp;
  }


  // ---------------------------------------------------------------- model warning
  /** Whether some model the server used has random (or planted) weights: the red banner. */
  const model = { randomWeights: false, planted: null, modelId: null };

  function noteModel(randomWeights, modelId, planted) {
    if (!randomWeights) return;
    const changed = !model.randomWeights || (modelId && modelId !== model.modelId) || (planted && planted !== model.planted);
    model.randomWeights = true;
    if (modelId) model.modelId = modelId;
    // A planted head raises alerts on purpose: say so, so nobody reads them as recognition.
    if (planted) model.planted = planted;
    if (changed) invalidate("banners");
  }

  /** The `info` events of a session_started message, one per party (or a single one). */
  function noteInfos(info) {
    if (!info || typeof info !== "object") return;
    const infos = info.type === "info" ? [info] : Object.values(info);
    for (const i of infos) if (i && typeof i === "object") noteModel(i.random_weights, i.model_id, i.planted);
  }

  // ---------------------------------------------------------------- calls
  /** One call as the list shows it: the feed's SessionState, kept up to date by deltas and digests. */
  function newCall(id) {
    return {
      id, source: null, startedAt: null, endedAt: null, context: null, profile: null, metadata: {},
      parties: [], replay: false, randomWeights: false, planted: null,
      state: {}, // party ("all" when unsplit) -> {emotion, score, time} of its latest window, or null
      alerts: 0, open: 0, kinds: new Set(), // alerts raised, not yet acknowledged, kinds seen
      live: false, status: "live", summary: null,
      activity: 0, // ms: start, alert, acknowledgement, change of a party's emotion, end
      search: "", // lower-case id, context, profile, source and metadata values, for the text filter
      rev: 0, // bumped on every change: a visible row redraws when its call's rev moved
    };
  }

  /** Party names from a list (SessionState, session.json) or an object keyed by party (a summary). */
  function partyNames(value) {
    if (Array.isArray(value)) return value.map(String);
    return value && typeof value === "object" ? Object.keys(value) : [];
  }

  /** Merge a SessionState (feed) or a session.json (history) into a call record. */
  function fillCall(c, st) {
    if (!st || typeof st !== "object") return c;
    if (st.source !== undefined) c.source = st.source;
    if (st.started_at) c.startedAt = st.started_at;
    if (st.ended_at) c.endedAt = st.ended_at;
    if (st.context !== undefined) c.context = st.context === null ? null : String(st.context);
    if (st.profile !== undefined) c.profile = profileName(st.profile);
    if (st.metadata && typeof st.metadata === "object" && !Array.isArray(st.metadata)) c.metadata = st.metadata;
    if (st.parties !== undefined) c.parties = partyNames(st.parties);
    if (st.replay !== undefined) c.replay = !!st.replay;
    if (st.random_weights !== undefined) c.randomWeights = !!st.random_weights;
    if (st.planted !== undefined) c.planted = st.planted;
    if (st.state && typeof st.state === "object") c.state = st.state;
    if (Array.isArray(st.alerts)) {
      c.alerts = st.alerts.length;
      for (const a of st.alerts) if (a && typeof a === "object") c.kinds.add(a.kind);
    } else if (typeof st.alerts === "number") c.alerts = st.alerts;
    if (typeof st.open_alerts === "number") c.open = st.open_alerts;
    if (st.summary && typeof st.summary === "object" && Object.keys(st.summary).length) c.summary = st.summary;
    if (st.status) c.status = st.status;
    if (typeof st.live === "boolean") c.live = st.live;
    c.search = [c.id, c.context || "", c.profile || "", c.source || "",
      ...Object.values(c.metadata || {}).map(metaText)].join("\n").toLowerCase();
    c.rev += 1;
    return c;
  }

  const calls = {
    byId: new Map(),
    ended: [], // ids of ended calls, in the order they ended (at most MAX_ENDED kept)
    profiles: new Set(), // seen profile names (the context/profile filter offers them)
    partySet: new Set(), // seen party names (the party filter offers them)
    orderDirty: true,
    sorted: [], // the calls that pass the filters, in list order (recomputed when orderDirty)

    get(id) {
      let c = this.byId.get(id);
      if (!c) {
        c = newCall(id);
        this.byId.set(id, c);
      }
      return c;
    },

    /** Something that moves rows (membership, open alerts, activity) changed. */
    changed() {
      this.orderDirty = true;
      invalidate("list");
    },

    /** A live session, from the snapshot or session_started. */
    upsertLive(st) {
      if (!st || !st.session_id) return null;
      const c = this.get(String(st.session_id));
      const wasLive = c.live;
      fillCall(c, st);
      c.live = true;
      c.status = "live";
      if (!wasLive) {
        const idx = this.ended.indexOf(c.id);
        if (idx >= 0) this.ended.splice(idx, 1);
        c.activity = Math.max(c.activity, Date.parse(c.startedAt) || Date.now());
      }
      noteModel(c.randomWeights, null, c.planted);
      const known = this.profiles.size + this.partySet.size;
      if (c.profile) this.profiles.add(c.profile);
      for (const p of c.parties) this.partySet.add(p);
      if (this.profiles.size + this.partySet.size !== known) invalidate("filters");
      this.orderDirty = true;
      return c;
    },
  };

  /** A call ended: it stays listed (as ended) until MAX_ENDED newer ones push it out. */
  function endCall(id, summary) {
    const c = calls.byId.get(id);
    if (!c) return;
    if (summary && typeof summary === "object" && Object.keys(summary).length) c.summary = summary;
    if (c.live) {
      c.live = false;
      c.status = (summary && summary.status) || (c.status === "live" ? "complete" : c.status);
      c.endedAt = c.endedAt || new Date().toISOString();
      c.activity = Date.now();
      calls.ended.push(id);
      while (calls.ended.length > MAX_ENDED) {
        const old = calls.ended.shift();
        if (selection.tl && selection.tl.id === old) continue;
        calls.byId.delete(old);
        for (const a of alertStore.byId.values()) {
          if (a.session_id === old && a.state === "acknowledged") alertStore.byId.delete(a.id);
        }
      }
    } else if (summary && summary.status) c.status = summary.status;
    c.rev += 1;
    calls.changed();
    const tl = selection.tl;
    if (tl && tl.id === id && tl.live) {
      const followed = tl.subscribed || tl.historyLoaded || (mic.sessionId === id);
      tl.live = false;
      tl.subscribed = tl.subscribing = false;
      if (summary) tl.summary = summary;
      if (!followed) loadHistory(tl); // it ended before its timeline reached us: read the recording
      loadAudio(tl);
      invalidate("detail");
    }
  }

  /** A digest entry's party states: the contract's {party: {emotion, score, time}} or the compact {party: [e, s, t]}. */
  function digestStates(d) {
    const raw = d.state && typeof d.state === "object" ? d.state : d.s && typeof d.s === "object" ? d.s : null;
    if (!raw) return null;
    const out = {};
    for (const [party, st] of Object.entries(raw)) {
      out[party] = Array.isArray(st) ? { emotion: st[0], score: st[1], time: st[2] } : st;
    }
    return out;
  }

  /** The digest: each changed call's state per party (only the parties that changed) and its alert counts. */
  function applyDigest(sessions) {
    if (!sessions || typeof sessions !== "object") return;
    const now = Date.now();
    let moved = false;
    for (const [id, d] of Object.entries(sessions)) {
      const c = calls.byId.get(id);
      if (!c || !d || typeof d !== "object") continue;
      const states = digestStates(d);
      if (states) {
        for (const [party, st] of Object.entries(states)) {
          const before = c.state[party];
          if (st && (!before || before.emotion !== st.emotion)) {
            c.activity = now;
            moved = true;
          }
        }
        c.state = { ...c.state, ...states };
      }
      const total = typeof d.alerts === "number" ? d.alerts : d.a;
      const open = typeof d.open_alerts === "number" ? d.open_alerts : d.o;
      if (typeof total === "number") c.alerts = total;
      if (typeof open === "number" && open !== c.open) {
        c.open = open;
        moved = true;
      }
      c.rev += 1;
    }
    if (moved) calls.orderDirty = true;
    invalidate("list");
  }

  // ---------------------------------------------------------------- filters & order
  const filters = { text: "", alert: "", party: "", context: "", meta: null, ended: true };

  /** "key=value" (value compared as text, case-insensitively) or "key" (the key is present). */
  function parseMeta(text) {
    const t = text.trim();
    if (!t) return null;
    const eq = t.indexOf("=");
    return eq < 0 ? [t.toLowerCase(), null] : [t.slice(0, eq).trim().toLowerCase(), t.slice(eq + 1).trim().toLowerCase()];
  }

  function matches(c) {
    if (!filters.ended && !c.live) return false;
    if (filters.text && !c.search.includes(filters.text)) return false;
    if (filters.alert === "open") {
      if (!c.open) return false;
    } else if (filters.alert && !c.kinds.has(filters.alert)) return false;
    if (filters.party && !c.parties.includes(filters.party)) return false;
    if (filters.context) {
      const q = filters.context;
      const profile = (c.profile || "").toLowerCase();
      if (!profile.includes(q) && !(c.context || "").toLowerCase().includes(q)) return false;
    }
    if (filters.meta) {
      const [key, value] = filters.meta;
      const md = c.metadata || {};
      const k = Object.keys(md).find((name) => name.toLowerCase() === key);
      if (k === undefined) return false;
      if (value !== null && metaText(md[k]).toLowerCase() !== value) return false;
    }
    return true;
  }

  /** Unacknowledged alerts first, then live before ended, then the most recent activity. */
  function callOrder(a, b) {
    return (b.open > 0) - (a.open > 0) || (b.live - a.live) || (b.activity - a.activity) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  }

  function sortedCalls() {
    if (calls.orderDirty) {
      const out = [];
      for (const c of calls.byId.values()) if (matches(c)) out.push(c);
      out.sort(callOrder);
      calls.sorted = out;
      calls.orderDirty = false;
    }
    return calls.sorted;
  }

  // ---------------------------------------------------------------- alerts
  /** Every alert the page knows (feed snapshot, `alert`, `alert_acknowledged`), by id. */
  const alertStore = {
    byId: new Map(),
    openCache: null, // open alerts, newest first (null: recompute)
    acked: [], // ids of recently acknowledged alerts, newest acknowledgement first
    shown: ALERT_PAGE,
    cap: MAX_OPEN_ALERTS, // open alerts held; "Load older" raises it by what it fetched
    older: 0, // open alerts let go of (the oldest beyond the cap): the catalog has them
    forms: new Map(), // alert id -> {note, assignee, busy, error}: an acknowledgement being written
    lastAssignee: "",

    open() {
      if (!this.openCache) {
        this.openCache = [...this.byId.values()].filter((a) => a.state !== "acknowledged")
          .sort((a, b) => (Date.parse(b.at) || 0) - (Date.parse(a.at) || 0) || (a.id < b.id ? 1 : -1));
      }
      return this.openCache;
    },
    changed() {
      this.openCache = null;
      invalidate("alerts");
    },
  };

  /** The feed's Alert, or a catalog row from GET /api/alerts (`created_at` for `at`). */
  function normalAlert(a) {
    if (!a || typeof a !== "object" || !a.id) return null;
    if (!a.at && a.created_at) a = { ...a, at: a.created_at };
    if (!a.state) a = { ...a, state: a.ack ? "acknowledged" : "open" };
    return a;
  }

  /** A raised alert. `counted`: it is new to the server too (a live `alert`), so the call's counts grow. */
  function addAlert(raw, counted) {
    const a = normalAlert(raw);
    if (!a) return;
    const known = alertStore.byId.get(a.id);
    if (known) {
      if (a.state === "acknowledged" && known.state !== "acknowledged") applyAck(a);
      return;
    }
    alertStore.byId.set(a.id, a);
    const c = calls.byId.get(a.session_id);
    if (c) {
      c.kinds.add(a.kind);
      if (counted) {
        c.alerts += 1;
        if (a.state !== "acknowledged") c.open += 1;
        c.activity = Date.now();
      } else {
        c.activity = Math.max(c.activity, Date.parse(a.at) || 0);
      }
      if (a.party) calls.partySet.add(a.party);
      c.rev += 1;
      calls.changed();
    }
    if (a.state === "acknowledged") noteAcked(a.id);
    else if (counted) announce(a);
    alertStore.changed();
    if (counted) trimOpen();
  }

  /** Let go of the oldest open alerts beyond the cap (never one being acknowledged): the catalog keeps them. */
  function trimOpen() {
    const open = alertStore.open();
    if (open.length <= alertStore.cap) return;
    for (const a of open.slice(alertStore.cap)) {
      if (alertStore.forms.has(a.id)) continue;
      alertStore.byId.delete(a.id);
      alertStore.older += 1;
    }
    alertStore.changed();
  }

  /** The next open alerts older than the oldest held, from GET /api/alerts. */
  async function loadOlderAlerts() {
    const open = alertStore.open();
    const oldest = open[open.length - 1];
    const q = new URLSearchParams({ state: "open", limit: String(ALERT_PAGE) });
    if (oldest && oldest.at) q.set("to", oldest.at);
    try {
      const body = await (await api(`/api/alerts?${q}`)).json();
      const got = (body.alerts || []).filter((a) => a && !alertStore.byId.has(a.id));
      alertStore.cap += got.length;
      alertStore.older = body.next_cursor ? Math.max(0, alertStore.older - got.length) : 0;
      for (const a of got) addAlert(a, false);
      alertStore.shown = Math.max(alertStore.shown, alertStore.open().length);
    } catch (err) {
      // The catalog could not be asked: the held alerts stay as they are.
    }
    alertStore.changed();
  }

  /** An acknowledgement (ours, or one made on another dashboard): the alert leaves the queue. */
  function applyAck(raw) {
    const a = normalAlert(raw);
    if (!a) return;
    const known = alertStore.byId.get(a.id);
    const wasOpen = !known || known.state !== "acknowledged";
    const merged = { ...(known || {}), ...a, state: "acknowledged", ack: a.ack || (known && known.ack) || null };
    alertStore.byId.set(a.id, merged);
    const c = calls.byId.get(merged.session_id);
    if (c && known && wasOpen) {
      c.open = Math.max(0, c.open - 1);
      c.activity = Date.now();
      c.rev += 1;
      calls.changed();
    }
    alertStore.forms.delete(a.id);
    if (wasOpen) noteAcked(a.id);
    alertStore.changed();
  }

  function noteAcked(id) {
    const list = alertStore.acked;
    const i = list.indexOf(id);
    if (i >= 0) list.splice(i, 1);
    list.unshift(id);
    if (list.length > MAX_ACKED) list.length = MAX_ACKED;
    invalidate("acked");
  }

  async function acknowledge(id) {
    const form = alertStore.forms.get(id);
    if (!form || form.busy) return;
    form.busy = true;
    form.error = null;
    invalidate("alerts");
    const body = { note: form.note.trim() || null, assignee: form.assignee.trim() || null };
    if (body.assignee) alertStore.lastAssignee = body.assignee;
    try {
      const resp = await api(`/api/alerts/${encodeURIComponent(id)}/ack`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      applyAck(await resp.json()); // the first acknowledgement, if someone was quicker
    } catch (err) {
      form.busy = false;
      form.error = `Could not acknowledge: ${err.message}`;
      invalidate("alerts");
    }
  }

  /** New alerts are read out by screen readers (one polite line, the latest). */
  function announce(a) {
    const el = $('[data-testid="alert-announce"]');
    if (el) el.textContent = `New ${a.kind} alert on call ${a.session_id}${a.party ? `, ${a.party}` : ""}: ${a.text || ""}`;
  }

  // ---------------------------------------------------------------- the selected call
  /** The selected call's full timeline: events from `subscribed` and the live feed, or the recording. */
  function newTimeline(id) {
    return {
      id, live: false, hop: 0.1, windows: [], segments: [], transitions: [], reviews: [], duals: [],
      alerts: 0, keys: new Set(), parties: [], lanes: new Map(), summary: null, status: null,
      subscribed: false, subscribing: false, historyLoaded: false, historyLoading: false, backlog: null,
      audioUrl: null, audioLoading: false, audioError: null, notice: null,
    };
  }

  /** Where a party's events go: the timeline itself, or its party's lane in a split session. */
  function laneOf(tl, party) {
    if (!party) return tl;
    if (!tl.lanes.has(party)) {
      tl.lanes.set(party, {
        party, hop: tl.hop, windows: [], segments: [], transitions: [], reviews: [], duals: [],
        alerts: 0, audioUrl: null,
      });
      tl.parties.push(party);
    }
    return tl.lanes.get(party);
  }

  function eventKey(ev) {
    switch (ev.type) {
      case "info": return "info";
      case "window": return `w${ev.index}`;
      case "segment": return `s${ev.index}`;
      case "transition": return `t${ev.time}|${ev.to}`;
      case "review": return `r${ev.segment}`;
      case "dual_emotion": return `d${ev.segment}`;
      case "summary": return "summary";
      default: return null;
    }
  }

  function insertSorted(list, item, key) {
    if (!list.length || key(list[list.length - 1]) <= key(item)) list.push(item);
    else {
      list.push(item);
      list.sort((a, b) => key(a) - key(b));
    }
  }

  function currentDominant(lane) {
    const w = lane.windows[lane.windows.length - 1];
    return w ? { label: w.dominant, score: w.dominant_score } : null;
  }

  /** Add one event of the selected call; duplicates (subscription seed, socket, recording) are dropped. */
  /**
   * A subscription's history (up to 2,000 events), taken in a slice per animation frame so that a
   * long one never holds the page for long; the live messages that came meanwhile follow, in order.
   */
  function ingestHistory(tl, events, from) {
    if (selection.tl !== tl) return; // another call was selected meanwhile
    const end = Math.min(events.length, from + HISTORY_SLICE);
    for (let i = from; i < end; i++) ingest(tl, { ...events[i], session_id: tl.id });
    if (end < events.length) {
      requestAnimationFrame(() => ingestHistory(tl, events, end));
    } else {
      const backlog = tl.backlog || [];
      tl.backlog = null;
      for (const m of backlog) ingest(tl, m);
      tl.historyLoaded = true;
    }
    invalidate("detail");
  }

  function ingest(tl, ev) {
    if (!ev || typeof ev !== "object") return;
    const lane = laneOf(tl, ev.party);
    const base = eventKey(ev);
    const key = base && (ev.party ? `${ev.party}|${base}` : base);
    if (key) {
      if (tl.keys.has(key)) return;
      tl.keys.add(key);
    }
    switch (ev.type) {
      case "info":
        noteModel(ev.random_weights, ev.model_id, ev.planted);
        if (ev.parameters && ev.parameters.hop_seconds) tl.hop = lane.hop = ev.parameters.hop_seconds;
        break;
      case "window": {
        insertSorted(lane.windows, ev, (w) => w.index);
        if (lane.windows.length > MAX_WINDOWS + 500) { // a long call: keep its last MAX_WINDOWS windows
          const gone = lane.windows.splice(0, lane.windows.length - MAX_WINDOWS);
          for (const w of gone) tl.keys.delete(ev.party ? `${ev.party}|w${w.index}` : `w${w.index}`);
          lane.dropped = (lane.dropped || 0) + gone.length;
        }
        // The selected call's row follows its own windows (fresher than the 1/s digest).
        const c = calls.byId.get(tl.id);
        const last = lane.windows[lane.windows.length - 1];
        if (c && last === ev) {
          const party = ev.party || "all";
          const before = c.state[party];
          if (!before || before.emotion !== ev.dominant) c.activity = Date.now();
          c.state = { ...c.state, [party]: { emotion: ev.dominant, score: ev.dominant_score, time: ev.end } };
          c.rev += 1;
          invalidate("list");
        }
        break;
      }
      case "segment":
        insertSorted(lane.segments, ev, (g) => g.index);
        if (ev.decision && ev.decision.withheld) countAlert(tl, lane);
        break;
      case "transition":
        insertSorted(lane.transitions, ev, (t) => t.time);
        if (ev.flagged) countAlert(tl, lane);
        break;
      case "review":
        lane.reviews.push(ev);
        countAlert(tl, lane);
        break;
      case "dual_emotion":
        lane.duals.push(ev);
        countAlert(tl, lane);
        break;
      case "overload":
        tl.notice = ev.message || "analysis is delayed (overload)";
        break;
      case "summary":
        tl.summary = ev.stats || tl.summary;
        if (ev.stats && ev.stats.status) tl.status = ev.stats.status;
        break;
      default:
        break; // unknown types are ignored (the protocol may add some)
    }
    invalidate("detail");
  }

  /** Alerts the timeline's own events raise (the server's rule: stream/server/alerts.py). */
  function countAlert(tl, lane) {
    tl.alerts += 1;
    if (lane !== tl) lane.alerts += 1;
  }

  const selection = { tl: null, meta: null };

  /** Select a call: subscribe to it while it is live, else read its recording. */
  function select(id, meta) {
    if (selection.tl && selection.tl.id === id) {
      if (meta) selection.meta = meta;
      invalidate("detail", "list");
      return;
    }
    const prev = selection.tl;
    if (prev) {
      if (prev.subscribed || prev.subscribing) monitor.send({ type: "unsubscribe", session_id: prev.id });
      releaseTimeline(prev);
    }
    const tl = newTimeline(id);
    selection.tl = tl;
    selection.meta = meta || null;
    const c = calls.byId.get(id);
    for (const party of (c ? c.parties : partyNames(meta && meta.parties))) laneOf(tl, party);
    tl.live = c ? c.live : !!(meta && meta.live);
    if (tl.live) subscribeSelected();
    else {
      loadHistory(tl);
      loadAudio(tl);
    }
    invalidate("detail", "list");
  }

  function subscribeSelected() {
    const tl = selection.tl;
    if (!tl || !tl.live || tl.subscribing || tl.subscribed) return;
    if (monitor.send({ type: "subscribe", session_id: tl.id })) tl.subscribing = true;
  }

  function releaseTimeline(tl) {
    for (const url of [tl.audioUrl, ...[...tl.lanes.values()].map((lane) => lane.audioUrl)]) {
      if (url && url.startsWith("blob:")) URL.revokeObjectURL(url);
    }
  }

  async function loadHistory(tl) {
    if (tl.historyLoaded || tl.historyLoading) return;
    tl.historyLoading = true;
    try {
      const text = await (await api(`/api/sessions/${encodeURIComponent(tl.id)}/events`)).text();
      for (const line of text.split("\n")) {
        if (!line.trim()) continue;
        let ev;
        try { ev = JSON.parse(line); } catch { continue; } // a partial last line
        ingest(tl, { ...ev, session_id: tl.id });
      }
      tl.historyLoaded = true;
    } catch (err) {
      if (err.status === 404) tl.historyLoaded = true; // nothing recorded
      else tl.notice = `Could not load the recorded events: ${err.message}`;
    } finally {
      tl.historyLoading = false;
      invalidate("detail");
    }
  }

  async function loadAudio(tl) {
    if (tl.audioUrl || tl.audioLoading || tl.live) return;
    tl.audioLoading = true;
    try {
      const base = `/api/sessions/${encodeURIComponent(tl.id)}/audio`;
      if (!tl.parties.length && !tl.historyLoaded) {
        // A split session keeps one recording per party: learn the parties first.
        const meta = await (await api(`/api/sessions/${encodeURIComponent(tl.id)}`)).json();
        for (const party of partyNames(meta.parties)) laneOf(tl, party);
      }
      if (tl.parties.length) {
        for (const lane of tl.lanes.values()) {
          const blob = await (await api(`${base}?party=${encodeURIComponent(lane.party)}`)).blob();
          if (selection.tl !== tl) return;
          lane.audioUrl = URL.createObjectURL(blob);
        }
        tl.audioUrl = "parties";
      } else {
        const blob = await (await api(base)).blob();
        if (selection.tl !== tl) return;
        tl.audioUrl = URL.createObjectURL(blob);
      }
    } catch (err) {
      tl.audioError = err.message;
    } finally {
      tl.audioLoading = false;
      invalidate("detail");
    }
  }

  // ---------------------------------------------------------------- monitor feed
  let connection = "connecting";
  function setConnection(value) {
    connection = value;
    const pill = $('[data-testid="connection-status"]');
    pill.dataset.state = value;
    pill.textContent = {
      connecting: "connecting…", open: "live feed connected", closed: "feed disconnected — retrying",
      unauthorized: "not authorized",
    }[value] || value;
  }

  const monitor = {
    ws: null,
    retry: 1000,
    timer: null,
    generation: 0,
    stats: { messages: 0, bytes: 0, snapshots: 0, digests: 0, errors: [] },

    connect() {
      clearTimeout(this.timer);
      const gen = ++this.generation;
      if (this.ws) this.ws.close();
      setConnection("connecting");
      const ws = new WebSocket(auth.wsUrl("/ws/monitor"));
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.retry = 1000;
        setConnection("open");
      };
      ws.onmessage = (msg) => {
        if (gen !== this.generation) return;
        this.stats.messages += 1;
        this.stats.bytes += msg.data.length;
        let m;
        try { m = JSON.parse(msg.data); } catch { return; }
        this.onMessage(m);
      };
      ws.onclose = () => {
        if (gen !== this.generation) return;
        if (selection.tl) selection.tl.subscribed = selection.tl.subscribing = false;
        if (!opened) {
          // A refused handshake looks like 1006 in browsers: ask the HTTP API why (one row, not the list).
          fetch("/api/sessions?limit=1", { headers: auth.headers() }).then((r) => {
            if (r.status === 401) {
              auth.showError(
                auth.token
                  ? "Access denied: the access token is wrong. Enter the server's token above and press Connect."
                  : "Access denied: this server needs an access token. Enter it above and press Connect (or open the page as …/#token=YOUR_TOKEN).",
              );
              setConnection("unauthorized");
            } else this.scheduleRetry(gen);
          }, () => this.scheduleRetry(gen));
        } else this.scheduleRetry(gen);
      };
    },

    scheduleRetry(gen) {
      if (gen !== this.generation) return;
      setConnection("closed");
      this.timer = setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 15000);
    },

    send(message) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
      this.ws.send(JSON.stringify(message));
      return true;
    },

    onMessage(m) {
      switch (m.type) {
        case "snapshot":
          this.stats.snapshots += 1;
          applySnapshot(m);
          break;
        case "session_started": {
          const c = calls.upsertLive(m.session);
          noteInfos(m.info);
          if (c) invalidate("list");
          break;
        }
        case "session_ended":
          endCall(m.session_id, m.summary || null);
          break;
        case "alert":
          addAlert(m.alert, true);
          break;
        case "alert_acknowledged":
          applyAck(m.alert);
          break;
        case "digest":
          this.stats.digests += 1;
          applyDigest(m.sessions);
          break;
        case "batch": // deltas the server held back to keep the feed within its budget, in order
          for (const held of m.messages || []) if (held && held.type !== "batch") this.onMessage(held);
          break;
        case "subscribed": {
          const tl = selection.tl;
          if (!tl || tl.id !== m.session_id) break; // a call selected before this one
          tl.subscribing = false;
          tl.subscribed = true;
          tl.backlog = []; // live messages that come while the history is taken in, kept in order
          ingestHistory(tl, m.events || [], 0);
          break;
        }
        case "error":
          this.onError(m);
          break;
        case "unsubscribed":
          break;
        default: {
          // A subscribed call's own messages: info, window, segment, transition, review, …
          const tl = selection.tl;
          if (tl && m.session_id === tl.id) {
            if (tl.backlog) tl.backlog.push(m);
            else ingest(tl, m);
          }
        }
      }
    },

    onError(m) {
      this.stats.errors.push(m.code);
      if (this.stats.errors.length > 20) this.stats.errors.shift();
      const tl = selection.tl;
      if (!tl || !tl.subscribing || (m.session_id && m.session_id !== tl.id)) return;
      tl.subscribing = false;
      if (m.code === "unknown_session") {
        // It ended before the subscription reached the server: read its recording instead.
        tl.live = false;
        endCall(tl.id, null);
        loadHistory(tl);
        loadAudio(tl);
      } else {
        tl.notice = `The live timeline is unavailable: ${m.code}${m.message ? ` (${m.message})` : ""}`;
      }
      invalidate("detail");
    },
  };

  /** On (re)connect: the live calls and open alerts as the server has them now. */
  function applySnapshot(m) {
    const live = new Set();
    for (const st of m.sessions || []) {
      const c = calls.upsertLive(st);
      if (c) live.add(c.id);
    }
    for (const c of [...calls.byId.values()]) {
      if (c.live && !live.has(c.id)) endCall(c.id, { status: c.status === "live" ? "ended" : c.status });
    }
    const snapAlerts = (m.alerts || []).filter((a) => a && a.id);
    const present = new Set(snapAlerts.map((a) => a.id));
    // The snapshot lists at most 200 open alerts: an open alert of ours that is not there and is
    // newer than its oldest was acknowledged (or its call ended) while we were away.
    const oldest = snapAlerts.length >= 200 ? Math.min(...snapAlerts.map((a) => Date.parse(a.at) || 0)) : -Infinity;
    for (const a of [...alertStore.byId.values()]) {
      if (a.state !== "acknowledged" && !present.has(a.id) && live.has(a.session_id) && (Date.parse(a.at) || 0) >= oldest) {
        alertStore.byId.delete(a.id);
      }
    }
    for (const a of snapAlerts) addAlert(a, false);
    fetchOpenAlerts();
    alertStore.changed();
    calls.changed();
    const tl = selection.tl;
    if (tl) {
      tl.subscribed = tl.subscribing = false;
      if (tl.live && live.has(tl.id)) subscribeSelected();
      else if (tl.live) {
        tl.live = false;
        loadHistory(tl);
        loadAudio(tl);
      }
    }
    invalidate("list", "alerts", "acked", "detail", "banners", "filters");
  }

  /**
   * Once per (re)connect: the open alerts of calls that already ended (the snapshot lists those of
   * live calls only), so an unacknowledged alert never leaves the queue because its caller hung up.
   */
  async function fetchOpenAlerts() {
    const gen = monitor.generation;
    try {
      const body = await (await api(`/api/alerts?state=open&limit=${MAX_ACKED * 4}`)).json();
      if (gen !== monitor.generation) return;
      for (const a of body.alerts || []) addAlert(a, false);
    } catch (err) {
      // An older server without the alert catalog: the snapshot's alerts are all there is.
    }
  }

  // ---------------------------------------------------------------- history
  /** A search through the paged GET /api/sessions; "Load more" follows next_cursor. */
  const hist = { query: null, items: [], ids: new Set(), next: null, status: "idle", error: null, seq: 0, searched: false };

  function historyQuery(form) {
    const q = new URLSearchParams();
    q.set("limit", String(HISTORY_LIMIT));
    const data = new FormData(form);
    for (const name of ["live", "status", "source", "context", "profile", "party", "alert", "meta"]) {
      const v = String(data.get(name) || "").trim();
      if (v) q.set(name, v);
    }
    for (const name of ["from", "to"]) {
      const v = String(data.get(name) || "");
      const d = v ? new Date(v) : null; // datetime-local is the viewer's local time
      if (d && !Number.isNaN(d.getTime())) q.set(name, d.toISOString());
    }
    if (data.get("unacknowledged")) q.set("unacknowledged", "true");
    return q.toString();
  }

  async function searchHistory(more) {
    const seq = ++hist.seq;
    let q;
    if (more) {
      if (!hist.next) return;
      q = new URLSearchParams(hist.query);
      q.set("cursor", hist.next);
    } else {
      hist.query = historyQuery($('[data-testid="history-form"]'));
      hist.items = [];
      hist.ids = new Set();
      hist.next = null;
      q = new URLSearchParams(hist.query);
    }
    hist.searched = true;
    hist.status = "loading";
    hist.error = null;
    renderHistory(!more);
    try {
      const body = await (await api(`/api/sessions?${q}`)).json();
      if (seq !== hist.seq) return;
      for (const meta of body.sessions || []) {
        if (!meta || !meta.session_id || hist.ids.has(meta.session_id)) continue;
        hist.ids.add(meta.session_id);
        hist.items.push(meta);
      }
      hist.next = body.next_cursor || null;
      hist.status = "done";
    } catch (err) {
      if (seq !== hist.seq) return;
      hist.status = "error";
      hist.error = err.message;
    }
    renderHistory(false);
  }
  // ---------------------------------------------------------------- microphone
  /** Streaming linear resampler (only used when the AudioContext rate is not accepted). */
  class Resampler {
    constructor(from, to) {
      this.step = from / to;
      this.pos = 0; // position of the next output sample, in input samples, relative to `prev`
      this.prev = 0;
    }
    process(x) {
      const out = [];
      // Input indices: -1 is `prev`, 0..n-1 is x.
      while (this.pos < x.length - 1) {
        const i = Math.floor(this.pos);
        const f = this.pos - i;
        const a = i < 0 ? this.prev : x[i];
        const b = x[i + 1];
        out.push(a + (b - a) * f);
        this.pos += this.step;
      }
      this.pos -= x.length;
      this.prev = x[x.length - 1];
      return Float32Array.from(out);
    }
  }

  const mic = {
    status: "idle", // idle | starting | streaming | stopping | error
    sessionId: null,
    rate: null,
    seconds: 0,
    level: 0,
    error: null,
    ws: null,
    ctx: null,
    stream: null,
    node: null,
    pending: [],
    pendingLen: 0,

    async start() {
      this.status = "starting";
      this.error = null;
      this.seconds = 0;
      this.sessionId = null;
      renderMic();
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({
          audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
        });
        this.ctx = new AudioContext();
        await this.ctx.resume();
        const native = this.ctx.sampleRate;
        this.rate = ACCEPTED_RATES.includes(native) ? native : 16000;
        this.resampler = this.rate === native ? null : new Resampler(native, this.rate);
        this.chunk = Math.round(this.rate / 10); // 100 ms per message
        await this.openSocket();
        await this.connectAudio();
        this.status = "streaming";
      } catch (err) {
        this.fail(err.message || String(err));
      }
      renderMic();
    },

    openSocket() {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(auth.wsUrl("/ws/stream"));
        ws.binaryType = "arraybuffer";
        this.ws = ws;
        let ready = false;
        ws.onopen = () => ws.send(JSON.stringify({
          type: "start", sample_rate: this.rate, encoding: "pcm_f32le", channels: 1,
          context: "browser microphone (dashboard)",
          metadata: { client: "emostream-dashboard", input: "microphone" },
        }));
        ws.onmessage = (msg) => {
          const m = JSON.parse(msg.data);
          if (m.type === "ready") {
            ready = true;
            this.sessionId = m.session_id;
            // The feed's session_started may come later: list the call now, then follow it.
            const c = calls.get(m.session_id);
            if (!c.startedAt) {
              fillCall(c, {
                source: "native", started_at: new Date().toISOString(), context: "browser microphone (dashboard)",
                metadata: { client: "emostream-dashboard", input: "microphone" }, parties: m.parties || [],
              });
              c.live = true;
              c.status = "live";
              c.activity = Date.now();
              calls.changed();
            }
            select(m.session_id);
            resolve();
          } else if (m.type === "error") {
            if (!ready) reject(new Error(`${m.code}: ${m.message}`));
            else this.error = `${m.code}: ${m.message}`;
          } else {
            // Our own socket carries the call's events too; the timeline drops the feed's duplicates.
            const tl = selection.tl;
            if (tl && tl.id === m.session_id) ingest(tl, m);
            if (m.type === "summary") {
              endCall(m.session_id, m.stats || null);
              this.finished();
            }
          }
        };
        ws.onclose = (e) => {
          if (!ready) {
            reject(new Error(`the server refused the stream (close ${e.code}${e.reason ? `: ${e.reason}` : ""}) — check the access token`));
          } else if (this.status !== "idle") {
            if (this.status === "streaming") this.error = `connection closed (${e.code}${e.reason ? `: ${e.reason}` : ""})`;
            this.finished();
          }
        };
      });
    },

    async connectAudio() {
      const source = this.ctx.createMediaStreamSource(this.stream);
      const mute = this.ctx.createGain();
      mute.gain.value = 0; // keep the graph pulled without playing the microphone back
      mute.connect(this.ctx.destination);
      if (this.ctx.audioWorklet) {
        await this.ctx.audioWorklet.addModule("mic-worklet.js");
        this.node = new AudioWorkletNode(this.ctx, "emostream-capture", { numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1 });
        this.node.port.onmessage = (e) => this.onSamples(e.data);
      } else {
        this.node = this.ctx.createScriptProcessor(4096, 1, 1);
        this.node.onaudioprocess = (e) => this.onSamples(new Float32Array(e.inputBuffer.getChannelData(0)));
      }
      source.connect(this.node);
      this.node.connect(mute);
      this.source = source;
    },

    onSamples(samples) {
      if (this.status !== "streaming" && this.status !== "starting") return;
      const x = this.resampler ? this.resampler.process(samples) : samples;
      for (let i = 0; i < x.length; i++) this.peak = Math.max(this.peak || 0, Math.abs(x[i]));
      this.pending.push(x);
      this.pendingLen += x.length;
      if (this.pendingLen >= this.chunk) this.flush();
    },

    flush() {
      if (!this.pendingLen || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      const out = new Float32Array(this.pendingLen);
      let o = 0;
      for (const p of this.pending) { out.set(p, o); o += p.length; }
      this.pending = [];
      this.pendingLen = 0;
      this.ws.send(out.buffer);
      this.seconds += out.length / this.rate;
      this.level = Math.max(this.peak || 0, this.level * 0.6); // input level over the last 100 ms
      this.peak = 0;
      renderMic();
    },

    stopAudio() {
      try { if (this.source) this.source.disconnect(); } catch { /* already */ }
      try { if (this.node) this.node.disconnect(); } catch { /* already */ }
      if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
      if (this.ctx) this.ctx.close();
      this.source = this.node = this.stream = this.ctx = null;
    },

    stop() {
      if (this.status !== "streaming") return;
      this.flush();
      this.status = "stopping";
      this.stopAudio();
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "stop" }));
      renderMic();
    },

    finished() {
      if (this.status === "idle") return;
      this.stopAudio();
      this.status = this.error ? "error" : "idle";
      if (this.sessionId) endCall(this.sessionId, null);
      renderMic();
    },

    fail(message) {
      this.stopAudio();
      if (this.ws) this.ws.close();
      this.status = "error";
      this.error = message;
    },
  };

  function renderMic() {
    const btn = $('[data-testid="mic-button"]');
    const on = mic.status === "streaming" || mic.status === "starting";
    btn.setAttribute("aria-pressed", String(on));
    btn.classList.toggle("recording", on);
    btn.disabled = mic.status === "stopping" || mic.status === "starting";
    $(".mic-label", btn).textContent = on ? "Stop microphone" : mic.status === "stopping" ? "Finishing…" : "Microphone";
    const box = $('[data-testid="mic-status"]');
    box.hidden = mic.status === "idle" && !mic.sessionId;
    box.dataset.state = mic.status;
    $(".meter-fill", box).style.width = `${Math.min(100, Math.round(mic.level * 100))}%`;
    const text = {
      starting: "Opening the microphone…",
      streaming: `Streaming ${mic.rate / 1000} kHz → ${mic.sessionId || "…"} · ${mic.seconds.toFixed(1)} s sent`,
      stopping: `Stopped; waiting for the final events of ${mic.sessionId}…`,
      idle: mic.sessionId ? `Microphone session ${mic.sessionId} finished (${mic.seconds.toFixed(1)} s).` : "",
      error: `Microphone: ${mic.error}`,
    }[mic.status];
    $(".mic-text", box).textContent = text;
  }

  // ---------------------------------------------------------------- timeline chart
  /**
   * Draw windows (lines per emotion), the dominant band, segments, transitions and flags.
   * data: {windows, segments, transitions, reviews, duals, hop}; opts: {series, hidden, follow, height, end}.
   */
  function drawTimeline(canvas, data, opts = {}) {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(300, canvas.parentElement.clientWidth);
    const height = opts.height || 300;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);

    const pad = { left: 44, right: 12, top: 34, bottom: 26 };
    const band = { y: 8, h: 16 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const { windows = [], segments = [], transitions = [], reviews = [], duals = [] } = data;
    const hop = data.hop || 0.1;
    const series = opts.series || "scores";
    const hidden = opts.hidden || new Set();

    let t1 = windows.length ? windows[windows.length - 1].end : 0;
    for (const sg of segments) t1 = Math.max(t1, sg.end);
    t1 = Math.max(t1, opts.end || 0, 1); // stacked lanes share one time axis
    let t0 = 0;
    if (opts.follow && t1 - t0 > FOLLOW_SECONDS) t0 = t1 - FOLLOW_SECONDS;
    const X = (t) => pad.left + ((t - t0) / (t1 - t0)) * plotW;
    const Y = (v) => pad.top + (1 - v) * plotH;

    // axes and grid
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#4b5563";
    g.strokeStyle = "#e5e7eb";
    g.lineWidth = 1;
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      g.beginPath();
      g.moveTo(pad.left, Y(v) + 0.5);
      g.lineTo(pad.left + plotW, Y(v) + 0.5);
      g.stroke();
      g.textAlign = "right";
      g.textBaseline = "middle";
      g.fillText(`${Math.round(v * 100)}%`, pad.left - 6, Y(v));
    }
    const span = t1 - t0;
    const tick = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600].find((s) => span / s <= 10) || 1200;
    g.textAlign = "center";
    g.textBaseline = "top";
    for (let t = Math.ceil(t0 / tick) * tick; t <= t1 + 1e-9; t += tick) {
      g.beginPath();
      g.moveTo(X(t) + 0.5, pad.top);
      g.lineTo(X(t) + 0.5, pad.top + plotH);
      g.stroke();
      g.fillText(`${+t.toFixed(1)} s`, X(t), pad.top + plotH + 6);
    }

    g.save();
    g.beginPath();
    g.rect(pad.left, 0, plotW, height);
    g.clip();

    // segments (shaded) with their utterance emotion
    for (const sg of segments) {
      if (sg.end < t0) continue;
      g.fillStyle = "rgba(100, 116, 139, 0.10)";
      g.fillRect(X(sg.start), pad.top, X(sg.end) - X(sg.start), plotH);
      g.fillStyle = "#475569";
      g.textAlign = "left";
      g.textBaseline = "top";
      g.fillText(`seg ${sg.index}: ${sg.emotion}`, X(sg.start) + 3, pad.top + 2);
    }

    // dominant band
    g.fillStyle = "#f1f5f9";
    g.fillRect(pad.left, band.y, plotW, band.h);
    // One rectangle per run of windows with the same segment and dominant emotion.
    let run = null;
    const flushRun = () => {
      if (!run || run.end < t0) return;
      g.fillStyle = COLORS[run.label] || "#999";
      g.fillRect(X(run.start), band.y, Math.max(1, X(run.end) - X(run.start)), band.h);
    };
    for (const w of windows) {
      if (run && run.segment === w.segment && run.label === w.dominant) run.end = w.end;
      else {
        flushRun();
        const start = run && run.segment === w.segment ? run.end : w.start;
        run = { segment: w.segment, label: w.dominant, start, end: Math.max(w.end, start + hop) };
      }
    }
    flushRun();

    // score lines per emotion, broken between segments
    g.lineWidth = 1.6;
    g.lineJoin = "round";
    for (const label of LABELS) {
      if (hidden.has(label)) continue;
      g.strokeStyle = COLORS[label];
      g.beginPath();
      let seg = null;
      for (const w of windows) {
        if (w.end < t0) continue;
        const v = (w[series] || w.scores)[label];
        const x = X((w.start + w.end) / 2);
        if (w.segment !== seg) g.moveTo(x, Y(v));
        else g.lineTo(x, Y(v));
        seg = w.segment;
      }
      g.stroke();
    }

    // transitions: flagged fear <-> disgust in red
    for (const tr of transitions) {
      if (tr.time < t0) continue;
      const x = X(tr.time);
      g.strokeStyle = tr.flagged ? "#dc2626" : "#1f2937";
      g.lineWidth = tr.flagged ? 3 : 1.2;
      g.setLineDash(tr.flagged ? [] : [4, 3]);
      g.beginPath();
      g.moveTo(x, band.y);
      g.lineTo(x, pad.top + plotH);
      g.stroke();
      g.setLineDash([]);
      g.fillStyle = tr.flagged ? "#b91c1c" : "#1f2937";
      g.textAlign = "left";
      g.textBaseline = "top";
      g.font = tr.flagged ? "bold 11px system-ui, sans-serif" : "11px system-ui, sans-serif";
      g.fillText(`${tr.from}→${tr.to}${tr.flagged ? " ⚠" : ""}`, x + 3, pad.top + 16);
      g.font = "11px system-ui, sans-serif";
    }

    // review / dual-emotion markers over their segment spans
    const marker = (ev, letter, color, row) => {
      if (ev.end < t0) return;
      const y = pad.top + plotH - 14 - row * 16;
      g.fillStyle = color;
      g.globalAlpha = 0.18;
      g.fillRect(X(ev.start), pad.top, X(ev.end) - X(ev.start), plotH);
      g.globalAlpha = 1;
      g.fillRect(X(ev.start), y, 14, 14);
      g.fillStyle = "#fff";
      g.textAlign = "center";
      g.textBaseline = "middle";
      g.font = "bold 10px system-ui, sans-serif";
      g.fillText(letter, X(ev.start) + 7, y + 7);
      g.font = "11px system-ui, sans-serif";
    };
    for (const r of reviews) marker(r, "R", "#c2410c", 0);
    for (const d of duals) marker(d, "D", "#7c3aed", 1);
    g.restore();

    g.fillStyle = "#334155";
    g.textAlign = "left";
    g.textBaseline = "middle";
    g.fillText("dominant", 2, band.y + band.h / 2);
    if (!windows.length) {
      g.fillStyle = "#6b7280";
      g.textAlign = "center";
      g.font = "13px system-ui, sans-serif";
      g.fillText("waiting for speech… (silence is not scored)", pad.left + plotW / 2, pad.top + plotH / 2);
    }
    canvas.dataset.windows = String(windows.length);
    canvas.dataset.drawn = windows.length ? "true" : "false";
  }

  function renderLegend(container, hidden, onToggle) {
    if (container.childElementCount) return; // built once; checkboxes keep their own state
    for (const label of LABELS) {
      const id = `lg-${container.dataset.legendId || "x"}-${label}`;
      const box = h("input", { type: "checkbox", id, checked: !hidden.has(label) });
      box.addEventListener("change", () => onToggle(label, box.checked));
      container.append(h("label", { for: id, class: "legend-item" }, box,
        h("span", { class: "swatch", style: `background:${COLORS[label]}` }), `${EMOJI[label]} ${label}`));
    }
  }


  // ---------------------------------------------------------------- rendering
  const view = { series: "scores", follow: true, hidden: new Set(), name: "live" };

  /** What needs drawing at the next animation frame: only those parts are redrawn. */
  const dirty = { banners: true, filters: true, list: true, alerts: true, acked: true, detail: true };
  let frameQueued = false;

  function invalidate(...parts) {
    for (const part of parts) dirty[part] = true;
    if (frameQueued) return;
    frameQueued = true;
    requestAnimationFrame(frame);
  }

  function frame() {
    frameQueued = false;
    if (dirty.banners) { dirty.banners = false; renderBanners(); }
    if (view.name !== "live") return; // the other views draw themselves; these wait until shown
    if (dirty.filters) { dirty.filters = false; renderFilterOptions(); }
    if (dirty.list) { dirty.list = false; renderCalls(); }
    if (dirty.alerts) { dirty.alerts = false; renderAlerts(); }
    if (dirty.acked) { dirty.acked = false; renderAcked(); }
    if (dirty.detail) { dirty.detail = false; renderDetail(); }
  }

  function renderBanners() {
    const banner = $('[data-testid="random-weights-banner"]');
    banner.hidden = !model.randomWeights;
    const name = model.modelId ? `model “${model.modelId}”` : "the model";
    $("#random-weights-detail").textContent = model.planted
      ? ` — ${name} has PLANTED weights (${model.planted}): its alerts follow a planted rule, not emotion; use it only to test the system.`
      : model.randomWeights ? ` — ${name} has random weights; use it only to test the system.` : "";
  }

  /** The party filter and the profile suggestions offer what the feed has shown so far. */
  let filterOptionSizes = [0, 0];
  function renderFilterOptions() {
    if (filterOptionSizes[0] !== calls.partySet.size) {
      const select = $("#filter-party");
      const current = select.value;
      select.replaceChildren(h("option", { value: "" }, "any"),
        ...[...calls.partySet].sort().map((p) => h("option", { value: p }, p)));
      select.value = calls.partySet.has(current) ? current : "";
    }
    if (filterOptionSizes[1] !== calls.profiles.size) {
      $("#profile-options").replaceChildren(...[...calls.profiles].sort().map((p) => h("option", { value: p })));
    }
    filterOptionSizes = [calls.partySet.size, calls.profiles.size];
  }

  function statusBadge(c) {
    if (c.replay) return h("span", { class: "status-badge status-replay", "data-testid": "replay-badge" }, "REPLAY — not a live call");
    return h("span", { class: `status-badge status-${c.live ? "live" : c.status}` }, c.live ? "LIVE" : c.status || "ended");
  }

  function emotionText(st) {
    return st && st.emotion ? `${emo(st.emotion)} ${pct(st.score)}` : "…";
  }

  /** "line: 3 · queue: adults · counsellor: Sam" */
  function metaLine(md) {
    return Object.entries(md || {}).map(([k, v]) => `${k}: ${metaText(v)}`).join(" · ");
  }

  // The call list: a scrolling box, one spacer (the list, as tall as all rows), and only the
  // visible rows in the DOM, each absolutely placed at index × ROW_HEIGHT.
  const rowEls = new Map(); // session id -> {li, btn, rev, index, selected}

  function renderCalls() {
    const items = sortedCalls();
    const scroll = $('[data-testid="call-scroll"]');
    const list = $('[data-testid="session-list"]');
    const height = `${items.length * ROW_HEIGHT}px`;
    if (list.style.height !== height) list.style.height = height;
    const top = scroll.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - ROW_OVERSCAN);
    const last = Math.min(items.length, Math.ceil((top + scroll.clientHeight) / ROW_HEIGHT) + ROW_OVERSCAN);
    const keep = new Set();
    const selected = selection.tl ? selection.tl.id : null;
    for (let i = first; i < last; i++) {
      const c = items[i];
      keep.add(c.id);
      let row = rowEls.get(c.id);
      if (!row) {
        const btn = h("button", { type: "button", class: "session-item", "data-testid": "session-item", "data-session-id": c.id });
        btn.addEventListener("click", () => select(c.id));
        const li = h("li", { class: "call-row" }, btn);
        li.style.height = `${ROW_HEIGHT}px`;
        row = { li, btn, rev: -1, index: -1, selected: null };
        rowEls.set(c.id, row);
        list.append(li);
      }
      if (row.rev !== c.rev || row.selected !== (selected === c.id)) {
        fillRow(row, c, selected === c.id);
        row.rev = c.rev;
        row.selected = selected === c.id;
      }
      if (row.index !== i) {
        row.li.style.transform = `translateY(${i * ROW_HEIGHT}px)`;
        row.li.setAttribute("aria-posinset", String(i + 1));
        row.index = i;
      }
      row.li.setAttribute("aria-setsize", String(items.length));
    }
    for (const [id, row] of rowEls) {
      if (!keep.has(id)) {
        row.li.remove();
        rowEls.delete(id);
      }
    }
    // Keep the DOM in list order for screen readers and Tab, unless that would move the focused row.
    if (!list.contains(document.activeElement)) {
      let prev = null;
      for (let i = first; i < last; i++) {
        const li = rowEls.get(items[i].id).li;
        if ((prev ? prev.nextSibling : list.firstChild) !== li) list.insertBefore(li, prev ? prev.nextSibling : list.firstChild);
        prev = li;
      }
    }
    let live = 0;
    let open = 0;
    for (const c of calls.byId.values()) {
      if (c.live) live += 1;
      if (c.open) open += 1;
    }
    $('[data-testid="call-count"]').textContent = String(live);
    const total = calls.byId.size;
    $('[data-testid="call-summary"]').textContent =
      `${live} live · ${total - live} ended · ${open} with open alerts` +
      (items.length !== total ? ` · ${items.length} match the filters` : "");
    const empty = $('[data-testid="sessions-empty"]');
    empty.hidden = items.length > 0;
    empty.textContent = total ? "No call matches the filters." : "No calls yet. Start a call, or press “Microphone”.";
  }

  /** Arrow keys move between rows (scrolling the list); Home and End jump to its ends. */
  function onListKey(e) {
    const keys = { ArrowDown: 1, ArrowUp: -1, PageDown: 8, PageUp: -8 };
    if (!(e.key in keys) && e.key !== "Home" && e.key !== "End") return;
    const btn = e.target.closest && e.target.closest('[data-testid="session-item"]');
    if (!btn) return;
    const items = sortedCalls();
    const at = items.findIndex((c) => c.id === btn.dataset.sessionId);
    if (at < 0) return;
    const to = e.key === "Home" ? 0 : e.key === "End" ? items.length - 1 : Math.max(0, Math.min(items.length - 1, at + keys[e.key]));
    e.preventDefault();
    const scroll = $('[data-testid="call-scroll"]');
    const top = to * ROW_HEIGHT;
    if (top < scroll.scrollTop) scroll.scrollTop = top;
    else if (top + ROW_HEIGHT > scroll.scrollTop + scroll.clientHeight) scroll.scrollTop = top + ROW_HEIGHT - scroll.clientHeight;
    renderCalls(); // now, so that the row to focus exists
    const row = rowEls.get(items[to].id);
    if (row) row.btn.focus();
  }

  function fillRow(row, c, selected) {
    const { btn } = row;
    btn.setAttribute("aria-current", selected ? "true" : "false");
    btn.classList.toggle("has-open", c.open > 0);
    btn.classList.toggle("is-replay", c.replay);
    btn.classList.toggle("is-ended", !c.live);
    const alertBadge = h("span", {
      class: `alert-badge${c.open ? " has-alerts" : ""}`, "data-testid": "row-alerts",
      "aria-label": `${c.open} open alerts of ${c.alerts}`, title: "open alerts / all alerts",
    }, `⚑ ${c.open}/${c.alerts}`);
    let emotions;
    if (c.parties.length) {
      emotions = c.parties.map((party) => {
        const st = c.state[party];
        const el = h("span", { class: "party-dominant", "data-testid": "party-dominant", "data-party": party }, `${party}: ${emotionText(st)}`);
        if (st && st.emotion) el.style.color = COLORS[st.emotion] || "";
        return el;
      });
    } else {
      const st = c.state.all;
      const el = h("span", { class: "session-dominant", "data-testid": "session-dominant" },
        st && st.emotion ? emotionText(st) : c.live ? "no speech yet" : "–");
      if (st && st.emotion) el.style.color = COLORS[st.emotion] || "";
      emotions = [el];
    }
    const where = [c.profile && `profile: ${c.profile}`, c.context && `context: ${c.context}`].filter(Boolean).join(" · ");
    const meta = metaLine(c.metadata);
    const info = [meta, where].filter(Boolean).join(" · ");
    btn.title = `${c.id}${info ? `\n${info}` : ""}`;
    btn.replaceChildren(
      h("span", { class: "session-line" },
        statusBadge(c),
        h("span", { class: "session-id" }, c.id),
        alertBadge,
        h("span", { class: "session-time" }, clock(c.startedAt))),
      h("span", { class: "session-line session-emotions" }, ...emotions),
      h("span", { class: "session-line session-meta", "data-testid": "session-meta" }, info || (c.source ? `source: ${c.source}` : "")),
    );
  }

  // The alert queue: rows are kept per alert (an acknowledgement being typed survives updates).
  const alertEls = new Map(); // alert id -> {li, formKey}
  let ackFormSeq = 0;

  function alertWhere(a) {
    const time = a.stream_time !== null && a.stream_time !== undefined ? ` @ ${secs(a.stream_time)}` : "";
    return `${a.session_id}${a.party ? ` · ${a.party}` : ""}${time}${a.at ? ` · ${clock(a.at)}` : ""}`;
  }

  function alertBody(a) {
    const c = calls.byId.get(a.session_id);
    const open = h("button", { type: "button", class: "alert-open", "data-testid": "alert-open", title: `Show call ${a.session_id}` },
      h("span", { class: "alert-line" },
        h("span", { class: "alert-kind" }, a.kind),
        a.party ? h("span", { class: "alert-party", "data-testid": "alert-party" }, a.party) : null,
        c && c.replay ? h("span", { class: "status-badge status-replay", "data-testid": "replay-badge" }, "REPLAY — not a live call") : null),
      h("span", { class: "alert-text", title: a.text || "" }, a.text || ""),
      h("span", { class: "alert-where" }, alertWhere(a)));
    open.addEventListener("click", () => select(a.session_id));
    return open;
  }

  function ackArea(a) {
    const form = alertStore.forms.get(a.id);
    if (!form) {
      const btn = h("button", { type: "button", class: "btn btn-small", "data-testid": "ack-button", "aria-label": `Acknowledge alert ${a.id}` }, "Acknowledge");
      btn.addEventListener("click", () => {
        alertStore.forms.set(a.id, { note: "", assignee: alertStore.lastAssignee, busy: false, error: null });
        invalidate("alerts");
      });
      return h("div", { class: "alert-actions" }, btn);
    }
    const noteId = `ack-note-${++ackFormSeq}`;
    const whoId = `${noteId}-who`;
    const note = h("input", { id: noteId, type: "text", maxlength: 500, "data-testid": "ack-note", placeholder: "what was done (optional)" });
    note.value = form.note;
    note.addEventListener("input", () => { form.note = note.value; });
    const who = h("input", { id: whoId, type: "text", maxlength: 100, "data-testid": "ack-assignee", placeholder: "who follows up (optional)" });
    who.value = form.assignee;
    who.addEventListener("input", () => { form.assignee = who.value; });
    const submit = h("button", { type: "submit", class: "btn btn-small btn-primary", "data-testid": "ack-submit", disabled: form.busy }, form.busy ? "Acknowledging…" : "Acknowledge");
    const cancel = h("button", { type: "button", class: "btn btn-small", "data-testid": "ack-cancel" }, "Cancel");
    cancel.addEventListener("click", () => {
      alertStore.forms.delete(a.id);
      invalidate("alerts");
    });
    const el = h("form", { class: "ack-form", "data-testid": "ack-form", "aria-label": `Acknowledge alert ${a.id}` },
      h("label", { for: noteId }, "Note"), note,
      h("label", { for: whoId }, "Assignee"), who,
      h("span", { class: "ack-buttons" }, submit, cancel),
      form.error ? h("span", { class: "ack-error", role: "alert" }, form.error) : null);
    el.addEventListener("submit", (e) => {
      e.preventDefault();
      acknowledge(a.id);
    });
    return el;
  }

  function renderAlerts() {
    const open = alertStore.open();
    const list = $('[data-testid="alert-list"]');
    $('[data-testid="alert-count"]').textContent = String(open.length);
    $('[data-testid="alerts-empty"]').hidden = open.length > 0;
    // The newest page of alerts, and any older one whose acknowledgement is being written.
    const shown = open.filter((a, i) => i < alertStore.shown || alertStore.forms.has(a.id));
    const more = $('[data-testid="alerts-more"]');
    more.hidden = open.length <= alertStore.shown;
    more.textContent = `Show more (${open.length - shown.length} older)`;
    const older = $('[data-testid="alerts-older"]');
    older.hidden = !alertStore.older || open.length > alertStore.shown;
    older.querySelector("span").textContent = `${alertStore.older} older open alert${alertStore.older === 1 ? "" : "s"} in the catalog.`;
    const want = new Set(shown.map((a) => a.id));
    for (const [id, el] of alertEls) {
      if (!want.has(id)) {
        el.li.remove();
        alertEls.delete(id);
      }
    }
    let cursor = list.firstChild;
    for (const a of shown) {
      let el = alertEls.get(a.id);
      const form = alertStore.forms.get(a.id);
      const formKey = form ? `form:${form.busy}:${form.error || ""}` : "button";
      if (!el) {
        const li = h("li", {
          class: `alert-item alert-${a.kind}`, "data-testid": "alert-item", "data-alert-id": a.id,
          "data-session-id": a.session_id, "data-kind": a.kind, "data-state": "open",
        }, alertBody(a), ackArea(a));
        el = { li, formKey };
        alertEls.set(a.id, el);
      } else if (el.formKey !== formKey) {
        el.li.lastChild.replaceWith(ackArea(a));
        el.formKey = formKey;
      }
      if (el.li !== cursor) list.insertBefore(el.li, cursor); // moves only rows out of place
      else cursor = cursor.nextSibling;
    }
  }

  function renderAcked() {
    const items = alertStore.acked.map((id) => alertStore.byId.get(id)).filter(Boolean);
    $('[data-testid="acked-count"]').textContent = String(items.length);
    $('[data-testid="acked-list"]').replaceChildren(...items.map((a) => {
      const ack = a.ack || {};
      const who = [ack.by && `by ${ack.by}`, ack.at && `at ${clock(ack.at)}`, ack.assignee && `→ ${ack.assignee}`].filter(Boolean).join(" ");
      return h("li", {
        class: `alert-item alert-${a.kind} is-acked`, "data-testid": "acked-item", "data-alert-id": a.id,
        "data-session-id": a.session_id, "data-kind": a.kind, "data-state": "acknowledged",
      }, alertBody(a), h("span", { class: "ack-info", "data-testid": "ack-info" },
        `Acknowledged ${who}${ack.note ? ` — ${ack.note}` : ""}`));
    }));
  }

  /** The selected call as the list knows it, or as its history record says. */
  function selectedCall() {
    const tl = selection.tl;
    if (!tl) return null;
    const known = calls.byId.get(tl.id);
    if (known) return known;
    if (!selection.callCache || selection.callCache.id !== tl.id) {
      selection.callCache = fillCall(newCall(tl.id), selection.meta || {});
    }
    return selection.callCache;
  }

  function renderDetail() {
    const tl = selection.tl;
    const body = $(".detail-body");
    $('[data-testid="detail-empty"]').hidden = !!tl;
    body.hidden = !tl;
    if (!tl) return;
    const c = selectedCall();
    const live = tl.live;
    $(".detail-id").textContent = tl.id;
    const status = live ? "live" : tl.status || (c && !c.live && c.status) || "complete";
    const badge = $('[data-testid="detail-status"]');
    const replay = !!(c && c.replay);
    badge.textContent = replay ? (live ? "REPLAY" : `replay · ${status}`) : live ? "LIVE" : status;
    badge.className = `status-badge status-${replay ? "replay" : live ? "live" : status}`;
    $('[data-testid="detail-replay"]').hidden = !replay;
    const meta = [c.source && `source: ${c.source}`, c.startedAt && `started ${clock(c.startedAt)}`,
      c.profile && `profile: ${c.profile}`, c.context && `context: ${c.context}`].filter(Boolean).join(" · ");
    $(".detail-meta").textContent = meta;
    const kv = Object.entries(c.metadata || {});
    $('[data-testid="detail-metadata"]').replaceChildren(...kv.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, metaText(v)))));
    const notice = $('[data-testid="detail-notice"]');
    const noticeText = tl.notice || (live && !tl.subscribed ? (tl.subscribing ? "Subscribing to the live timeline…" : "Waiting for the live feed…") : "")
      || (tl.historyLoading ? "Loading the recorded events…" : "");
    notice.textContent = noticeText;
    notice.hidden = !noticeText;

    const split = tl.parties.length > 0;
    const lanes = [...tl.lanes.values()];
    const count = (lane, key) => lane[key].length + (key === "windows" ? lane.dropped || 0 : 0);
    const total = (key) => (split ? lanes.reduce((n, lane) => n + count(lane, key), 0) : count(tl, key));
    const dom = split ? null : currentDominant(tl);
    const domEl = $('[data-testid="detail-dominant"]');
    domEl.hidden = split; // each party's lane shows its own
    domEl.style.borderColor = dom ? COLORS[dom.label] : "";
    $(".dominant-emoji", domEl).textContent = dom ? EMOJI[dom.label] : "…";
    $(".dominant-label", domEl).textContent = dom ? dom.label : "no speech yet";
    $(".dominant-score", domEl).textContent = dom ? ` ${pct(dom.score)}` : "";
    const ends = (split ? lanes : [tl]).map((lane) => (lane.windows.length ? lane.windows[lane.windows.length - 1].end : 0));
    const end = Math.max(0, ...ends);
    $(".stat-time").textContent = secs(end || (tl.summary && tl.summary.duration_seconds));
    $(".stat-windows").textContent = total("windows");
    $(".stat-segments").textContent = total("segments");
    $(".stat-transitions").textContent = total("transitions");
    $(".stat-alerts").textContent = String(Math.max(tl.alerts, c ? c.alerts : 0));

    const canvas = $('[data-testid="timeline"]');
    canvas.parentElement.hidden = split;
    if (!split) {
      drawTimeline(canvas, tl, { series: view.series, hidden: view.hidden, follow: live && view.follow });
      canvas.setAttribute("aria-label", `Emotion scores over stream time for ${tl.id}: ${tl.windows.length} windows, ${tl.segments.length} segments, ${tl.transitions.length} transitions`);
    }
    renderLanes(tl, split ? lanes : [], live);

    const play = $('[data-testid="playback"]');
    play.hidden = live;
    if (!live) {
      const audio = $('[data-testid="session-audio"]');
      audio.hidden = split;
      if (!split && tl.audioUrl && audio.getAttribute("src") !== tl.audioUrl) audio.src = tl.audioUrl;
      if ((split || !tl.audioUrl) && audio.hasAttribute("src")) audio.removeAttribute("src");
      const sum = tl.summary || (c && c.summary) || {};
      const counts = sum.events ? Object.entries(sum.events).map(([k, v]) => `${v} ${k}`).join(", ") : "";
      $('[data-testid="session-summary"]').textContent = [
        sum.status && `status ${sum.status}`, sum.duration_seconds !== undefined && `${secs(sum.duration_seconds)} of audio`,
        counts && `events: ${counts}`, sum.overloaded && "was overloaded",
        tl.audioLoading && "loading the recording…", tl.audioError && `recording unavailable: ${tl.audioError}`,
      ].filter(Boolean).join(" · ");
    }
  }

  /** A split session's parties: one timeline per party, stacked, each with its emotion and recording. */
  function renderLanes(tl, lanes, live) {
    const box = $('[data-testid="party-lanes"]');
    box.hidden = !lanes.length;
    if (box.dataset.session !== tl.id || box.children.length !== lanes.length) {
      box.dataset.session = tl.id;
      box.replaceChildren(...lanes.map((lane) => h("div", { class: "party-lane", "data-testid": "party-lane", "data-party": lane.party },
        h("h3", { class: "party-head" }, h("span", { class: "party-name" }, lane.party), h("span", { class: "party-now" })),
        h("div", { class: "chart-wrap" }, h("canvas", { class: "timeline", "data-testid": "party-timeline", "data-party": lane.party, role: "img" })),
        h("audio", { controls: "", preload: "metadata", "data-testid": "party-audio", "data-party": lane.party, hidden: "" }))));
    }
    const end = Math.max(0, ...lanes.map((lane) => Math.max(
      lane.windows.length ? lane.windows[lane.windows.length - 1].end : 0, ...lane.segments.map((g) => g.end))));
    lanes.forEach((lane, i) => {
      const el = box.children[i];
      const dom = currentDominant(lane);
      const now = $(".party-now", el);
      now.textContent = dom ? ` ${EMOJI[dom.label]} ${dom.label} ${pct(dom.score)} · ⚑ ${lane.alerts}` : " no speech yet";
      now.style.color = dom ? COLORS[dom.label] : "";
      const canvas = $("canvas", el);
      drawTimeline(canvas, lane, { series: view.series, hidden: view.hidden, follow: live && view.follow, height: 220, end });
      canvas.setAttribute("aria-label", `Emotion scores of ${lane.party} in ${tl.id}: ${lane.windows.length} windows, ${lane.segments.length} segments, ${lane.transitions.length} transitions`);
      const audio = $("audio", el);
      audio.hidden = live || !lane.audioUrl;
      if (lane.audioUrl && audio.getAttribute("src") !== lane.audioUrl) audio.src = lane.audioUrl;
    });
  }

  /** History results: appended page by page (`fresh`: a new search empties the list first). */
  function renderHistory(fresh) {
    const list = $('[data-testid="history-list"]');
    if (fresh) list.replaceChildren();
    const have = new Set([...list.children].map((li) => li.dataset.sessionId));
    for (const meta of hist.items) {
      if (have.has(meta.session_id)) continue;
      const c = fillCall(newCall(meta.session_id), meta);
      const alerts = typeof meta.alerts === "number" || Array.isArray(meta.alerts)
        ? h("span", { class: `alert-badge${c.open ? " has-alerts" : ""}` }, `⚑ ${typeof meta.open_alerts === "number" ? `${c.open}/` : ""}${c.alerts}`)
        : null;
      const where = [c.source, c.profile && `profile: ${c.profile}`, c.context && `context: ${c.context}`,
        c.parties.length && `parties: ${c.parties.join(", ")}`].filter(Boolean).join(" · ");
      const btn = h("button", { type: "button", class: "history-item", "data-testid": "history-item", "data-session-id": c.id },
        h("span", { class: "session-line" }, statusBadge(c), h("span", { class: "session-id" }, c.id), alerts,
          h("span", { class: "session-time" }, clock(c.startedAt))),
        h("span", { class: "session-line session-meta" }, where),
        h("span", { class: "session-line session-meta" }, metaLine(c.metadata)));
      btn.addEventListener("click", () => {
        select(c.id, meta);
        showView("live");
      });
      list.append(h("li", { "data-session-id": c.id }, btn));
    }
    $('[data-testid="history-count"]').textContent = String(hist.items.length);
    const more = $('[data-testid="history-more"]');
    more.hidden = !hist.next;
    more.disabled = hist.status === "loading";
    $('[data-testid="history-status"]').textContent = {
      idle: "Search recorded and live sessions by time, status, source, context, profile, party, alerts or metadata.",
      loading: "Searching…",
      done: hist.items.length
        ? `${hist.items.length} session${hist.items.length === 1 ? "" : "s"}${hist.next ? "; more match: Load more" : ", all that match"}.`
        : "No session matches.",
      error: `Search failed: ${hist.error}`,
    }[hist.status];
  }
  // ---------------------------------------------------------------- file analysis
  const analysis = { status: "idle", result: null, error: null, hidden: new Set() };

  function download(name, blob) {
    const url = URL.createObjectURL(blob);
    return h("a", { href: url, download: name, class: "btn btn-small", "data-testid": `download-${name}` }, `⬇ ${name}`);
  }

  /** An .npy file (format 1.0, little-endian float32) for a 1-D or 2-D array. */
  function npyBlob(array) {
    const rows = Array.isArray(array[0]) ? array : null;
    const shape = rows ? [rows.length, rows[0].length] : [array.length];
    const flat = Float32Array.from(rows ? rows.flat() : array);
    const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
    let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
    const total = 10 + header.length + 1;
    header += " ".repeat((64 - (total % 64)) % 64) + "\n";
    const pre = new Uint8Array(10);
    pre.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]); // \x93NUMPY v1.0
    new DataView(pre.buffer).setUint16(8, header.length, true);
    return new Blob([pre, new TextEncoder().encode(header), flat.buffer], { type: "application/octet-stream" });
  }

  async function analyze(form) {
    const data = new FormData();
    const file = $("#an-file").files[0];
    if (!file) return;
    data.append("file", file, file.name);
    data.append("granularity", $("#an-granularity").value);
    const context = $("#an-context").value.trim();
    if (context) data.append("context", context);
    data.append("extract_embedding", $("#an-embedding").checked ? "true" : "false");
    analysis.status = "running";
    analysis.error = null;
    const status = $('[data-testid="analyze-status"]');
    status.className = "analyze-status";
    status.textContent = `Analyzing ${file.name}…`;
    form.querySelector("button[type=submit]").disabled = true;
    try {
      const result = await (await api("/api/predict", { method: "POST", body: data })).json();
      analysis.result = result;
      analysis.status = "done";
      status.textContent = `Done: ${file.name} (${secs(result.duration)}).`;
      if (result.random_weights) noteModel(true, result.model_id, result.planted);
      renderAnalysis();
      renderBanners();
    } catch (err) {
      analysis.status = "error";
      analysis.error = err.message;
      status.className = "analyze-status error";
      status.textContent = `Analysis failed: ${err.message}`;
    } finally {
      form.querySelector("button[type=submit]").disabled = false;
      }
  }

  function renderAnalysis() {
    const r = analysis.result;
    const box = $('[data-testid="analyze-result"]');
    box.hidden = !r;
    if (!r) return;
    $('[data-testid="result-emoji"]').textContent = EMOJI[r.emotion] || "❓";
    $('[data-testid="result-emotion"]').textContent = r.emotion;
    $('[data-testid="result-emotion"]').style.color = COLORS[r.emotion] || "";
    $('[data-testid="result-confidence"]').textContent = `confidence ${pct(r.confidence)} · ${r.granularity} granularity`;
    $(".result-source", box).textContent = [r.source, r.model_id && `model ${r.model_id}`, r.context && `context: ${r.context}`]
      .filter(Boolean).join(" · ");

    const sorted = LABELS.map((l) => [l, r.scores[l] || 0]).sort((a, b) => b[1] - a[1]);
    $('[data-testid="result-scores"]').replaceChildren(...sorted.map(([label, v]) => h("li", { class: "score-row", "data-label": label },
      h("span", { class: "score-label" }, `${EMOJI[label]} ${label}`),
      h("span", { class: "score-bar", role: "meter", "aria-valuemin": 0, "aria-valuemax": 1, "aria-valuenow": v.toFixed(4), "aria-label": label },
        h("span", { class: "score-fill", style: `width:${(100 * v).toFixed(2)}%;background:${COLORS[label]}` })),
      h("span", { class: "score-value" }, pct(v)))));

    const { embedding, ...resultJson } = r;
    const links = [download("result.json", new Blob([JSON.stringify(resultJson, null, 2)], { type: "application/json" }))];
    if (embedding) {
      links.push(download("embedding.json", new Blob([JSON.stringify(embedding)], { type: "application/json" })));
      links.push(download("embedding.npy", npyBlob(embedding)));
    }
    $('[data-testid="downloads"]').replaceChildren(...links);

    const frame = $('[data-testid="frame-view"]');
    frame.hidden = r.granularity !== "frame";
    if (r.granularity === "frame") {
      const events = r.events || [];
      const data = {
        windows: r.windows || [], segments: r.segments || [],
        transitions: events.filter((e) => e.type === "transition"),
        reviews: events.filter((e) => e.type === "review"),
        duals: events.filter((e) => e.type === "dual_emotion"),
        hop: (r.parameters && r.parameters.hop_seconds) || 0.1,
      };
      const legend = $(".legend", frame);
      legend.dataset.legendId = "an";
      const redraw = () => drawTimeline($('[data-testid="analyze-timeline"]'), data, { hidden: analysis.hidden, height: 260 });
      renderLegend(legend, analysis.hidden, (label, on) => {
        if (on) analysis.hidden.delete(label); else analysis.hidden.add(label);
        redraw();
      });
      redraw();
      $("tbody", $('[data-testid="result-segments"]')).replaceChildren(...data.segments.map((sg) => h("tr", { "data-testid": "segment-row" },
        h("td", {}, sg.index), h("td", {}, secs(sg.start)), h("td", {}, secs(sg.end)),
        h("td", {}, emo(sg.emotion)), h("td", {}, pct(sg.confidence)), h("td", {}, sg.n_windows))));
      $('[data-testid="result-events"]').replaceChildren(...(events.length ? events.map((e) => h("li", { class: e.flagged ? "flagged" : "" },
        e.type === "transition" ? `${secs(e.time)} transition ${e.from} → ${e.to}${e.flagged ? " (flagged)" : ""}`
          : e.type === "review" ? `${secs(e.start)}–${secs(e.end)} needs review: ${e.leading} vs ${e.runner_up}`
            : `${secs(e.start)}–${secs(e.end)} dual emotion: ${(e.emotions || []).join(" + ")}`))
        : [h("li", { class: "muted" }, "no transitions, review requests or dual emotions")]));
    }
  }


  // ---------------------------------------------------------------- state for tests & tools
  /** What the page shows, as plain data: built when read (window.emostreamState), never on a timer. */
  function pageState() {
    const tl = selection.tl;
    const laneState = (lane) => ({
      windows: lane.windows.length + (lane.dropped || 0), segments: lane.segments.length, transitions: lane.transitions.length,
      alerts: lane.alerts, dominant: (currentDominant(lane) || {}).label || null, audio: !!lane.audioUrl,
    });
    const sessions = {};
    for (const c of calls.byId.values()) {
      sessions[c.id] = {
        live: c.live, status: c.status, source: c.source, replay: c.replay, alerts: c.alerts, openAlerts: c.open,
        dominant: (c.state.all && c.state.all.emotion) || null, metadata: c.metadata, profile: c.profile,
        parties: Object.fromEntries(c.parties.map((p) => [p, { dominant: (c.state[p] && c.state[p].emotion) || null }])),
      };
    }
    if (tl) {
      const s = sessions[tl.id] || (sessions[tl.id] = { live: tl.live, status: tl.status, parties: {} });
      Object.assign(s, {
        live: tl.live, subscribed: tl.subscribed, windows: tl.windows.length + (tl.dropped || 0), segments: tl.segments.length,
        transitions: tl.transitions.length, audio: !!tl.audioUrl,
        dominant: (currentDominant(tl) || {}).label || s.dominant || null,
      });
      if (!tl.live && tl.status) s.status = tl.status;
      for (const lane of tl.lanes.values()) s.parties[lane.party] = { ...(s.parties[lane.party] || {}), ...laneState(lane) };
    }
    const open = alertStore.open();
    return {
      connection,
      authError: auth.error,
      hasToken: !!auth.token,
      randomWeights: model.randomWeights,
      planted: model.planted,
      selected: tl ? tl.id : null,
      sessions,
      live: [...calls.byId.values()].filter((c) => c.live).length,
      listed: calls.sorted.length,
      order: calls.sorted.slice(0, 50).map((c) => c.id),
      rows: document.querySelectorAll('[data-testid="session-item"]').length,
      alerts: alertStore.byId.size,
      openAlerts: open.map((a) => a.id),
      ackedAlerts: alertStore.acked.slice(),
      history: {
        status: hist.status, error: hist.error, count: hist.items.length, more: !!hist.next,
        ids: hist.items.map((m) => m.session_id),
      },
      feed: { ...monitor.stats, errors: monitor.stats.errors.slice() },
      mic: { status: mic.status, sessionId: mic.sessionId, sampleRate: mic.rate, secondsSent: +mic.seconds.toFixed(2), error: mic.error },
      analyze: {
        status: analysis.status, error: analysis.error,
        windows: analysis.result ? (analysis.result.windows || []).length : 0,
        segments: analysis.result ? (analysis.result.segments || []).length : 0,
      },
    };
  }

  /** A few counters, cheap enough to read many times a second (bench/dashboard_perf.py). */
  function pageStats() {
    let live = 0;
    for (const c of calls.byId.values()) if (c.live) live += 1;
    return {
      connection, live, listed: calls.sorted.length, rows: rowEls.size, openAlerts: alertStore.open().length,
      selected: selection.tl ? selection.tl.id : null, feed: { ...monitor.stats, errors: undefined },
    };
  }

  // ---------------------------------------------------------------- boot
  function showView(name) {
    view.name = name;
    for (const tab of document.querySelectorAll('[role="tab"]')) {
      const on = tab.dataset.view === name;
      tab.setAttribute("aria-selected", String(on));
      $(`#${tab.getAttribute("aria-controls")}`).hidden = !on;
    }
    if (name === "analyze") renderAnalysis();
    else if (name === "history") {
      if (!hist.searched) searchHistory(false); // the newest sessions, once; then on request
      else renderHistory(false);
    } else invalidate("list", "alerts", "acked", "detail", "filters");
  }

  function connectAll() {
    auth.showError(null);
    setConnection("connecting");
    // /healthz names the model only to a caller with a credential: warn about random weights early.
    fetch("/healthz", { headers: auth.headers() }).then((r) => r.json()).then((b) => {
      if (b.random_weights) noteModel(true, b.model_id, b.planted);
      else if (b.model_id && !model.modelId) model.modelId = b.model_id;
    }).catch(() => {});
    monitor.connect();
  }

  function readFilters() {
    filters.text = $("#filter-text").value.trim().toLowerCase();
    filters.alert = $("#filter-alert").value;
    filters.party = $("#filter-party").value;
    filters.context = $("#filter-context").value.trim().toLowerCase();
    filters.meta = parseMeta($("#filter-meta").value);
    filters.ended = $("#filter-ended").checked;
    $('[data-testid="call-scroll"]').scrollTop = 0;
    calls.changed();
  }

  function boot() {
    auth.init();
    Object.defineProperty(window, "emostreamState", { configurable: true, enumerable: true, get: pageState });
    Object.defineProperty(window, "emostreamStats", { configurable: true, enumerable: true, get: pageStats });
    for (const tab of document.querySelectorAll('[role="tab"]')) tab.addEventListener("click", () => showView(tab.dataset.view));
    $('[data-testid="token-form"]').addEventListener("submit", (e) => {
      e.preventDefault();
      auth.set($("#token-input").value.trim());
      connectAll();
    });
    $("#token-forget").addEventListener("click", () => {
      auth.set(null);
      $("#token-input").value = "";
      connectAll();
    });
    $('[data-testid="mic-button"]').addEventListener("click", () => {
      if (mic.status === "streaming") mic.stop();
      else if (mic.status === "idle" || mic.status === "error") mic.start();
    });

    const filterForm = $('[data-testid="call-filters"]');
    filterForm.addEventListener("input", readFilters);
    filterForm.addEventListener("change", readFilters);
    filterForm.addEventListener("submit", (e) => e.preventDefault());
    filterForm.addEventListener("reset", () => setTimeout(readFilters, 0)); // after the fields are reset
    const scroll = $('[data-testid="call-scroll"]');
    scroll.addEventListener("scroll", () => invalidate("list"), { passive: true });
    scroll.addEventListener("keydown", onListKey);
    if (window.ResizeObserver) new ResizeObserver(() => invalidate("list")).observe(scroll);

    $('[data-testid="alerts-older"] button').addEventListener("click", loadOlderAlerts);
    $('[data-testid="alerts-more"]').addEventListener("click", () => {
      alertStore.shown += ALERT_PAGE;
      invalidate("alerts");
    });
    $('[data-testid="history-form"]').addEventListener("submit", (e) => {
      e.preventDefault();
      searchHistory(false);
    });
    $('[data-testid="history-more"]').addEventListener("click", () => searchHistory(true));

    for (const radio of document.querySelectorAll('input[name="series"]')) {
      radio.addEventListener("change", () => { view.series = radio.value; invalidate("detail"); });
    }
    $(".follow").addEventListener("change", (e) => { view.follow = e.target.checked; invalidate("detail"); });
    const legend = $('[data-testid="legend"]');
    legend.dataset.legendId = "live";
    renderLegend(legend, view.hidden, (label, on) => {
      if (on) view.hidden.delete(label); else view.hidden.add(label);
      invalidate("detail");
    });
    $('[data-testid="analyze-form"]').addEventListener("submit", (e) => {
      e.preventDefault();
      analyze(e.target);
    });
    window.addEventListener("resize", () => { invalidate("detail", "list"); if (analysis.result) renderAnalysis(); });
    setInterval(() => { if (mic.status === "streaming") renderMic(); }, 250);
    renderHistory(false);
    connectAll();
    invalidate("banners", "list", "alerts", "acked", "detail", "filters");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();

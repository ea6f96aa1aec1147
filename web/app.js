/* emostream dashboard: plain JS, no build step, no external code.
 *
 * Sections: constants & helpers · token/auth · API · session store · monitor socket ·
 * microphone · timeline chart · live view rendering · file analysis · state for tests · boot.
 * Server data is always inserted with textContent (never innerHTML): metadata and ids come
 * from callers and must not be able to inject markup.
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
        history.replaceState(null, "", location.pathname + location.search);
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
      publishState();
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

  // ---------------------------------------------------------------- session store
  /** Everything known about one session, from the list API, the monitor and event history. */
  function newSession(id) {
    return {
      id, source: null, status: "live", live: false, startedAt: null, endedAt: null,
      metadata: null, context: null, summary: null, modelId: null, randomWeights: null,
      hop: 0.1, windows: [], segments: [], transitions: [], reviews: [], duals: [],
      alerts: 0, keys: new Set(), historyLoaded: false, audioUrl: null, lastEvent: 0,
      parties: [], lanes: new Map(), // a split session: one lane of events per party, in channel order
    };
  }

  /** Where a party's events go: the session itself, or its party's lane in a split session. */
  function laneOf(s, party) {
    if (!party) return s;
    if (!s.lanes.has(party)) {
      s.lanes.set(party, {
        party, hop: s.hop, windows: [], segments: [], transitions: [], reviews: [], duals: [],
        alerts: 0, audioUrl: null,
      });
      s.parties.push(party);
    }
    return s.lanes.get(party);
  }

  /** Party names from session.json (a list) or a live summary (an object keyed by party). */
  function partyNames(value) {
    if (Array.isArray(value)) return value;
    return value && typeof value === "object" ? Object.keys(value) : [];
  }

  const store = {
    sessions: new Map(),
    alerts: [], // newest first: {key, sessionId, kind, time, text, at}
    alertKeys: new Set(),
    selected: null,
    randomWeights: false,
    modelId: null,

    get(id) {
      if (!this.sessions.has(id)) this.sessions.set(id, newSession(id));
      return this.sessions.get(id);
    },

    /** Merge session.json / monitor summaries into the store. */
    mergeMeta(meta) {
      if (!meta || !meta.session_id) return;
      const s = this.get(meta.session_id);
      if (meta.source) s.source = meta.source;
      if (meta.started_at) s.startedAt = meta.started_at;
      if (meta.ended_at) s.endedAt = meta.ended_at;
      if (meta.metadata !== undefined) s.metadata = meta.metadata;
      if (meta.context !== undefined) s.context = meta.context;
      for (const party of partyNames(meta.parties)) laneOf(s, party);
      if (meta.model_id) s.modelId = meta.model_id;
      if (meta.random_weights !== undefined) this.noteRandom(s, meta.random_weights, meta.model_id, meta.planted);
      if (meta.summary && Object.keys(meta.summary).length) s.summary = meta.summary;
      if (typeof meta.live === "boolean") s.live = meta.live;
      if (meta.status) s.status = meta.status;
      if (s.live) s.status = "live";
    },

    noteRandom(s, value, modelId, planted) {
      if (s) s.randomWeights = !!value;
      if (value) {
        this.randomWeights = true;
        if (modelId) this.modelId = modelId;
        // A planted head raises alerts on purpose: say so, so nobody reads them as recognition.
        if (planted) this.planted = planted;
      }
    },

    /** Add one analyzer/monitor event; duplicates (history + live feed) are ignored. */
    ingest(ev) {
      const sid = ev.session_id;
      if (!sid) return;
      const s = this.get(sid);
      const lane = laneOf(s, ev.party);
      const key = eventKey(ev) && (ev.party ? `${ev.party}|${eventKey(ev)}` : eventKey(ev));
      if (key) {
        if (s.keys.has(key)) return;
        s.keys.add(key);
      }
      s.lastEvent = Date.now();
      switch (ev.type) {
        case "info":
          s.modelId = ev.model_id;
          this.noteRandom(s, ev.random_weights, ev.model_id, ev.planted);
          if (ev.parameters && ev.parameters.hop_seconds) s.hop = lane.hop = ev.parameters.hop_seconds;
          break;
        case "window":
          insertSorted(lane.windows, ev, (w) => w.index);
          break;
        case "segment":
          insertSorted(lane.segments, ev, (g) => g.index);
          // The quality gate withheld a fear/disgust call: a person should listen.
          if (ev.decision && ev.decision.withheld) this.alert(s, ev, "review", ev.start, ev.decision.withheld);
          break;
        case "transition":
          insertSorted(lane.transitions, ev, (t) => t.time);
          if (ev.flagged) this.alert(s, ev, "flagged", ev.time, `flagged transition ${ev.from} → ${ev.to}`);
          break;
        case "review":
          lane.reviews.push(ev);
          this.alert(s, ev, "review", ev.start, `needs review: ${ev.leading} vs ${ev.runner_up} (gap ${pct(ev.gap)})${evidence(ev)}`);
          break;
        case "dual_emotion":
          lane.duals.push(ev);
          this.alert(s, ev, "dual", ev.start, `dual emotion: ${(ev.emotions || []).join(" + ")}${evidence(ev)}`);
          break;
        case "overload":
          this.alert(s, ev, "overload", null, ev.message || "analysis is delayed (overload)");
          break;
        case "summary":
          s.summary = ev.stats || s.summary;
          if (ev.stats && ev.stats.status) s.status = ev.stats.status;
          s.live = false;
          break;
        default:
          break; // unknown types are ignored (protocol may add some)
      }
    },

    alert(s, ev, kind, time, text) {
      s.alerts += 1;
      if (ev.party) laneOf(s, ev.party).alerts += 1;
      const key = `${s.id}|${ev.party || ""}|${eventKey(ev) || `${ev.type}|${Date.now()}|${Math.random()}`}`;
      if (this.alertKeys.has(key)) return;
      this.alertKeys.add(key);
      // In a split session an alert is one person's: it names the party.
      this.alerts.unshift({ key, sessionId: s.id, party: ev.party || null, kind, time, text, at: new Date() });
      if (this.alerts.length > 500) this.alerts.length = 500;
    },

    ordered() {
      return [...this.sessions.values()].sort((a, b) => {
        if (a.live !== b.live) return a.live ? -1 : 1;
        return String(b.startedAt || "").localeCompare(String(a.startedAt || "")) || a.id.localeCompare(b.id);
      });
    },
  };

  /** The acoustic evidence a review or dual report quotes (words for a person, not a score). */
  function evidence(ev) {
    return ev.evidence ? ` — ${ev.evidence}` : "";
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

  function currentDominant(s) {
    const w = s.windows[s.windows.length - 1];
    return w ? { label: w.dominant, score: w.dominant_score } : null;
  }

  // ---------------------------------------------------------------- loading sessions
  async function refreshSessions() {
    try {
      const body = await (await api("/api/sessions")).json();
      for (const meta of body.sessions || []) store.mergeMeta(meta);
      if (auth.error) auth.showError(null);
      scheduleRender();
    } catch (err) {
      if (err.status !== 401) auth.showError(`Could not load sessions: ${err.message}`);
    }
  }
  let refreshTimer = null;
  const refreshSoon = () => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refreshSessions, 300);
  };

  async function loadHistory(s) {
    if (s.historyLoaded || s.historyLoading) return;
    s.historyLoading = true;
    try {
      const text = await (await api(`/api/sessions/${encodeURIComponent(s.id)}/events`)).text();
      for (const line of text.split("\n")) {
        if (!line.trim()) continue;
        try { store.ingest({ ...JSON.parse(line), session_id: s.id }); } catch { /* partial line */ }
      }
      s.historyLoaded = true;
    } catch (err) {
      if (err.status === 404) s.historyLoaded = true; // nothing recorded (yet)
    } finally {
      s.historyLoading = false;
      scheduleRender();
    }
  }

  async function loadAudio(s) {
    if (s.audioUrl || s.audioLoading || s.live) return;
    s.audioLoading = true;
    try {
      const base = `/api/sessions/${encodeURIComponent(s.id)}/audio`;
      if (s.parties.length) {
        // A split session keeps one recording per party.
        for (const lane of s.lanes.values()) {
          const blob = await (await api(`${base}?party=${encodeURIComponent(lane.party)}`)).blob();
          lane.audioUrl = URL.createObjectURL(blob);
        }
        s.audioUrl = "parties";
      } else {
        const blob = await (await api(base)).blob();
        s.audioUrl = URL.createObjectURL(blob);
      }
    } catch (err) {
      s.audioError = err.message;
    } finally {
      s.audioLoading = false;
      scheduleRender();
    }
  }

  function select(id) {
    store.selected = id;
    const s = store.get(id);
    loadHistory(s);
    if (!s.live) loadAudio(s);
    scheduleRender();
  }

  // ---------------------------------------------------------------- monitor socket
  let connection = "connecting";
  function setConnection(value) {
    connection = value;
    const pill = $('[data-testid="connection-status"]');
    pill.dataset.state = value;
    pill.textContent = {
      connecting: "connecting…", open: "live feed connected", closed: "feed disconnected — retrying",
      unauthorized: "not authorized",
    }[value] || value;
    publishState();
  }

  const monitor = {
    ws: null,
    retry: 1000,
    timer: null,
    generation: 0,

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
      ws.onmessage = (msg) => this.onMessage(JSON.parse(msg.data));
      ws.onclose = () => {
        if (gen !== this.generation) return;
        if (!opened) {
          // A refused handshake looks like 1006 in browsers: ask the HTTP API why.
          fetch("/api/sessions", { headers: auth.headers() }).then((r) => {
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

    onMessage(m) {
      switch (m.type) {
        case "sessions":
          for (const live of m.sessions || []) {
            const s = store.get(live.session_id);
            s.live = true;
            s.status = "live";
          }
          refreshSoon();
          break;
        case "session_started": {
          store.mergeMeta({ ...m, live: true, status: "live", summary: undefined });
          const s = store.get(m.session_id);
          s.historyLoaded = true; // we see it from its first event
          if (m.info) store.ingest(m.info);
          refreshSoon();
          break;
        }
        case "session_ended": {
          const s = store.get(m.session_id);
          s.live = false;
          s.summary = m.summary || s.summary;
          s.status = (m.summary && m.summary.status) || "complete";
          if (store.selected === s.id) loadAudio(s);
          refreshSoon();
          break;
        }
        case "telephony":
          break;
        default:
          store.ingest(m);
      }
      scheduleRender();
    },
  };

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
            const s = store.get(m.session_id);
            s.live = true;
            s.status = "live";
            s.source = s.source || "stream";
            s.startedAt = s.startedAt || new Date().toISOString();
            s.historyLoaded = true;
            select(m.session_id);
            resolve();
          } else if (m.type === "error") {
            if (!ready) reject(new Error(`${m.code}: ${m.message}`));
            else this.error = `${m.code}: ${m.message}`;
          } else {
            store.ingest(m);
            if (m.type === "summary") this.finished();
          }
          scheduleRender();
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
      const s = this.sessionId && store.get(this.sessionId);
      if (s) {
        s.live = false;
        if (s.status === "live") s.status = "complete";
        if (store.selected === s.id) loadAudio(s);
      }
      refreshSoon();
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
    publishState();
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

  // ---------------------------------------------------------------- live view rendering
  const view = { series: "scores", follow: true, hidden: new Set() };
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  function render() {
    renderBanners();
    renderSessionList();
    renderAlerts();
    renderDetail();
    renderMic();
    publishState();
  }

  function renderBanners() {
    const banner = $('[data-testid="random-weights-banner"]');
    banner.hidden = !store.randomWeights;
    $("#random-weights-detail").textContent = store.planted
      ? ` — model “${store.modelId}” has PLANTED weights (${store.planted}): its alerts follow a planted rule, ` +
        "not emotion; use it only to test the system."
      : store.modelId ? ` — model “${store.modelId}” has random weights; use it only to test the system.` : "";
  }

  function renderSessionList() {
    const list = $('[data-testid="session-list"]');
    const items = store.ordered();
    $('[data-testid="sessions-empty"]').hidden = items.length > 0;
    list.replaceChildren(...items.map((s) => {
      const dom = currentDominant(s);
      const btn = h("button", {
        type: "button", class: "session-item", "data-testid": "session-item", "data-session-id": s.id,
        "aria-current": store.selected === s.id ? "true" : null, onclick: () => select(s.id),
      },
      h("span", { class: "session-line" },
        h("span", { class: `status-badge status-${s.live ? "live" : s.status}` }, s.live ? "LIVE" : s.status),
        h("span", { class: "session-id" }, s.id)),
      h("span", { class: "session-line session-sub" },
        h("span", {}, `${s.source || "?"} · ${clock(s.startedAt)}`),
        s.parties.length ? null : h("span", { class: "session-dominant", style: dom ? `color:${COLORS[dom.label]}` : null },
          dom ? emo(dom.label) : (s.historyLoaded ? "no speech" : "")),
        h("span", { class: `alert-badge${s.alerts ? " has-alerts" : ""}`, title: "alerts", "aria-label": `${s.alerts} alerts` },
          `⚑ ${s.alerts}`)),
      s.parties.length ? h("span", { class: "session-line session-parties" }, ...s.parties.map((party) => {
        const pd = currentDominant(s.lanes.get(party));
        return h("span", { class: "party-dominant", "data-testid": "party-dominant", "data-party": party,
          style: pd ? `color:${COLORS[pd.label]}` : null }, `${party}: ${pd ? emo(pd.label) : "…"}`);
      })) : null);
      return h("li", {}, btn);
    }));
  }

  function renderAlerts() {
    const list = $('[data-testid="alert-list"]');
    $('[data-testid="alert-count"]').textContent = String(store.alerts.length);
    $('[data-testid="alerts-empty"]').hidden = store.alerts.length > 0;
    list.replaceChildren(...store.alerts.slice(0, 100).map((a) => h("li", {},
      h("button", { type: "button", class: `alert-item alert-${a.kind}`, "data-testid": "alert-item",
        "data-session-id": a.sessionId, onclick: () => select(a.sessionId) },
      h("span", { class: "alert-kind" }, a.kind),
      a.party ? h("span", { class: "alert-party", "data-testid": "alert-party" }, a.party) : null,
      h("span", { class: "alert-text" }, a.text),
      h("span", { class: "alert-where" }, `${a.sessionId}${a.party ? ` · ${a.party}` : ""}${a.time !== null && a.time !== undefined ? ` @ ${secs(a.time)}` : ""} · ${a.at.toLocaleTimeString()}`)))));
  }

  function renderDetail() {
    const s = store.selected ? store.sessions.get(store.selected) : null;
    const body = $(".detail-body");
    $('[data-testid="detail-empty"]').hidden = !!s;
    body.hidden = !s;
    if (!s) return;
    $(".detail-id").textContent = s.id;
    const badge = $('[data-testid="detail-status"]');
    badge.textContent = s.live ? "LIVE" : s.status;
    badge.className = `status-badge status-${s.live ? "live" : s.status}`;
    const meta = [s.source && `source: ${s.source}`, s.startedAt && `started ${clock(s.startedAt)}`,
      s.context && `context: ${s.context}`, s.metadata && Object.keys(s.metadata).length &&
        Object.entries(s.metadata).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ")]
      .filter(Boolean).join(" · ");
    $(".detail-meta").textContent = meta;
    const split = s.parties.length > 0;
    const lanes = [...s.lanes.values()];
    const total = (key) => (split ? lanes.reduce((n, lane) => n + lane[key].length, 0) : s[key].length);
    const dom = split ? null : currentDominant(s);
    const domEl = $('[data-testid="detail-dominant"]');
    domEl.hidden = split; // each party's lane shows its own
    domEl.style.borderColor = dom ? COLORS[dom.label] : "";
    $(".dominant-emoji", domEl).textContent = dom ? EMOJI[dom.label] : "…";
    $(".dominant-label", domEl).textContent = dom ? dom.label : "no speech yet";
    $(".dominant-score", domEl).textContent = dom ? ` ${pct(dom.score)}` : "";
    const ends = (split ? lanes : [s]).map((lane) => lane.windows.length ? lane.windows[lane.windows.length - 1].end : 0);
    const end = Math.max(0, ...ends);
    $(".stat-time").textContent = secs(end || (s.summary && s.summary.duration_seconds));
    $(".stat-windows").textContent = total("windows");
    $(".stat-segments").textContent = total("segments");
    $(".stat-transitions").textContent = total("transitions");
    $(".stat-alerts").textContent = s.alerts;

    const canvas = $('[data-testid="timeline"]');
    canvas.parentElement.hidden = split;
    if (!split) {
      drawTimeline(canvas, s, { series: view.series, hidden: view.hidden, follow: s.live && view.follow });
      canvas.setAttribute("aria-label", `Emotion scores over stream time for ${s.id}: ${s.windows.length} windows, ${s.segments.length} segments, ${s.transitions.length} transitions`);
    }
    renderLanes(s, split ? lanes : []);

    const play = $('[data-testid="playback"]');
    play.hidden = s.live;
    if (!s.live) {
      const audio = $('[data-testid="session-audio"]');
      audio.hidden = split;
      if (!split && s.audioUrl && audio.getAttribute("src") !== s.audioUrl) audio.src = s.audioUrl;
      if (split || !s.audioUrl) audio.removeAttribute("src");
      const sum = s.summary || {};
      const counts = sum.events ? Object.entries(sum.events).map(([k, v]) => `${v} ${k}`).join(", ") : "";
      $('[data-testid="session-summary"]').textContent = [
        sum.status && `status ${sum.status}`, sum.duration_seconds !== undefined && `${secs(sum.duration_seconds)} of audio`,
        counts && `events: ${counts}`, sum.overloaded && "was overloaded",
        s.audioLoading && "loading the recording…", s.audioError && `recording unavailable: ${s.audioError}`,
      ].filter(Boolean).join(" · ");
    }
  }

  /** A split session's parties: one timeline per party, stacked, each with its emotion and recording. */
  function renderLanes(s, lanes) {
    const box = $('[data-testid="party-lanes"]');
    box.hidden = !lanes.length;
    if (box.dataset.session !== s.id || box.children.length !== lanes.length) {
      box.dataset.session = s.id;
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
      drawTimeline(canvas, lane, { series: view.series, hidden: view.hidden, follow: s.live && view.follow, height: 220, end });
      canvas.setAttribute("aria-label", `Emotion scores of ${lane.party} in ${s.id}: ${lane.windows.length} windows, ${lane.segments.length} segments, ${lane.transitions.length} transitions`);
      const audio = $("audio", el);
      audio.hidden = s.live || !lane.audioUrl;
      if (lane.audioUrl && audio.getAttribute("src") !== lane.audioUrl) audio.src = lane.audioUrl;
    });
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
    publishState();
    try {
      const result = await (await api("/api/predict", { method: "POST", body: data })).json();
      analysis.result = result;
      analysis.status = "done";
      status.textContent = `Done: ${file.name} (${secs(result.duration)}).`;
      if (result.random_weights) store.noteRandom(null, true, result.model_id);
      renderAnalysis();
      renderBanners();
    } catch (err) {
      analysis.status = "error";
      analysis.error = err.message;
      status.className = "analyze-status error";
      status.textContent = `Analysis failed: ${err.message}`;
    } finally {
      form.querySelector("button[type=submit]").disabled = false;
      publishState();
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
  function publishState() {
    const sessions = {};
    for (const s of store.sessions.values()) {
      sessions[s.id] = {
        live: s.live, status: s.status, source: s.source, windows: s.windows.length,
        segments: s.segments.length, transitions: s.transitions.length, alerts: s.alerts,
        dominant: (currentDominant(s) || {}).label || null, audio: !!s.audioUrl,
        parties: Object.fromEntries([...s.lanes.values()].map((lane) => [lane.party, {
          windows: lane.windows.length, segments: lane.segments.length, transitions: lane.transitions.length,
          alerts: lane.alerts, dominant: (currentDominant(lane) || {}).label || null, audio: !!lane.audioUrl,
        }])),
      };
    }
    window.emostreamState = {
      connection,
      authError: auth.error,
      hasToken: !!auth.token,
      randomWeights: store.randomWeights,
      selected: store.selected,
      sessions,
      alerts: store.alerts.length,
      mic: { status: mic.status, sessionId: mic.sessionId, sampleRate: mic.rate, secondsSent: +mic.seconds.toFixed(2), error: mic.error },
      analyze: {
        status: analysis.status, error: analysis.error,
        windows: analysis.result ? (analysis.result.windows || []).length : 0,
        segments: analysis.result ? (analysis.result.segments || []).length : 0,
      },
    };
  }

  // ---------------------------------------------------------------- boot
  function showView(name) {
    for (const tab of document.querySelectorAll('[role="tab"]')) {
      const on = tab.dataset.view === name;
      tab.setAttribute("aria-selected", String(on));
      $(`#${tab.getAttribute("aria-controls")}`).hidden = !on;
    }
    if (name === "analyze") renderAnalysis();
    else scheduleRender();
  }

  async function connectAll() {
    auth.showError(null);
    setConnection("connecting");
    // /healthz names the model only to a caller with a credential: warn about random weights early.
    fetch("/healthz", { headers: auth.headers() }).then((r) => r.json()).then((b) => {
      if (b.random_weights) { store.noteRandom(null, true, b.model_id); scheduleRender(); }
    }).catch(() => {});
    await refreshSessions();
    if (connection !== "unauthorized") monitor.connect();
    else publishState();
  }

  function boot() {
    auth.init();
    publishState();
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
    for (const radio of document.querySelectorAll('input[name="series"]')) {
      radio.addEventListener("change", () => { view.series = radio.value; scheduleRender(); });
    }
    $(".follow").addEventListener("change", (e) => { view.follow = e.target.checked; scheduleRender(); });
    const legend = $('[data-testid="legend"]');
    legend.dataset.legendId = "live";
    renderLegend(legend, view.hidden, (label, on) => {
      if (on) view.hidden.delete(label); else view.hidden.add(label);
      scheduleRender();
    });
    $('[data-testid="analyze-form"]').addEventListener("submit", (e) => {
      e.preventDefault();
      analyze(e.target);
    });
    window.addEventListener("resize", () => { scheduleRender(); if (analysis.result) renderAnalysis(); });
    setInterval(() => { if (mic.status === "streaming") renderMic(); }, 250);
    connectAll();
    scheduleRender();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();

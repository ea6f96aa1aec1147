"""Reliability figures a hotline can quote: soak, fuzz, crash, broker outage, overload.

    PYTHONPATH=. python -m bench.reliability [--only R1 R2 R3 R4 R6] [--soak-minutes 10] [--soak-streams 8]

Every part starts the real server (`python server.py`, the tiny architecture with the PLANTED
fear/disgust head so that real speech raises alerts; its scores are not emotion recognition) on a
loopback port with its recordings in a temporary folder, drives it with real WebSocket clients
streaming espeak-ng speech (bench/speech.py) and prints one line per figure:

- R1 soak: N concurrent streams × M minutes of real-time audio: sessions dropped, recorded vs
  sent samples per session, server RSS at start and end.
- R2 fuzz: malformed and adversarial messages over /ws/stream, /ws/twilio and the HTTP API while
  one clean session streams beside them: server crashes, unanswered messages, errors with a
  code, and whether the clean session's events equal those of the same audio streamed alone.
- R3 `kill -9` at a random moment of live streams, then a restart (which repairs): seconds of
  audio lost, torn event lines, whether every session is readable afterwards, and whether any
  process the server started (its measuring workers) outlives it.
- R4 the MQTT broker (mosquitto) stopped for 30 s mid-stream: QoS-1 alerts published vs received
  by an independent persistent subscriber (`mosquitto_sub -c -q 1`).
- R6 overload: more streams offered than `--max-sessions`, faster than real time: every refused
  or closed stream got its reason (a close code and reason, or an `error` with a code); server
  RSS stays bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.concurrent import Server, process_tree
from bench.speech import synthesize

RATE = 16_000
STEP = 3200  # bytes per message: 0.1 s of 16 kHz pcm_s16le
ALERT_TYPES = ("review", "dual_emotion")
MiB = 1 << 20


def say(line: str) -> None:
    """One figure per line, flushed (the output is what docs/benchmarks.md quotes)."""
    print(line, flush=True)


def is_alert(m: dict) -> bool:
    """Flagged fear/disgust transitions, review flags and dual-emotion reports."""
    return m.get("type") in ALERT_TYPES or (m.get("type") == "transition" and bool(m.get("flagged")))


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def server_args(args, *options: str) -> argparse.Namespace:
    """The options bench.concurrent.Server reads."""
    return argparse.Namespace(device="cpu", dtype="float32", threads=args.threads, max_batch=None,
                              max_wait_ms=None, max_pending=None, server_option=list(options), ray=False)


def start(model_dir: Path, args, workdir: Path, *options: str) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    server = Server(model_dir, server_args(args, *options), workdir)
    server.wait_ready(300)
    return server


def restart_on(old: Server, model_dir: Path, args, *options: str) -> Server:
    """A new server process on the old one's recordings folder (it repairs what a crash left)."""
    (old.recordings.parent / "restart").mkdir(exist_ok=True)
    server = Server(model_dir, server_args(args, "--recordings", str(old.recordings), *options),
                    old.recordings.parent / "restart")
    server.wait_ready(300)
    return server


async def stream(url: str, pcm: bytes, session_id: str, pace: float = 0.1, start_extra: dict | None = None,
                 on_sent=None) -> dict:
    """One native session; returns what happened: messages, close code/reason, bytes sent."""
    out = {"messages": [], "code": None, "reason": "", "sent": 0, "error": None}
    try:
        async with connect(url, max_size=None, open_timeout=30) as ws:
            async def read():
                try:
                    async for raw in ws:
                        out["messages"].append(json.loads(raw))
                except ConnectionClosed:
                    pass

            reader = asyncio.create_task(read())
            await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "encoding": "pcm_s16le",
                                      "session_id": session_id, **(start_extra or {})}))
            t0 = time.monotonic()
            for n, i in enumerate(range(0, len(pcm), STEP)):
                await ws.send(pcm[i : i + STEP])
                out["sent"] += len(pcm[i : i + STEP])
                if on_sent:
                    on_sent(out["sent"])
                if pace:
                    await asyncio.sleep(max(0.0, t0 + (n + 1) * pace - time.monotonic()))
            await ws.send(json.dumps({"type": "stop"}))
            await asyncio.wait_for(reader, 600)
            out["code"], out["reason"] = ws.close_code, ws.close_reason or ""
    except ConnectionClosed as exc:
        out["code"] = exc.rcvd.code if exc.rcvd else 1006
        out["reason"] = exc.rcvd.reason if exc.rcvd else ""
    except (OSError, asyncio.TimeoutError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def wav_frames(path: Path) -> int:
    with wave.open(str(path)) as w:
        return w.getnframes()


class RssSampler:
    """The server's RSS every 0.5 s in a thread: the peak while something runs."""

    def __init__(self, server: Server):
        self.server, self.peak, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, self.server.rss_bytes() or 0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ---- R1 soak ------------------------------------------------------------------------------------
def r1_soak(model_dir: Path, args, work: Path) -> None:
    seconds = args.soak_minutes * 60
    audio, _ = synthesize(seconds, seed=1)
    pcm = pcm16(audio)
    server = start(model_dir, args, work / "r1")
    try:
        async def warm():
            await stream(server.ws_url, pcm[: 3 * RATE * 2], "warm", pace=0)

        asyncio.run(warm())
        rss0 = server.rss_bytes()

        async def soak():
            return await asyncio.gather(*(stream(server.ws_url, pcm, f"soak-{k}") for k in range(args.soak_streams)))

        t0 = time.monotonic()
        with RssSampler(server) as rss:
            results = asyncio.run(soak())
        wall = time.monotonic() - t0
        rss1 = server.rss_bytes()
        dropped = [k for k, r in enumerate(results)
                   if not r["messages"] or r["messages"][-1].get("type") != "summary" or r["code"] != 1000]
        overloads = sum(m["type"] == "overload" for r in results for m in r["messages"])
        ratios = []
        for k, r in enumerate(results):
            sent = r["sent"] // 2
            recorded = wav_frames(server.recordings / f"soak-{k}" / "audio.wav")
            ratios.append((sent, recorded))
        why = [f"{results[k]['code']} {results[k]['reason']}".strip() for k in dropped]
        say(f"R1 soak: {args.soak_streams} streams x {args.soak_minutes:g} min real-time audio "
            f"({wall / 60:.1f} min wall, load average {os.getloadavg()[1]:.1f}): sessions dropped "
            f"{len(dropped)}/{args.soak_streams}{' ' + str(why) if dropped else ''}, overload messages {overloads}")
        same = all(s == r for s, r in ratios)
        say(f"R1 soak: recorded/sent samples per session: "
            f"{'all equal' if same else 'DIFFER'} ({', '.join(f'{r}/{s}' for s, r in ratios)})")
        say(f"R1 soak: server RSS start {rss0 / MiB:.0f} MiB, end {rss1 / MiB:.0f} MiB, peak {rss.peak / MiB:.0f} MiB")
    finally:
        server.stop()


# ---- R2 fuzz ------------------------------------------------------------------------------------
def _deep(n: int):
    x: object = 1
    for _ in range(n):
        x = {"a": x}
    return x


def native_cases(rng: random.Random) -> list[tuple[str, object]]:
    """(label, message) pairs for /ws/stream: text or bytes, each sent on a connection after `before`."""
    cases: list[tuple[str, object]] = []
    start = {"type": "start", "sample_rate": RATE, "encoding": "pcm_s16le"}
    values = [None, True, -1, 0, 1.5, 1e308, "x", "", [], {}, [1, 2], {"a": 1}, "8000", 2**63, -(2**63)]
    for field in ("sample_rate", "encoding", "channels", "session_id", "context", "metadata", "type"):
        for v in values:
            cases.append((f"start.{field}={json.dumps(v)[:12]}", json.dumps({**start, field: v})))
    for v in ("NaN", "Infinity", "-Infinity"):
        for field in ("sample_rate", "channels", "metadata"):
            cases.append((f"start.{field}={v}", json.dumps(start)[:-1] + f', "{field}": {v}}}'))
    for n in (1, 10, 100, 1000, 5000):
        cases.append((f"metadata nested {n}", json.dumps({**start, "metadata": _deep(n)}) if n < 900
                      else '{"type": "start", "sample_rate": 16000, "metadata": ' + '{"a": ' * n + "1" + "}" * n + "}"))
    for size in (1000, 100_000, 900_000):
        cases.append((f"context {size} chars", json.dumps({**start, "context": "é" * size})))
        cases.append((f"unknown type {size}", json.dumps({"type": "x" * size})))
    good = json.dumps(start)
    for cut in range(1, len(good), 3):
        cases.append((f"truncated json {cut}", good[:cut]))
    for i in range(80):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 3, 17, 320, 4097))))
        cases.append((f"random bytes before start {i}", blob))
        cases.append((f"random text {i}", blob.decode("latin-1")))
    for t in ("stop", "ping", "", "START", "media"):
        cases.append((f"type {t!r} before start", json.dumps({"type": t})))
    cases += [("json array", "[1, 2, 3]"), ("json number", "42"), ("json null", "null"), ("json string", '"start"'),
              ("invalid utf-8 surrogate", '{"type": "start", "context": "\\ud800"}'),
              ("metadata 1e400", '{"type": "start", "sample_rate": 16000, "metadata": {"x": 1e400}}')]
    return cases


def after_start_cases(rng: random.Random) -> list[tuple[str, object]]:
    """Messages sent after a valid start (the session is open)."""
    cases: list[tuple[str, object]] = []
    for n in (1, 3, 5, 321, 3199):
        cases.append((f"odd byte count {n}", bytes(n)))
    for i in range(30):
        cases.append((f"garbage json after start {i}", json.dumps({"type": rng.choice(["start", "x", 1, None])})))
    return cases


def twilio_cases(rng: random.Random) -> list[tuple[str, object]]:
    sid = "MZfuzz"
    start = {"event": "start", "streamSid": sid, "start": {
        "streamSid": sid, "callSid": "CAfuzz", "tracks": ["inbound"], "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    cases: list[tuple[str, object]] = []
    for field in ("streamSid", "callSid", "mediaFormat", "customParameters", "tracks"):
        for v in (None, 1, "", [], {"a": 1}, "x" * 5000):
            body = json.loads(json.dumps(start))
            body["start"][field] = v
            cases.append((f"twilio start.{field}", json.dumps(body)))
    for payload in ("!!!", "", "A" * 7, base64.b64encode(bytes(161)).decode()):
        cases.append(("twilio media before start", json.dumps({"event": "media", "streamSid": sid,
                                                               "media": {"payload": payload}})))
    for i in range(40):
        cases.append((f"twilio random {i}", bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 50, 999))))))
        cases.append((f"twilio event {i}", json.dumps({"event": f"e{i}" * rng.choice((1, 100))})))
    cases += [("twilio truncated", json.dumps(start)[:40]), ("twilio array", "[]"), ("twilio NaN", '{"event": NaN}')]
    return cases


async def _probe(url: str, message, before: list, timeout: float, headers=None) -> tuple[str, str]:
    """Send `before` then `message` on a fresh socket; return (outcome, detail).

    outcome: 'error' (an error message with a code), 'closed' (a close code with a reason),
    'closed-no-reason', 'ok' (a normal reply such as ready), 'unanswered'.
    """
    try:
        async with connect(url, max_size=None, open_timeout=30, additional_headers=headers) as ws:
            for m in before:
                await ws.send(m)
            replies_before = []
            if before:
                try:
                    replies_before.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
                except (asyncio.TimeoutError, ConnectionClosed):
                    pass
            await ws.send(message)
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout)
            except asyncio.TimeoutError:
                # Twilio sends nothing back by design: a live socket that ignored the message is
                # an answer only when the server is still there (checked by a ping).
                pong = await ws.ping()
                await asyncio.wait_for(pong, timeout)
                return "unanswered", ""
            reply = json.loads(raw)
            if reply.get("type") == "error" and reply.get("code"):
                return "error", reply["code"]
            return "ok", reply.get("type", "?")
    except ConnectionClosed as exc:
        code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
        # A close code of its own (1008, 1009, 1011, 1013, ...) or a reason is an answer.
        coded = reason or code not in (1000, 1005, 1006)
        return ("closed" if coded else "closed-no-reason"), f"{code} {reason}"
    except (OSError, asyncio.TimeoutError) as exc:
        return "crash?", type(exc).__name__


def http_cases(rng: random.Random) -> list[tuple[str, str, str, bytes, dict]]:
    """(label, method, path, body, headers) for the HTTP API."""
    cases = []
    for body in (b"", b"[]", b"null", b"{", b'{"audio_path": 1}', b'{"audio_path": ["a"]}', b'{"audio_path": "../../etc/passwd"}',
                 b'{"audio_path": "x.m3u8"}', b'{"granularity": 5}', b'{"context": {"a": 1}}', bytes(range(256))):
        cases.append((f"predict json {body[:16]!r}", "POST", "/api/predict", body, {"Content-Type": "application/json"}))
    for name in (".", "..", "a.wav", "x.m3u8", "é" * 300):
        boundary = "fuzzbound"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + bytes(rng.getrandbits(8) for _ in range(2000)) + \
            f"\r\n--{boundary}--\r\n".encode()
        cases.append((f"predict upload {name[:8]!r}", "POST", "/api/predict", body,
                       {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
    for sid in ("..", "%2e%2e", "a" * 300, "twilio-x", "nope", "%00", "sessions"):
        for tail in ("", "/audio", "/events"):
            cases.append((f"GET session {sid[:8]}{tail}", "GET", f"/api/sessions/{sid}{tail}", b"", {}))
    for path in ("/api/sessions", "/metrics", "/healthz", "/api/nope", "/ws/stream"):
        cases.append((f"GET {path}", "GET", path, b"", {}))
    return cases


def _http(base: str, method: str, path: str, body: bytes, headers: dict) -> int | None:
    req = urllib.request.Request(base + path, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def r2_fuzz(model_dir: Path, args, work: Path) -> None:
    rng = random.Random(2)
    audio, _ = synthesize(20, seed=2)
    pcm = pcm16(audio)
    server = start(model_dir, args, work / "r2")
    ws_twilio = server.ws_url.replace("/ws/stream", "/ws/twilio")
    try:
        alone = asyncio.run(stream(server.ws_url, pcm, "clean-alone", pace=0.05))
        natives = native_cases(rng)
        started = json.dumps({"type": "start", "sample_rate": RATE, "encoding": "pcm_s16le"})
        afters = after_start_cases(rng)
        twilios = twilio_cases(rng)
        https = http_cases(rng)

        async def fuzz():
            outcomes: list[tuple[str, str, str]] = []
            sem = asyncio.Semaphore(4)

            async def one(kind, label, coro):
                async with sem:
                    outcome, detail = await coro
                    outcomes.append((kind, label, f"{outcome}:{detail}"))

            tasks = [one("native", l, _probe(server.ws_url, m, [], 5)) for l, m in natives]
            tasks += [one("native+start", l, _probe(server.ws_url, m, [started], 5)) for l, m in afters]
            tasks += [one("twilio", l, _probe(ws_twilio, m, [], 2)) for l, m in twilios]
            clean = asyncio.create_task(stream(server.ws_url, pcm, "clean-beside", pace=0.05))
            await asyncio.gather(*tasks)
            http = []
            for label, method, path, body, headers in https:
                status = await asyncio.to_thread(_http, server.url, method, path, body, headers)
                http.append((label, status))
            return outcomes, http, await clean

        outcomes, http, beside = asyncio.run(fuzz())
        alive = server.proc.poll() is None
        healthy = _http(server.url, "GET", "/healthz", b"", {}) == 200
        total = len(outcomes) + len(http)
        coded = sum(o.startswith(("error:", "closed:")) for _, _, o in outcomes)
        ok = sum(o.startswith("ok:") for _, _, o in outcomes)
        twilio_silent = sum(k == "twilio" and o.startswith("unanswered") for k, _, o in outcomes)
        unanswered = [(k, l, o) for k, l, o in outcomes
                      if o.startswith(("closed-no-reason", "crash?")) or (o.startswith("unanswered") and k != "twilio")]
        http_5xx = [(l, s) for l, s in http if s is None or s >= 500]
        say(f"R2 fuzz: {total} malformed/adversarial messages ({len(natives) + len(afters)} native, {len(twilios)} Twilio, "
            f"{len(http)} HTTP): server crashes {0 if alive and healthy else 1}, /healthz after: {'200' if healthy else 'FAIL'}")
        say(f"R2 fuzz: WebSocket answers: {coded} errors with a code or close with a reason, {ok} accepted as valid, "
            f"{twilio_silent} Twilio messages ignored with the socket kept alive (Twilio gets no replies), "
            f"{len(unanswered)} unanswered")
        say(f"R2 fuzz: HTTP: {len(http) - len(http_5xx)} answered 4xx/2xx, {len(http_5xx)} answered 5xx or no answer"
            f"{' ' + str(http_5xx[:5]) if http_5xx else ''}")
        strip = lambda ms: [{k: v for k, v in m.items() if k not in ("session_id", "stats")}  # noqa: E731
                            for m in ms if m["type"] not in ("ready", "overload")]
        same = strip(alone["messages"]) == strip(beside["messages"])
        say(f"R2 fuzz: clean session beside the fuzz: {len(beside['messages'])} messages, "
            f"events identical to the same audio alone: {'yes' if same else 'NO'}")
        if unanswered:
            say(f"R2 fuzz: unanswered examples: {unanswered[:5]}")
    finally:
        server.stop()


# ---- R3 kill -9 ---------------------------------------------------------------------------------
ORPHAN_WAIT = 10.0  # seconds a killed server's processes get to follow it


def _started(pid: int) -> str | None:
    """A running process's start time (/proc/PID/stat), None once it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]  # a zombie has stopped; its start time tells a reused pid


def outliving(pids: dict[int, str], wait: float) -> list[int]:
    """Which of `pids` (pid -> start time) still run after up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        alive = [pid for pid, started in pids.items() if _started(pid) == started]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def r3_kill(model_dir: Path, args, work: Path) -> None:
    rng = random.Random(args.seed)
    audio, _ = synthesize(40, seed=3)
    pcm = pcm16(audio)
    server = start(model_dir, args, work / "r3")
    n, sent, helpers = 2, {}, {}
    kill_at = rng.uniform(8.0, 25.0)
    try:
        async def live():
            def tracker(k):
                return lambda b: sent.__setitem__(k, b)

            tasks = [asyncio.create_task(stream(server.ws_url, pcm, f"crash-{k}", on_sent=tracker(k))) for k in range(n)]
            await asyncio.sleep(kill_at)
            for pid in process_tree(server.proc.pid):  # its measuring workers and multiprocessing's tracker
                if pid != server.proc.pid and (started := _started(pid)):
                    helpers[pid] = started
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
            return await asyncio.gather(*tasks)

        asyncio.run(live())
        left = outliving(helpers, ORPHAN_WAIT)
        for pid in left:  # say so, and leave no orphan holding memory behind
            os.kill(pid, signal.SIGKILL)
        say(f"R3 kill -9: processes outliving the server {len(left)}/{len(helpers)} "
            f"({ORPHAN_WAIT:g} s after; its measuring workers and helpers)")
        torn = 0
        for k in range(n):
            raw = (server.recordings / f"crash-{k}" / "events.jsonl").read_bytes()
            lines = raw.split(b"\n")
            for i, line in enumerate(lines):
                if not line:
                    continue
                try:
                    json.loads(line)
                except ValueError:
                    torn += 1
                    continue
                if i == len(lines) - 1:  # a complete event without its newline
                    torn += 1
        restarted = restart_on(server, model_dir, args)
        try:
            lost, readable = [], 0
            for k in range(n):
                d = server.recordings / f"crash-{k}"
                meta = json.loads((d / "session.json").read_text())
                frames = wav_frames(d / "audio.wav")
                lost.append(sent.get(k, 0) / 2 / RATE - frames / RATE)
                events = [json.loads(l) for l in (d / "events.jsonl").read_text().splitlines()]
                api = _http(restarted.url, "GET", f"/api/sessions/crash-{k}/audio", b"", {})
                readable += meta["status"] == "interrupted" and api == 200 and bool(events)
            say(f"R3 kill -9 at +{kill_at:.1f} s of {n} live streams: audio lost per session "
                f"{', '.join(f'{x:.2f} s' for x in lost)} (sent minus recorded)")
            say(f"R3 kill -9: torn event lines before repair {torn}; after the restart's repair "
                f"{readable}/{n} sessions readable (status interrupted, WAV and events parse, API serves the audio)")
        finally:
            restarted.stop()
    finally:
        server.stop()


# ---- R4 MQTT broker outage ----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A private mosquitto with persistence (so the test subscriber's session survives a restart)."""

    def __init__(self, folder: Path):
        import pwd

        self.exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port, self.folder = _free_port(), folder
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nmax_queued_messages 0\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
        )
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def r4_mqtt(model_dir: Path, args, work: Path) -> None:
    if not shutil.which("mosquitto_sub"):
        say("R4 MQTT: skipped (Debian packages mosquitto and mosquitto-clients are missing)")
        return
    broker = Broker(work / "r4-broker")
    broker.start()
    received: list[dict] = []
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-i", "bench-sub", "-c",
                            "-q", "1", "-F", "%q %t %p", "-t", "emostream/#"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def read():
        for line in sub.stdout:
            qos, topic, payload = line.rstrip("\n").split(" ", 2)
            received.append({"qos": int(qos), "topic": topic, "payload": json.loads(payload)})

    threading.Thread(target=read, daemon=True).start()
    time.sleep(1.0)
    audio, _ = synthesize(args.outage_seconds + 30, seed=4)
    server = start(model_dir, args, work / "r4", "--mqtt", f"mqtt://127.0.0.1:{broker.port}")
    try:
        async def run():
            task = asyncio.create_task(stream(server.ws_url, pcm16(audio), "mqtt-outage"))
            await asyncio.sleep(10)
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(args.outage_seconds)
            await asyncio.to_thread(broker.start)
            return await task

        result = asyncio.run(run())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(r["payload"].get("type") == "session_ended" for r in received):
            time.sleep(0.2)
        published = [m for m in result["messages"] if is_alert(m)]
        got, seen = [], set()
        for r in received:
            key = json.dumps(r["payload"], sort_keys=True)
            if is_alert(r["payload"]) and key not in seen:
                seen.add(key)
                got.append(r)
        duplicates = sum(is_alert(r["payload"]) for r in received) - len(got)
        in_order = [r["payload"] for r in got] == published
        qos1 = all(r["qos"] == 1 for r in got)
        say(f"R4 MQTT broker stopped {args.outage_seconds:g} s mid-stream: QoS-1 alerts published {len(published)}, "
            f"received {len(got)} (lost {len(published) - len(got)}, duplicates {duplicates}, "
            f"in order {'yes' if in_order else 'no'}, all QoS 1 {'yes' if qos1 else 'no'})")
    finally:
        server.stop()
        sub.terminate()
        broker.stop()


# ---- R6 overload --------------------------------------------------------------------------------
def r6_overload(model_dir: Path, args, work: Path) -> None:
    audio, _ = synthesize(60, seed=6)
    pcm = pcm16(audio)
    capacity = 4
    server = start(model_dir, args, work / "r6", "--max-sessions", str(capacity), "--max-backlog-seconds", "10")
    try:
        rss0 = server.rss_bytes()

        async def call(k: int):
            await asyncio.sleep(0.3 * k)  # calls arrive one after another
            return await stream(server.ws_url, pcm, f"load-{k}", pace=0.025)

        async def flood():
            # Three times the capacity, each sending 4x faster than real time: refusals and backlog closes.
            return await asyncio.gather(*(call(k) for k in range(3 * capacity)))

        with RssSampler(server) as rss:
            results = asyncio.run(flood())
        rss1 = server.rss_bytes()
        served = refused = closed = reasoned = 0
        reasons: dict[str, int] = {}
        for r in results:
            msgs = r["messages"]
            complete = bool(msgs) and msgs[-1].get("type") == "summary" and r["code"] == 1000
            if complete:
                served += 1
                continue
            got_ready = any(m.get("type") == "ready" for m in msgs)
            refused += not got_ready
            closed += got_ready
            errors = [m for m in msgs if m.get("type") == "error" and m.get("code")]
            why = (f"{r['code']} {r['reason']}" if r["code"] and r["reason"]
                   else (errors[-1]["code"] if errors else None))
            reasoned += why is not None
            reasons[why or "none"] = reasons.get(why or "none", 0) + 1
        offered = len(results)
        overloads = sum(m.get("type") == "overload" for r in results for m in r["messages"])
        say(f"R6 overload: {offered} streams offered at 4x real time to --max-sessions {capacity}: "
            f"{served} served to the end, {refused} refused, {closed} closed mid-stream, "
            f"{overloads} overload messages")
        say(f"R6 overload: refused or closed streams that got their reason: {reasoned}/{refused + closed} ({reasons})")
        say(f"R6 overload: server RSS idle {rss0 / MiB:.0f} MiB, peak {rss.peak / MiB:.0f} MiB, after {rss1 / MiB:.0f} MiB")
    finally:
        server.stop()


PARTS = {"R1": r1_soak, "R2": r2_fuzz, "R3": r3_kill, "R4": r4_mqtt, "R6": r6_overload}


def planted_model(cache: Path) -> Path:
    """The tiny planted fear/disgust model, made once into `cache`."""
    from models.planted import write_planted_model_dir
    from models.random_weights import MARKER

    path = cache / "tiny-planted-fear-disgust"
    marker = path / MARKER
    if not (marker.exists() and json.loads(marker.read_text()).get("planted") and (path / "model.pt").exists()):
        write_planted_model_dir(path, "tiny", "fear-disgust")
    return path


def main(argv=None) -> int:
    """Run the chosen parts and print one line per figure."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=tuple(PARTS), default=list(PARTS))
    p.add_argument("--soak-minutes", type=float, default=10.0)
    p.add_argument("--soak-streams", type=int, default=8)
    p.add_argument("--outage-seconds", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=None, help="server torch threads")
    p.add_argument("--seed", type=int, default=None, help="seed of R3's random kill moment (default: random)")
    p.add_argument("--model-dir", type=Path, default=None,
                   help="a model made by `emostream make-model --planted fear-disgust` (default: made once in --cache)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "emostream-bench")
    args = p.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    model_dir = args.model_dir or planted_model(args.cache)
    say(f"# bench.reliability {time.strftime('%Y-%m-%d %H:%M')} · tiny model with PLANTED fear/disgust head "
        f"(not emotion recognition) · {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="emostream-reliability-") as tmp:
        for name in args.only:
            t0 = time.monotonic()
            PARTS[name](model_dir, args, Path(tmp))
            say(f"# {name} took {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Golden run: the project's observable behaviour as canonical JSON files, to diff before and after a refactor.

    PYTHONPATH=. python -m bench.golden OUT_DIR [--work DIR] [--keep-work] [--only tiny|planted]

Everything runs from the tree this file sits in (its `server.py` and the CLI entry point named in
its `pyproject.toml`), in subprocesses with `PYTHONPATH` set to that tree, so a git worktree of an
older commit runs its own code even when a virtualenv holds an editable install of another.

What it does, with fixed seeds and fixed text (about 20 s of espeak-ng speech, fed many ways):

1. models: `emostream make-model DIR --arch tiny` and `--arch tiny --planted fear-disgust` (the
   planted head raises flagged fear/disgust transitions, review flags and dual-emotion reports);
2. audio: a 16 kHz mono file of two sentences with pauses, its 8 kHz version, and a 16 kHz stereo
   two-party file (caller left, agent right);
3. offline: `emostream analyze` at utterance and frame granularity (16 and 8 kHz, a context), and
   `--split-channels --parties caller,agent`;
4. live: a real server on loopback (`--max-batch 1 --measure-processes 0 --threads 1 --dtype
   float32`) fed through `/ws/stream` (mono pcm_s16le 16 kHz in three different piece patterns,
   μ-law 8 kHz, split stereo pcm_s16le) and `/ws/twilio` (the inbound track alone, with a dtmf and
   a mark, and both tracks as two parties), plus a session of protocol errors, a Twilio start with
   a bad media format, refused handshakes and `/api/predict`; the monitor feed is read throughout;
   then each session's recording (events.jsonl, session.json, audio sha256), the HTTP API's view
   of it and the deterministic part of /metrics;
5. every output normalized (see `VOLATILE_KEYS` and `normalize`) and written as JSON with sorted
   keys, so `diff -r before after` shows any change in behaviour. `checks.json` holds in-run
   invariants (the same audio in different piece sizes gives the same events) and the run exits
   with 1 when one fails.

Piece sizes are counted in sample frames (a `/ws/stream` message must hold whole frames): 37, 1111
and 4093 frames cycling, i.e. 74/2222/8186 bytes of mono pcm_s16le, 148/4444/16372 bytes of stereo,
37/1111/4093 bytes of μ-law (also the Twilio payload sizes).

The client side (WebSocket messages, μ-law encoding, Twilio messages, audio synthesis) is written
here and imports nothing from the tree under test, so both sides of a comparison are fed the same
bytes; the inputs' sha256 are in manifest.json to prove it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import soxr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret"
CYCLE_A = (37, 1111, 4093)  # frames per message, cycling
CYCLE_B = (4093, 1, 2048, 7919, 160)  # the same audio in other pieces: the events must not change
RATE = 16000

# Fields that legitimately differ between two runs of the same code: wall-clock times. Found by
# running twice and diffing; their keys stay (with VOLATILE as value) so a field added or removed
# still shows.
VOLATILE = "<volatile>"
VOLATILE_KEYS = {
    "started_at",  # session.json, /api/sessions, the monitor's `sessions` list: wall-clock start
    "ended_at",  # session.json, /api/sessions: wall-clock end
    "timestamp",  # result.json (analyze, /api/predict): wall-clock time of the analysis
}
# /metrics families measured by clocks (wall or CPU time); the rest are counts.
VOLATILE_METRICS = ("emostream_batch_seconds", "emostream_model_cpu_seconds", "emostream_window_latency_seconds")
OUT_STAMP = re.compile(r"_\d{8}_\d{6}(_\d+)?")  # analyze's `<stem>_<YYYYMMDD_HHMMSS>` output folders


# ---- canonical output ------------------------------------------------------------------------

class Normalizer:
    """Replaces the run's own paths and ports and the volatile fields; nothing else."""

    def __init__(self, work: Path, port: int | None = None):
        self.work = str(work)
        self.port = port

    def text(self, s: str) -> str:
        s = s.replace(self.work, "$WORK")
        if self.port is not None:
            s = s.replace(f"127.0.0.1:{self.port}", "127.0.0.1:$PORT")
        return s

    def __call__(self, obj):
        if isinstance(obj, dict):
            return {k: (VOLATILE if k in VOLATILE_KEYS and obj[k] is not None else self(v)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self(v) for v in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj


def canonical(obj) -> str:
    """JSON with sorted keys, one item a line, floats as Python's shortest round-trip repr."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=True) + "\n"


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(canonical(obj), encoding="utf-8")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def group_messages(messages: list[dict]) -> dict[str, list]:
    """A session's messages as streams whose order is deterministic.

    Within one party the engine emits in stream order; between a split session's parties, and
    between events and Twilio's dtmf/mark (passed on as they arrive), the order depends on timing.
    So: one list per party, one for telephony, one ("-") for the rest, each in arrival order.
    """
    groups: dict[str, list] = {}
    for m in messages:
        key = "telephony" if m.get("type") == "telephony" else str(m.get("party", "-"))
        groups.setdefault(key, []).append(m)
    return groups


def without(messages: list[dict], *keys: str) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in keys} for m in messages]


# ---- inputs ----------------------------------------------------------------------------------

def espeak(text: str, path: Path, voice: str, pitch: int, speed: int = 150) -> np.ndarray:
    """espeak-ng speech as float32 at 16 kHz, trimmed to its audible span (as tests/audio_fixtures.py)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is required (Debian package espeak-ng)")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                   check=True, capture_output=True)
    with wave.open(str(path)) as w:
        native = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    audible = np.flatnonzero(np.abs(x) > 1e-3)
    x = x[audible[0] : audible[-1] + 1]
    return soxr.resample(x, native, RATE).astype(np.float32)


def compose(parts: list, seed: int, noise_db: float = -65.0) -> np.ndarray:
    """Speech arrays and silences (seconds) in a row, with a faint seeded noise floor."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.zeros(round(p * RATE), np.float32) if isinstance(p, (int, float)) else p for p in parts])
    return (x + 10 ** (noise_db / 20) * rng.standard_normal(len(x)).astype(np.float32)).astype(np.float32)


def to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1, 1) * 32767).astype("<i2")


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> Path:
    """int16 samples, (n,) or (n, channels), as a 16-bit WAV."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def mulaw_encode(pcm: np.ndarray) -> bytes:
    """G.711 μ-law of int16 samples (the classic bias-0x84 encoder)."""
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = sum((mag >= (0x100 << k)).astype(np.int32) for k in range(7))
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def pieces(data: bytes, frame_bytes: int, cycle) -> list[bytes]:
    """`data` cut into messages of cycle[0], cycle[1], ... frames, cycling."""
    out, i, k = [], 0, 0
    while i < len(data):
        n = cycle[k % len(cycle)] * frame_bytes
        out.append(data[i : i + n])
        i, k = i + n, k + 1
    return out


def make_audio(d: Path) -> dict:
    """The golden inputs: mono 16 kHz, its 8 kHz version and a two-party stereo 16 kHz file."""
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "espeak"
    tmp.mkdir(exist_ok=True)
    a = espeak("That smell in the kitchen is absolutely revolting to me.", tmp / "a.wav", "en+m3", 50)
    b = espeak("Please call me back as soon as you can, it is really important.", tmp / "b.wav", "en+f3", 60)
    c = espeak("I understand. Let me check that for you right away.", tmp / "c.wav", "en+m1", 40, 160)
    mono = to_int16(compose([0.8, a, 1.2, b, 0.8], seed=0))
    agent = compose([1.6, c, 0.6, b[: len(b) // 2], 0.5], seed=1)
    n = max(len(mono), len(agent))
    caller = np.pad(mono, (0, n - len(mono)))
    stereo = np.stack([caller, np.pad(to_int16(agent), (0, n - len(agent)))], axis=1)
    mono8k = to_int16(soxr.resample(mono.astype(np.float32) / 32768.0, RATE, 8000))
    shutil.rmtree(tmp)
    files = {
        "mono16k.wav": write_wav(d / "mono16k.wav", mono, RATE),
        "mono8k.wav": write_wav(d / "mono8k.wav", mono8k, 8000),
        "stereo16k.wav": write_wav(d / "stereo16k.wav", stereo, RATE),
    }
    return {"mono": mono, "mono8k": mono8k, "stereo": stereo, "caller8k": mono8k,
            "agent8k": to_int16(soxr.resample(stereo[:, 1].astype(np.float32) / 32768.0, RATE, 8000)),
            "files": files}


# ---- the tree under test ---------------------------------------------------------------------

def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), EMOSTREAM_OFFLINE="1", PYTHONUNBUFFERED="1",
                EMOSTREAM_DTYPE="float32", PYTHONHASHSEED="0")


def cli_command() -> list[str]:
    """The `emostream` console script of this tree's pyproject.toml, run with this interpreter."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib

        target = tomllib.loads(text)["project"]["scripts"]["emostream"]
    except ImportError:  # Python 3.10
        target = re.search(r'^emostream\s*=\s*"([^"]+)"', text, re.M).group(1)
    module, function = target.split(":")
    return [sys.executable, "-c", f"import sys; from {module} import {function} as f; sys.exit(f(sys.argv[1:]))"]


def check_imports() -> None:
    """Refuse to run when subprocesses would import another tree's code (an editable install)."""
    out = subprocess.run([sys.executable, "-c", "import stream, models, vad; print(stream.__file__, models.__file__, vad.__file__)"],
                         env=env(), cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True).stdout.split()
    for path in out:
        if not Path(path).resolve().is_relative_to(ROOT):
            raise SystemExit(f"subprocesses import {path}, not this tree ({ROOT})")
    print(f"golden: code under test {ROOT}", file=sys.stderr)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    p = subprocess.run([*cli_command(), *args], env=env(), cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"emostream {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def make_models(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    models = {"tiny": d / "tiny", "planted": d / "planted"}
    cli("make-model", str(models["tiny"]), "--arch", "tiny", "--seed", "0", cwd=d)
    cli("make-model", str(models["planted"]), "--arch", "tiny", "--seed", "0", "--planted", "fear-disgust", cwd=d)
    return models


# ---- offline ---------------------------------------------------------------------------------

OFFLINE_RUNS = {  # name: (files, options)
    "utterance": (["mono16k.wav", "mono8k.wav"], ["--granularity", "utterance", "--embedding"]),
    "frame": (["mono16k.wav", "mono8k.wav"], ["--granularity", "frame", "--context", "crisis hotline"]),
    "split": (["stereo16k.wav"], ["--granularity", "frame", "--split-channels", "--parties", "caller,agent"]),
}


def offline(model: Path, audio_dir: Path, work: Path, out: Path, norm: Normalizer) -> None:
    """`emostream analyze` of each run; every output file normalized (JSON) or hashed (binary)."""
    for name, (files, options) in OFFLINE_RUNS.items():
        dest = work / name
        p = cli("analyze", *files, "--model-dir", str(model), "--device", "cpu", "--threads", "1",
                "--dtype", "float32", "--out", str(dest), "-q", *options, cwd=audio_dir)
        write(out / name / "stdout.json", OUT_STAMP.sub("_$STAMP", norm.text(p.stdout)).splitlines())
        folders = sorted(dest.iterdir())
        for folder in folders:
            target = out / name / OUT_STAMP.sub("", folder.name)
            hashes = {}
            for f in sorted(folder.iterdir()):
                if f.name == "result.json":
                    write(target / "result.json", norm(json.loads(f.read_text())))
                elif f.suffix == ".jsonl":
                    lines = [json.loads(line) for line in f.read_text().splitlines()]
                    write(target / f.name.replace(".jsonl", ".json"), norm(lines))
                else:
                    hashes[f.name] = sha256(f)
            write(target / "files.sha256.json", hashes)


# ---- live ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python server.py` of this tree on a loopback port, deterministic batching."""

    def __init__(self, model: Path, work: Path):
        self.port = free_port()
        self.recordings = work / "recordings"
        self.log = work / "server.log"
        args = [sys.executable, str(ROOT / "server.py"), "--port", str(self.port), "--model-dir", str(model),
                "--device", "cpu", "--threads", "1", "--dtype", "float32", "--recordings", str(self.recordings),
                "--token", TOKEN, "--max-batch", "1", "--max-wait-ms", "0", "--measure-processes", "0"]
        self.process = subprocess.Popen(args, cwd=work, env=env(), stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    http = property(lambda self: f"http://127.0.0.1:{self.port}")
    ws = property(lambda self: f"ws://127.0.0.1:{self.port}")
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def read_all(ws, into: list) -> None:
    try:
        async for raw in ws:
            into.append(json.loads(raw) if isinstance(raw, str) else {"binary": len(raw)})
    except ConnectionClosed:
        pass


class Monitor:
    """The /ws/monitor feed, read for the whole run."""

    def __init__(self, server: Server):
        self.server = server
        self.seen: list[dict] = []

    async def __aenter__(self):
        self.ws = await connect(f"{self.server.ws}/ws/monitor", additional_headers=Server.headers)
        self.task = asyncio.create_task(read_all(self.ws, self.seen))
        await self.wait(lambda m: m["type"] in ("sessions", "snapshot"))
        return self

    async def __aexit__(self, *exc):
        await self.ws.close()
        await self.task

    async def wait(self, pred, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(pred(m) for m in self.seen):
            if time.monotonic() > deadline:
                raise TimeoutError("the monitor feed did not show the expected message")
            await asyncio.sleep(0.02)

    async def ended(self, sid: str) -> None:
        await self.wait(lambda m: m["type"] == "session_ended" and m["session_id"] == sid)


async def native(server: Server, texts_and_audio: list, timeout: float = 300) -> dict:
    """One /ws/stream connection: send each item (dict: JSON text, bytes: binary) in order, read until closed."""
    got: list[dict] = []
    async with connect(f"{server.ws}/ws/stream", additional_headers=Server.headers, max_size=None) as ws:
        reader = asyncio.create_task(read_all(ws, got))
        for item in texts_and_audio:
            await ws.send(item if isinstance(item, (bytes, str)) else json.dumps(item))
        await asyncio.wait_for(reader, timeout)
        return {"messages": got, "close": [ws.close_code, ws.close_reason]}


def twilio_messages(sid: str, tracks: dict[str, bytes], cycle, params: dict, telephony: bool) -> list[str]:
    """A Twilio Media Streams call: connected, start, each track's payloads (cycle sizes) interleaved, stop."""
    msgs = [{"event": "connected", "protocol": "Call", "version": "1.0.0"},
            {"event": "start", "sequenceNumber": "1", "streamSid": sid,
             "start": {"accountSid": "AC1", "streamSid": sid, "callSid": "CA" + sid[2:], "tracks": list(tracks),
                       "customParameters": {"token": TOKEN, **params},
                       "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}]
    cut = {track: pieces(data, 1, cycle) for track, data in tracks.items()}
    seq, ms = 2, {track: 0 for track in tracks}
    for i in range(max(len(p) for p in cut.values())):
        for track, parts in cut.items():
            if i < len(parts):
                msgs.append({"event": "media", "sequenceNumber": str(seq), "streamSid": sid,
                             "media": {"track": track, "chunk": str(i + 1), "timestamp": str(ms[track] // 8),
                                       "payload": base64.b64encode(parts[i]).decode("ascii")}})
                seq, ms[track] = seq + 1, ms[track] + len(parts[i])
        if telephony and i == len(cut[next(iter(cut))]) // 2:
            msgs.append({"event": "dtmf", "streamSid": sid, "sequenceNumber": str(seq),
                         "dtmf": {"track": "inbound_track", "digit": "5"}})
            msgs.append({"event": "mark", "sequenceNumber": str(seq + 1), "streamSid": sid, "mark": {"name": "greeting"}})
            seq += 2
    msgs.append({"event": "stop", "sequenceNumber": str(seq), "streamSid": sid, "stop": {"accountSid": "AC1", "callSid": "CA" + sid[2:]}})
    return [json.dumps(m) for m in msgs]


async def twilio(server: Server, messages: list[str], timeout: float = 300) -> dict:
    got: list[dict] = []
    async with connect(f"{server.ws}/ws/twilio", max_size=None) as ws:
        reader = asyncio.create_task(read_all(ws, got))
        for m in messages:
            await ws.send(m)
        await asyncio.wait_for(reader, timeout)
        return {"messages": got, "close": [ws.close_code, ws.close_reason]}


async def handshake(server: Server, path: str, headers: dict) -> dict:
    """How a WebSocket handshake with these headers ends."""
    try:
        async with connect(f"{server.ws}{path}", additional_headers=headers) as ws:
            got: list[dict] = []
            await asyncio.wait_for(read_all(ws, got), 30)
            return {"accepted": True, "messages": got[:1] if path == "/ws/monitor" else got,
                    "close": [ws.close_code, ws.close_reason]}
    except InvalidStatus as exc:
        return {"accepted": False, "status": exc.response.status_code}


def sessions_plan(audio: dict) -> list[tuple]:
    """(name, endpoint, session id, what to send) for every live session, run one after another."""
    mono = audio["mono"].tobytes()
    stereo = audio["stereo"].tobytes()
    law = mulaw_encode(audio["mono8k"])
    start16 = {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "context": "crisis hotline",
               "metadata": {"golden": True, "desk": 3}}
    plan = [
        ("mono16k-pieces-a", "native", "g-mono-a", [{**start16, "session_id": "g-mono-a"}, *pieces(mono, 2, CYCLE_A), {"type": "stop"}]),
        ("mono16k-pieces-b", "native", "g-mono-b", [{**start16, "session_id": "g-mono-b"}, *pieces(mono, 2, CYCLE_B), {"type": "stop"}]),
        ("mono16k-whole", "native", "g-mono-whole", [{**start16, "session_id": "g-mono-whole"}, mono, {"type": "stop"}]),
        ("mulaw8k-pieces-a", "native", "g-mulaw",
         [{"type": "start", "sample_rate": 8000, "encoding": "mulaw", "session_id": "g-mulaw", "context": "crisis hotline"},
          *pieces(law, 1, CYCLE_A), {"type": "stop"}]),
        ("stereo16k-split-pieces-a", "native", "g-split",
         [{"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 2, "split_channels": True,
           "parties": ["caller", "agent"], "session_id": "g-split"}, *pieces(stereo, 4, CYCLE_A), {"type": "stop"}]),
        ("twilio-inbound-pieces-a", "twilio", "twilio-MZgoldeninbound",
         twilio_messages("MZgoldeninbound", {"inbound": law}, CYCLE_A, {"context": "crisis hotline"}, telephony=True)),
        ("twilio-both-pieces-a", "twilio", "twilio-MZgoldenboth",
         twilio_messages("MZgoldenboth", {"inbound": law, "outbound": mulaw_encode(audio["agent8k"])}, CYCLE_A,
                         {"outbound_party": "counsellor"}, telephony=False)),
    ]
    short = audio["mono"][: 2 * RATE].tobytes()
    plan.append(("protocol-errors", "native", "g-errors", [
        "not json", {"type": "hello"}, b"\x00\x00", {"type": "stop"},
        {"type": "start", "sample_rate": 22050, "encoding": "pcm_s16le", "session_id": "g-errors"},
        {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "samplerate": 16000},
        {"type": "start", "sample_rate": 16000, "encoding": "opus"},
        {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "session_id": "g-mono-a"},
        {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1, "split_channels": True},
        {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "session_id": "g-errors"},
        {"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le"},
        short[:3], short[: len(short) // 2], {"type": "audio", "data": "AAAA"}, b"",
        short[len(short) // 2 :], {"type": "stop", "now": True}, {"type": "stop"},
    ]))
    bad = twilio_messages("MZgoldenbad", {"inbound": law[:1600]}, CYCLE_A, {}, telephony=False)
    start = json.loads(bad[1])
    start["start"]["mediaFormat"]["sampleRate"] = 16000
    plan.append(("twilio-bad-format", "twilio", None, [bad[0], json.dumps(start), *bad[2:]]))
    return plan


async def live(server: Server, audio: dict, out: Path, norm: Normalizer) -> dict:
    """Every planned session, one at a time, with the monitor feed open; returns the in-run checks."""
    results: dict[str, dict] = {}
    async with Monitor(server) as monitor:
        for name, endpoint, sid, items in sessions_plan(audio):
            run = native if endpoint == "native" else twilio
            results[name] = await run(server, items)
            if sid is not None:
                await monitor.ended(sid)
        refusals = {
            "stream-no-token": await handshake(server, "/ws/stream", {}),
            "stream-wrong-token": await handshake(server, "/ws/stream", {"Authorization": "Bearer wrong"}),
            "monitor-no-token": await handshake(server, "/ws/monitor", {}),
        }
        async with httpx.AsyncClient(base_url=server.http, headers=Server.headers, timeout=300) as http:
            with open(audio["files"]["mono16k.wav"], "rb") as f:
                r = await http.post("/api/predict", files={"file": ("mono16k.wav", f, "audio/wav")},
                                    data={"granularity": "frame", "context": "crisis hotline"})
            predict = {"status": r.status_code, "body": r.json()}
    for name, result in results.items():
        body = norm(result)
        write(out / "sessions" / name / "client.json",
              {"close": body["close"], "messages": group_messages(body["messages"])})
    write(out / "refusals.json", norm(refusals))
    write(out / "predict.json", norm(predict))
    monitor_by_session: dict[str, list] = {}
    for m in norm(monitor.seen):
        monitor_by_session.setdefault(m.get("session_id", "-"), []).append(m)
    write(out / "monitor.json", {
        "session_order": [m["session_id"] for m in monitor.seen if m["type"] == "session_started"],
        "sessions": {sid: group_messages(ms) for sid, ms in monitor_by_session.items()},
    })
    await recordings_and_api(server, out, norm)
    checks = in_run_checks(results)
    checks.update(recorded_audio_checks(server, audio))
    return checks


async def recordings_and_api(server: Server, out: Path, norm: Normalizer) -> None:
    """Each recording's files (normalized; audio hashed) and what the HTTP API says about them."""
    async with httpx.AsyncClient(base_url=server.http, headers=Server.headers, timeout=60) as http:
        listing = (await http.get("/api/sessions")).json()
        write(out / "api" / "sessions.json", norm(listing))
        for folder in sorted(p for p in server.recordings.iterdir() if p.is_dir()):
            sid = folder.name
            target = out / "recordings" / sid
            hashes = {}
            for f in sorted(folder.iterdir()):
                if f.name == "session.json":
                    write(target / "session.json", norm(json.loads(f.read_text())))
                elif f.name == "events.jsonl":
                    events = [json.loads(line) for line in f.read_text().splitlines()]
                    write(target / "events.json", group_messages(norm(events)))
                else:
                    hashes[f.name] = sha256(f)
            write(target / "files.sha256.json", hashes)
            api = {"session": norm((await http.get(f"/api/sessions/{sid}")).json())}
            r = await http.get(f"/api/sessions/{sid}/events")
            api["events_status"] = r.status_code
            api["events_equal_file"] = r.content == (folder / "events.jsonl").read_bytes()
            r = await http.get(f"/api/sessions/{sid}/audio")
            api["audio_status"] = r.status_code
            api["audio_sha256"] = hashlib.sha256(r.content).hexdigest() if r.status_code == 200 else None
            write(target / "api.json", api)
        metrics = (await http.get("/metrics")).text
        health = (await http.get("/healthz")).json()
    write(out / "api" / "healthz.json", norm(health))
    write(out / "api" / "metrics.json", deterministic_metrics(metrics))
    access = server.recordings / ".access.jsonl"
    if access.exists():  # the download audit log: its `time` is the wall clock
        lines = [json.loads(line) for line in access.read_text().splitlines()]
        write(out / "recordings" / "access.json", [norm({**line, "time": VOLATILE} if VOLATILE_KEYS else line) for line in lines])


def deterministic_metrics(text: str) -> list[str]:
    """The Prometheus exposition without clock-measured families and `_created` timestamps."""
    keep = []
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0] if not line.startswith("#") else line.split(" ")[2]
        if name.endswith("_created") or name.startswith(VOLATILE_METRICS):
            continue
        keep.append(line)
    return keep


def read_pcm(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


def recorded_audio_checks(server: Server, audio: dict) -> dict:
    """Each recording holds exactly the audio its session was sent, whatever the piece sizes."""
    rec = server.recordings
    return {
        "recording == sent audio: mono16k pieces A, pieces B, one message": all(
            np.array_equal(read_pcm(rec / sid / "audio.wav"), audio["mono"]) for sid in ("g-mono-a", "g-mono-b", "g-mono-whole")),
        "recording == sent audio: split stereo, each party its channel": all(
            np.array_equal(read_pcm(rec / "g-split" / f"audio-{p}.wav"), audio["stereo"][:, i]) for i, p in enumerate(("caller", "agent"))),
    }


def events_only(result: dict) -> list[dict]:
    """A native session's analysis events, without the session id (ready and summary included)."""
    return without(result["messages"], "session_id")


def in_run_checks(results: dict) -> dict:
    """Invariants within one run: piece sizes never change what the analysis says."""
    a = events_only(results["mono16k-pieces-a"])
    b = events_only(results["mono16k-pieces-b"])
    whole = events_only(results["mono16k-whole"])
    for r in (a, b, whole):  # ready and summary name the session in nested fields too
        for m in r:
            if m["type"] == "summary":
                m["stats"] = {k: v for k, v in m["stats"].items() if k != "session_id"}
    return {
        "mono16k: pieces A == pieces B (every message but session ids)": a == b,
        "mono16k: pieces A == one message (every message but session ids)": a == whole,
        "close codes (information)": {k: r["close"] for k, r in results.items()},
    }


# ---- main ------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="folder for the normalized outputs (must not exist or be empty)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch folder (server logs, raw outputs)")
    ap.add_argument("--raw", action="store_true",
                    help="keep the volatile fields (to find them: run twice with --raw and diff)")
    ap.add_argument("--only", choices=["tiny", "planted"], action="append", help="run only this model (repeatable)")
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty")
    if args.raw:
        VOLATILE_KEYS.clear()
    check_imports()
    work = (args.work or Path(tempfile.mkdtemp(prefix="golden-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    norm = Normalizer(work)
    t0 = time.monotonic()
    try:
        audio = make_audio(work / "audio")
        models = make_models(work / "models")
        write(args.out / "manifest.json", {
            "inputs": {name: sha256(p) for name, p in audio["files"].items()},
            "models": {name: {f.name: sha256(f) for f in sorted(d.iterdir())} for name, d in models.items()},
            "cycles_frames": {"A": CYCLE_A, "B": CYCLE_B},
            "server_options": "--device cpu --threads 1 --dtype float32 --max-batch 1 --max-wait-ms 0 --measure-processes 0 --token",
            "volatile_keys": sorted(VOLATILE_KEYS),
            "volatile_metrics": VOLATILE_METRICS,
        })
        checks = {}
        for name in args.only or ["tiny", "planted"]:
            print(f"golden: {name}: offline ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
            offline(models[name], work / "audio", work / "offline" / name, args.out / "offline" / name, norm)
            print(f"golden: {name}: live ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
            live_dir = work / "live" / name
            live_dir.mkdir(parents=True)
            server = Server(models[name], live_dir)
            try:
                live_norm = Normalizer(work, server.port)
                checks[name] = asyncio.run(live(server, audio, args.out / "live" / name, live_norm))
            finally:
                server.stop()
        write(args.out / "checks.json", checks)
        failed = [f"{m}: {k}" for m, c in checks.items() for k, v in c.items() if v is False]
        print(f"golden: done in {time.monotonic() - t0:.0f} s, outputs in {args.out}", file=sys.stderr)
        for f in failed:
            print(f"golden: CHECK FAILED {f}", file=sys.stderr)
        return 1 if failed else 0
    finally:
        if args.keep_work or args.work:
            print(f"golden: scratch kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

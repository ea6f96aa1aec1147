"""Server CPU per stream: the same call through every connector, against `/ws/stream`.

    PYTHONPATH=. python -m bench.connector_cpu [--arch tiny] [--seconds 60] [--rounds 5] [--frame-ms 20] [--json OUT]

One `python server.py` subprocess (bench.concurrent.Server; the model's forward, the measuring
and everything else in its one process: `--measure-processes 0`, `--record events`) gets one
telephony call, one stream at a time and unpaced, through each way in:

- one voice (the caller): `/ws/stream` (the native protocol, emostream's client's 0.1 s binary
  messages), `/ws/twilio` (Twilio Media Streams: JSON `media` messages of base64 μ-law),
  AudioSocket (TCP frames, `--audiosocket-port`) and `/ws/vonage` (a JSON preamble, then L16);
- two voices (caller and agent), each analyzed as its own party: `/ws/stream` with
  `split_channels` (interleaved stereo), `/ws/twilio` with both tracks, AudioSocket as two legs
  of one call (two TCP connections; both legs' first frames half a second before the rest, so
  that both have joined before either ends), `/ws/jambonz` and `/ws/audiofork` (stereo L16 after
  their preambles, subprotocols `audio.jambonz.org` and `audio.drachtio.org`) and
  `/ws/audiohook` (Genesys AudioHook: open → opened, stereo PCMU, a ping every 5 s of audio,
  close → closed; the upgrade request signed with the client secret).

The call is espeak-ng speech at 8 kHz (the rate every connector takes; Twilio and AudioHook
take no other), the agent the same speech a third of the call later, both rounded to μ-law
values so that every connector carries exactly the same samples. The telephony connectors send
`--frame-ms` of audio per message (20 ms: the packet time of the calls they forward). WebSocket
clients offer no compression, so every connector is read uncompressed, as AudioSocket's TCP is.

For each stream the server's CPU time (user + system, /proc) is read before it starts and after
its session is recorded as complete, every voice analyzed to its end (checked: a refused leg or
a lost track fails the run). Every connector runs once per round, the order reversed every other
round, after one uncounted warm-up round. The report gives each connector's median
CPU seconds per stream and per second of audio, and its ratio to `/ws/stream` with as many
voices: the median over rounds of the round's own ratio. The model's forward is the same for
every connector with as many voices; the differences are the connectors' own costs (framing,
JSON, base64, μ-law, the signature) plus noise. RANDOM weights: only CPU time is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as _dt
import functools
import hashlib
import hmac
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import speech
from bench.concurrent import Server, free_port
from bench.throughput import describe_cpu, log, random_model_dir

RATE = 8000  # Hz: telephony audio, the rate every connector takes
NATIVE_MESSAGE = 0.1  # seconds of audio per /ws/stream message, as emostream's own client sends
PING_EVERY = 5.0  # seconds of audio between two AudioHook pings
PARTIES = ("caller", "agent")
API_KEY = "bench-audiohook-key"
SECRET = base64.b64encode(b"bench-audiohook-client-secret-0123456789").decode()
ORG = "d7934305-0972-4844-938e-9060eef73d05"
STREAM_TIMEOUT = 600.0  # seconds one stream may take, its end recorded included


@dataclass(frozen=True)
class Ports:
    """Where the server listens: HTTP and WebSocket, and the AudioSocket TCP port."""

    http: int
    audiosocket: int

    def ws(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.http}{path}"


@dataclass(frozen=True)
class Call:
    """One two-voice call at RATE, every sample a μ-law value, and the telephony message size."""

    caller: np.ndarray  # int16 (n,): the caller's voice
    agent: np.ndarray  # int16 (n,): the agent's voice
    frame_ms: int  # milliseconds of audio per telephony message

    @property
    def seconds(self) -> float:
        return len(self.caller) / RATE

    @property
    def frame(self) -> int:
        """Samples per channel in one telephony message."""
        return RATE * self.frame_ms // 1000

    def samples(self, stereo: bool) -> np.ndarray:
        """The caller alone (n,), or both voices interleaved (n, 2), caller first."""
        return np.stack([self.caller, self.agent], axis=1) if stereo else self.caller

    def l16(self, stereo: bool) -> bytes:
        return self.samples(stereo).astype("<i2").tobytes()


def pieces(data: bytes, step: int) -> list[bytes]:
    """`data` cut into messages of `step` bytes (the last one shorter)."""
    return [data[i : i + step] for i in range(0, len(data), step)]


def make_call(cache: Path, seconds: float, frame_ms: int) -> Call:
    """The benchmark's speech as a call: 8 kHz, rounded to μ-law values, the agent a third of the call later."""
    import soxr

    from stream.protocol import mulaw

    audio, _, _ = speech.benchmark_audio(cache, max(seconds, 60) / 60)
    audio = soxr.resample(audio[: int(seconds * speech.RATE)], speech.RATE, RATE)
    caller = mulaw.decode(mulaw.encode((np.clip(audio, -1, 1) * 32767).astype(np.int16)))
    return Call(caller, np.roll(caller, len(caller) // 3), frame_ms)


def connect(url: str, **kwargs):
    """A WebSocket client as the benchmark opens every one: no compression, no keepalive pings."""
    from websockets.asyncio.client import connect as ws_connect

    return ws_connect(url, compression=None, ping_interval=None, max_size=None, open_timeout=60, **kwargs)


# ---- the connectors, one client each; each returns the session id its call is recorded under ----
async def native(ports: Ports, call: Call, sid: str, stereo: bool) -> str:
    """`/ws/stream`: start, 0.1 s binary messages of L16, stop, and the summary."""
    start = {"type": "start", "sample_rate": RATE, "encoding": "pcm_s16le", "session_id": sid}
    if stereo:
        start.update(channels=2, split_channels=True, parties=list(PARTIES))
    async with connect(ports.ws("/ws/stream")) as ws:
        await ws.send(json.dumps(start))
        for piece in pieces(call.l16(stereo), round(NATIVE_MESSAGE * RATE) * 2 * (2 if stereo else 1)):
            await ws.send(piece)
        await ws.send(json.dumps({"type": "stop"}))
        async for raw in ws:
            if json.loads(raw)["type"] == "summary":
                break
    return sid


def twilio_messages(call: Call, stream_sid: str, stereo: bool) -> list[str]:
    """What Twilio sends for the call: connected, start, a `media` message per track and frame, stop."""
    from stream.protocol import mulaw

    tracks = {"inbound": mulaw.encode(call.caller)}
    if stereo:
        tracks["outbound"] = mulaw.encode(call.agent)
    messages = [{"event": "connected", "protocol": "Call", "version": "1.0.0"},
                {"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                 "start": {"accountSid": "AC1", "streamSid": stream_sid, "callSid": "CA1", "tracks": list(tracks),
                           "customParameters": {},
                           "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}}}]
    for i, at in enumerate(range(0, len(call.caller), call.frame)):
        for track, payload in tracks.items():
            messages.append({"event": "media", "sequenceNumber": str(len(messages)), "streamSid": stream_sid,
                             "media": {"track": track, "chunk": str(i + 1), "timestamp": str(i * call.frame_ms),
                                       "payload": base64.b64encode(payload[at : at + call.frame]).decode()}})
    messages.append({"event": "stop", "sequenceNumber": str(len(messages)), "streamSid": stream_sid,
                     "stop": {"accountSid": "AC1", "callSid": "CA1"}})
    return [json.dumps(m) for m in messages]


async def twilio(ports: Ports, call: Call, sid: str, stereo: bool) -> str:
    """`/ws/twilio`: Twilio's JSON messages, inbound track (or both), until the server closes after `stop`."""
    stream_sid = "MZ" + sid.replace("-", "")
    async with connect(ports.ws("/ws/twilio")) as ws:
        for message in twilio_messages(call, stream_sid, stereo):
            await ws.send(message)
        async for _ in ws:  # Twilio gets nothing back; the server closes the socket once the call ends
            pass
    return f"twilio-{stream_sid}"


async def audiosocket(ports: Ports, call: Call, sid: str, stereo: bool) -> str:
    """AudioSocket: a UUID, audio frames, a hangup; two voices as the legs `<call>-00000000000N` of one call."""
    from stream.protocol.audiosocket import KIND_HANGUP, audio_frames, encode_frame, uuid_frame

    voices = (call.caller, call.agent) if stereo else (call.caller,)
    session = sid[:23] if stereo else sid  # a leg's call: the UUID's first four groups
    legs = [f"{session}-{leg:012d}" for leg in range(1, len(voices) + 1)] if stereo else [sid]
    links = [await asyncio.open_connection("127.0.0.1", ports.audiosocket) for _ in voices]
    for (_, writer), leg, voice in zip(links, legs, voices):
        writer.write(uuid_frame(leg) + audio_frames(voice[: call.frame], RATE, call.frame_ms))
        await writer.drain()
    if stereo:  # every leg joins before one can end (unpaced, the first could end the call before the second joins)
        await asyncio.sleep(0.5)
    for at in range(call.frame, len(call.caller), RATE):  # a second of each leg in turn: the legs stream together
        for (_, writer), voice in zip(links, voices):
            writer.write(audio_frames(voice[at : at + RATE], RATE, call.frame_ms))
            await writer.drain()
    for _, writer in links:
        writer.write(encode_frame(KIND_HANGUP))
        await writer.drain()
        writer.write_eof()
    for reader, writer in links:
        await reader.read()  # the server closes the connection once the leg ends
        writer.close()
    return session


async def json_then_pcm(url: str, subprotocol: str | None, preamble: dict, pcm: bytes, step: int) -> None:
    """The JSON-then-PCM family: one JSON text message, binary L16, and the close that ends the call."""
    async with connect(url, subprotocols=[subprotocol] if subprotocol else None) as ws:
        await ws.send(json.dumps(preamble))
        for piece in pieces(pcm, step):
            await ws.send(piece)


async def vonage(ports: Ports, call: Call, sid: str) -> str:
    """`/ws/vonage`: `websocket:connected` with the L16 content-type, then mono L16."""
    preamble = {"event": "websocket:connected", "content-type": f"audio/l16;rate={RATE}", "uuid": sid}
    await json_then_pcm(ports.ws("/ws/vonage"), None, preamble, call.l16(False), call.frame * 2)
    return f"vonage-{sid}"


async def jambonz(ports: Ports, call: Call, sid: str) -> str:
    """`/ws/jambonz`: the `listen` verb's call attributes with `mixType` stereo, then stereo L16."""
    preamble = {"callSid": sid, "sampleRate": RATE, "mixType": "stereo", "direction": "inbound"}
    await json_then_pcm(ports.ws("/ws/jambonz"), "audio.jambonz.org", preamble, call.l16(True), call.frame * 4)
    return f"jambonz-{sid}"


async def audiofork(ports: Ports, call: Call, sid: str) -> str:
    """`/ws/audiofork`: FreeSWITCH mod_audio_fork's metadata with `mixType` stereo, then stereo L16."""
    preamble = {"uuid": sid, "sampleRate": RATE, "mixType": "stereo"}
    await json_then_pcm(ports.ws("/ws/audiofork"), "audio.drachtio.org", preamble, call.l16(True), call.frame * 4)
    return f"audiofork-{sid}"


def signed_headers(uri: str, session: str) -> dict:
    """Genesys's upgrade headers, signed (RFC 9421, HMAC-SHA256) as its reference client signs them."""
    correlation, created = str(uuid.uuid4()), int(time.time())
    authority, target = uri.split("/", 3)[2], "/" + uri.split("/", 3)[3]
    values = {"@request-target": target, "@authority": authority, "audiohook-organization-id": ORG,
              "audiohook-session-id": session, "audiohook-correlation-id": correlation, "x-api-key": API_KEY}
    nonce = base64.b64encode(os.urandom(18)).decode()
    inner = ("(" + " ".join(f'"{k}"' for k in values) + ")"
             + f';keyid="{API_KEY}";nonce="{nonce}";alg="hmac-sha256";created={created};expires={created + 30}')
    base = "\n".join(f'"{k}": {v}' for k, v in values.items()) + f'\n"@signature-params": {inner}'
    digest = base64.b64encode(hmac.new(base64.b64decode(SECRET), base.encode(), hashlib.sha256).digest()).decode()
    return {"Audiohook-Organization-Id": ORG, "Audiohook-Session-Id": session, "Audiohook-Correlation-Id": correlation,
            "X-API-KEY": API_KEY, "Signature-Input": f"sig1={inner}", "Signature": f"sig1=:{digest}:"}


async def audiohook(ports: Ports, call: Call, sid: str) -> str:
    """`/ws/audiohook`: open → opened, stereo PCMU (external, internal), a ping every 5 s of audio, close → closed."""
    from stream.protocol import mulaw

    uri = ports.ws("/ws/audiohook")
    seq, serverseq, position = 0, 0, 0.0

    def message(kind: str, params: dict) -> str:
        nonlocal seq
        seq += 1
        return json.dumps({"version": "2", "id": sid, "type": kind, "seq": seq, "serverseq": serverseq,
                           "position": f"PT{position:.3f}S", "parameters": params})

    async def reply(ws, kind: str) -> None:
        nonlocal serverseq
        got = json.loads(await ws.recv())
        if got["type"] != kind:
            raise RuntimeError(f"AudioHook answered {got} where {kind!r} was due")
        serverseq = got["seq"]

    async with connect(uri, additional_headers=signed_headers(uri, sid)) as ws:
        await ws.send(message("open", {
            "organizationId": ORG, "conversationId": str(uuid.uuid4()),
            "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
            "media": [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": RATE}]}))
        await reply(ws, "opened")
        pings_every = round(PING_EVERY * 1000 / call.frame_ms)
        for i, piece in enumerate(pieces(mulaw.encode(call.samples(True)), call.frame * 2)):
            await ws.send(piece)
            position += len(piece) / 2 / RATE
            if i % pings_every == 0:
                await ws.send(message("ping", {}))
                await reply(ws, "pong")
        await ws.send(message("close", {"reason": "end"}))
        await reply(ws, "closed")
    return f"audiohook-{sid}"


@dataclass(frozen=True)
class Connector:
    """One way into the server, and the /ws/stream way it is compared with (as many voices)."""

    name: str
    stereo: bool  # caller and agent, each its own party; else the caller alone
    stream: Callable[[Ports, Call, str], Awaitable[str]]  # streams the call under a fresh UUID -> recorded session id


CONNECTORS = (
    Connector("stream", False, functools.partial(native, stereo=False)),
    Connector("twilio", False, functools.partial(twilio, stereo=False)),
    Connector("audiosocket", False, functools.partial(audiosocket, stereo=False)),
    Connector("vonage", False, vonage),
    Connector("stream-stereo", True, functools.partial(native, stereo=True)),
    Connector("twilio-both", True, functools.partial(twilio, stereo=True)),
    Connector("audiosocket-legs", True, functools.partial(audiosocket, stereo=True)),
    Connector("jambonz", True, jambonz),
    Connector("audiofork", True, audiofork),
    Connector("audiohook", True, audiohook),
)
BASELINE = {False: "stream", True: "stream-stereo"}


# ---- the run ------------------------------------------------------------------------------------
def recorded(recordings: Path, sid: str, voices: int, seconds: float, timeout: float = STREAM_TIMEOUT) -> None:
    """Wait until the session's recording says it completed, and check that it analyzed every voice to the end."""
    path = recordings / sid / "session.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = json.loads(path.read_text()) if path.exists() else {"status": "live"}
        if session["status"] == "complete":
            summary = session["summary"]
            analyzed = [p["duration_seconds"] for p in summary.get("parties", {}).values()] or [summary["duration_seconds"]]
            if len(analyzed) != voices or any(abs(s - seconds) > 0.01 for s in analyzed):
                raise RuntimeError(f"session {sid} analyzed {analyzed} s, not {voices} voice(s) of {seconds:g} s")
            return
        if session["status"] != "live":
            raise RuntimeError(f"session {sid} ended {session['status']!r}, not complete")
        time.sleep(0.05)
    raise RuntimeError(f"session {sid} did not end")


def server_options(audiosocket_port: int) -> argparse.Namespace:
    """The options bench.concurrent.Server reads: one process, every connector on, streams unpaced."""
    extra = ["--measure-processes", "0", "--record", "events", "--max-backlog-seconds", "100000",
             "--audiosocket-port", str(audiosocket_port),
             "--audiohook-api-key", API_KEY, "--audiohook-client-secret", SECRET]
    return argparse.Namespace(device="cpu", dtype="auto", threads=None, max_batch=None, max_wait_ms=None,
                              max_pending=None, server_option=extra, ray=False)


def measure(server: Server, ports: Ports, call: Call, rounds: int) -> dict[str, list[float]]:
    """Server CPU seconds of each connector's stream, per counted round."""
    cpu: dict[str, list[float]] = {c.name: [] for c in CONNECTORS}
    for r in range(-1, rounds):  # round -1 warms every connector's path up and is not counted
        for c in CONNECTORS if r % 2 == 0 else CONNECTORS[::-1]:
            before = server.cpu_seconds()
            try:
                sid = asyncio.run(asyncio.wait_for(c.stream(ports, call, str(uuid.uuid4())), STREAM_TIMEOUT))
                recorded(server.recordings, sid, 2 if c.stereo else 1, call.seconds)
            except Exception as exc:
                raise RuntimeError(f"{c.name}: {type(exc).__name__}: {exc}\n{server.log_tail()}") from exc
            spent = server.cpu_seconds() - before
            if r >= 0:
                cpu[c.name].append(spent)
            log(f"round {r}: {c.name}: {spent:.2f} CPU s")
    return cpu


def summarize(cpu: dict[str, list[float]], seconds: float) -> dict[str, dict]:
    """Per connector: median CPU per stream and per audio second, ratio to /ws/stream with as many voices."""
    out = {}
    for c in CONNECTORS:
        runs, base = cpu[c.name], cpu[BASELINE[c.stereo]]
        median = statistics.median(runs)
        ratios = [x / b for x, b in zip(runs, base)]  # each round against the same round's /ws/stream
        out[c.name] = {"voices": 2 if c.stereo else 1, "baseline": BASELINE[c.stereo],
                       "cpu_seconds_median": median, "cpu_seconds": runs,
                       "cpu_ms_per_audio_second": median / seconds * 1000,
                       "vs_stream": statistics.median(ratios), "vs_stream_range": [min(ratios), max(ratios)]}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="tiny", help="random-weight architecture: tiny, base, large")
    p.add_argument("--seconds", type=float, default=60.0, help="seconds of speech per stream")
    p.add_argument("--rounds", type=int, default=5, help="counted rounds, after one warm-up round")
    p.add_argument("--frame-ms", type=int, default=20, help="milliseconds of audio per telephony message")
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("EMOSTREAM_BENCH_CACHE", "~/.cache/emostream-bench")))
    p.add_argument("--json", type=Path, metavar="OUT", help="write the figures here")
    args = p.parse_args(argv)

    cache = args.cache.expanduser()
    call = make_call(cache, args.seconds, args.frame_ms)
    model = random_model_dir(cache, args.arch)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emostream-connector-cpu-") as tmp:
        audiosocket_port = free_port()
        server = Server(model, server_options(audiosocket_port), Path(tmp))
        try:
            health = server.wait_ready(300)
            if not health.get("random_weights"):
                raise RuntimeError(f"{model} is not a random-weight model directory")
            cpu = measure(server, Ports(server.port, audiosocket_port), call, args.rounds)
        finally:
            server.stop()
    report = {
        "date": _dt.date.today().isoformat(), "cpu": describe_cpu(), "cores": os.cpu_count(),
        "load_average": {"start": load_before, "end": os.getloadavg()},
        "arch": args.arch, "precision": health.get("precision"), "audio_seconds": call.seconds, "rate": RATE,
        "frame_ms": args.frame_ms, "rounds": args.rounds, "server_options": server.cmd[2:],
        "connectors": summarize(cpu, call.seconds),
    }
    print(f"server CPU per stream ({args.arch}, {report['precision']}, {call.seconds:g} s of speech at {RATE} Hz, "
          f"{args.frame_ms} ms telephony messages, median of {args.rounds} rounds; {report['cpu']}, {os.cpu_count()} cores):")
    for name, row in report["connectors"].items():
        lo, hi = row["vs_stream_range"]
        print(f"  {name:17s} {row['voices']} voice(s) {row['cpu_seconds_median']:7.2f} CPU s "
              f"{row['cpu_ms_per_audio_second']:6.1f} ms/audio s  x{row['vs_stream']:.3f} of {row['baseline']} "
              f"({lo:.3f}-{hi:.3f})  (all: {', '.join(f'{x:.2f}' for x in row['cpu_seconds'])})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

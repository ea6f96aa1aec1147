"""Server CPU per stream: the same stereo call through Genesys AudioHook (`/ws/audiohook`) and `/ws/stream`.

    PYTHONPATH=. python -m bench.audiohook_cpu [--arch tiny] [--seconds 30] [--rounds 3] [--frame 0.1] [--json OUT]

One `python server.py` subprocess (model, measuring and all else in one process:
`--measure-processes 0`, `--record events`) gets the same two-party call — espeak-ng speech on
both channels, the second channel shifted, as PCMU (μ-law) 8 kHz — unpaced, one stream at a time:
through `/ws/stream` (a `mulaw` stereo start with `split_channels`) and through `/ws/audiohook`
(open → opened, the same interleaved bytes in `--frame`-second binary messages, a ping every
5 s of audio, close → closed; its request signed with the client secret). Both analyze the same two
parties, so the model's work is the same: the difference is AudioHook's own cost (the HTTP
signature, its JSON envelope and numbering) plus noise. For each stream the server's CPU time
(user + system, /proc) is read before it starts and after its session is recorded as ended; the
two alternate over `--rounds` rounds after one uncounted warm-up round. RANDOM weights: only CPU
time is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.speech import benchmark_audio
from bench.throughput import log, random_model_dir

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-audiohook-key"
SECRET = base64.b64encode(b"bench-audiohook-client-secret-0123456789").decode()
ORG = "d7934305-0972-4844-938e-9060eef73d05"
WAYS = ("native", "audiohook")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ended(recordings: Path, sid: str, timeout: float = 600) -> None:
    path = recordings / sid / "session.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and json.loads(path.read_text()).get("status") != "live":
            return
        time.sleep(0.05)
    raise RuntimeError(f"session {sid} did not end")


async def native(port: int, ulaw: bytes, frame: float, sid: str) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/ws/stream") as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 8000, "encoding": "mulaw", "channels": 2,
                                  "split_channels": True, "parties": ["caller", "agent"], "session_id": sid}))
        step = round(frame * 8000) * 2
        for i in range(0, len(ulaw), step):
            await ws.send(ulaw[i : i + step])
        await ws.send(json.dumps({"type": "stop"}))
        async for raw in ws:
            if json.loads(raw)["type"] == "summary":
                break


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


async def audiohook(port: int, ulaw: bytes, frame: float, session: str) -> None:
    from websockets.asyncio.client import connect

    uri = f"ws://127.0.0.1:{port}/ws/audiohook"
    seq, serverseq, position = 0, 0, 0.0

    def message(kind: str, params: dict) -> str:
        nonlocal seq
        seq += 1
        return json.dumps({"version": "2", "id": session, "type": kind, "seq": seq, "serverseq": serverseq,
                           "position": f"PT{position:.3f}S", "parameters": params})

    async def reply(ws, kind: str) -> None:
        nonlocal serverseq
        got = json.loads(await ws.recv())
        assert got["type"] == kind, got
        serverseq = got["seq"]

    async with connect(uri, additional_headers=signed_headers(uri, session)) as ws:
        await ws.send(message("open", {
            "organizationId": ORG, "conversationId": str(uuid.uuid4()),
            "participant": {"id": str(uuid.uuid4()), "ani": "", "aniName": "", "dnis": ""},
            "media": [{"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 8000}]}))
        await reply(ws, "opened")
        step = round(frame * 8000) * 2
        for i in range(0, len(ulaw), step):
            await ws.send(ulaw[i : i + step])
            position += step / 2 / 8000
            if i // step % round(5 / frame) == 0:
                await ws.send(message("ping", {}))
                await reply(ws, "pong")
        await ws.send(message("close", {"reason": "end"}))
        await reply(ws, "closed")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="tiny", help="random-weight architecture: tiny, base, large")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of speech per stream")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frame", type=float, default=0.1, help="seconds of audio per binary message")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "emostream-bench")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)

    import soxr

    from stream.protocol import mulaw

    audio, _, _ = benchmark_audio(args.cache, max(args.seconds, 60) / 60)
    audio = soxr.resample(audio[: int(args.seconds * 16000)], 16000, 8000)
    caller = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    agent = np.roll(caller, len(caller) // 3)  # the other voice: the same speech at other times
    ulaw = mulaw.encode(np.stack([caller, agent], axis=1))  # interleaved: external, internal
    model = random_model_dir(args.cache, args.arch)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        recordings = Path(tmp) / "recordings"
        cmd = [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--model-dir", str(model), "--device", "cpu",
               "--recordings", str(recordings), "--measure-processes", "0", "--record", "events",
               "--audiohook-api-key", API_KEY, "--audiohook-client-secret", SECRET]
        env = dict(os.environ, EMOSTREAM_OFFLINE="1")
        server = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            import httpx

            deadline = time.monotonic() + 300
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.3)
            runs = {"native": native, "audiohook": audiohook}
            cpu: dict[str, list[float]] = {w: [] for w in WAYS}
            for r in range(-1, args.rounds):  # round -1 warms the server up and is not counted
                for name in WAYS if r % 2 == 0 else tuple(reversed(WAYS)):
                    session = str(uuid.uuid4())
                    recorded = f"audiohook-{session}" if name == "audiohook" else session
                    before = cpu_seconds(server.pid)
                    asyncio.run(runs[name](port, ulaw, args.frame, session))
                    ended(recordings, recorded)
                    spent = cpu_seconds(server.pid) - before
                    if r >= 0:
                        cpu[name].append(spent)
                    log(f"round {r}: {name}: {spent:.2f} CPU s")
        finally:
            server.terminate()
            server.wait(30)
    seconds = len(caller) / 8000
    base = statistics.median(cpu["native"])
    report = {
        "arch": args.arch, "audio_seconds": seconds, "frame_seconds": args.frame, "rounds": args.rounds,
        "ways": {name: {"cpu_seconds_median": statistics.median(v), "cpu_seconds": v,
                        "cpu_per_audio_second": statistics.median(v) / seconds,
                        "vs_native": statistics.median(v) / base} for name, v in cpu.items()},
    }
    print(f"server CPU per two-party stream ({args.arch}, {seconds:.0f} s of PCMU 8 kHz stereo, "
          f"{args.frame:g} s messages, median of {args.rounds}):")
    for name, row in report["ways"].items():
        print(f"  {name:10s} {row['cpu_seconds_median']:7.2f} CPU s  {row['cpu_per_audio_second'] * 1000:6.1f} ms/audio s"
              f"  x{row['vs_native']:.3f} of /ws/stream  (all: {', '.join(f'{x:.2f}' for x in row['cpu_seconds'])})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Server CPU per stream: the same call through /ws/stream, Asterisk AudioSocket and a JSON-then-PCM connector.

    PYTHONPATH=. python -m bench.connector_cpu [--arch tiny] [--seconds 30] [--rounds 3] [--rate 8000] [--json OUT]

One `python server.py` subprocess (the model's forward, the measuring and everything else in its
one process: `--measure-processes 0`) gets the same telephony call (espeak-ng speech at `--rate`)
through each connector in turn, unpaced, one stream at a time: `/ws/stream` (the native
protocol, 0.1 s binary messages), AudioSocket (20 ms frames over TCP, `--audiosocket-port`) and
`/ws/vonage` (the JSON preamble, then 20 ms L16 messages). For each stream the server's CPU time
(user + system, from /proc) is read before it starts and after its session is recorded as ended;
the connectors run in alternating order over `--rounds` rounds and the report gives each one's
median CPU seconds per stream and per second of audio, and its ratio to /ws/stream. The model's
forward dominates and is the same for all three: the differences are the connectors' own costs
(framing, JSON, base64 for none of them) plus noise. RANDOM weights: only CPU time is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.speech import benchmark_audio
from bench.throughput import log, random_model_dir

ROOT = Path(__file__).resolve().parents[1]
CONNECTORS = ("native", "audiosocket", "vonage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ended(recordings: Path, sid: str, timeout: float = 180) -> None:
    """Wait until the session's recording says it completed."""
    path = recordings / sid / "session.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = json.loads(path.read_text()).get("status") if path.exists() else "live"
        if status == "complete":
            return
        if status != "live":
            raise RuntimeError(f"session {sid} ended {status!r}, not complete")
        time.sleep(0.05)
    raise RuntimeError(f"session {sid} did not end")


async def native(port: int, pcm: bytes, rate: int, sid: str) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/ws/stream") as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": rate, "encoding": "pcm_s16le", "session_id": sid}))
        step = rate // 10 * 2
        for i in range(0, len(pcm), step):
            await ws.send(pcm[i : i + step])
        await ws.send(json.dumps({"type": "stop"}))
        async for raw in ws:
            if json.loads(raw)["type"] == "summary":
                break


async def audiosocket(port: int, pcm: bytes, rate: int, sid: str) -> None:
    from stream.protocol.audiosocket import KIND_HANGUP, audio_frames, encode_frame, uuid_frame

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(uuid_frame(sid) + audio_frames(np.frombuffer(pcm, "<i2"), rate) + encode_frame(KIND_HANGUP))
    await writer.drain()
    writer.write_eof()
    await reader.read()
    writer.close()


async def vonage(port: int, pcm: bytes, rate: int, sid: str) -> None:
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{port}/ws/vonage") as ws:
        await ws.send(json.dumps({"event": "websocket:connected", "content-type": f"audio/l16;rate={rate}", "uuid": sid}))
        step = rate // 50 * 2
        for i in range(0, len(pcm), step):
            await ws.send(pcm[i : i + step])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="tiny", help="random-weight architecture: tiny, base, large")
    p.add_argument("--seconds", type=float, default=30.0, help="seconds of speech per stream")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--rate", type=int, default=8000, choices=(8000, 16000))
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "emostream-bench")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)

    import soxr

    audio, _, _ = benchmark_audio(args.cache, max(args.seconds, 60) / 60)
    audio = audio[: int(args.seconds * 16000)]
    audio = soxr.resample(audio, 16000, args.rate) if args.rate != 16000 else audio
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    model = random_model_dir(args.cache, args.arch)
    with tempfile.TemporaryDirectory() as tmp:
        port, as_port = free_port(), free_port()
        recordings = Path(tmp) / "recordings"
        cmd = [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--model-dir", str(model), "--device", "cpu",
               "--recordings", str(recordings), "--measure-processes", "0", "--audiosocket-port", str(as_port),
               "--record", "events", "--max-backlog-seconds", "100000"]  # streams arrive unpaced
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
            runs = {"native": native, "audiosocket": audiosocket, "vonage": vonage}
            cpu: dict[str, list[float]] = {c: [] for c in CONNECTORS}
            n = 0
            for r in range(-1, args.rounds):  # round -1 warms the server up and is not counted
                order = CONNECTORS if r % 2 == 0 else tuple(reversed(CONNECTORS))
                for name in order:
                    n += 1
                    sid = f"{n:08x}-0000-4000-8000-1{n:011x}"  # not a leg UUID (docs/connectors/asterisk.md)
                    recorded = sid if name != "vonage" else f"vonage-{sid}"
                    before = cpu_seconds(server.pid)
                    asyncio.run(runs[name]({"audiosocket": as_port}.get(name, port), pcm, args.rate, sid))
                    ended(recordings, recorded)
                    spent = cpu_seconds(server.pid) - before
                    if r >= 0:
                        cpu[name].append(spent)
                    log(f"round {r}: {name}: {spent:.2f} CPU s")
        finally:
            server.terminate()
            server.wait(30)
    seconds = len(pcm) / 2 / args.rate
    base = statistics.median(cpu["native"])
    report = {
        "arch": args.arch, "audio_seconds": seconds, "rate": args.rate, "rounds": args.rounds,
        "connectors": {name: {"cpu_seconds_median": statistics.median(v), "cpu_seconds": v,
                              "cpu_per_audio_second": statistics.median(v) / seconds,
                              "vs_native": statistics.median(v) / base} for name, v in cpu.items()},
    }
    print(f"server CPU per stream ({args.arch}, {seconds:.0f} s of speech at {args.rate} Hz, median of {args.rounds}):")
    for name, row in report["connectors"].items():
        print(f"  {name:12s} {row['cpu_seconds_median']:7.2f} CPU s  {row['cpu_per_audio_second'] * 1000:6.1f} ms/audio s"
              f"  x{row['vs_native']:.3f} of /ws/stream  (all: {', '.join(f'{x:.2f}' for x in row['cpu_seconds'])})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

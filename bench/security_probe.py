"""Re-run the review's resource findings of issue 12 against a real server and print one line per figure.

    .venv/bin/python -m bench.security_probe [--model-dir DIR]

Without --model-dir it writes the tiny random-weight model to a temporary folder. Figures:
- F1 unauthenticated /ws/twilio: 300 messages with unique ~1 MiB event names (server RSS before/after,
  how the socket ended), and 200 idle sockets (how many are still open after --start-timeout + 5 s).
- F4 /api/predict: a 300 MiB upload (status, server RSS growth).
- F9 a client that never reads sends 300 starts with a 500 KB bad value (RSS growth, largest error).
- Issue 17 F6 /api/predict: a 13 kB FLAC at 655,340 Hz (status, code, server RSS growth).
- Issue 17 F1 /api/predict: a 1 s 8-channel WAV with split_channels=true (status, code, is the server alive).
- Issue 17 F10 the silent hour: an hour of silent 20 ms Twilio media, sent as fast as the server takes it
  (server RSS before and at the end of the hour, the session still live).
- Issue 17 F8 lone surrogates: in a start field name, a Twilio streamSid, a token <Parameter> before
  auth, a mark while a monitor listens (how each socket ends; never 1011).
- Issue 17 F7 with MQTT's broker down: 150 Twilio marks of 1 MB each on one call (server RSS).
- Issue 17 F2 with --ray: `serve --ray --ssl-certfile --ssl-keyfile --ingress-port` (HTTPS and plain HTTP on
  both ports, what /healthz tells a caller without a credential, how an over-size message ends).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import ssl
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from server_harness import free_port, start_server  # noqa: E402  (the tests' harness: the real server as users run it)


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def twilio_names(srv) -> str:
    async with connect(f"{srv.ws}/ws/twilio", max_size=None) as tw:
        sent = 0
        try:
            for i in range(300):
                await tw.send(json.dumps({"event": f"{i:04d}" + "n" * ((1 << 20) - 200)}))
                sent += 1
        except ConnectionClosed:
            pass
        try:
            await asyncio.wait_for(tw.wait_closed(), 30)
        except asyncio.TimeoutError:
            return f"still open after {sent} sends"
        return f"closed {tw.close_code} {tw.close_reason!r} (client had queued {sent})"


async def idle_sockets(srv, n: int, wait: float) -> int:
    sockets = [await connect(f"{srv.ws}/ws/twilio") for _ in range(n)]
    await asyncio.sleep(wait)
    still = sum(1 for ws in sockets if ws.close_code is None)
    for ws in sockets:
        await ws.close()
    return still


async def bad_starts(srv, token: str) -> int:
    async with connect(f"{srv.ws}/ws/stream", additional_headers={"Authorization": f"Bearer {token}"},
                       max_queue=1) as ws:
        try:
            for _ in range(300):
                await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "e" * 500_000}))
        except ConnectionClosed:
            pass
        largest = 0
        try:
            async for raw in ws:
                largest = max(largest, len(raw))
        except ConnectionClosed:
            pass
        return largest


def upload(srv, token: str, path: Path, **form) -> str:
    """POST `path` to /api/predict: its status and error code, or how the request got no answer."""
    try:
        r = httpx.post(f"{srv.http}/api/predict", headers={"Authorization": f"Bearer {token}"}, timeout=300,
                       files={"file": (path.name, path.read_bytes())}, data=form)
    except httpx.TransportError as exc:
        return f"no answer ({type(exc).__name__})"
    return f"{r.status_code} {r.json().get('code', '') if r.status_code != 200 else 'analyzed'}"


def high_rate_flac(srv, token: str, tmp: Path) -> str:
    """Issue 17 F6: 20 s of silence as FLAC at 655,340 Hz (13 kB), uploaded; what it cost the server."""
    flac = tmp / "high.flac"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "anullsrc=r=655340:cl=mono", "-t", "20", "-c:a", "flac", str(flac)], check=True)
    before, t = rss_mib(srv.process.pid), time.monotonic()
    answer = upload(srv, token, flac)
    return (f"{flac.stat().st_size / 1000:.0f} kB: {answer} in {time.monotonic() - t:.1f} s; "
            f"server RSS {before:.0f} -> {rss_mib(srv.process.pid):.0f} MiB")


def eight_channel_upload(srv, token: str, tmp: Path) -> str:
    """Issue 17 F1: 1 s of noise in 8 channels (256 kB WAV) with split_channels=true; is the server alive after?"""
    path = tmp / "eight.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(8)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.random.default_rng(0).standard_normal((16000, 8)) * 3000).astype("<i2").tobytes())
    answer = upload(srv, token, path, split_channels="true")
    time.sleep(1)  # a crashed server needs a moment to be reaped
    alive = srv.process.poll() is None
    return f"{answer}; server {'alive' if alive else f'exited with {srv.process.returncode}'}"


async def silent_hour(srv, token: str) -> str:
    """Issue 17 F10: 180,000 silent 20 ms Twilio media messages on one call; what the server holds at the end."""
    sid, silence = "MZsilenthour", base64.b64encode(b"\xff" * 160).decode()  # μ-law 0xFF is zero
    before, t = rss_mib(srv.process.pid), time.monotonic()
    async with connect(f"{srv.ws}/ws/twilio") as tw:
        await tw.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": {
            "accountSid": "AC1", "streamSid": sid, "callSid": "CAsilent", "tracks": ["inbound"],
            "customParameters": {"token": token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        for i in range(3600 * 50):
            await tw.send(json.dumps({"event": "media", "sequenceNumber": str(i + 2), "streamSid": sid, "media": {
                "track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20), "payload": silence}}))
        await (await tw.ping())  # the pong: the server has read every media message (its queue is short)
        during = rss_mib(srv.process.pid)
        await tw.send(json.dumps({"event": "stop", "sequenceNumber": str(3600 * 50 + 2), "streamSid": sid,
                                  "stop": {"accountSid": "AC1", "callSid": "CAsilent"}}))
    return (f"sent in {time.monotonic() - t:.0f} s; server RSS {before:.0f} -> {during:.0f} MiB "
            f"at the end of the hour (session live)")


def _twilio_start(sid: str, params_json: str = "{}") -> str:
    """A one-track Twilio start; `params_json` is spliced in as JSON text (so it may hold escapes)."""
    body = json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": "SID", "start": {
        "accountSid": "AC1", "streamSid": "SID", "callSid": "CAprobe", "tracks": ["inbound"], "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
    return body.replace('"SID"', json.dumps(sid).replace("\\\\u", "\\u")).replace('"customParameters": {}',
                                                                                    f'"customParameters": {params_json}')


async def _twilio_call(url: str, messages: list[str]) -> str:
    """Send a Twilio call's messages; how the socket ended."""
    async with connect(url) as tw:
        with contextlib.suppress(ConnectionClosed):
            for m in messages:
                await tw.send(m)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(tw.wait_closed(), 30)
        return f"{tw.close_code} {tw.close_reason or ''}".strip()


async def marks_with_the_broker_down(srv, token: str) -> str:
    """Issue 17 F7: 150 marks of 1 MB on one call while MQTT's broker is down; what the server holds after."""
    sid = "MZbigmarks"
    before = rss_mib(srv.process.pid)
    name = json.dumps("m" * 1_000_000)
    marks = [f'{{"event": "mark", "sequenceNumber": "{i + 2}", "streamSid": "{sid}", "mark": {{"name": {name}}}}}'
             for i in range(150)]
    ended = await _twilio_call(f"{srv.ws}/ws/twilio?token={token}", [_twilio_start(sid), *marks])
    return f"the call ended {ended}; server RSS {before:.0f} -> {rss_mib(srv.process.pid):.0f} MiB"


async def lone_surrogates(srv, token: str) -> str:
    """Issue 17 F8: a lone surrogate (JSON "\\ud800") in four places a client controls; how each ends."""
    lone = "\\ud800"
    async with connect(f"{srv.ws}/ws/stream", additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send('{"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "%s": 1}' % lone)
        answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
        field = f"error {answer.get('code')}, socket {'open' if ws.close_code is None else ws.close_code}"
    sid = await _twilio_call(f"{srv.ws}/ws/twilio?token={token}", [_twilio_start("MZ" + lone)])
    param = await _twilio_call(f"{srv.ws}/ws/twilio", [_twilio_start("MZtoken", '{"token": "%s"}' % lone)])
    async with connect(f"{srv.ws}/ws/monitor", additional_headers={"Authorization": f"Bearer {token}"}) as mon:
        await asyncio.wait_for(mon.recv(), 10)
        mark = ('{"event": "mark", "sequenceNumber": "2", "streamSid": "MZlonemark", "mark": {"name": "%s"}}' % lone)
        stop = json.dumps({"event": "stop", "sequenceNumber": "3", "streamSid": "MZlonemark"})
        call = await _twilio_call(f"{srv.ws}/ws/twilio?token={token}", [_twilio_start("MZlonemark"), mark, stop])
        monitor = "open" if mon.close_code is None else str(mon.close_code)
    return (f"start field name: {field}; Twilio streamSid: close {sid}; token <Parameter> before auth: "
            f"close {param}; mark while a monitor listens: call close {call}, monitor {monitor}")


def tls_on_ray(model: Path, tmp: Path, token: str) -> str:
    """Issue 17 F2: `serve --ray` with TLS; both of its ports over HTTPS and plain HTTP, and a 2 x 64 KiB message."""
    from tls_certs import make_tls

    tls, direct = make_tls(tmp / "tls"), free_port()
    srv = start_server(model, tmp, "--ray", "--ingress-replicas", "1", "--cpus-per-ingress", "0.2",
                       "--cpus-per-scorer", "0.2", "--cpus-for-hub", "0.05", "--ingress-port", str(direct),
                       "--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key), "--max-message-bytes",
                       str(1 << 16), token=token, scheme="https")  # fmt: skip
    ca = ssl.create_default_context(cafile=str(tls.ca))

    def get(url: str, **kw) -> str:
        try:
            return str(httpx.get(url, timeout=30, **kw).json())
        except httpx.HTTPError as exc:
            return f"no answer ({type(exc).__name__})"

    async def oversize() -> int | None:
        async with connect(f"wss://127.0.0.1:{srv.port}/ws/monitor", ssl=ca, additional_headers=srv.headers) as ws:
            await ws.send(b"x" * (2 << 16))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ws.wait_closed(), 30)
            return ws.close_code

    try:
        ports = [f"{name} https {get(f'https://127.0.0.1:{port}/healthz', verify=ca)}, "
                 f"http {get(f'http://127.0.0.1:{port}/healthz')}"
                 for name, port in (("proxy", srv.port), ("ingress port", direct))]  # fmt: skip
        return f"{'; '.join(ports)}; 128 KiB message over the proxy: close {asyncio.run(oversize())}"
    finally:
        srv.stop()


def main() -> int:
    """Start a server, run the probes, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--ray", action="store_true", help="also probe `serve --ray` with TLS (ray extra; a minute)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model_dir
        if model is None:
            from models.random_weights import write_random_model_dir

            model = write_random_model_dir(tmp / "tiny", "tiny")
        token = "probe-token"
        srv = start_server(model, tmp, "--start-timeout", "10", token=token)
        try:
            before = rss_mib(srv.process.pid)
            how = asyncio.run(twilio_names(srv))
            print(f"F1 twilio 300 x 1 MiB unique event names, no token: {how}; server RSS {before:.0f} -> "
                  f"{rss_mib(srv.process.pid):.0f} MiB")
            still = asyncio.run(idle_sockets(srv, 200, 15))
            print(f"F1 twilio 200 idle sockets without start: {still} still open after 15 s (--start-timeout 10)")
            before = rss_mib(srv.process.pid)
            big = tmp / "big.bin"
            with open(big, "wb") as f:
                f.truncate(300 << 20)

            def body():
                yield b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'
                with open(big, "rb") as f:
                    while block := f.read(1 << 20):
                        yield block

            t = time.monotonic()
            r = httpx.post(f"{srv.http}/api/predict", content=body(), timeout=120,
                           headers={"Authorization": f"Bearer {token}",
                                    "Content-Type": "multipart/form-data; boundary=b0undary"})
            print(f"F4 predict 300 MiB multipart upload (chunked, no Content-Length): {r.status_code} "
                  f"in {time.monotonic() - t:.1f} s; server RSS {before:.0f} -> {rss_mib(srv.process.pid):.0f} MiB")
            before = rss_mib(srv.process.pid)
            largest = asyncio.run(bad_starts(srv, token))
            print(f"F9 300 bad starts with a 500 KB value from a non-reading client: largest reply {largest} bytes; "
                  f"server RSS {before:.0f} -> {rss_mib(srv.process.pid):.0f} MiB")
            print(f"17-F6 predict FLAC at 655,340 Hz: {high_rate_flac(srv, token, tmp)}")
            print(f"17-F10 the silent hour over /ws/twilio: {asyncio.run(silent_hour(srv, token))}")
            print(f"17-F8 lone surrogates: {asyncio.run(lone_surrogates(srv, token))}")
            # Last: before issue 17 this upload crashed the server.
            print(f"17-F1 predict 8-channel WAV, split_channels=true: {eight_channel_upload(srv, token, tmp)}")
        finally:
            srv.stop()
        # MQTT configured, its broker down (nothing listens on the port): every message queues.
        srv = start_server(model, tmp, "--mqtt", f"mqtt://127.0.0.1:{free_port()}", token=token)
        try:
            print(f"17-F7 150 x 1 MB Twilio marks, MQTT broker down: {asyncio.run(marks_with_the_broker_down(srv, token))}")
        finally:
            srv.stop()
        if args.ray:
            print(f"17-F2 TLS on Ray: {tls_on_ray(model, tmp, token)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

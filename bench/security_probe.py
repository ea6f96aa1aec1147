"""Re-run the review's resource findings of issue 12 against a real server and print one line per figure.

    .venv/bin/python -m bench.security_probe [--model-dir DIR]

Without --model-dir it writes the tiny random-weight model to a temporary folder. Figures:
- F1 unauthenticated /ws/twilio: 300 messages with unique ~1 MiB event names (server RSS before/after,
  how the socket ended), and 200 idle sockets (how many are still open after --start-timeout + 5 s).
- F4 /api/predict: a 300 MiB upload (status, server RSS growth).
- F9 a client that never reads sends 300 starts with a 500 KB bad value (RSS growth, largest error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from server_harness import start_server  # noqa: E402  (the tests' harness: the real server as users run it)


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


def main() -> int:
    """Start a server, run the probes, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path)
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
        finally:
            srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the real server as a subprocess on a loopback port, as users run it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.exceptions import ConnectionClosed

from stream.cli.replay import load_recording, run_replays

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unbatched(message: dict) -> list[dict]:
    """A monitor's message as the messages it carries: a `batch` holds deltas the feed held back, in order."""
    return message["messages"] if message.get("type") == "batch" else [message]


async def read_all(ws, into: list) -> None:
    """Collect a WebSocket's JSON messages into `into` until it closes (a monitor's batches unpacked)."""
    try:
        async for raw in ws:
            into.extend(unbatched(json.loads(raw)))
    except ConnectionClosed:
        pass


class Loopback:
    """HTTP and WebSocket base addresses of a server on 127.0.0.1:`port`."""

    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


@dataclass
class RunningServer(Loopback):
    """A server subprocess and how to reach it."""

    process: subprocess.Popen
    port: int
    token: str | None
    recordings: Path
    log: Path

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_server(model_dir: Path, tmp: Path, *extra: str, token: str | None = "s3cret",
                 scheme: str = "http") -> RunningServer:
    """Start `python server.py` and wait until /healthz answers (`scheme="https"` with --ssl-* options)."""
    port = free_port()
    recordings = tmp / "recordings"
    log = tmp / f"server-{port}.log"
    args = [sys.executable, str(ROOT / "server.py"), "--port", str(port), "--model-dir", str(model_dir),
            "--device", "cpu", "--threads", "1", "--recordings", str(recordings), *extra]
    if token:
        args += ["--token", token]
    env = dict(os.environ, EMOSTREAM_OFFLINE="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(args, cwd=tmp, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    server = RunningServer(process, port, token, recordings, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{scheme}://127.0.0.1:{port}/healthz", timeout=1, verify=False).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    """Poll `predicate` until it returns something true; that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def replay_into(server: Loopback, folders: list[Path], speed: float = 50.0, token: str = "s3cret") -> None:
    """Replay recordings (bench.drills') through the server's /ws/replay, each to its end: calls with alerts, no model."""
    recordings = [load_recording(f)[0] for f in folders]
    with open(os.devnull, "w") as quiet:
        totals = asyncio.run(run_replays(recordings, server.ws, token=token, speed=speed, echo=False, out=quiet))
    assert totals.failed == 0 and totals.done == len(folders), totals

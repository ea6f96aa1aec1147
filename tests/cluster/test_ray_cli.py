"""`python server.py --ray` as users run it: a local Ray, the dashboard, streams, the queue bound."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
import numpy as np

from ray_harness import RayApp, native
from server_harness import start_server


def test_serve_ray_runs_the_application_and_stops_on_sigterm(tiny_model_dir, tmp_path, speech):
    # --max-pending 1: each replica lets one model job out at a time, so streams sent faster than
    # real time are told `overload` and still lose no window.
    server = start_server(tiny_model_dir, tmp_path, "--ray", "--ingress-replicas", "2", "--scorer-replicas", "1",
                          "--cpus-per-ingress", "0.2", "--cpus-per-scorer", "0.2", "--cpus-for-hub", "0.05",
                          "--max-pending", "1")  # fmt: skip
    try:
        app = RayApp(server.port, server.recordings)
        health = app.wait_ready(2)
        assert health["deployments"]["Ingress"]["replicas"] == {"RUNNING": 2}
        page = httpx.get(f"{server.http}/", timeout=30)
        assert page.status_code == 200 and "emostream" in page.text  # the dashboard
        pcm = (np.clip(np.concatenate([speech[1], speech[0]]), -1, 1) * 32767).astype(np.int16)

        async def two():
            return await asyncio.gather(native(app, pcm, "cli-ray-1"), native(app, pcm, "cli-ray-2"))

        sessions = asyncio.run(two())
        for messages in sessions:
            assert messages[-1]["type"] == "summary" and messages[-1]["stats"]["status"] == "complete"
        windows = [[(m["start"], m["end"]) for m in messages if m["type"] == "window"] for messages in sessions]
        assert windows[0] and windows[0] == windows[1]  # the same audio: the same windows, none lost
        assert any(m["type"] == "overload" for messages in sessions for m in messages)
    finally:
        server.process.terminate()
        try:
            code = server.process.wait(60)
        except subprocess.TimeoutExpired:
            server.process.kill()
            raise
    assert code == 0, server.log.read_text()

"""`python server.py --ray` as users run it: a local Ray, the dashboard and a stream across replicas."""

from __future__ import annotations

import asyncio
import subprocess

import httpx
import numpy as np

from ray_harness import RayApp, native
from server_harness import start_server


def test_serve_ray_runs_the_application_and_stops_on_sigterm(tiny_model_dir, tmp_path, speech):
    server = start_server(tiny_model_dir, tmp_path, "--ray", "--ingress-replicas", "2", "--scorer-replicas", "1",
                          "--cpus-per-ingress", "0.2", "--cpus-per-scorer", "0.2", "--cpus-for-hub", "0.05")  # fmt: skip
    try:
        app = RayApp(server.port, server.recordings)
        health = app.health()
        assert health["deployments"]["Ingress"]["replicas"] == {"RUNNING": 2}
        page = httpx.get(f"{server.http}/", timeout=30)
        assert page.status_code == 200 and "emostream" in page.text  # the dashboard
        pcm = (np.clip(speech[1], -1, 1) * 32767).astype(np.int16)
        messages = asyncio.run(native(app, pcm, "cli-ray"))
        assert messages[-1]["type"] == "summary" and messages[-1]["stats"]["status"] == "complete"
        assert any(m["type"] == "window" for m in messages)
    finally:
        server.process.terminate()
        try:
            code = server.process.wait(60)
        except subprocess.TimeoutExpired:
            server.process.kill()
            raise
    assert code == 0, server.log.read_text()

"""`emostream serve --demo`: a newcomer's first run without weights (issue 12, item 5)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from server_harness import ROOT, free_port
from models.loader import ModelOptions, resolve_model_dir


def test_missing_weights_error_names_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    try:
        resolve_model_dir(ModelOptions(offline=True))
    except Exception as exc:
        assert "emostream serve --demo" in str(exc)
    else:
        raise AssertionError("no weights, yet no error")


def test_serve_demo_writes_its_model_once_and_serves_it(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), EMOSTREAM_OFFLINE="1", PYTHONUNBUFFERED="1")
    model = tmp_path / "cache" / "emostream" / "demo-tiny-random" / "model.pt"
    written = None
    for _ in range(2):
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(ROOT / "server.py"), "--demo", "--port", str(port), "--device",
                                 "cpu", "--threads", "1", "--recordings", str(tmp_path / "rec")],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 180
            health = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
                    break
                except httpx.HTTPError:
                    time.sleep(0.3)
            assert health is not None and health["random_weights"] is True, health
            page = httpx.get(f"http://127.0.0.1:{port}/")
            assert page.status_code == 200 and "random" in page.text.lower()
        finally:
            proc.terminate()
            out = proc.communicate(timeout=30)[0]
        assert "RANDOM" in out
        if written is None:
            written = model.stat().st_mtime_ns
        else:
            assert model.stat().st_mtime_ns == written  # the second start reused it

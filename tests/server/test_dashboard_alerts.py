"""The dashboard draws planted-model alerts (flagged transition, review, dual emotion) in its alert list.

A native client streams real espeak speech into the real server running the PLANTED fear/disgust
model; headless Chromium (Debian `chromium`, driven by playwright) watches the monitor feed. A
screenshot goes to tests/artifacts/dashboard-alerts.png.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from server_harness import start_server
from test_dashboard import ARTIFACTS, CHROMIUM, TOKEN


@pytest.fixture(scope="module")
def planted_server(planted_model_dir, tmp_path_factory):
    running = start_server(planted_model_dir, tmp_path_factory.mktemp("dash-alerts"), token=TOKEN)
    yield running
    running.stop()


@pytest.fixture()
def page():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is required for the dashboard tests: {CHROMIUM} is missing (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        # Playwright's string predicates need eval, which the dashboard's CSP forbids (test_dashboard.py).
        page = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        yield page
        browser.close()


async def _stream(server, pcm: bytes, session_id: str) -> list[dict]:
    """One native session in real time (0.1 s messages); returns what the client received."""
    messages: list[dict] = []
    async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
                                  "session_id": session_id}))
        for i in range(0, len(pcm), 3200):
            await ws.send(pcm[i : i + 3200])
            await asyncio.sleep(0.1)
        await ws.send(json.dumps({"type": "stop"}))
        async for raw in ws:
            messages.append(json.loads(raw))
    return messages


def test_alert_list_shows_flagged_transition_review_and_dual_report(page, planted_server, alert_speech):
    page.goto(f"{planted_server.http}/#token={TOKEN}")
    page.wait_for_function("window.emostreamState && window.emostreamState.connection === 'open'", timeout=15_000)
    pcm = (np.clip(alert_speech.samples, -1, 1) * 32767).astype(np.int16).tobytes()
    with ThreadPoolExecutor(1) as pool:  # playwright's sync API owns this thread's event loop
        messages = pool.submit(asyncio.run, _stream(planted_server, pcm, "planted-dash")).result()
    assert messages[-1]["type"] == "summary"
    sent = {
        "flagged": sum(m["type"] == "transition" and m["flagged"] for m in messages),
        "review": sum(m["type"] == "review" for m in messages),
        "dual": sum(m["type"] == "dual_emotion" for m in messages),
    }
    assert all(sent.values()), sent

    page.wait_for_function("n => window.emostreamState.alerts >= n", arg=sum(sent.values()), timeout=30_000)
    items = page.get_by_test_id("alert-item")
    kinds = [items.nth(i).locator(".alert-kind").inner_text().lower() for i in range(items.count())]
    for kind, n in sent.items():
        assert kinds.count(kind) == n, (kind, kinds)
    texts = [items.nth(i).inner_text() for i in range(items.count())]
    assert any("flagged transition fearful → disgusted" in t for t in texts)
    assert any("needs review" in t for t in texts) and any("dual emotion" in t for t in texts)
    assert all("planted-dash" in t for t in texts)
    assert page.get_by_test_id("alert-count").inner_text() == str(sum(sent.values()))
    # The red banner says the model is planted: these alerts are not emotion recognition.
    banner = page.get_by_test_id("random-weights-banner")
    assert banner.is_visible() and "PLANTED weights (fear-disgust)" in banner.inner_text()

    items.first.click()  # an alert selects its session: the timeline draws it with the flags
    page.wait_for_function("window.emostreamState.selected === 'planted-dash'", timeout=10_000)
    assert page.get_by_test_id("timeline").get_attribute("data-drawn") == "true"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-alerts.png"), full_page=True)
    assert not page.errors, page.errors

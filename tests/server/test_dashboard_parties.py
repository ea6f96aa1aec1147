"""The dashboard shows a split session as one lane per party (real Chromium, real server)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from server_harness import start_server
from test_dashboard import ARTIFACTS, TOKEN, browser, page, speech_wav, state  # noqa: F401  (fixtures)
from test_server import stream


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    # Dual-emotion thresholds that every segment meets: each party raises alerts the page must name.
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("dash-parties"), "--dual-min-peak", "0",
                           "--dual-max-gap", "1", token=TOKEN)
    yield running
    running.stop()


def test_split_session_draws_one_timeline_per_party(page, server, two_voices):  # noqa: F811
    page.goto(f"{server.http}/#token={TOKEN}")
    page.wait_for_function("window.emostreamState && window.emostreamState.connection === 'open'", timeout=15_000)
    stereo = (np.clip(np.stack(two_voices, axis=1), -1, 1) * 32767).astype("<i2").tobytes()
    start = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 2, "split_channels": True,
             "parties": ["caller", "counsellor"], "session_id": "dash-split"}
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
        messages, code = pool.submit(asyncio.run, stream(server, stereo, start, 3200, pace=0.005)).result()
    assert code == 1000
    page.wait_for_function(
        """() => { const s = window.emostreamState.sessions['dash-split'];
                   return s && !s.live && s.parties.caller && s.parties.counsellor
                          && s.parties.caller.segments >= 1 && s.parties.counsellor.segments >= 1; }""",
        timeout=30_000,
    )
    page.locator('[data-testid="session-item"][data-session-id="dash-split"]').click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=party-timeline]')].length === 2 &&
                 [...document.querySelectorAll('[data-testid=party-timeline]')].every(c => c.dataset.drawn === 'true')""",
        timeout=15_000,
    )
    lanes = page.locator('[data-testid="party-lane"]')
    assert [lanes.nth(i).get_attribute("data-party") for i in range(2)] == ["caller", "counsellor"]
    boxes = [lanes.nth(i).bounding_box() for i in range(2)]
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1  # stacked, caller on top
    assert not page.get_by_test_id("timeline").is_visible()  # no mixed timeline for a split session
    st = state(page)["sessions"]["dash-split"]
    sent = {p: sum(1 for m in messages if m.get("party") == p and m["type"] == "window") for p in ("caller", "counsellor")}
    for party in ("caller", "counsellor"):
        canvas = page.locator(f'[data-testid="party-timeline"][data-party="{party}"]')
        assert int(canvas.get_attribute("data-windows")) == st["parties"][party]["windows"] == sent[party]
    # Each lane painted its own scores.
    painted = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=party-timeline]')].map(c => {
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i+3] && (d[i] < 200 || d[i+1] < 200)) n++;
                   return n; })"""
    )
    assert min(painted) > 1000
    # The session list shows each party's current emotion.
    item = page.locator('[data-testid="session-item"][data-session-id="dash-split"]')
    for party in ("caller", "counsellor"):
        text = item.locator(f'[data-testid="party-dominant"][data-party="{party}"]').inner_text()
        assert text.startswith(f"{party}: ") and st["parties"][party]["dominant"] in text
    # Alerts name the party whose voice raised them.
    duals = [m for m in messages if m["type"] == "dual_emotion"]
    assert {m["party"] for m in duals} == {"caller", "counsellor"}
    tags = page.locator('[data-testid="alert-party"]')
    shown = sorted(tags.nth(i).inner_text() for i in range(tags.count()))
    assert shown == sorted(m["party"] for m in duals)  # every alert, each naming its party
    for party in ("caller", "counsellor"):
        assert st["parties"][party]["alerts"] == sum(1 for m in duals if m["party"] == party)
    # Each party's recording plays in its lane.
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=party-audio]')].every(a => a.src.startsWith('blob:') && !a.hidden)""",
        timeout=15_000,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-parties.png"), full_page=True)
    assert not page.errors, page.errors

"""The dashboard shows a split session as one lane per party (real Chromium, real server).

The call list shows each party's current emotion (the feed's digest), the alert queue names the
party of each alert, and selecting the call draws one timeline per party (here from the
recording, since the call has ended when it is selected).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from server_harness import start_server
from stream.server.alerts import alerts_in
from test_dashboard import ARTIFACTS, TOKEN, browser, open_dashboard, page, settle, speech_wav, state  # noqa: F401  (fixtures)
from test_server import stream


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    # Dual-emotion thresholds that every segment meets: each party raises alerts the page must name.
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("dash-parties"), "--dual-min-peak", "0",
                           "--dual-max-gap", "1", token=TOKEN)
    yield running
    running.stop()


def test_split_session_draws_one_timeline_per_party(page, server, two_voices):  # noqa: F811
    open_dashboard(page, server)
    stereo = (np.clip(np.stack(two_voices, axis=1), -1, 1) * 32767).astype("<i2").tobytes()
    start = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 2, "split_channels": True,
             "parties": ["caller", "counsellor"], "session_id": "dash-split",
             "metadata": {"line": "4", "counsellor": "Ana"}}
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
        messages, code = pool.submit(asyncio.run, stream(server, stereo, start, 3200, pace=0.005)).result()
    assert code == 1000
    page.wait_for_function(
        """() => { const s = window.emostreamState.sessions['dash-split'];
                   return s && !s.live && s.parties.caller && s.parties.counsellor; }""",
        timeout=30_000,
    )
    page.locator('[data-testid="session-item"][data-session-id="dash-split"]').click()
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=party-timeline]')].length === 2 &&
                 [...document.querySelectorAll('[data-testid=party-timeline]')].every(c => c.dataset.drawn === 'true')""",
        timeout=15_000,
    )
    sent = {p: sum(1 for m in messages if m.get("party") == p and m["type"] == "window") for p in ("caller", "counsellor")}
    page.wait_for_function(  # the recording's events, all of them
        "sent => Object.entries(sent).every(([p, n]) => window.emostreamState.sessions['dash-split'].parties[p].windows === n)",
        arg=sent, timeout=15_000,
    )
    settle(page)
    lanes = page.locator('[data-testid="party-lane"]')
    assert [lanes.nth(i).get_attribute("data-party") for i in range(2)] == ["caller", "counsellor"]
    boxes = [lanes.nth(i).bounding_box() for i in range(2)]
    assert boxes[1]["y"] >= boxes[0]["y"] + boxes[0]["height"] - 1  # stacked, caller on top
    assert not page.get_by_test_id("timeline").is_visible()  # no mixed timeline for a split session
    st = state(page)["sessions"]["dash-split"]
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
    # The call list shows each party's current emotion: its last window's.
    item = page.locator('[data-testid="session-item"][data-session-id="dash-split"]')
    for party in ("caller", "counsellor"):
        last = [m for m in messages if m.get("party") == party and m["type"] == "window"][-1]
        text = item.locator(f'[data-testid="party-dominant"][data-party="{party}"]').inner_text()
        assert text.startswith(f"{party}: ") and last["dominant"] in text
        assert st["parties"][party]["dominant"] == last["dominant"]
    assert "line: 4 · counsellor: Ana" in item.get_by_test_id("session-meta").inner_text()
    # Alerts name the party whose voice raised them: every alert the server raised, each once.
    expected = alerts_in("dash-split", [m for m in messages if m["type"] not in ("ready", "summary")])
    assert {a.party for a in expected if a.kind == "dual"} == {"caller", "counsellor"}
    page.wait_for_function("n => window.emostreamState.openAlerts.length === n", arg=len(expected), timeout=10_000)
    settle(page)
    tags = page.locator('[data-testid="alert-item"] [data-testid="alert-party"]')
    shown = sorted(tags.nth(i).inner_text() for i in range(tags.count()))
    assert shown == sorted(a.party for a in expected)
    for party in ("caller", "counsellor"):
        assert st["parties"][party]["alerts"] == sum(1 for a in expected if a.party == party)
    # Each party's recording plays in its lane.
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid=party-audio]')].every(a => a.src.startsWith('blob:') && !a.hidden)""",
        timeout=15_000,
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-parties.png"), full_page=True)
    assert not page.errors, page.errors

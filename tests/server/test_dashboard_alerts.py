"""The dashboard's alert queue, acknowledgements, filters and alert-first order (real Chromium, real server).

A native client streams real espeak speech into the real server running the PLANTED fear/disgust
model, which raises flagged transitions, reviews and dual-emotion reports; headless Chromium
(Debian `chromium`, driven by playwright) watches the monitor feed (docs/monitor.md). Screenshots
go to tests/artifacts/dashboard-alerts*.png.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from bench.dashboard_perf import LiveCalls
from server_harness import start_server
from stream.server.alerts import alerts_in
from test_dashboard import ARTIFACTS, TOKEN, browser, open_dashboard, settle, speech_wav, state  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def planted_server(planted_model_dir, tmp_path_factory):
    running = start_server(planted_model_dir, tmp_path_factory.mktemp("dash-alerts"), token=TOKEN)
    yield running
    running.stop()


@pytest.fixture()
def pages(browser):  # noqa: F811
    """Make dashboards, each in its own browser context (as on two supervisors' screens)."""
    contexts = []

    def make():
        # Playwright's string predicates need eval, which the dashboard's CSP forbids (test_dashboard.py).
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
        contexts.append(context)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.errors = errors
        return page

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def alert_pcm(alert_speech):
    return (np.clip(alert_speech.samples, -1, 1) * 32767).astype(np.int16).tobytes()


async def _stream(server, pcm: bytes, session_id: str, metadata: dict | None, pace: float) -> list[dict]:
    """One native session (0.1 s messages every `pace` seconds); returns what the client received."""
    messages: list[dict] = []
    async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers, max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
                                  "session_id": session_id, "metadata": metadata or {}}))
        for i in range(0, len(pcm), 3200):
            await ws.send(pcm[i : i + 3200])
            await asyncio.sleep(pace)
        await ws.send(json.dumps({"type": "stop"}))
        async for raw in ws:
            messages.append(json.loads(raw))
    return messages


def stream_alerts(server, pcm: bytes, session_id: str, metadata: dict | None = None, pace: float = 0.1):
    """Stream the alert speech as one session; its messages and the alerts the server raised from them."""
    with ThreadPoolExecutor(1) as pool:  # playwright's sync API owns this thread's event loop
        messages = pool.submit(asyncio.run, _stream(server, pcm, session_id, metadata, pace)).result()
    assert messages[-1]["type"] == "summary"
    expected = alerts_in(session_id, [m for m in messages if m["type"] not in ("ready", "summary", "error")])
    return messages, expected


def wait_open(page, ids: list[str], timeout: float = 30_000) -> None:
    page.wait_for_function("ids => ids.every(id => window.emostreamState.openAlerts.includes(id))",
                           arg=ids, timeout=timeout)


def test_alert_queue_shows_flagged_transition_review_and_dual_report(pages, planted_server, alert_pcm):
    page = pages()
    open_dashboard(page, planted_server)
    _, expected = stream_alerts(planted_server, alert_pcm, "planted-dash")
    kinds = Counter(a.kind for a in expected)
    assert kinds["flagged"] and kinds["review"] and kinds["dual"], kinds

    wait_open(page, [a.id for a in expected])
    settle(page)
    items = page.get_by_test_id("alert-item")
    shown = {items.nth(i).get_attribute("data-alert-id"): items.nth(i) for i in range(items.count())}
    assert set(shown) == {a.id for a in expected}  # every alert the server raised, each once
    for a in expected:
        item = shown[a.id]
        assert item.locator(".alert-kind").inner_text().lower() == a.kind
        assert item.locator(".alert-text").text_content() == a.text
        assert "planted-dash" in item.locator(".alert-where").inner_text()
        assert item.get_by_test_id("ack-button").is_visible()
    assert page.get_by_test_id("alert-count").inner_text() == str(len(expected))
    # Newest first.
    ats = [state(page)["openAlerts"].index(a.id) for a in expected]
    assert ats == sorted(ats, reverse=True)
    # The call's row counts its open alerts (the session ended: it stays listed, alerts first).
    page.wait_for_function(
        """n => { const s = window.emostreamState.sessions['planted-dash'];
                  return s && !s.live && s.openAlerts === n && s.alerts === n; }""",
        arg=len(expected), timeout=10_000)
    settle(page)
    row = page.locator('[data-testid="session-item"][data-session-id="planted-dash"]')
    assert f"⚑ {len(expected)}/{len(expected)}" in row.get_by_test_id("row-alerts").inner_text()
    # The red banner says the model is planted: these alerts are not emotion recognition.
    banner = page.get_by_test_id("random-weights-banner")
    assert banner.is_visible() and "PLANTED weights (fear-disgust)" in banner.inner_text()

    items.first.get_by_test_id("alert-open").click()  # an alert selects its call: the timeline draws it with the flags
    page.wait_for_function("window.emostreamState.selected === 'planted-dash'", timeout=10_000)
    page.wait_for_function("document.querySelector('[data-testid=timeline]').dataset.drawn === 'true'", timeout=10_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-alerts.png"), full_page=True)
    assert not page.errors, page.errors


def test_acknowledgement_shows_on_a_second_dashboard_within_a_second(pages, planted_server, alert_pcm):
    first, second = pages(), pages()
    open_dashboard(first, planted_server)
    open_dashboard(second, planted_server)
    _, expected = stream_alerts(planted_server, alert_pcm, "planted-ack", pace=0.02)
    ids = [a.id for a in expected]
    wait_open(first, ids)
    wait_open(second, ids)
    target = ids[0]
    # Open alerts of every call count, ended ones' too (earlier tests' calls: GET /api/alerts at connect).
    counts = {}
    for page in (first, second):
        settle(page)
        counts[id(page)] = int(page.get_by_test_id("alert-count").inner_text())
    assert counts[id(first)] == counts[id(second)] >= len(ids)

    item = first.locator(f'[data-testid="alert-item"][data-alert-id="{target}"]')
    item.get_by_test_id("ack-button").click()
    item.get_by_test_id("ack-note").fill("called back, caller safe")
    item.get_by_test_id("ack-assignee").fill("Sam")
    started = time.monotonic()
    item.get_by_test_id("ack-submit").click()
    second.wait_for_function(
        """id => { const s = window.emostreamState;
                   return s.ackedAlerts.includes(id) && !s.openAlerts.includes(id)
                     && !document.querySelector(`[data-testid="alert-item"][data-alert-id="${CSS.escape(id)}"]`)
                     && !!document.querySelector(`[data-testid="acked-item"][data-alert-id="${CSS.escape(id)}"]`); }""",
        arg=target, timeout=1_000)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, elapsed

    for page in (first, second):  # both screens: out of the queue, into "recently acknowledged", with the note
        page.wait_for_function("id => window.emostreamState.ackedAlerts.includes(id)", arg=target, timeout=5_000)
        settle(page)
        info = page.locator(f'[data-testid="acked-item"][data-alert-id="{target}"]').get_by_test_id("ack-info")
        text = info.text_content()
        assert "called back, caller safe" in text and "Sam" in text
        assert page.get_by_test_id("alert-count").inner_text() == str(counts[id(page)] - 1)
        page.wait_for_function("n => window.emostreamState.sessions['planted-ack'].openAlerts === n",
                               arg=len(ids) - 1, timeout=5_000)
    # Acknowledging again returns the first acknowledgement.
    again = httpx.post(f"{planted_server.http}/api/alerts/{target.replace('#', '%23')}/ack",
                       json={"note": "second try", "assignee": None}, headers=planted_server.headers)
    assert again.status_code == 200, again.text
    assert again.json()["ack"]["note"] == "called back, caller safe"
    assert again.json()["ack"]["assignee"] == "Sam"
    ARTIFACTS.mkdir(exist_ok=True)
    second.screenshot(path=str(ARTIFACTS / "dashboard-alerts-acknowledged.png"), full_page=True)
    assert not first.errors and not second.errors, (first.errors, second.errors)


def _wait_listed(page, wanted: set[str], timeout: float = 5_000) -> None:
    page.wait_for_function("ids => { const o = window.emostreamState.order; return o.length === ids.length && ids.every(i => o.includes(i)); }",
                           arg=sorted(wanted), timeout=timeout)


def test_filters_and_alert_first_order(pages, planted_server, alert_pcm):
    page = pages()
    open_dashboard(page, planted_server)

    def metadata(i: int) -> dict:
        return {"line": str(i), "queue": ("adults", "youth")[i % 2], "counsellor": f"c{i}", **({"replay": True} if i == 5 else {})}

    def fields(i: int) -> dict:
        if i == 3:  # a split call: two parties
            return {"channels": 2, "split_channels": True, "parties": ["caller", "counsellor"]}
        return {"context": "night shift"} if i in (1, 2) else {}

    with LiveCalls(planted_server.ws, 8, token=TOKEN, prefix="quiet", metadata=metadata, start_fields=fields) as floor:
        assert len(floor.ids) == 8, floor.failed
        quiet = set(floor.ids)
        page.wait_for_function("ids => ids.every(id => (window.emostreamState.sessions[id] || {}).live)",
                               arg=sorted(quiet), timeout=15_000)
        _, expected = stream_alerts(planted_server, alert_pcm, "planted-sort", {"line": "99", "queue": "youth"}, pace=0.02)
        page.wait_for_function(
            """n => { const s = window.emostreamState;
                      return s.order[0] === 'planted-sort' && s.sessions['planted-sort'].openAlerts === n; }""",
            arg=len(expected), timeout=15_000)
        settle(page)
        # On screen too: the top row is the call with open alerts, marked as such.
        top = page.evaluate("""() => [...document.querySelectorAll('[data-testid=session-item]')]
            .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)[0].dataset.sessionId""")
        assert top == "planted-sort"
        row = page.locator('[data-testid="session-item"][data-session-id="planted-sort"]')
        assert "has-open" in row.get_attribute("class")
        # Metadata the caller sent, as "k: v".
        assert "line: 3 · queue: youth · counsellor: c3" in page.locator(
            '[data-testid="session-item"][data-session-id="quiet-00003"]').get_by_test_id("session-meta").inner_text()

        # Text: ids, context and metadata values.
        page.get_by_test_id("filter-text").fill("c3")
        _wait_listed(page, {"quiet-00003"})
        page.get_by_test_id("filter-text").fill("quiet-0000")
        _wait_listed(page, quiet)
        page.get_by_test_id("filter-text").fill("")
        # Metadata key=value.
        page.get_by_test_id("filter-meta").fill("queue=adults")
        _wait_listed(page, {"quiet-00000", "quiet-00002", "quiet-00004", "quiet-00006"})
        page.get_by_test_id("filter-meta").fill("line=99")
        _wait_listed(page, {"planted-sort"})
        page.get_by_test_id("filter-meta").fill("")
        # Alert kind.
        page.get_by_test_id("filter-alert").select_option("flagged")
        _wait_listed(page, {"planted-sort"})  # the quiet calls raised none
        page.get_by_test_id("filter-alert").select_option("")
        # Party.
        page.get_by_test_id("filter-party").select_option("counsellor")
        _wait_listed(page, {"quiet-00003"})
        page.get_by_test_id("filter-party").select_option("")
        # Context / profile.
        page.get_by_test_id("filter-context").fill("night")
        _wait_listed(page, {"quiet-00001", "quiet-00002"})
        page.get_by_test_id("filter-clear").click()
        page.wait_for_function("n => window.emostreamState.order.length >= n", arg=len(quiet) + 1, timeout=5_000)
        # Ended calls can be hidden.
        page.get_by_test_id("filter-ended").uncheck()
        page.wait_for_function("() => !window.emostreamState.order.includes('planted-sort')", timeout=5_000)
        page.get_by_test_id("filter-ended").check()

        # A replayed recording says so in its row and in its detail.
        settle(page)
        replay = page.locator('[data-testid="session-item"][data-session-id="quiet-00005"]')
        assert "REPLAY — not a live call" in replay.get_by_test_id("replay-badge").inner_text()
        replay.click()
        page.wait_for_function("window.emostreamState.selected === 'quiet-00005'", timeout=5_000)
        page.get_by_test_id("detail-replay").wait_for(state="visible", timeout=5_000)  # drawn at the next frame
        assert "REPLAY — not a live call" in page.get_by_test_id("detail-replay").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-alerts-filters.png"), full_page=True)

        # Once its alerts are acknowledged (here through the API), the call leaves the top.
        for a in expected:
            r = httpx.post(f"{planted_server.http}/api/alerts/{a.id.replace('#', '%23')}/ack",
                           json={"note": None, "assignee": None}, headers=planted_server.headers)
            assert r.status_code == 200, r.text
        page.wait_for_function(
            """() => { const s = window.emostreamState;
                       return s.sessions['planted-sort'].openAlerts === 0 && s.order[0] !== 'planted-sort'; }""",
            timeout=5_000)
    assert not page.errors, page.errors

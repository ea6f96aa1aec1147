"""The dashboard with a floor of calls: hundreds of live calls, only the visible rows drawn; history pages.

Hundreds of real native /ws/stream sessions (a start, a little silence, held open) on the real
server; headless Chromium (Debian `chromium`, driven by playwright) watches the monitor feed. The
call list must keep only the rows on screen in the DOM, follow starts and ends from the feed
without ever re-reading the session list, and the history search must page through
`GET /api/sessions` with `next_cursor`. The performance probe of bench/dashboard_perf.py runs once
here, briefly, so a benchmark can rely on it.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect

from bench.dashboard_perf import LiveCalls, measure_dashboard
from server_harness import start_server
from test_dashboard import (  # noqa: F401  (fixtures)
    ARTIFACTS, CHROMIUM, TOKEN, browser, open_dashboard, page, session_list_requests, settle, speech_wav, state,
)

CALLS = 320
MAX_ROWS = 60  # what "only the visible rows" may mean at a 1000 px tall window
HISTORY = 60  # recorded sessions for the history search: more than one page of 50


@pytest.fixture(scope="module")
def floor_server(tiny_model_dir, tmp_path_factory):
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("dash-floor"), "--max-sessions", str(CALLS + 40),
                           token=TOKEN)
    yield running
    running.stop()


def rows(page) -> int:
    return page.locator('[data-testid="session-item"]').count()


def test_hundreds_of_live_calls_render_only_the_visible_rows(page, floor_server):  # noqa: F811
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_dashboard(page, floor_server)
    with LiveCalls(floor_server.ws, CALLS, token=TOKEN, prefix="floor") as floor:
        assert len(floor.ids) == CALLS, floor.failed[:3]
        page.wait_for_function("n => window.emostreamState.live >= n && window.emostreamState.listed >= n",
                               arg=CALLS, timeout=60_000)
        settle(page)
        shown = rows(page)
        assert 0 < shown <= MAX_ROWS, shown
        # The spacer is as tall as every row: the scroll bar covers the whole floor.
        height = page.evaluate("document.querySelector('[data-testid=session-list]').getBoundingClientRect().height")
        assert height >= CALLS * 60, height

        # Scroll to the end: the last calls are drawn, and still only the visible ones.
        page.evaluate("() => { const el = document.querySelector('[data-testid=call-scroll]'); el.scrollTop = el.scrollHeight; }")
        page.wait_for_function(
            """n => Math.max(...[...document.querySelectorAll('[data-testid=session-list] > li')]
                               .map(li => +li.getAttribute('aria-posinset'))) === n""",
            arg=CALLS, timeout=5_000)
        assert 0 < rows(page) <= MAX_ROWS
        # Every row on screen is really in view of the scroll box (none left stale).
        visible = page.evaluate("""() => { const box = document.querySelector('[data-testid=call-scroll]').getBoundingClientRect();
            return [...document.querySelectorAll('[data-testid=session-item]')].filter(r => {
              const b = r.getBoundingClientRect(); return b.bottom > box.top && b.top < box.bottom; }).length; }""")
        assert visible >= 5
        last = page.locator('[data-testid="session-item"]').last
        sid = last.get_attribute("data-session-id")
        last.click()  # the selected call alone is subscribed to
        page.wait_for_function("sid => (window.emostreamState.sessions[sid] || {}).subscribed === true", arg=sid,
                               timeout=10_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-floor.png"))

        # The performance probe a benchmark uses (bench/dashboard_perf.py), briefly.
        perf = measure_dashboard(floor_server.http, TOKEN, seconds=3, expect_calls=CALLS, chromium=CHROMIUM,
                                 sample_seconds=0.5)
        print("dashboard perf:", json.dumps(perf))
        assert perf["live_calls"] >= CALLS and 0 < perf["rows_max"] <= MAX_ROWS, perf
        assert perf["heap_start"] and perf["heap_max"] >= perf["heap_end"] > 0, perf
        assert isinstance(perf["long_task_max_ms"], float) and not perf["page_errors"], perf

    # Every call ended: the list follows the feed's session_ended.
    page.wait_for_function("window.emostreamState.live === 0", timeout=60_000)
    settle(page)
    assert state(page)["sessions"][sid]["live"] is False
    assert 0 < rows(page) <= MAX_ROWS
    # Starts and ends came through the feed: the page never fetched the session list.
    assert not session_list_requests(requests), session_list_requests(requests)[:5]
    assert not page.errors, page.errors


async def _short_sessions(server, n: int, batch: str) -> list[str]:
    """n sessions that start, send 0.2 s of silence and stop; their ids."""
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> str:
        sid = f"{batch}-{i:03d}"
        async with gate:
            async with connect(f"{server.ws}/ws/stream", additional_headers=server.headers) as ws:
                await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
                                          "session_id": sid, "metadata": {"batch": batch, "n": str(i)}}))
                await ws.send(np.zeros(3200, "<i2").tobytes())
                await ws.send(json.dumps({"type": "stop"}))
                async for raw in ws:
                    if json.loads(raw)["type"] == "summary":
                        break
        return sid

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_history_search_pages_through_next_cursor(page, floor_server):  # noqa: F811
    batch = f"hist{int(time.time()) % 100000}"
    with ThreadPoolExecutor(1) as pool:  # playwright's sync API owns this thread's event loop
        made = set(pool.submit(asyncio.run, _short_sessions(floor_server, HISTORY, batch)).result())
    # The catalog writes off the hot path: wait until the API lists them all.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = httpx.get(f"{floor_server.http}/api/sessions", params={"meta": f"batch={batch}", "limit": 100},
                         headers=floor_server.headers).json()
        if len(body["sessions"]) == HISTORY:
            break
        time.sleep(0.3)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_dashboard(page, floor_server)

    page.get_by_test_id("tab-history").click()
    page.get_by_test_id("history-meta").fill(f"batch={batch}")
    page.get_by_test_id("history-live").select_option("false")
    page.get_by_test_id("history-search").click()
    page.wait_for_function(
        "() => { const h = window.emostreamState.history; return h.status === 'done' && h.count === 50 && h.more; }",
        timeout=15_000)
    items = page.get_by_test_id("history-item")
    assert items.count() == 50
    first = {items.nth(i).get_attribute("data-session-id") for i in range(50)}
    assert first <= made
    more = page.get_by_test_id("history-more")
    assert more.is_visible()
    more.click()
    page.wait_for_function(
        "n => { const h = window.emostreamState.history; return h.status === 'done' && h.count === n && !h.more; }",
        arg=HISTORY, timeout=15_000)
    assert not more.is_visible()
    ids = [items.nth(i).get_attribute("data-session-id") for i in range(items.count())]
    assert len(ids) == HISTORY and set(ids) == made  # every session once, across both pages
    searches = [u for u in session_list_requests(requests) if f"batch%3D{batch}" in u or f"batch={batch}" in u]
    assert len(searches) == 2 and "cursor=" not in searches[0] and "cursor=" in searches[1], searches
    assert all("limit=50" in u and "live=false" in u for u in searches)
    assert f"batch: {batch}" in items.first.inner_text()  # the metadata the caller sent

    # A result opens in the live view's detail, from its recording.
    items.nth(3).click()
    sid = ids[3]
    page.wait_for_function("sid => window.emostreamState.selected === sid", arg=sid, timeout=5_000)
    settle(page)
    assert page.locator("#view-live").is_visible()
    assert page.get_by_test_id("detail-id").inner_text() == sid
    shown = page.get_by_test_id("detail-metadata").inner_text().split("\n")  # a list of terms and values
    assert shown[shown.index("batch") + 1] == batch
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-history.png"))
    assert not page.errors, page.errors


def test_the_page_holds_a_bounded_number_of_open_alerts_and_loads_older_ones_from_the_catalog(page, floor_server,  # noqa: F811
                                                                                             tmp_path):
    """Alerts left unacknowledged for hours never grow the page: beyond the cap they stay in the catalog."""
    from bench.drills import write_drill
    from server_harness import replay_into

    write_drill(tmp_path, "noisy", seconds=12.0, alert_every=0.4)  # 30 alerts
    page.goto(f"{floor_server.http}/#token={TOKEN}&maxOpenAlerts=10")
    page.wait_for_function("window.emostreamState && window.emostreamState.feed.snapshots > 0", timeout=15_000)
    before = len(state(page)["openAlerts"])
    with ThreadPoolExecutor(1) as pool:  # (playwright's own loop runs in this thread)
        pool.submit(replay_into, floor_server, [tmp_path / "noisy"], 4.0).result()
    page.wait_for_function(  # every alert arrived (the feed paces them): 10 held, the rest let go of
        """n => { const el = document.querySelector('[data-testid=alerts-older]');
                  return !el.hidden && el.querySelector('span').textContent.startsWith(`${n} older open alerts`); }""",
        arg=before + 20, timeout=15_000)
    settle(page)
    assert len(state(page)["openAlerts"]) == 10  # the newest, held
    note = page.get_by_test_id("alerts-older")
    note.locator("button").click()
    page.wait_for_function("n => window.emostreamState.openAlerts.length === n", arg=before + 30, timeout=15_000)
    settle(page)
    held = set(state(page)["openAlerts"])
    assert {f"replay-noisy-1#{n}" for n in range(1, 31)} <= held  # every one of the call's alerts, once
    assert note.is_hidden() and not page.errors, page.errors

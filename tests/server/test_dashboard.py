"""The live dashboard (web/) in a real headless Chromium against the real server.

Chromium's fake microphone plays a speech WAV; the page streams it to /ws/stream, follows the
session on /ws/monitor, and the test waits on `window.emostreamState`. Needs the Debian
`chromium` package and playwright from PyPI (never `playwright install`): a missing browser is
a failure, not a skip. A screenshot of the live session goes to tests/artifacts/dashboard.png.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from audio_fixtures import write_wav16
from server_harness import start_server

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # reported as a failure by the `browser` fixture
    PlaywrightTimeout = TimeoutError

CHROMIUM = os.environ.get("EMOSTREAM_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TOKEN = "s3cret"


@pytest.fixture(scope="module")
def speech_wav(speech_silence_speech, tmp_path_factory):
    return write_wav16(tmp_path_factory.mktemp("dash") / "speech.wav", speech_silence_speech.samples)


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    running = start_server(tiny_model_dir, tmp_path_factory.mktemp("dash-server"), token=TOKEN)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(speech_wav):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is required for the dashboard tests: {CHROMIUM} is missing (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright (PyPI) is required for the dashboard tests")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={speech_wav}",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-gpu",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture()
def page(browser):
    # Playwright's string predicates (wait_for_function) need eval, which the dashboard's CSP forbids;
    # test_dashboard_runs_under_its_content_security_policy checks the page itself under the CSP.
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    yield page
    context.close()


def state(page) -> dict:
    return page.evaluate("window.emostreamState")


def open_dashboard(page, server, timeout: float = 15_000) -> None:
    """Load the page with the token and wait for the feed's first snapshot."""
    page.goto(f"{server.http}/#token={TOKEN}")
    page.wait_for_function(
        "window.emostreamState && window.emostreamState.connection === 'open' && window.emostreamState.feed.snapshots > 0",
        timeout=timeout,
    )


def settle(page) -> None:
    """Let the page draw: it renders state changes at the next animation frame."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def session_list_requests(urls: list[str]) -> list[str]:
    """Requests for the whole session list (GET /api/sessions, any query): the page must not poll it."""
    from urllib.parse import urlsplit

    return [u for u in urls if urlsplit(u).path == "/api/sessions"]


def test_microphone_session_live_then_playback(page, server):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    open_dashboard(page, server)
    assert "token=" not in page.url  # the token leaves the address bar

    page.get_by_test_id("mic-button").click()
    page.wait_for_function("window.emostreamState.mic.status === 'streaming'", timeout=15_000)
    sid = state(page)["mic"]["sessionId"]
    assert sid and state(page)["mic"]["sampleRate"] in (8000, 16000, 32000, 44100, 48000)

    page.wait_for_function(
        """sid => { const s = window.emostreamState.sessions[sid];
                    return s && s.live && s.windows > 0 && s.segments >= 1; }""",
        arg=sid,
        timeout=60_000,
    )
    settle(page)
    live = state(page)
    assert live["selected"] == sid
    assert live["sessions"][sid]["subscribed"] is True  # the selected live call's timeline comes through the feed
    assert live["randomWeights"] is True  # the tiny test model has random weights

    item = page.locator(f'[data-testid="session-item"][data-session-id="{sid}"]')
    assert item.is_visible() and "LIVE" in item.inner_text()
    canvas = page.get_by_test_id("timeline")
    assert canvas.get_attribute("data-drawn") == "true"
    assert int(canvas.get_attribute("data-windows")) > 0
    # Something other than the background was painted in the plot area.
    painted = page.evaluate(
        """() => { const c = document.querySelector('[data-testid=timeline]');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i+3] && (d[i] < 200 || d[i+1] < 200)) n++;
                   return n; }"""
    )
    assert painted > 1000
    assert page.get_by_test_id("disclaimer").is_visible()
    assert "never a diagnosis" in page.get_by_test_id("disclaimer").inner_text()
    banner = page.get_by_test_id("random-weights-banner")
    assert banner.is_visible() and "Random weights: these scores are not emotion recognition" in banner.inner_text()
    assert page.get_by_test_id("detail-dominant").inner_text().strip()

    # For a more telling screenshot, give the second utterance a chance to close its segment.
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(
            "sid => window.emostreamState.sessions[sid].segments >= 2", arg=sid, timeout=10_000
        )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.get_by_test_id("mic-button").click()  # stop
    page.wait_for_function(
        """sid => { const s = window.emostreamState.sessions[sid];
                    return s && !s.live && s.status === 'complete' && s.audio; }""",
        arg=sid,
        timeout=20_000,
    )
    assert state(page)["mic"]["status"] == "idle"
    settle(page)
    audio = page.get_by_test_id("session-audio")
    assert audio.is_visible()
    assert (audio.get_attribute("src") or "").startswith("blob:")
    duration = page.wait_for_function(
        """() => { const a = document.querySelector('[data-testid=session-audio]');
                   return a.readyState >= 1 && a.duration > 0 ? a.duration : null; }""",
        timeout=10_000,
    ).json_value()
    assert duration > 1.0
    assert "complete" in page.get_by_test_id("session-summary").inner_text()
    # The call's start and end came through the feed: the page never fetched the session list.
    assert not session_list_requests(requests), session_list_requests(requests)
    assert not page.errors, page.errors

    # The recording on the server is the microphone's audio.
    import httpx

    meta = httpx.get(f"{server.http}/api/sessions/{sid}", headers=server.headers).json()
    assert meta["status"] == "complete" and meta["metadata"]["client"] == "emostream-dashboard"


def test_file_analysis_frame_view(page, server, speech_wav):
    page.goto(f"{server.http}/#token={TOKEN}")
    page.get_by_test_id("tab-analyze").click()
    page.get_by_test_id("analyze-file").set_input_files(str(speech_wav))
    page.get_by_test_id("analyze-granularity").select_option("frame")
    page.locator("#view-analyze").get_by_label("Context").fill("dashboard test")
    page.get_by_test_id("analyze-embedding").check()
    page.get_by_test_id("analyze-submit").click()
    page.wait_for_function("window.emostreamState.analyze.status === 'done'", timeout=30_000)

    st = state(page)["analyze"]
    assert st["windows"] > 0 and st["segments"] >= 2  # two utterances with a pause between
    assert page.get_by_test_id("result-emotion").inner_text().strip()
    assert page.get_by_test_id("result-emoji").inner_text().strip() in "😠🤢😨😊😐🤔😢😲❓"
    assert "confidence" in page.get_by_test_id("result-confidence").inner_text()
    assert page.locator('[data-testid="result-scores"] li').count() == 9
    assert page.locator('[data-testid="segment-row"]').count() == st["segments"]
    assert page.get_by_test_id("analyze-timeline").get_attribute("data-drawn") == "true"
    for name in ("result.json", "embedding.json", "embedding.npy"):
        link = page.get_by_test_id(f"download-{name}")
        assert link.is_visible() and link.get_attribute("href").startswith("blob:")
    # The NPY download is a valid .npy array.
    npy = page.evaluate(
        """async () => { const a = document.querySelector('[data-testid="download-embedding.npy"]');
                         return Array.from(new Uint8Array(await (await fetch(a.href)).arrayBuffer())); }"""
    )
    import io

    import numpy as np

    arr = np.load(io.BytesIO(bytes(npy)))
    assert arr.dtype == np.float32 and arr.ndim in (1, 2) and arr.size > 0
    assert page.get_by_test_id("random-weights-banner").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "analyze.png"), full_page=True)
    assert not page.errors, page.errors


def test_without_token_data_requests_fail_visibly(page, server):
    page.goto(f"{server.http}/")
    page.wait_for_function("window.emostreamState && window.emostreamState.connection === 'unauthorized'", timeout=15_000)
    error = page.get_by_test_id("auth-error")
    assert error.is_visible()
    assert "token" in error.inner_text().lower() and "denied" in error.inner_text().lower()
    assert page.get_by_test_id("disclaimer").is_visible()  # the page itself loads without a token

    # Entering the token recovers without a reload.
    page.get_by_label("Access token").fill(TOKEN)
    page.get_by_role("button", name="Connect").click()
    page.wait_for_function("window.emostreamState.connection === 'open'", timeout=15_000)
    assert not error.is_visible()


def test_dashboard_runs_under_its_content_security_policy(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server.http}/#token={TOKEN}")
        deadline = time.monotonic() + 15
        state = None
        while time.monotonic() < deadline:  # page.evaluate runs through DevTools, outside the page's CSP
            state = page.evaluate("window.emostreamState && window.emostreamState.connection")
            if state == "open":
                break
            time.sleep(0.2)
        assert state == "open" and not violations and not errors, (state, violations, errors)
        # Every view draws under the CSP too: the history search, the filters, the analysis form.
        page.get_by_test_id("tab-history").click()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and page.evaluate("window.emostreamState.history.status") in ("idle", "loading"):
            time.sleep(0.2)
        page.get_by_test_id("tab-live").click()
        page.get_by_test_id("filter-text").fill("nothing-matches-this")
        page.get_by_test_id("filter-clear").click()
        page.get_by_test_id("tab-analyze").click()
        time.sleep(0.5)
        assert not violations and not errors, (violations, errors)
    finally:
        context.close()

"""The dashboard with a floor of live calls: long tasks and JS heap of the real page in Chromium.

`measure_dashboard(url, token, seconds=...)` opens the dashboard (web/) of a running server in
headless Chromium (Debian's `/usr/bin/chromium`, driven by playwright; never `playwright
install`), under the page's own Content-Security-Policy, and for `seconds` records

- long tasks (PerformanceObserver `longtask`, main-thread tasks over 50 ms): count, max, total,
  both over the whole run and after the first snapshot was drawn (the steady state);
- the JS heap (`performance.memory.usedJSHeapSize`, precise with `--enable-precise-memory-info`),
  sampled every `sample_seconds`: start, end, max;
- how many call rows the DOM holds (the list is virtualized: only the visible rows exist) and
  what the monitor feed delivered (messages, bytes, digests).

It scrolls the call list through its whole length and selects a call (which subscribes to its
live timeline) on the way, as a supervisor would. `LiveCalls` opens the calls themselves: N
native `/ws/stream` sessions that send a `start` (with metadata) and, with `speech`, loop that
audio at real time; without it they send a little silence and stay open.

    python -m bench.dashboard_perf --server http://127.0.0.1:7860 --token T --calls 1000 --seconds 30

prints the dict as JSON. Emotion output is decision support for a trained person, never a diagnosis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import threading
import time
from concurrent.futures import Future
from typing import Callable

import numpy as np

CHROMIUM = "/usr/bin/chromium"
RATE = 16_000

# Installed before the page's own script: long tasks from the first one on.
_INIT_SCRIPT = """
(() => {
  const perf = window.__dashboardPerf = { longtasks: [], observer: null };
  try {
    perf.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) perf.longtasks.push([e.startTime, e.duration]);
    });
    perf.observer.observe({ type: "longtask", buffered: true });
  } catch (err) { perf.error = String(err); }
})();
"""

# The heap after a full garbage collection (Chromium's --expose-gc): what the page holds, not what awaits collection.
_LIVE_HEAP = "(() => { if (window.gc) window.gc(); return performance.memory ? performance.memory.usedJSHeapSize : null; })()"

LIVE_HEAP_EVERY = 15.0  # seconds between full collections (each a pause of a few ms)

_SAMPLE = """() => {
  const s = window.emostreamStats || {};  // a few counters: reading them costs the page nothing
  const feed = s.feed || {};
  return {
    heap: performance.memory ? performance.memory.usedJSHeapSize : null,
    rows: document.querySelectorAll('[data-testid="session-item"]').length,
    now: performance.now(),
    connection: s.connection || null, live: s.live || 0, listed: s.listed || 0,
    snapshots: feed.snapshots || 0, messages: feed.messages || 0, bytes: feed.bytes || 0, digests: feed.digests || 0,
  };
}"""


def default_metadata(i: int) -> dict:
    """What a hotline's phone system might send with call i."""
    return {"line": f"line-{i % 12}", "queue": ("adults", "youth", "text-back")[i % 3],
            "counsellor": f"c{i % 40:02d}"}


class LiveCalls:
    """N live native sessions held open in a background thread (its own event loop) until closed.

    `speech`: 16 kHz float32 audio each call loops at real time (offset at random), so the feed
    has windows and digests to carry; None: one chunk of silence, then the call only stays open.
    `metadata(i)`, `start_fields(i)`: call i's start metadata and further start fields (a split
    call's `channels`, `split_channels`, `parties`: it gets silence on every channel).
    """

    def __init__(self, ws_base: str, n: int, *, token: str | None = None, prefix: str = "perf",
                 metadata: Callable[[int], dict] = default_metadata, context: str | None = "hotline",
                 start_fields: Callable[[int], dict] | None = None,
                 speech: np.ndarray | None = None, chunk_seconds: float = 0.5, concurrency: int = 32,
                 open_timeout: float = 120.0):
        self.ws_base = ws_base.rstrip("/")
        self.n = n
        self.token = token
        self.prefix = prefix
        self.metadata = metadata
        self.context = context
        self.start_fields = start_fields or (lambda i: {})
        self.speech = None if speech is None else (np.clip(speech, -1, 1) * 32767).astype("<i2")
        self.chunk = int(chunk_seconds * RATE)
        self.concurrency = concurrency
        self.open_timeout = open_timeout
        self.ids: list[str] = []
        self.failed: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready: Future = Future()

    def __enter__(self) -> LiveCalls:
        self._thread = threading.Thread(target=self._run, name="live-calls", daemon=True)
        self._thread.start()
        self._ready.result(timeout=self.open_timeout + 30)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(60)
            self._thread = None

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.client import connect

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        gate = asyncio.Semaphore(self.concurrency)
        opened = 0
        all_open = asyncio.Event()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}

        async def call(i: int) -> None:
            nonlocal opened
            sid = f"{self.prefix}-{i:05d}"
            try:
                async with gate:
                    ws = await connect(f"{self.ws_base}/ws/stream", additional_headers=headers, max_size=None,
                                       open_timeout=self.open_timeout)
                    start = {"type": "start", "sample_rate": RATE, "encoding": "pcm_s16le", "session_id": sid,
                             "context": self.context, "metadata": self.metadata(i), **self.start_fields(i)}
                    channels = int(start.get("channels") or 1)
                    await ws.send(json.dumps(start))
                    while True:  # up to `ready`
                        msg = json.loads(await ws.recv())
                        if msg.get("type") == "ready":
                            break
                        if msg.get("type") == "error":
                            raise RuntimeError(f"{msg.get('code')}: {msg.get('message')}")
            except Exception as exc:  # noqa: BLE001 - counted and reported
                self.failed.append(f"{sid}: {exc}")
                opened += 1
                if opened >= self.n:
                    all_open.set()
                return
            self.ids.append(sid)
            opened += 1
            if opened >= self.n:
                all_open.set()
            reader = asyncio.create_task(self._drain(ws))
            try:
                if self.speech is None or channels != 1:
                    await ws.send(np.zeros(self.chunk * channels, "<i2").tobytes())
                    await self._stop.wait()
                else:
                    await self._loop_speech(ws)
                await ws.send(json.dumps({"type": "stop"}))
                await asyncio.wait_for(reader, 30)
            except Exception:  # noqa: BLE001 - a call cut at the end of the run
                pass
            finally:
                reader.cancel()
                await ws.close()

        tasks = [asyncio.create_task(call(i)) for i in range(self.n)]
        if self.n == 0:
            all_open.set()
        try:
            await asyncio.wait_for(all_open.wait(), self.open_timeout)
        except asyncio.TimeoutError:
            pass
        self._ready.set_result(len(self.ids))
        await self._stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self, ws) -> None:
        async for _ in ws:
            pass

    async def _loop_speech(self, ws) -> None:
        pcm = self.speech
        pos = random.randrange(0, max(1, len(pcm) - self.chunk))
        step = self.chunk / RATE
        next_at = time.monotonic()
        while not self._stop.is_set():
            chunk = pcm[pos : pos + self.chunk]
            if len(chunk) < self.chunk:
                chunk = np.concatenate([chunk, pcm[: self.chunk - len(chunk)]])
            pos = (pos + self.chunk) % len(pcm)
            await ws.send(chunk.tobytes())
            next_at += step
            delay = next_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass


def measure_dashboard(url: str, token: str | None = None, seconds: float = 30.0, *, expect_calls: int = 0,
                      chromium: str = CHROMIUM, viewport: tuple[int, int] = (1400, 1000),
                      sample_seconds: float = 0.5, scroll: bool = True, select_call: bool = True,
                      connect_timeout: float = 60.0) -> dict:
    """Open the dashboard at `url` for `seconds` after its first snapshot; long tasks, heap, rows, feed.

    `expect_calls`: wait (up to `connect_timeout`) until the page lists that many live calls.
    Returns a dict: live_calls, listed_calls, ready_seconds, long_tasks, long_task_max_ms,
    long_task_total_ms, steady_long_tasks, steady_long_task_max_ms (after the first snapshot was
    drawn), heap_start, heap_end, heap_max (bytes), rows_max, feed_messages_per_s,
    feed_kbytes_per_s, digests, page_errors, observer_error. Runs its own browser in a thread of
    its own, so it may be called while another playwright session holds the caller's thread.
    """
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_measure, url, token, seconds, expect_calls, chromium, viewport, sample_seconds, scroll,
                           select_call, connect_timeout).result()


def _measure(url, token, seconds, expect_calls, chromium, viewport, sample_seconds, scroll, select_call,
             connect_timeout) -> dict:
    from playwright.sync_api import sync_playwright

    page_url = url.rstrip("/") + "/" + (f"#token={token}" if token else "")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-precise-memory-info", "--js-flags=--expose-gc",
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding"])
        try:
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.add_init_script(_INIT_SCRIPT)
            t0 = time.monotonic()
            page.goto(page_url)
            # page.evaluate runs through DevTools, outside the page's CSP (wait_for_function would need eval).
            deadline = t0 + connect_timeout
            sample = page.evaluate(_SAMPLE)
            while time.monotonic() < deadline:
                sample = page.evaluate(_SAMPLE)
                if sample["snapshots"] and sample["live"] >= expect_calls and sample["rows"] > 0 or (
                        sample["snapshots"] and expect_calls == 0):
                    break
                time.sleep(0.05)
            ready_s = time.monotonic() - t0
            live_heaps = [(0.0, page.evaluate(_LIVE_HEAP))]  # (seconds into the run, bytes after a full GC)
            ready_at = page.evaluate("performance.now()")  # (after that collection: its pause is no steady-state task)
            start = sample
            samples = [sample]
            selected = False
            end_at = time.monotonic() + seconds
            n = 0
            while time.monotonic() < end_at:
                time.sleep(sample_seconds)
                n += 1
                if scroll:
                    # Down the list in steps, back to the top at the end: every row gets drawn once.
                    page.evaluate("""k => { const el = document.querySelector('[data-testid="call-scroll"]');
                        if (!el) return; const max = el.scrollHeight - el.clientHeight;
                        el.scrollTop = max > 0 ? (k * el.clientHeight * 0.9) % (max + el.clientHeight) : 0; }""", n)
                if select_call and not selected and n >= 2:
                    rows = page.locator('[data-testid="session-item"]')
                    if rows.count():
                        rows.first.click()
                        selected = True
                samples.append(page.evaluate(_SAMPLE))
                if n % max(1, round(LIVE_HEAP_EVERY / sample_seconds)) == 0:
                    live_heaps.append((round(n * sample_seconds, 1), page.evaluate(_LIVE_HEAP)))
            tasks = page.evaluate("window.__dashboardPerf ? window.__dashboardPerf.longtasks : []")
            observer_error = page.evaluate("window.__dashboardPerf && window.__dashboardPerf.error || null")
            context.close()
        finally:
            browser.close()
    end = samples[-1]
    heaps = [s["heap"] for s in samples if s["heap"] is not None]
    steady = [d for t, d in tasks if t >= ready_at]
    elapsed_ms = max(1.0, end["now"] - start["now"])
    return {
        "url": url,
        "seconds": seconds,
        "live_calls": end["live"],
        "listed_calls": end["listed"],
        "ready_seconds": round(ready_s, 3),
        "long_tasks": len(tasks),
        "long_task_max_ms": round(float(max((d for _, d in tasks), default=0.0)), 1),
        "long_task_total_ms": round(float(sum(d for _, d in tasks)), 1),
        "steady_long_tasks": len(steady),
        "steady_long_task_max_ms": round(float(max(steady, default=0.0)), 1),
        "heap_start": heaps[0] if heaps else None,
        "heap_end": heaps[-1] if heaps else None,
        "heap_max": max(heaps) if heaps else None,
        # After a full collection every LIVE_HEAP_EVERY seconds: what the page really holds, over the run.
        "live_heap": live_heaps,
        "rows_max": max(s["rows"] for s in samples),
        "feed_messages_per_s": round(1000 * (end["messages"] - start["messages"]) / elapsed_ms, 2),
        "feed_kbytes_per_s": round((end["bytes"] - start["bytes"]) / elapsed_ms, 2),  # characters ≈ bytes
        "digests": end["digests"] - start["digests"],
        "page_errors": errors,
        "observer_error": observer_error,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="http://127.0.0.1:7860", help="the running server's http(s) address")
    ap.add_argument("--token", default=None, help="a credential with the watch (and, with --calls, stream) right")
    ap.add_argument("--calls", type=int, default=0, help="open this many live native calls first (0: use the floor as is)")
    ap.add_argument("--speech", default=None, help="a 16 kHz mono WAV each opened call loops at real time (default: silent calls)")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--chromium", default=CHROMIUM)
    args = ap.parse_args(argv)
    speech = None
    if args.speech:
        import wave

        with wave.open(args.speech) as w:
            if w.getframerate() != RATE or w.getsampwidth() != 2:
                raise SystemExit("--speech must be a 16 kHz 16-bit WAV")
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        speech = pcm[:, 0].astype(np.float32) / 32768
    ws_base = "ws" + args.server[4:] if args.server.startswith("http") else args.server
    with LiveCalls(ws_base, args.calls, token=args.token, speech=speech) as floor:
        result = measure_dashboard(args.server, args.token, args.seconds, expect_calls=len(floor.ids),
                                   chromium=args.chromium)
        result["calls_opened"] = len(floor.ids)
        result["calls_failed"] = len(floor.failed)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

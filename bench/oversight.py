"""The supervisor's side at scale: the session catalog, the monitor feed and the dashboard under load.

One command starts what it needs — a tiny random-weight model, a private PostgreSQL (Debian's
binaries), `python server.py` subprocesses on loopback, `emostream replay` load, headless
Chromium — and prints (and saves) one JSON document:

- `queries`: `GET /api/sessions` (and `/api/alerts`) with filters, at `--sessions` catalogued
  sessions, on SQLite and on PostgreSQL: p50/p95/max per query over `--repeats` rounds, while a
  ticker beside a live stream measures how long the server's event loop stalls (WebSocket ping
  round trips every 10 ms on the live stream's socket, the idle round trip subtracted).
- `floor`: `--calls` replayed live calls (bench.drills recordings, looped at real time): what a
  monitor with no subscription receives per second, and Chromium showing the dashboard for
  `--seconds` (bench.dashboard_perf: long tasks, JS heap).
- `rebuild`: `emostream catalog rebuild` seconds per 10,000 recorded sessions, both backends.
- `cpu`: server CPU per replayed live stream, this tree against `--baseline` (a git revision,
  checked out in a temporary worktree), side by side in one run.

    python -m bench.oversight                      # everything, the issue's sizes (about 15 min on 2 cores)
    python -m bench.oversight --stages queries --sessions 20000

Replayed calls carry random-weight events: they load the oversight path, they are not emotion
recognition.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np

from bench.concurrent import _process_cpu_seconds, free_port, process_tree, stop_process
from bench.drills import write_drill
from bench.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench"
STAGES = ("queries", "rebuild", "floor", "cpu")
QUEUES = ("billing", "crisis", "youth", "night", "sms")
PARTIES = (("caller", "agent"), ())
SOURCES = ("native", "twilio")
PROFILES = ("default", "crisis", "medical")
KINDS = ("review", "flagged", "dual", "withheld")


# ---------------------------------------------------------------- servers
class BenchServer:
    """`python server.py` of a source tree on a loopback port, with a token; CPU from /proc."""

    def __init__(self, tree: Path, model_dir: Path, workdir: Path, *extra: str):
        self.port = free_port()
        self.http, self.ws = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}"
        self.recordings = workdir / "recordings"
        self.log = workdir / f"server-{self.port}.log"
        args = [sys.executable, str(tree / "server.py"), "--port", str(self.port), "--model-dir", str(model_dir),
                "--device", "cpu", "--threads", "1", "--recordings", str(self.recordings), "--token", TOKEN,
                "--max-sessions", "2000", "--max-unstarted", "2000", "--measure-processes", "0", *extra]
        env = dict(os.environ, EMOSTREAM_OFFLINE="1", PYTHONPATH=str(tree))
        self.process = subprocess.Popen(args, cwd=tree, env=env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.http + "/healthz", timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.3)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server and the processes below it."""
        return sum(_process_cpu_seconds(pid) for pid in process_tree(self.process.pid))

    def stop(self) -> None:
        """Stop the server (killed after 30 s)."""
        stop_process(self.process, 30)


@contextmanager
def running(*args, **kwargs):
    server = BenchServer(*args, **kwargs)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def replay_load(server: BenchServer, drills: Path, calls: int, ramp: float):
    """`emostream replay --as-many calls --loop` against the server, in its own process."""
    args = [sys.executable, "-m", "stream.cli", "replay", str(drills), "--server", server.ws, "--token", TOKEN,
            "--as-many", str(calls), "--loop", "--no-echo", "--ramp", str(ramp), "-q"]
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_live(server: BenchServer, calls: int, timeout: float) -> int:
    """Wait until about `calls` calls are live (the catalog's count, capped at 500 a page: the feed's snapshot)."""
    async def count() -> int:
        from websockets.asyncio.client import connect

        async with connect(f"{server.ws}/ws/monitor?token={TOKEN}", max_size=None, open_timeout=60) as ws:
            return len(json.loads(await ws.recv())["sessions"])

    deadline = time.monotonic() + timeout
    while True:
        live = asyncio.run(count())
        if live >= calls * 0.98 or time.monotonic() >= deadline:
            return live
        time.sleep(2)


# ---------------------------------------------------------------- a catalog of many sessions
def catalog_records(n: int, seed: int = 0) -> list[tuple[dict, list]]:
    """`n` session.json records over 30 days with parties, metadata, contexts and alerts (some acknowledged)."""
    from stream.server.alerts import Alert

    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        sid = f"s{i:07d}"
        began = start + timedelta(seconds=i * 30 * 86400 / n)
        live = i >= n - 50
        parties = PARTIES[i % 2]
        doc = {"session_id": sid, "status": "live" if live else rng.choice(("complete",) * 8 + ("disconnected", "interrupted")),
               "started_at": began.isoformat(), "sample_rate": 8000, "sample_format": "int16", "audio_kept": True,
               "source": SOURCES[i % 2], "encoding": "mulaw", "channels": len(parties) or 1,
               "context": rng.choice(("crisis line", "follow-up call", "claim", None)), "profile": rng.choice(PROFILES),
               "metadata": {"queue": rng.choice(QUEUES), "counsellor": f"c{rng.randrange(200)}", "line": str(i % 40)},
               "model_id": "bench", "random_weights": True, "record": "audio+events"}  # fmt: skip
        if parties:
            doc["parties"] = list(parties)
        if not live:
            duration = rng.uniform(60, 1800)
            doc.update(ended_at=(began + timedelta(seconds=duration)).isoformat(), duration_seconds=duration, summary={})
        alerts = [Alert(f"{sid}#{k}", sid, k, rng.choice(KINDS), rng.choice(parties) if parties else None,
                        float(10 * k), "bench alert") for k in range(1, 1 + (rng.random() < 0.3) * rng.randrange(1, 4))]
        out.append((doc, alerts))
    return out


async def fill_catalog(url: str, n: int) -> float:
    """Write `n` sessions with their alerts into the catalog at `url` (acknowledging some); seconds taken."""
    from stream.server.catalog import Catalog
    from stream.server.catalog import writes

    began = time.monotonic()
    catalog = await Catalog.open(url)
    try:
        records = catalog_records(n)
        for i in range(0, n, 1000):
            batch = records[i : i + 1000]
            docs = [d for d, _ in batch]
            async with catalog.engine.begin() as conn:
                await writes.write_sessions(conn, docs)
                await writes.write_alerts(conn, {d["session_id"]: a for d, a in batch},
                                          {d["session_id"]: d["started_at"] for d in docs})
                await writes.recount(conn, [d["session_id"] for d in docs])
        for doc, alerts in records[::97]:
            for alert in alerts[:1]:
                await catalog.acknowledge(alert.id, "bench", "seen", None)
        await catalog.analyze()
    finally:
        await catalog.close()
    return time.monotonic() - began


SESSION_QUERIES = {
    "newest page": {},
    "live": {"live": "true"},
    "last week": {"from": "2026-11-24T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
    "status": {"status": "interrupted"},
    "source": {"source": "twilio"},
    "context": {"context": "claim"},
    "profile": {"profile": "medical"},
    "party": {"party": "agent"},
    "alert kind": {"alert": "flagged"},
    "unacknowledged": {"unacknowledged": "true"},
    "metadata": {"meta": "queue=crisis"},
    "two metadata": {"meta": ["queue=crisis", "counsellor=c7"]},
    "combined": {"party": "caller", "meta": "queue=youth", "from": "2026-11-10T00:00:00Z", "unacknowledged": "true"},
    "500 a page": {"limit": "500"},
}
ALERT_QUERIES = {"open alerts": {"state": "open"}, "one kind": {"kind": "dual"},
                 "one session": {"session": "s0012345"}, "time range": {"from": "2026-11-20T00:00:00Z"}}


def _stats(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {"p50_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
            "max_ms": round(ordered[-1], 2), "n": len(ordered)}


async def _ticker(server: BenchServer, stop: asyncio.Event, pcm: np.ndarray) -> list[float]:
    """A live stream at real time; WebSocket pings on its socket every 10 ms: round trips in ms."""
    from websockets.asyncio.client import connect

    rtts: list[float] = []
    async with connect(f"{server.ws}/ws/stream", additional_headers={"Authorization": f"Bearer {TOKEN}"},
                       max_size=None) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le",
                                  "session_id": f"ticker-{time.monotonic_ns()}"}))

        async def drain():
            async for _ in ws:
                pass

        async def feed():
            step, began, k = 1600, time.monotonic(), 0
            while not stop.is_set():
                i = (k * step) % (len(pcm) - step)
                await ws.send(pcm[i : i + step].tobytes())
                k += 1
                await asyncio.sleep(max(0.0, began + k * 0.1 - time.monotonic()))

        tasks = [asyncio.create_task(drain()), asyncio.create_task(feed())]
        while not stop.is_set():
            sent = time.perf_counter()
            pong = await ws.ping()
            await pong
            rtts.append((time.perf_counter() - sent) * 1000)
            await asyncio.sleep(0.01)
        tasks[1].cancel()
        await ws.send(json.dumps({"type": "stop"}))
        await asyncio.gather(*tasks, return_exceptions=True)
    return rtts


async def _query_rounds(server: BenchServer, repeats: int) -> dict:
    out: dict[str, dict] = {}
    async with httpx.AsyncClient(base_url=server.http, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as client:
        for path, queries in (("/api/sessions", SESSION_QUERIES), ("/api/alerts", ALERT_QUERIES)):
            for name, params in queries.items():
                times, cursor = [], None
                for _ in range(repeats):
                    sent = time.perf_counter()
                    response = await client.get(path, params=params | ({"cursor": cursor} if cursor else {}))
                    times.append((time.perf_counter() - sent) * 1000)
                    response.raise_for_status()
                    cursor = response.json()["next_cursor"]  # the next page, as a supervisor scrolls
                out[f"{path} {name}"] = _stats(times)
    return out


def query_stage(backend: str, url: str | None, model_dir: Path, work: Path, sessions: int, repeats: int,
                pcm: np.ndarray) -> dict:
    """p95 of filtered list queries at `sessions` catalogued sessions, and the event loop's stalls meanwhile."""
    work.mkdir(parents=True)
    with running(ROOT, model_dir, work, *(["--catalog", url] if url else [])) as server:
        fill_url = url or str(server.recordings / ".catalog.sqlite3")
        time.sleep(2)  # the start-up reconcile of the empty folder is done: it would drop rows without folders
        filled = asyncio.run(fill_catalog(fill_url, sessions))

        async def measure():
            stop = asyncio.Event()
            idle = asyncio.create_task(_ticker(server, stop, pcm))
            await asyncio.sleep(5)  # the stream alone first: the idle round trip
            queries = await _query_rounds(server, repeats)
            stop.set()
            return queries, await idle

        queries, rtts = asyncio.run(measure())
    calm = sorted(rtts[:200])  # the first seconds: the stream alone
    base = calm[len(calm) // 2] if calm else 0.0
    stalls = [max(0.0, r - base) for r in rtts[200:]]
    worst = max((v["p95_ms"] for k, v in queries.items() if k.startswith("/api/sessions")), default=None)
    return {"backend": backend, "sessions": sessions, "fill_seconds": round(filled, 1), "queries": queries,
            "worst_sessions_p95_ms": worst, "target_p95_ms": 50,
            "loop_stall_ms": {"p50": round(statistics.median(stalls), 2) if stalls else None,
                              "p99": round(sorted(stalls)[int(0.99 * (len(stalls) - 1))], 2) if stalls else None,
                              "max": round(max(stalls), 2) if stalls else None, "pings": len(stalls),
                              "idle_round_trip_ms": round(base, 2), "target_max_ms": 20}}


# ---------------------------------------------------------------- rebuild
REBUILD_SECONDS = 6.0  # each rebuilt session's length: 60 windows a party (a rebuild reads every event)


def rebuild_stage(work: Path, n: int, pg: PostgresCluster) -> dict:
    """Seconds `emostream catalog rebuild` takes for `n` recorded sessions (6 s drills, an alert every 2 s)."""
    recordings = work / "recordings"
    recordings.mkdir(parents=True)
    began = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for i in range(n):
        write_drill(recordings, f"r{i:06d}", seconds=REBUILD_SECONDS, metadata={"queue": QUEUES[i % 5]},
                    parties=PARTIES[i % 2], started=began + timedelta(minutes=i))
    events = sum(1 for folder in recordings.iterdir() for _ in (folder / "events.jsonl").open())
    out = {"sessions": n, "events": events, "seconds_of_events_per_session": REBUILD_SECONDS}
    for backend, url in (("sqlite", None), ("postgresql", pg.create_database("rebuild"))):
        args = [sys.executable, "-m", "stream.cli", "catalog", "rebuild", "--recordings", str(recordings),
                *(["--catalog", url] if url else [])]
        times = []
        for _ in range(2):  # the first indexes everything; the second changes nothing
            sent = time.monotonic()
            subprocess.run(args, cwd=ROOT, check=True, capture_output=True)
            times.append(time.monotonic() - sent)
        out[backend] = {"seconds": round(times[0], 1), "per_10k_seconds": round(times[0] * 10_000 / n, 1),
                        "events_per_second": round(events / times[0]), "again_seconds": round(times[1], 1)}
    return out


# ---------------------------------------------------------------- the floor
def write_drills(folder: Path, count: int = 20) -> Path:
    """`count` recorded calls to replay in a loop: 1 to 2 minutes long, half split, with metadata, an alert
    every 30 to 90 s — at 1,000 calls about 11 starts, 11 ends and 17 alerts a second, windows at 10 a second
    a party: more churn than a real floor, whose calls last minutes."""
    for i in range(count):
        write_drill(folder, f"drill-{i:02d}", seconds=60.0 + 3 * i, alert_every=30.0 + 3 * i, parties=PARTIES[i % 2],
                    metadata={"queue": QUEUES[i % 5], "line": str(i)}, context="crisis line")
    return folder


async def _count_feed(server: BenchServer, seconds: float) -> dict:
    """A monitor with no subscription: messages and bytes per second, after its snapshot."""
    from websockets.asyncio.client import connect

    per_second: dict[int, list[int]] = {}
    async with connect(f"{server.ws}/ws/monitor?token={TOKEN}", max_size=None) as ws:
        snapshot = await ws.recv()
        began = time.monotonic()
        kinds: dict[str, int] = {}
        while time.monotonic() - began < seconds:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.01, began + seconds - time.monotonic()))
            except asyncio.TimeoutError:
                break
            second = int(time.monotonic() - began)
            slot = per_second.setdefault(second, [0, 0])
            slot[0] += 1
            slot[1] += len(raw.encode() if isinstance(raw, str) else raw)
            kind = json.loads(raw).get("type")
            kinds[kind] = kinds.get(kind, 0) + 1
    counts = [per_second.get(s, [0, 0]) for s in range(int(seconds))]
    return {"seconds": int(seconds), "snapshot_bytes": len(snapshot), "snapshot_sessions": len(json.loads(snapshot)["sessions"]),
            "messages_per_second": {"mean": round(statistics.mean(c[0] for c in counts), 2), "max": max(c[0] for c in counts)},
            "bytes_per_second": {"mean": round(statistics.mean(c[1] for c in counts)), "max": max(c[1] for c in counts)},
            "by_type": kinds, "budget": {"messages_per_second": 5, "bytes_per_second": 150_000}}


def floor_stage(model_dir: Path, work: Path, calls: int, seconds: float) -> dict:
    """`calls` replayed live calls: the unsubscribed monitor's traffic, then Chromium on the dashboard."""
    from bench.dashboard_perf import measure_dashboard

    drills = write_drills(work / "drills")
    with running(ROOT, model_dir, work) as server, replay_load(server, drills, calls, ramp=30.0):
        began = time.monotonic()
        live = wait_live(server, calls, timeout=180)
        time.sleep(max(0.0, began + 90 - time.monotonic()))  # calls end and start again by now: the steady state
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        feed = asyncio.run(_count_feed(server, 30.0))
        # Looping replays end and start again: most calls, not all, are live at any moment. First the floor
        # alone (the list scrolled through), then following one call, whose timeline fills for 10 minutes.
        expect = int(calls * 0.8)
        dashboard = measure_dashboard(server.http, TOKEN, seconds, expect_calls=expect, select_call=False)
        following = measure_dashboard(server.http, TOKEN, seconds, expect_calls=expect, select_call=True)
        cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        live_at_end = wait_live(server, calls, timeout=0)
        return {"calls": calls, "live_at_start": live, "live_at_end": live_at_end, "server_cores_busy": round(cpu, 2),
                "monitor": feed,
                "dashboard": dashboard, "dashboard_following_a_call": following}


# ---------------------------------------------------------------- CPU against a baseline
def cpu_stage(model_dir: Path, work: Path, baseline: str, calls: int, seconds: float) -> dict:
    """Server CPU per replayed live call (real time, looping 60 s calls), this tree and `baseline`, alternating."""
    tree = work / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), baseline], check=True,
                   capture_output=True)
    drills = write_drills(work / "drills")
    out: dict[str, list[float]] = {"current": [], "baseline": []}
    try:
        for _ in range(2):
            for name, source in (("baseline", tree), ("current", ROOT)):
                run_dir = work / f"{name}-{len(out[name])}"
                run_dir.mkdir()
                with running(source, model_dir, run_dir) as server, replay_load(server, drills, calls, ramp=10.0):
                    wait_live(server, calls, timeout=120)
                    cpu0, t0 = server.cpu_seconds(), time.monotonic()
                    time.sleep(seconds)
                    out[name].append((server.cpu_seconds() - cpu0) / (time.monotonic() - t0) / calls * 100)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    return {"calls": calls, "seconds": seconds, "baseline": baseline,
            "percent_of_a_core_per_call": {k: [round(v, 3) for v in vs] for k, vs in out.items()},
            "median": {k: round(statistics.median(vs), 3) for k, vs in out.items()}}


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    ap.add_argument("--sessions", type=int, default=100_000, help="catalogued sessions for the query stage")
    ap.add_argument("--repeats", type=int, default=40, help="requests per query")
    ap.add_argument("--rebuild-sessions", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=1000, help="replayed live calls on the floor")
    ap.add_argument("--seconds", type=float, default=60.0, help="Chromium's look at the floor")
    ap.add_argument("--cpu-calls", type=int, default=200, help="replayed live calls for the CPU comparison")
    ap.add_argument("--baseline", default="7687618", help="the git revision to compare CPU with (before the catalog)")
    ap.add_argument("--out", type=Path, default=None, help="where to save the JSON (default: bench/results/)")
    args = ap.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stage(s) {', '.join(sorted(unknown))}")
    from bench.speech import benchmark_audio
    from models.random_weights import write_random_model_dir

    result: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.processor()
                    or platform.machine(), "cpus": os.cpu_count(), "stages": stages}
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="emostream-oversight-"))
        stack.callback(shutil.rmtree, work, True)
        model_dir = write_random_model_dir(work / "model", arch="tiny", seed=0)
        pg = None
        if {"queries", "rebuild"} & set(stages):
            pg = PostgresCluster().start()
            stack.callback(pg.stop)
        if "queries" in stages:
            cache = Path(os.environ.get("EMOSTREAM_BENCH_CACHE", "~/.cache/emostream-bench")).expanduser()
            audio, _, _ = benchmark_audio(cache, 1.0)
            pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
            result["queries"] = [
                query_stage("sqlite", None, model_dir, work / "q-sqlite", args.sessions, args.repeats, pcm),
                query_stage("postgresql", pg.create_database("queries"), model_dir, work / "q-pg", args.sessions,
                            args.repeats, pcm),
            ]
        if "rebuild" in stages:
            result["rebuild"] = rebuild_stage(work / "rebuild", args.rebuild_sessions, pg)
        if "floor" in stages:
            result["floor"] = floor_stage(model_dir, work / "floor", args.calls, args.seconds)
        if "cpu" in stages:
            result["cpu"] = cpu_stage(model_dir, work / "cpu", args.baseline, args.cpu_calls, 30.0)
    text = json.dumps(result, indent=2)
    print(text)
    out = args.out or ROOT / "bench" / "results" / f"oversight-{datetime.now():%Y-%m-%d}-cpu{os.cpu_count()}.json"
    out.write_text(text + "\n")
    print(f"saved {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

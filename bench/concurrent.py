"""How many live streams one emostream server keeps in real time, per model architecture.

    PYTHONPATH=. python -m bench.concurrent [--archs base large] [--seconds 30] [--dtype float32] [--json OUT]

For each architecture the benchmark starts `python server.py` as a subprocess (its own port, its
recordings in a temporary folder; with `--ray`, `python server.py --ray`: a local Ray with
`--ingress-replicas` and `--scorer-replicas`, its CPU and memory counted over the whole process tree) and then runs N = 1, 2, 3, ... concurrent WebSocket clients on
`/ws/stream`. Each client streams `--seconds` of espeak-ng speech at real-time pace (0.1 s
messages every 0.1 s, paced against a monotonic clock), then `stop`, and waits for its `summary`.

Per `window` event the latency is the time the event arrived minus the time the client sent the
audio message holding the window's last sample (both on the client's monotonic clock). N is
"real time" when no `overload` arrived, every client got its `summary`, the p95 latency (after
`--warmup` seconds of stream time) is at most `--max-p95` and it does not grow over the run (p95
of the last third minus p95 of the first third at most `--max-growth`). The sweep stops at the
first N that is not real time, or at `--max-n`. A failing N is retried (`--retries`, default 1;
real time if one attempt passes, all reported). Before each run the benchmark waits for other
processes to leave the CPU (`--max-foreign`, `--idle-wait`); a failure while they took more than
`--max-foreign` cores is repeated without counting.

The server runs a full-size emotion2vec+ architecture with RANDOM weights (no weights can be
downloaded here): the compute is identical to the real checkpoints, the scores mean nothing.
Only time and memory are measured. The clients run in this process, on the same machine as the
server, and share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.throughput import _fmt, cpu_name, log, random_model_dir

RANDOM_BANNER = (
    "RANDOM WEIGHTS: the server runs full-size emotion2vec+ architectures with random weights.\n"
    "The emotion scores mean nothing; only latency, throughput and memory are measured."
)
RATE = 16_000
ROOT = Path(__file__).resolve().parent.parent


# ---- the server process -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes on the machine have used (from /proc/stat, minus idle/iowait)."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return (sum(ticks) - ticks[3] - ticks[4]) / _clock_ticks()
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class Server:
    """`python server.py` in a subprocess: start, wait for /healthz, RSS, CPU, /metrics, stop."""

    def __init__(self, model_dir: Path, args, workdir: Path):
        self.port = free_port()
        self.recordings = workdir / "recordings"
        self.log_path = workdir / "server.log"
        cmd = [
            sys.executable, str(ROOT / "server.py"),
            "--model-dir", str(model_dir), "--device", args.device, "--port", str(self.port),
            "--recordings", str(self.recordings), "--dtype", args.dtype,
        ]
        for opt in ("threads", "max_batch", "max_wait_ms", "max_pending"):
            value = getattr(args, opt)
            if value is not None:
                cmd += [f"--{opt.replace('_', '-')}", str(value)]
        stream_port = self.port
        if args.ray:
            cmd += ["--ray", "--ingress-replicas", str(args.ingress_replicas), "--scorer-replicas", str(args.scorer_replicas)]
            if args.ingress_port:  # streams go straight to the ingress replicas, not through Serve's proxy
                stream_port = free_port()
                cmd += ["--ingress-port", str(stream_port)]
        cmd += args.server_option
        self.cmd = cmd
        self.tree = args.ray  # Ray runs the replicas in worker processes below the server process
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop(), after the process)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{stream_port}/ws/stream"

    def wait_ready(self, timeout: float = 600.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        """The server process, and with --ray every process below it (Ray's daemons and replicas)."""
        return process_tree(self.proc.pid) if self.tree else [self.proc.pid]

    def rss_bytes(self) -> int | None:
        """The server's resident set size (summed over its processes), from /proc/PID/status (VmRSS)."""
        total = None
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total = (total or 0) + int(line.split()[1]) * 1024
            except (OSError, ValueError):
                pass
        return total

    def cpu_by_process(self) -> dict[str, float]:
        """CPU seconds per process title (Ray names its workers `ray::<actor>`): where the cores go."""
        out: dict[str, float] = {}
        for pid in self.pids():
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            name = title.split("/")[-1].split(" ")[0] if not title.startswith("ray::") else title.split(" ")[0]
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _clock_ticks()
        return out

    def cpu_seconds(self, children: bool = True) -> float | None:
        """User + system CPU seconds of the server process (all its threads) and, unless `children`
        is False, every live process below it (the decision layer's measuring processes; Ray's)."""
        pids = process_tree(self.proc.pid) if children else [self.proc.pid]
        total = sum(_process_cpu_seconds(pid) for pid in pids)
        return total if total or self.proc.poll() is None else None

    def metrics(self) -> dict[str, float]:
        """The Prometheus exposition as {'name{labels}': value} (counters, gauges, histograms)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^(\S+?(?:\{.*\})?)\s+(\S+)$", line)
            if m:
                try:
                    out[m.group(1)] = float(m.group(2))
                except ValueError:
                    pass
        return out

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM: uvicorn stops like on Ctrl-C; SIGINT may be ignored in
        background jobs), killed after 20 s."""
        stop_process(self.proc, 90 if self.tree else 20)  # Serve and a local Ray take a while to stop
        self._log.close()


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM `proc` and wait for it; SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def process_tree(root: int) -> list[int]:
    """`root` and every live process below it (from /proc's parent ids)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process; 0 when it has just exited (a child's time then
    moves to its parent's cutime, which this does not read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _clock_ticks()


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU seconds of each thread of process `pid` (/proc/PID/task/TID/stat)."""
    out = {}
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return out
    for tid in tids:
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[tid] = (int(fields[11]) + int(fields[12])) / _clock_ticks()
    return out


def split_server_cpu(pid: int, before: dict[int, float], after: dict[int, float]) -> tuple[float, float]:
    """(event-loop thread, every other thread) CPU seconds of the server process between two samples.

    The server's main thread runs the event loop and the pipeline (VAD, windows, events, the
    recording); its other threads are the forward's (asyncio.to_thread) and torch's intra-op
    threads, whatever their number, plus the measuring pool's feeder threads (pickling segments
    for it: small): measured, never estimated, so neither part can go negative. (Threads that
    ended between the samples are lost; a thread started since counts from 0.)
    """
    main = max(0.0, after.get(pid, 0.0) - before.get(pid, 0.0))
    others = sum(max(0.0, cpu - before.get(tid, 0.0)) for tid, cpu in after.items() if tid != pid)
    return main, others


def metric_delta(before: dict, after: dict, name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def histogram_quantile(before: dict, after: dict, name: str, q: float) -> float | None:
    """Upper bucket bound holding the q-quantile of a histogram's observations between scrapes."""
    buckets = []
    for key, value in after.items():
        m = re.match(rf'^{name}_bucket\{{le="([^"]+)"\}}$', key)
        if m:
            buckets.append((float(m.group(1)), value - before.get(key, 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    target = q * buckets[-1][1]
    for bound, count in buckets:
        if count >= target:
            return bound
    return None


# ---- one client ---------------------------------------------------------------------------------
async def client(k: int, url: str, pcm: bytes, chunk_bytes: int, message_seconds: float,
                 drain_timeout: float) -> dict:
    """Stream `pcm` at real-time pace, collect every server message with its arrival time."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    n_messages = math.ceil(len(pcm) / chunk_bytes)
    sent_at: list[float] = []  # monotonic time just before each audio message was sent
    lag: list[float] = []  # how late each send was against its schedule
    received: list[tuple[float, dict]] = []
    out = {"client": k, "error": None, "close_code": None, "summary": False, "overloads": 0}
    ready = asyncio.Event()
    stop_sent = None
    summary_at = None

    async with connect(url, compression=None, proxy=None, ping_interval=None, max_size=None,
                       open_timeout=30, close_timeout=10) as ws:
        await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "encoding": "pcm_s16le",
                                  "session_id": f"bench-c{k}-{os.getpid()}-{time.time_ns() % 10**9}"}))

        async def receive():
            nonlocal summary_at
            try:
                async for raw in ws:
                    t = time.monotonic()
                    msg = json.loads(raw)
                    received.append((t, msg))
                    kind = msg.get("type")
                    if kind == "ready":
                        out["chunk_mode"] = (msg.get("parameters") or {}).get("chunk_mode")
                        ready.set()
                    elif kind == "overload":
                        out["overloads"] += 1
                    elif kind == "error":
                        out["error"] = f"{msg.get('code')}: {msg.get('message')}"
                        ready.set()
                    elif kind == "summary":
                        out["summary"] = True
                        summary_at = t
            except ConnectionClosed:
                pass

        receiver = asyncio.create_task(receive())
        await asyncio.wait_for(ready.wait(), 60)
        if out["error"] is None:
            t0 = time.monotonic()
            for i in range(n_messages):
                target = t0 + i * message_seconds
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.monotonic()
                sent_at.append(now)
                lag.append(now - target)
                await ws.send(pcm[i * chunk_bytes : (i + 1) * chunk_bytes])
            stop_sent = time.monotonic()
            await ws.send(json.dumps({"type": "stop"}))
        try:
            await asyncio.wait_for(asyncio.shield(receiver), drain_timeout)
        except asyncio.TimeoutError:
            out["error"] = out["error"] or f"no summary {drain_timeout:g} s after stop"
            receiver.cancel()
        out["close_code"] = ws.close_code

    windows = []
    samples_per_message = chunk_bytes // 2
    for t, msg in received:
        if msg.get("type") == "window":
            end_sample = round(float(msg["end"]) * RATE)
            idx = min(max(end_sample - 1, 0) // samples_per_message, len(sent_at) - 1)
            windows.append((float(msg["end"]), t - sent_at[idx]))
    out.update(
        windows=windows,
        events={},
        messages_sent=len(sent_at),
        max_send_lag=max(lag) if lag else None,
        drain_seconds=(summary_at - stop_sent) if (summary_at and stop_sent) else None,
    )
    for _, msg in received:
        out["events"][msg.get("type")] = out["events"].get(msg.get("type"), 0) + 1
    return out


async def run_clients(server: Server, audio: np.ndarray, n: int, args) -> tuple[list[dict], dict]:
    """N clients at once, the server's RSS sampled meanwhile; returns (clients, samples)."""
    chunk = round(args.message_seconds * RATE)
    length = round(args.seconds * RATE)
    pcms = []
    for k in range(n):
        start = 0 if args.aligned else round(k * args.offset_seconds * RATE) % len(audio)
        piece = np.roll(audio, -start)[:length]
        pcms.append(np.clip(np.round(piece * 32768.0), -32768, 32767).astype("<i2").tobytes())

    rss: list[int] = []
    done = asyncio.Event()

    async def sample_rss():
        while not done.is_set():
            value = server.rss_bytes()
            if value is not None:
                rss.append(value)
            try:
                await asyncio.wait_for(done.wait(), args.rss_interval)
            except asyncio.TimeoutError:
                pass

    sampler = asyncio.create_task(sample_rss())
    t0 = time.monotonic()
    results = await asyncio.gather(
        *(client(k, server.ws_url, pcms[k], 2 * chunk, args.message_seconds, args.drain_timeout) for k in range(n)),
        return_exceptions=True,
    )
    wall = time.monotonic() - t0
    done.set()
    await sampler
    clients = []
    for k, r in enumerate(results):
        if isinstance(r, BaseException):
            clients.append({"client": k, "error": f"{type(r).__name__}: {r}", "summary": False, "overloads": 0,
                            "windows": [], "events": {}, "close_code": None, "max_send_lag": None,
                            "drain_seconds": None, "messages_sent": 0})
        else:
            clients.append(r)
    return clients, {"rss": rss, "wall": wall}


# ---- one N --------------------------------------------------------------------------------------
def p(values, q):
    return float(np.percentile(values, q)) if len(values) else None


def bench_n(server: Server, audio: np.ndarray, n: int, args, idle_rss: int, warm_rss: int) -> dict:
    before = server.metrics()
    threads0 = thread_cpu_seconds(server.proc.pid)
    by0 = server.cpu_by_process() if server.tree else {}
    cpu0, busy0, own0, t0 = server.cpu_seconds(), machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
    clients, samples = asyncio.run(run_clients(server, audio, n, args))
    cpu1, busy1, own1, t1 = server.cpu_seconds(), machine_busy_seconds(), own_cpu_seconds(), time.monotonic()
    threads1 = thread_cpu_seconds(server.proc.pid)
    by1 = server.cpu_by_process() if server.tree else {}
    after = server.metrics()
    wall = t1 - t0

    measured = [(end, lat) for c in clients for end, lat in c["windows"] if end >= args.warmup]
    lat = [x for _, x in measured]
    span = args.seconds - args.warmup
    thirds = [
        [x for end, x in measured if args.warmup + i * span / 3 <= end < args.warmup + (i + 1) * span / 3]
        for i in range(3)
    ]
    p95_first, p95_last = p(thirds[0], 95), p(thirds[2], 95)
    slope = float(np.polyfit([e for e, _ in measured], lat, 1)[0]) if len(measured) > 2 else None
    growth = None if p95_first is None or p95_last is None else p95_last - p95_first
    overloads = sum(c["overloads"] for c in clients)
    summaries = sum(1 for c in clients if c["summary"] and c["close_code"] == 1000)
    errors = [f"client {c['client']}: {c['error']}" for c in clients if c["error"]]
    batches = metric_delta(before, after, "emostream_batch_size_count")
    chunks = metric_delta(before, after, "emostream_batch_size_sum")
    model_seconds = metric_delta(before, after, "emostream_batch_seconds_sum")
    forward_thread_cpu = metric_delta(before, after, "emostream_model_cpu_seconds_total")
    server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    loop_cpu, model_cpu = split_server_cpu(server.proc.pid, threads0, threads1)
    if server.tree:  # Ray: the model runs in the scorer replicas' processes, the pipeline in the ingress ones
        model_cpu = sum(max(0.0, v - by0.get(k, 0.0)) for k, v in by1.items() if "Scorer" in k)
        loop_cpu = None
    pipeline_cpu = None if server_cpu is None else max(0.0, server_cpu - model_cpu)
    foreign = None
    if None not in (busy0, busy1, server_cpu):
        foreign = max(0.0, (busy1 - busy0) - server_cpu - (own1 - own0)) / wall
    peak_rss = max(samples["rss"]) if samples["rss"] else None

    reasons = []
    if overloads:
        reasons.append(f"{overloads} overload message(s)")
    if summaries < n:
        reasons.append(f"{n - summaries} client(s) without summary")
    if errors:
        reasons.append("errors")
    p95 = p(lat, 95)
    if p95 is None:
        reasons.append("no window events")
    elif p95 > args.max_p95:
        reasons.append(f"p95 {p95:.2f} s > {args.max_p95:g} s")
    if growth is not None and growth > args.max_growth:
        reasons.append(f"p95 grew {growth:+.2f} s (first→last third) > {args.max_growth:g} s")

    return {
        "n": n,
        "realtime": not reasons,
        "why_not": reasons,
        "windows": len(lat),
        "windows_all": sum(len(c["windows"]) for c in clients),
        "p50": p(lat, 50),
        "p95": p95,
        "max": max(lat) if lat else None,
        "p95_first_third": p95_first,
        "p95_last_third": p95_last,
        "p95_growth": growth,
        "latency_slope": slope,
        "overloads": overloads,
        "summaries": summaries,
        "errors": errors,
        "wall_seconds": wall,
        "drain_seconds_max": max((c["drain_seconds"] for c in clients if c["drain_seconds"] is not None), default=None),
        "max_send_lag": max((c["max_send_lag"] for c in clients if c["max_send_lag"] is not None), default=None),
        "batches": batches,
        "mean_batch": chunks / batches if batches else None,
        "model_busy": model_seconds / wall if wall else None,
        "server_window_latency_mean": (
            metric_delta(before, after, "emostream_window_latency_seconds_sum")
            / max(metric_delta(before, after, "emostream_window_latency_seconds_count"), 1)
        ),
        "server_window_latency_p95_bucket": histogram_quantile(before, after, "emostream_window_latency_seconds", 0.95),
        "server_overloads": metric_delta(before, after, "emostream_overloads_total"),
        "peak_rss": peak_rss,
        "mean_rss": float(np.mean(samples["rss"])) if samples["rss"] else None,
        "rss_per_stream": (peak_rss - idle_rss) / n if peak_rss is not None and idle_rss else None,
        "rss_per_stream_vs_warm": (peak_rss - warm_rss) / n if peak_rss is not None and warm_rss else None,
        "server_cpu_cores": server_cpu / wall if server_cpu is not None else None,
        # The pipeline (event loop, VAD, windows, decision layer, recording) without the model:
        # server CPU with its children minus the model's threads (split_server_cpu), per stream-second.
        "model_cpu_seconds": model_cpu,
        "forward_thread_cpu_seconds": forward_thread_cpu,
        "pipeline_cpu_ms_per_stream_second": (
            1000 * pipeline_cpu / (n * args.seconds) if pipeline_cpu is not None else None
        ),
        # ... of which in the server process's event-loop thread (the one GIL); the rest ran in its
        # children (the measuring pool). With --measure-processes 0 the measurements run in a
        # thread of the server process and count as the model's here.
        "process_cpu_ms_per_stream_second": (
            1000 * loop_cpu / (n * args.seconds) if loop_cpu is not None else None
        ),
        "server_cpu_cores_by_process": {k: round((v - by0.get(k, 0.0)) / wall, 3) for k, v in by1.items()
                                        if v - by0.get(k, 0.0) > 0.005 * wall},
        "client_cpu_cores": (own1 - own0) / wall,
        "foreign_load_cores": foreign,
        "events": {k: sum(c["events"].get(k, 0) for c in clients) for k in sorted({k for c in clients for k in c["events"]})},
        # sessions per chunk mode (stream.engine.config.CHUNK_MODES): a lone session gets "latency"
        "chunk_modes": {m: sum(1 for c in clients if c.get("chunk_mode") == m)
                        for m in sorted({str(c.get("chunk_mode")) for c in clients})},
        "latencies": [[c["client"], round(end, 3), round(x, 4)] for c in clients for end, x in c["windows"]],
    }


def foreign_load(server: Server, seconds: float) -> float | None:
    """Cores other processes (not the server, not this one) kept busy over the next `seconds`."""
    busy0, srv0, own0, t0 = machine_busy_seconds(), server.cpu_seconds(), own_cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    busy1, srv1, own1, t1 = machine_busy_seconds(), server.cpu_seconds(), own_cpu_seconds(), time.monotonic()
    if None in (busy0, busy1, srv0, srv1):
        return None
    return max(0.0, (busy1 - busy0) - (srv1 - srv0) - (own1 - own0)) / (t1 - t0)


def wait_for_idle(server: Server, args) -> float:
    """Wait (at most --idle-wait s) until other processes use under --max-foreign cores; seconds waited."""
    t0 = time.monotonic()
    while args.idle_wait > 0:
        load = foreign_load(server, 2.0)
        if load is None or load <= args.max_foreign:
            break
        waited = time.monotonic() - t0
        if waited >= args.idle_wait:
            log(f"other processes still use {load:.2f} cores after {waited:.0f} s; going on anyway")
            break
        if waited < 2.5:
            log(f"other processes use {load:.2f} cores; waiting up to {args.idle_wait:g} s for an idle machine")
    return time.monotonic() - t0


def warm_up(server: Server, audio: np.ndarray, seconds: float = 6.0) -> None:
    """One short session streamed as fast as possible, so first-call costs stay out of N = 1."""

    async def go():
        from websockets.asyncio.client import connect

        pcm = np.clip(np.round(audio[: round(seconds * RATE)] * 32768.0), -32768, 32767).astype("<i2").tobytes()
        async with connect(server.ws_url, compression=None, proxy=None, ping_interval=None, max_size=None) as ws:
            await ws.send(json.dumps({"type": "start", "sample_rate": RATE, "encoding": "pcm_s16le"}))
            for i in range(0, len(pcm), 3200):
                await ws.send(pcm[i : i + 3200])
            await ws.send(json.dumps({"type": "stop"}))
            async for raw in ws:
                if json.loads(raw).get("type") == "summary":
                    break

    asyncio.run(asyncio.wait_for(go(), 300))


# ---- one architecture ---------------------------------------------------------------------------
def bench_arch(arch: str, args, audio: np.ndarray, cache_dir: Path) -> dict:
    path = random_model_dir(cache_dir, arch)
    workdir = Path(tempfile.mkdtemp(prefix=f"emostream-concurrent-{arch}-"))
    log(f"{arch}: starting server ({path}, {args.dtype})")
    t_load = time.monotonic()
    server = Server(path, args, workdir)
    out: dict = {"arch": arch, "dtype": args.dtype, "server_cmd": server.cmd[1:], "runs": [], "verdicts": []}
    try:
        health = server.wait_ready()
        out["load_seconds"] = time.monotonic() - t_load
        out["dtype"] = health.get("precision", args.dtype)  # what --dtype auto resolved to
        if not health.get("random_weights"):
            raise RuntimeError(f"{path} is not a random-weight model directory")
        time.sleep(1.0)
        out["idle_rss_after_load"] = idle = server.rss_bytes()
        log(f"{arch}: ready in {out['load_seconds']:.0f} s, idle RSS {idle / 2**20:.0f} MiB; warming up")
        warm_up(server, audio)
        time.sleep(0.5)
        out["idle_rss_after_warmup"] = server.rss_bytes()
        ns = args.ns or range(1, args.max_n + 1)
        for n in ns:
            passed, attempt, failures, disturbed = False, 0, 0, 0
            while True:
                attempt += 1
                again = f" (attempt {attempt})" if attempt > 1 else ""
                waited = wait_for_idle(server, args)
                log(f"{arch}: N = {n}{again}: {n} client(s) x {args.seconds:g} s at real-time pace")
                r = bench_n(server, audio, n, args, idle, out["idle_rss_after_warmup"])
                r["attempt"], r["waited_for_idle_seconds"] = attempt, waited
                out["runs"].append(r)
                log(
                    f"{arch}: N = {n}{again}: p50 {_fmt(r['p50'], '.2f')} s, p95 {_fmt(r['p95'], '.2f')} s, "
                    f"max {_fmt(r['max'], '.2f')} s, p95 growth {_fmt(r['p95_growth'], '+.2f')} s, "
                    f"latency slope {_fmt(r['latency_slope'], '+.3f')} s/s, mean batch {_fmt(r['mean_batch'], '.2f')}, "
                    f"model busy {_fmt(_div(r['model_busy'], 0.01), '.0f')} %, "
                    f"foreign load {_fmt(r['foreign_load_cores'], '.2f')} -> "
                    f"{'real time' if r['realtime'] else 'NOT real time: ' + '; '.join(r['why_not'])}"
                )
                for e in r["errors"][:5]:
                    log(f"  {e}")
                if r["server_cpu_cores_by_process"]:
                    log("  server cores by process: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in sorted(r["server_cpu_cores_by_process"].items(), key=lambda kv: -kv[1])))
                time.sleep(args.pause)
                if r["realtime"]:
                    passed = True
                    break
                if (r["foreign_load_cores"] or 0) > args.max_foreign and disturbed < 2:
                    disturbed += 1  # other processes took the CPU: this failure does not count
                    r["disturbed"] = True
                    log(f"{arch}: other processes used {r['foreign_load_cores']:.2f} cores during that run; not counted, repeating")
                    continue
                failures += 1
                if failures > args.retries:
                    break
            out["verdicts"].append({"n": n, "realtime": passed, "attempts": attempt, "disturbed": disturbed})
            if not passed and not args.ns:
                break
    finally:
        server.stop()
        if server.proc.returncode not in (0, -signal.SIGINT, -signal.SIGTERM, None):
            log(f"{arch}: server exit code {server.proc.returncode}; log tail:\n{server.log_tail()}")
        shutil.rmtree(workdir, ignore_errors=True)
    # largest N such that it and every smaller N tried were real time (in one of their attempts)
    best = reliable = 0
    for v in out["verdicts"]:
        if not v["realtime"]:
            break
        best = v["n"]
    for v in out["verdicts"]:  # ... and on the first attempt
        if not v["realtime"] or v["attempts"] > 1:
            break
        reliable = v["n"]
    out["max_realtime_n"] = best
    out["max_realtime_n_first_attempt"] = reliable
    out["realtime_ns"] = [v["n"] for v in out["verdicts"] if v["realtime"]]
    out["first_not_realtime_n"] = next((v["n"] for v in out["verdicts"] if not v["realtime"]), None)
    return out


# ---- report -------------------------------------------------------------------------------------
def _div(x, d):
    return None if x is None else x / d


def table(res: dict) -> str:
    mib = 2**20
    head = ["N", "real time", "windows", "p50 s", "p95 s", "max s", "p95 1st→3rd third s", "overload",
            "summaries", "mean batch", "model busy", "server CPU", "pipeline CPU ms per stream-s (in the server process)", "client CPU", "peak RSS MiB", "MiB per stream (load / warm)",
            "drain s", "send lag ms", "other load", "chunk modes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in res["runs"]:
        cells = [
            str(r["n"]) + (f" (try {r['attempt']})" if r.get("attempt", 1) > 1 else ""),
            "yes" if r["realtime"] else "**no**",
            str(r["windows"]),
            _fmt(r["p50"], ".2f"),
            _fmt(r["p95"], ".2f"),
            _fmt(r["max"], ".2f"),
            f"{_fmt(r['p95_first_third'], '.2f')} → {_fmt(r['p95_last_third'], '.2f')}",
            "yes" if r["overloads"] else "no",
            f"{r['summaries']}/{r['n']}",
            _fmt(r["mean_batch"], ".2f"),
            f"{_fmt(_div(r['model_busy'], 0.01), '.0f')} %",
            _fmt(r["server_cpu_cores"], ".2f"),
            f"{_fmt(r.get('pipeline_cpu_ms_per_stream_second'), '.1f')} ({_fmt(r.get('process_cpu_ms_per_stream_second'), '.1f')})",
            _fmt(r["client_cpu_cores"], ".2f"),
            _fmt(_div(r["peak_rss"], mib), ".0f"),
            f"{_fmt(_div(r['rss_per_stream'], mib), '.0f')} / {_fmt(_div(r['rss_per_stream_vs_warm'], mib), '.0f')}",
            _fmt(r["drain_seconds_max"], ".1f"),
            _fmt(_div(r["max_send_lag"], 0.001), ".0f"),
            _fmt(r["foreign_load_cores"], ".2f"),
            ", ".join(f"{k} {v}" for k, v in (r.get("chunk_modes") or {}).items()) or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.concurrent", description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", default=["base", "large"], choices=["tiny", "base", "large"])
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16", "int8"],
                    help="passed to the server (the report shows the precision it resolved to)")
    ap.add_argument("--device", default="cpu", help="passed to the server (cpu | cuda[:N] | auto)")
    ap.add_argument("--threads", type=int, default=None, help="server's torch threads (default: the server's own, all cores)")
    ap.add_argument("--max-batch", type=int, default=None, help="passed to the server (its default: 8)")
    ap.add_argument("--max-wait-ms", type=float, default=None, help="passed to the server (its default: 10)")
    ap.add_argument("--max-pending", type=float, default=None, help="seconds of audio; passed to the server (its default: per device)")
    ap.add_argument("--server-option", action="append", default=[], metavar="OPT",
                    help="extra server option, repeatable (e.g. --server-option=--no-focus --server-option=--cues=off)")
    ap.add_argument("--ray", action="store_true", help="run the server as a Ray Serve application (emostream[ray])")
    ap.add_argument("--ingress-replicas", type=int, default=2, help="with --ray: ingress replicas")
    ap.add_argument("--scorer-replicas", type=int, default=1, help="with --ray: scorer replicas")
    ap.add_argument("--ingress-port", action="store_true",
                    help="with --ray: stream to the ingress replicas' shared port instead of Serve's HTTP proxy")
    ap.add_argument("--seconds", type=float, default=30.0, help="audio each client streams per N")
    ap.add_argument("--warmup", type=float, default=5.0, help="stream seconds whose windows are not counted")
    ap.add_argument("--max-n", type=int, default=16, help="stop the sweep here at the latest")
    ap.add_argument("--ns", type=int, nargs="+", default=None, help="run exactly these N (no early stop)")
    ap.add_argument("--retries", type=int, default=1,
                    help="run an N that is not real time again, up to this many times; it counts as real time "
                    "if one attempt is (every attempt is reported)")
    ap.add_argument("--max-p95", type=float, default=None,
                    help="p95 latency bound in s (default: chunk length + 2 s = 4 s)")
    ap.add_argument("--max-growth", type=float, default=0.5,
                    help="allowed rise of the p95 latency from the first to the last third of the run, s")
    ap.add_argument("--offset-seconds", type=float, default=23.0,
                    help="client k streams the recording from k x this offset (wrapping), so streams differ")
    ap.add_argument("--aligned", action="store_true", help="every client streams the same audio from 0 s")
    ap.add_argument("--message-seconds", type=float, default=0.1, help="audio per WebSocket message (and pace)")
    ap.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for `summary` after `stop`")
    ap.add_argument("--rss-interval", type=float, default=0.25, help="server RSS sampling period, s")
    ap.add_argument("--max-foreign", type=float, default=0.25,
                    help="other processes' load (cores) above which a run counts as disturbed: before each run the "
                    "benchmark waits for the load to drop below it, and a disturbed failure is repeated (twice at most)")
    ap.add_argument("--idle-wait", type=float, default=120.0,
                    help="longest wait for an idle machine before each run, s (0: never wait)")
    ap.add_argument("--pause", type=float, default=2.0, help="idle seconds between two N")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated speech")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EMOSTREAM_BENCH_CACHE", "~/.cache/emostream-bench")))
    ap.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write all figures as JSON")
    args = ap.parse_args(argv)
    # `kill PID` ends the run like Ctrl-C: the finally blocks stop the server subprocess
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    from bench.speech import benchmark_audio

    from stream.server.device_policy import policy_for

    chunk_seconds = policy_for(args.device).chunk_seconds  # the server's live chunk on that device
    if args.max_p95 is None:
        args.max_p95 = chunk_seconds + 2.0
    if args.warmup >= args.seconds:
        ap.error("--warmup must be shorter than --seconds")

    t_start = time.perf_counter()
    busy_start, own_start = machine_busy_seconds(), own_cpu_seconds()
    cache_dir = args.cache_dir.expanduser()
    print("=" * 78 + "\n" + RANDOM_BANNER + "\n" + "=" * 78, flush=True)
    audio, wav_path, cached = benchmark_audio(cache_dir, 3.0, args.seed)
    log(f"audio: {wav_path} ({'cached' if cached else 'generated with espeak-ng'})")
    results = [bench_arch(arch, args, audio, cache_dir) for arch in args.archs]
    total = time.perf_counter() - t_start

    import torch
    import websockets

    machine = {
        "date": _dt.date.today().isoformat(),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "device": args.device,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "websockets": websockets.__version__,
        "python": platform.python_version(),
    }
    print(f"\nmachine: {machine['cpu']}, {machine['cores']} cores, device {args.device}, {args.dtype}, "
          f"torch {machine['torch']}, {machine['date']}; the clients run on the same cores as the server")
    print(f"each client: {args.seconds:g} s of espeak-ng speech ({wav_path.name}, "
          f"{'all from 0 s' if args.aligned else f'client k from k x {args.offset_seconds:g} s'}), "
          f"pcm_s16le 16 kHz in {args.message_seconds:g} s messages at real-time pace")
    print(f"latency: window event received - its last sample's message sent (client clock); windows ending "
          f"before {args.warmup:g} s skipped; real time = no overload, all summaries, p95 <= {args.max_p95:g} s, "
          f"p95 growth (last third - first third) <= {args.max_growth:g} s; an N that fails is retried "
          f"{args.retries} time(s) and counts as real time if one attempt passes; failures while other processes "
          f"used over {args.max_foreign:g} cores are repeated without counting")
    print("server defaults unless passed: per device (stream/server/device_policy.py; CPU: --max-batch 8 --max-wait-ms 10 --max-pending 180 s); "
          "model busy = forward-pass seconds / wall seconds; server/client/other CPU in cores (server: with its child "
          "processes); pipeline CPU = (server CPU with its children - the model's threads: the forward's and torch's, measured per thread "
          "in /proc) per stream-second, in brackets the part spent in the server's event-loop thread; MiB per stream = (peak RSS during the run - idle RSS "
          "after model load, or after the warm-up stream) / N")
    if args.server_option:
        print(f"extra server options: {' '.join(args.server_option)}")
    if args.ray:
        print(f"Ray Serve: {args.ingress_replicas} ingress and {args.scorer_replicas} scorer replica(s) on a local Ray; "
              "server CPU and RSS summed over the server's process tree; /metrics come from one ingress replica"
              + ("; streams on the ingress replicas' own port (--ingress-port)" if args.ingress_port else ""))
    for res in results:
        mib = 2**20
        print(f"\n{res['arch']} ({res['dtype']}): server ready in {res['load_seconds']:.0f} s; idle RSS "
              f"{res['idle_rss_after_load'] / mib:.0f} MiB after load, {res['idle_rss_after_warmup'] / mib:.0f} MiB after a warm-up stream")
        print(table(res))
        first_bad = res["first_not_realtime_n"]
        bad = [r for r in res["runs"] if r["n"] == first_bad]
        line = f"=> {res['arch']} {res['dtype']}: largest real-time N = {res['max_realtime_n']}"
        if res["max_realtime_n_first_attempt"] != res["max_realtime_n"]:
            line += f" ({res['max_realtime_n_first_attempt']} without a retry)"
        if bad:
            line += f"; N = {first_bad} is not, in {len(bad)} attempt(s): " + " | ".join("; ".join(r["why_not"]) for r in bad)
        else:
            line += f" (no N up to {res['verdicts'][-1]['n'] if res['verdicts'] else 0} failed)"
        print(line)
    foreign = None
    busy_end = machine_busy_seconds()
    if busy_start is not None and busy_end is not None:
        # whole-run average of everything else but this process and its (reaped) server children
        own = own_cpu_seconds() - own_start
        t = os.times()
        foreign = max(0.0, (busy_end - busy_start) - own - (t.children_user + t.children_system)) / total
    print(f"\ntotal runtime {total:.0f} s; other processes kept {_fmt(foreign, '.2f')} of {os.cpu_count()} cores busy on average")
    loads = [r["foreign_load_cores"] for res in results for r in res["runs"] if r["foreign_load_cores"] is not None]
    if loads and max(loads) > 0.1:
        print(f"WARNING: other processes used up to {max(loads):.2f} cores during some runs ('other load' column): "
              "the server had less CPU than the machine has; repeat on an idle machine for clean figures.")
    print(RANDOM_BANNER.splitlines()[0])
    if args.json:
        doc = {
            "warning": RANDOM_BANNER,
            "machine": machine,
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "audio": str(wav_path),
            "results": results,
            "runtime_seconds": total,
            "foreign_load_cores": foreign,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of emostream's streaming engine against the naive per-window funasr loop.

    PYTHONPATH=. python -m bench.throughput [--archs base large] [--minutes 3] [--rounds 3] [--json OUT]

(a) naive: what a funasr user writes for sliding-window emotion scores: one
    `AutoModel.generate(window)` per 0.4 s window at a 0.1 s hop. Timed on the first
    `--naive-windows` windows and extrapolated.
(b) engine: `stream.engine.analyzer.StreamAnalyzer` over the whole recording, fed in 0.1 s pieces as a
    live client would (and, for comparison, all at once), counting its `window` events; once per
    engine path: a precision (`--dtypes`), and the same through torch.compile (`+compile`).

The machine may be shared, so (a) and every (b) path run in `--rounds` alternating rounds (the
order reversed every other round) and the report gives medians with the spread (min–max over
rounds); the ratio (b)/(a) is taken within each round. The CPU's model and its matrix extensions
(AMX, AVX-512 BF16) are recorded with the figures.

Both use full-size emotion2vec+ architectures with RANDOM weights (no weights can be downloaded
here): the compute is identical to the real checkpoints, the scores mean nothing. Only time is
measured.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

RANDOM_BANNER = (
    "RANDOM WEIGHTS: both sides run full-size emotion2vec+ architectures with random weights.\n"
    "The emotion scores mean nothing; only timing (and FLOPs) are measured."
)
WINDOW_S, HOP_S = 0.4, 0.1
RATE = 16_000
NAIVE_WARMUP = 2


def log(msg: str) -> None:
    """Progress goes to stderr so that stdout holds only the report."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- machine ------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


MATRIX_FLAGS = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx512f")


def cpu_flags() -> dict[str, bool]:
    """Which matrix and vector extensions /proc/cpuinfo lists (AMX tiles, AVX-512 BF16, ...)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    return {f: f in flags for f in MATRIX_FLAGS}


def describe_cpu() -> str:
    """'<model> (AMX bf16/int8, AVX-512 BF16)': the CPU and the matrix units its kernels can use."""
    flags = cpu_flags()
    amx = [k for k in ("bf16", "int8") if flags.get(f"amx_{k}")]
    units = ([f"AMX {'/'.join(amx)}"] if amx and flags.get("amx_tile") else []) + (
        ["AVX-512 BF16"] if flags.get("avx512_bf16") else []) + (["AVX-512"] if flags.get("avx512f") else [])
    return f"{cpu_name()} ({', '.join(units) or 'no AVX-512 or AMX'})"


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: str = "float32", n: int = 2048, repeats: int = 10) -> float:
    """Best-of-`repeats` GFLOP/s of an n x n matmul in `dtype` with torch's current thread count."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device, getattr(torch, dtype))
    b = torch.randn(n, n, generator=gen).to(device, getattr(torch, dtype))
    out = torch.empty(n, n, device=device, dtype=getattr(torch, dtype))
    for _ in range(2):
        torch.matmul(a, b, out=out)
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.matmul(a, b, out=out)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


class CpuLoad:
    """CPU time other processes took while a phase ran (the machine may be shared).

    /proc/stat counts every process on the machine, also those this process cannot see;
    subtracting this process's own CPU time leaves the foreign load, in cores.
    """

    def __init__(self):
        self._start = self._sample()

    @staticmethod
    def _sample():
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
            ticks = [int(v) for v in fields]
            busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait
        except (OSError, ValueError, IndexError):
            busy = None
        own = os.times()
        return busy, own.user + own.system + own.children_user + own.children_system, time.perf_counter()

    def foreign_cores(self) -> float | None:
        """Average number of cores other processes kept busy since construction."""
        busy0, own0, t0 = self._start
        busy1, own1, t1 = self._sample()
        if busy0 is None or busy1 is None or t1 <= t0:
            return None
        return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


# ---- model --------------------------------------------------------------------------------------
def random_model_dir(cache_dir: Path, arch: str) -> Path:
    """A full-size random-weight model directory, written once and reused."""
    from models.loader import REQUIRED_FILES
    from models.random_weights import is_random_model_dir, write_random_model_dir

    path = cache_dir / arch
    if is_random_model_dir(path) and all((path / f).is_file() for f in REQUIRED_FILES):
        return path
    log(f"writing random-weight {arch} model to {path} (once; reused afterwards)")
    tmp = cache_dir / f"{arch}.partial"
    write_random_model_dir(tmp, arch=arch, seed=0)
    if path.exists():
        import shutil

        shutil.rmtree(path)
    tmp.replace(path)
    return path


class TimedScorer:
    """Delegates to a scorer and records each `score` call's input lengths and duration."""

    def __init__(self, scorer, device: str):
        self._scorer = scorer
        self._device = device
        self.calls: list[tuple[tuple[int, ...], float]] = []

    def __getattr__(self, name):
        return getattr(self._scorer, name)

    def score(self, waveforms):
        t = time.perf_counter()
        out = self._scorer.score(waveforms)
        _sync(self._device)
        self.calls.append((tuple(len(w) for w in waveforms), time.perf_counter() - t))
        return out

    @property
    def seconds(self) -> float:
        return sum(s for _, s in self.calls)


def flops_of(fn) -> tuple[int, dict[str, int]]:
    """FLOPs torch's FlopCounterMode counts while `fn()` runs: total and per operator."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    per_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


# ---- (a) naive ----------------------------------------------------------------------------------
def window_starts(n_samples: int) -> range:
    win, hop = round(WINDOW_S * RATE), round(HOP_S * RATE)
    return range(0, n_samples - win + 1, hop)


def run_naive(scorer, audio: np.ndarray, n_windows: int, count_flops: bool = True) -> dict:
    """Time funasr's generate() on the first windows of the recording, one call per window."""
    win = round(WINDOW_S * RATE)
    starts = window_starts(len(audio))
    generate = scorer.auto_model.generate

    def call(s):
        return generate(audio[s : s + win], granularity="utterance", extract_embedding=False, disable_pbar=True)

    for s in starts[:NAIVE_WARMUP]:
        call(s)
    timed = list(starts[NAIVE_WARMUP : NAIVE_WARMUP + n_windows])
    per_call = []
    load = CpuLoad()
    t0 = time.perf_counter()
    for s in timed:
        t = time.perf_counter()
        result = call(s)
        per_call.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    foreign = load.foreign_cores()
    if not (isinstance(result, list) and "scores" in result[0]):
        raise RuntimeError(f"unexpected generate() result: {result!r:.200}")
    rate = len(timed) / wall
    out = {
        "windows_timed": len(timed),
        "warmup_calls": NAIVE_WARMUP,
        "seconds": wall,
        "ms_per_window": 1000 * wall / len(timed),
        "ms_per_window_median": 1000 * float(np.median(per_call)),
        "windows_per_s": rate,
        "windows_in_recording": len(starts),
        "extrapolated_recording_seconds": len(starts) / rate,
        "foreign_load_cores": foreign,
    }
    if count_flops:
        out["flops_per_window"] = flops_of(lambda: call(timed[0]))[0]
    return out


# ---- (b) engine ---------------------------------------------------------------------------------
def run_engine(scorer, audio: np.ndarray, config, feed_samples: int | None, device: str) -> dict:
    """StreamAnalyzer over the whole recording; feed_samples None = all at once."""
    from stream.engine.analyzer import StreamAnalyzer

    timed = TimedScorer(scorer, device)
    analyzer = StreamAnalyzer(timed, config=config, max_batch=1)
    counts: Counter = Counter()
    speech = 0.0

    def tally(events):
        nonlocal speech
        for ev in events:
            counts[ev.type] += 1
            if ev.type == "segment":
                speech += ev.end - ev.start

    load = CpuLoad()
    t0 = time.perf_counter()
    if feed_samples is None:
        tally(analyzer.feed(audio))
    else:
        for i in range(0, len(audio), feed_samples):
            tally(analyzer.feed(audio[i : i + feed_samples]))
    tally(analyzer.flush())
    wall = time.perf_counter() - t0
    foreign = load.foreign_cores()
    duration = len(audio) / RATE
    windows = counts["window"]
    return {
        "feed_seconds": None if feed_samples is None else feed_samples / RATE,
        "seconds": wall,
        "model_seconds": timed.seconds,
        "windows": windows,
        "segments": counts["segment"],
        "events": dict(counts),
        "speech_seconds": speech,
        "windows_per_s": windows / wall,
        "realtime_factor": duration / wall,
        "foreign_load_cores": foreign,
        "chunk_lengths": [n for lengths, _ in timed.calls for n in lengths],
    }


def engine_flops(scorer, lengths: list[int], device: str) -> dict:
    """Exact FlopCounterMode count of one forward per distinct chunk length, times its uses.

    Counted on the float32 scorer (funasr's arithmetic: the same matmuls in every precision; its
    attention runs as counted matmuls, where the fused CPU kernel of the others is not counted)."""
    uses = Counter(lengths)
    total, per_op_total = 0, Counter()
    rng = np.random.default_rng(0)
    for n, k in sorted(uses.items()):
        x = rng.normal(0.0, 0.1, n).astype(np.float32)
        f, per_op = flops_of(lambda x=x: scorer.score([x]))
        total += f * k
        for op, v in per_op.items():
            per_op_total[op] += v * k
    return {"total": total, "distinct_lengths": len(uses), "per_op": dict(per_op_total)}


def _best(fn, device: str, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return min(times)


def front_end_share(scorer, reference, n: int, device: str) -> dict:
    """Time of the scorer's conv front end (models/frontend.py, with the feature projection) vs
    the whole forward on one n-sample chunk; FLOPs from the float32 `reference`."""
    import torch
    import torch.nn.functional as F

    x = np.random.default_rng(1).normal(0.0, 0.1, n).astype(np.float32)
    wav = torch.as_tensor(x, device=device)[None]
    wav = F.layer_norm(wav, wav.shape[-1:])
    with torch.inference_mode():
        front = _best(lambda: scorer.frontend(wav.to(scorer.dtype)), device)
        ref_wav = wav.to(reference.dtype)
        front_flops, _ = flops_of(lambda: reference.frontend(ref_wav))
    whole = _best(lambda: scorer.score([x]), device)
    whole_flops, _ = flops_of(lambda: reference.score([x]))
    return {
        "chunk_samples": n,
        "front_end_seconds": front,
        "total_seconds": whole,
        "front_end_time_share": front / whole,
        "front_end_flop_share": front_flops / whole_flops,
        "front_end_gflops": front_flops / front / 1e9,
        "rest_gflops": (whole_flops - front_flops) / max(whole - front, 1e-9) / 1e9,
        "forward_gflops": whole_flops / whole / 1e9,
    }


def op_shares(scorer, n: int, batch: int = 2, top: int = 6) -> dict:
    """Self-CPU shares of one forward of `batch` n-sample chunks (torch.profiler): aten::copy_ and the top ops."""
    import torch

    xs = [np.random.default_rng(i).normal(0.0, 0.1, n).astype(np.float32) for i in range(batch)]
    scorer.score(xs)
    with torch.profiler.profile() as prof:
        scorer.score(xs)
    totals: Counter = Counter()
    for e in prof.key_averages():
        totals[e.key] += e.self_cpu_time_total
    whole = sum(totals.values()) or 1.0
    return {
        "batch": batch,
        "chunk_samples": n,
        "copy_share": totals.get("aten::copy_", 0.0) / whole,
        "top": [(k, v / whole) for k, v in totals.most_common(top)],
    }


def deviation(scorer, reference, audio: np.ndarray, n: int, count: int = 4) -> dict:
    """Max |utterance-score| and |logit| differences from the float32 `reference` on `count`
    n-sample chunks of the recording, alone and as one batch (as tests/models pins them)."""
    step = max(n, (len(audio) - n) // max(count, 1))
    chunks = [audio[i : i + n] for i in range(0, len(audio) - n + 1, step)][:count]
    ref = [reference.score([c])[0] for c in chunks]
    alone = [scorer.score([c])[0] for c in chunks]
    both = scorer.score(chunks)
    score = max(float(np.abs(reference.utterance_scores(a) - scorer.utterance_scores(b)).max()) for a, b in zip(ref, alone))
    logit = max(float(np.abs(a.logits - b.logits).max()) for a, b in zip(ref, alone))
    batch = max(float(np.abs(a.logits - b.logits).max()) for a, b in zip(alone, both))
    return {"chunks": len(chunks), "chunk_samples": n, "max_score_diff": score, "max_logit_diff": logit,
            "max_logit_diff_batch_vs_alone": batch}


# ---- one architecture ---------------------------------------------------------------------------
def engine_paths(args, device: str) -> list[str]:
    """The engine paths to run: each precision, and the default one again through torch.compile."""
    import torch

    if args.dtypes is None:
        native_bf16 = device.startswith("cuda") or torch.ops.mkldnn._is_mkldnn_bf16_supported()
        args.dtypes = ["float32", "bfloat16"] if native_bf16 else ["float32"]
    paths = list(dict.fromkeys(args.dtypes))
    if not args.no_compile and device == "cpu":
        paths.append(f"{paths[-1]}+compile")
    return paths


def spread(values: list[float]) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "values": []}
    return {"median": float(np.median(v)), "min": float(min(v)), "max": float(max(v)), "values": v}


def bench_arch(arch: str, args, audio: np.ndarray, configs, cache_dir: Path) -> dict:
    import torch

    from models.loader import ModelOptions, load_scorer

    path = random_model_dir(cache_dir, arch)
    log(f"{arch}: loading {path}")
    # float32 explicitly: the naive side runs this model through funasr as funasr does, whatever --dtype auto picks.
    reference = load_scorer(ModelOptions(model_dir=str(path), device=args.device, threads=args.threads, dtype="float32"))
    if not reference.random_weights:
        raise RuntimeError(f"{path} is not a random-weight model directory")
    device = str(reference.device)
    params = sum(p.numel() for p in reference.model.parameters())
    out: dict = {"arch": arch, "params": params, "device": device, "threads": torch.get_num_threads()}

    scorers, compile_seconds = {}, {}
    for name in engine_paths(args, device):
        dtype, _, compiled = name.partition("+")
        if dtype == "float32" and not compiled:
            scorers[name] = reference
            continue
        log(f"{arch}: loading the {name} engine")
        scorers[name] = load_scorer(ModelOptions(model_dir=str(path), device=args.device, threads=args.threads,
                                                 dtype=dtype, compile=bool(compiled)))
        if compiled:
            full = max(c.job_samples for c in configs)
            log(f"{arch}: compiling ({name}; inductor's cache makes later starts faster)")
            compile_seconds[name] = scorers[name].warm_up(full)
            log(f"{arch}: compiled in {compile_seconds[name]:.0f} s")

    n = min(args.naive_windows, len(window_starts(len(audio))) - NAIVE_WARMUP)
    x10 = np.random.default_rng(2).normal(0.0, 0.1, 10 * RATE).astype(np.float32)
    out["gflop_per_audio_second_10s"] = flops_of(lambda: reference.score([x10]))[0] / 10 / 1e9
    feed = round(args.feed_seconds * RATE)
    naive_runs: list[dict] = []
    live: dict[tuple[str, int], list[dict]] = {(name, i): [] for name in scorers for i in range(len(configs))}
    for config in configs:  # warm-up at each path's full-chunk shape
        for scorer in scorers.values():
            for _ in range(2):
                scorer.score([np.zeros(config.job_samples, dtype=np.float32) + 0.01])
    for r in range(args.rounds):
        steps = [("naive", None, None)] + [(name, i, c) for name in scorers for i, c in enumerate(configs)]
        for kind, i, config in (steps if r % 2 == 0 else steps[::-1]):
            if kind == "naive":
                log(f"{arch}: round {r + 1}/{args.rounds}: (a) naive generate() on {n} windows after {NAIVE_WARMUP} warm-up calls")
                naive_runs.append(run_naive(reference, audio, n, count_flops=not naive_runs))
                log(f"{arch}: (a) {naive_runs[-1]['ms_per_window']:.0f} ms per window")
                continue
            tag = f"{kind}, chunk {config.chunk_seconds:g} s, context {config.context_seconds:g} s"
            log(f"{arch}: round {r + 1}/{args.rounds}: (b) engine, {tag}, fed in {args.feed_seconds:g} s pieces")
            run = run_engine(scorers[kind], audio, config, feed, device)
            live[(kind, i)].append(run)
            log(f"{arch}: (b) {run['windows_per_s']:.1f} windows/s, {run['realtime_factor']:.2f}x real time")
    out["naive_rounds"] = naive_runs
    naive = dict(naive_runs[0])
    naive["windows_per_s_spread"] = spread([x["windows_per_s"] for x in naive_runs])
    naive["windows_per_s"] = naive["windows_per_s_spread"]["median"]
    naive["ms_per_window"] = 1000 / naive["windows_per_s"]
    naive["extrapolated_recording_seconds"] = naive["windows_in_recording"] / naive["windows_per_s"]
    naive["foreign_load_cores"] = max((x["foreign_load_cores"] or 0.0) for x in naive_runs)
    naive["achieved_gflops"] = naive["flops_per_window"] * naive["windows_per_s"] / 1e9
    out["naive"] = naive

    lengths_of: dict[int, list[int]] = {}
    out["engine"] = []
    for name, scorer in scorers.items():
        for i, config in enumerate(configs):
            runs = live[(name, i)]
            lengths = runs[0]["chunk_lengths"]
            if i not in lengths_of:
                log(f"{arch}: counting FLOPs of {len(set(lengths))} distinct chunk lengths (float32 path)")
                lengths_of[i] = lengths
                out.setdefault("flops", {})[i] = engine_flops(reference, lengths, device)
            at_once = None
            if not args.skip_at_once:
                log(f"{arch}: (b) engine, {name}, fed at once")
                at_once = run_engine(scorer, audio, config, None, device)
                if at_once["windows"] != runs[0]["windows"]:
                    log(f"WARNING: {at_once['windows']} windows at once vs {runs[0]['windows']} streamed")
                at_once.pop("chunk_lengths")
            for run in runs:
                run.pop("chunk_lengths", None)
            out["engine"].append(summarize(name, config, runs, at_once, naive_runs, out["flops"][i], lengths, audio,
                                           scorer, reference, device, compile_seconds.get(name)))
    return out


def summarize(name, config, runs, at_once, naive_runs, flops, lengths, audio, scorer, reference, device, compile_s):
    """One engine path's figures: medians and spreads over rounds, FLOPs, where the time goes, deviation."""
    duration = len(audio) / RATE
    full = config.job_samples
    rate = spread([x["windows_per_s"] for x in runs])
    ratios = spread([e["windows_per_s"] / a["windows_per_s"] for e, a in zip(runs, naive_runs)])
    median_run = sorted(runs, key=lambda x: x["windows_per_s"])[len(runs) // 2]
    naive_fpw = naive_runs[0]["flops_per_window"]
    log(f"{name}: where the time goes (front end, profile) and deviation from float32")
    return {
        "path": name,
        "dtype": name.partition("+")[0],
        "compiled": "+compile" in name,
        "compile_seconds": compile_s,
        "chunk_seconds": config.chunk_seconds,
        "context_seconds": config.context_seconds,
        "rounds": runs,
        "live": median_run,
        "windows_per_s": rate,
        "realtime_factor": spread([x["realtime_factor"] for x in runs]),
        "at_once": at_once,
        "chunks": len(lengths),
        "full_chunks": sum(1 for n_ in lengths if n_ == full),
        "mean_chunk_seconds": float(np.mean(lengths)) / RATE,
        "flops": flops,
        "gflop_per_audio_second": flops["total"] / duration / 1e9,
        "gflop_per_speech_second": flops["total"] / max(median_run["speech_seconds"], 1e-9) / 1e9,
        "achieved_gflops_wall": flops["total"] / median_run["seconds"] / 1e9,
        "achieved_gflops_model": flops["total"] / median_run["model_seconds"] / 1e9,
        "front_end": front_end_share(scorer, reference, full, device),
        "profile": op_shares(scorer, full) if device == "cpu" else None,
        "deviation_from_float32": deviation(scorer, reference, audio, full) if scorer is not reference else None,
        "ratio_windows_per_s": ratios,
        "ratio_windows_per_s_at_once": (
            at_once["windows_per_s"] / float(np.median([a["windows_per_s"] for a in naive_runs])) if at_once else None
        ),
        "flop_ratio_per_window": naive_fpw * median_run["windows"] / flops["total"],
        "foreign_load_cores": max((x["foreign_load_cores"] or 0.0) for x in runs),
    }


# ---- report -------------------------------------------------------------------------------------
def _fmt(x, spec: str = ".1f") -> str:
    return "–" if x is None else format(x, spec)


def _spread(s: dict, spec: str = ".1f") -> str:
    if s["median"] is None:
        return "–"
    if len(s["values"]) == 1:
        return _fmt(s["median"], spec)
    return f"{_fmt(s['median'], spec)} ({_fmt(s['min'], spec)}–{_fmt(s['max'], spec)})"


def table(results: list[dict], peaks: dict[str, float], duration: float, naive_n: int) -> str:
    cols = [(r, e) for r in results for e in r["engine"]]
    head = [
        f"{r['arch']} ({r['params'] / 1e6:.1f}M), {e['path']}, chunk {e['chunk_seconds']:g} s / context {e['context_seconds']:g} s"
        for r, e in cols
    ]
    rows: list[tuple[str, list[str]]] = []

    def row(name, fn):
        rows.append((name, [fn(r, e) for r, e in cols]))

    n = results[0]["naive"]["windows_timed"] if results else naive_n
    rounds = len(results[0]["naive_rounds"]) if results else 0
    row(f"(a) naive generate(): window scores / s, median (min–max) of {rounds} rounds of {n} windows",
        lambda r, e: _spread(r["naive"]["windows_per_s_spread"], ".2f"))
    row("(a) naive: ms per 0.4 s window (median round)", lambda r, e: _fmt(r["naive"]["ms_per_window"], ".0f"))
    row("(a) naive: whole recording, s (extrapolated)", lambda r, e: f"{r['naive']['extrapolated_recording_seconds']:.0f} ({r['naive']['windows_in_recording']} windows)")
    row("(b) engine, 0.1 s feeds: window scores / s, median (min–max)", lambda r, e: _spread(e["windows_per_s"]))
    row("**(b)/(a) window scores per second, median (min–max) of the rounds' ratios**",
        lambda r, e: f"**{_spread(e['ratio_windows_per_s'])}**")
    row("(b) engine: window events", lambda r, e: str(e["live"]["windows"]))
    row("(b) engine: audio s per wall s (real-time factor)", lambda r, e: _spread(e["realtime_factor"], ".2f"))
    row("(b) engine fed at once: window scores / s ((b)/(a))", lambda r, e: (
        f"{_fmt(e['at_once'] and e['at_once']['windows_per_s'])} ({_fmt(e['ratio_windows_per_s_at_once'])})"))
    row("(b) achieved GFLOP/s over wall time (% of its dtype's matmul peak)", lambda r, e: (
        f"{e['achieved_gflops_wall']:.0f} ({100 * e['achieved_gflops_wall'] / peaks[e['dtype']]:.0f} % of {peaks[e['dtype']]:.0f})"))
    row("(b) achieved GFLOP/s inside model calls", lambda r, e: f"{e['achieved_gflops_model']:.0f}")
    row("(b) model forward share of engine wall", lambda r, e: f"{100 * e['live']['model_seconds'] / e['live']['seconds']:.1f} %")
    row("(b) chunks run (full-size / all), mean length s", lambda r, e: f"{e['full_chunks']}/{e['chunks']}, {e['mean_chunk_seconds']:.2f}")
    row("(b) GFLOP counted (float32 path, every chunk shape run)", lambda r, e: f"{e['flops']['total'] / 1e9:.0f}")
    row("(b) GFLOP per second of audio (one 10 s forward without context: floor)", lambda r, e: (
        f"{e['gflop_per_audio_second']:.1f} ({r['gflop_per_audio_second_10s']:.1f})"))
    row("GFLOP per window score: (a) naive / (b) engine", lambda r, e: f"{r['naive']['flops_per_window'] / 1e9:.2f} / {e['flops']['total'] / e['live']['windows'] / 1e9:.2f}")
    row("(b)/(a) = FLOPs ratio x speed ratio (median round)", lambda r, e: (
        f"{e['flop_ratio_per_window']:.2f} x {e['achieved_gflops_wall'] / r['naive']['achieved_gflops']:.2f}"))
    row("full chunk, alone: front end share of FLOPs / time", lambda r, e: (
        f"{100 * e['front_end']['front_end_flop_share']:.0f} % / {100 * e['front_end']['front_end_time_share']:.0f} %"))
    row("full chunk, alone: GFLOP/s front end / transformer / whole", lambda r, e: (
        f"{e['front_end']['front_end_gflops']:.0f} / {e['front_end']['rest_gflops']:.0f} / {e['front_end']['forward_gflops']:.0f}"))
    row("2 full chunks: aten::copy_ share of self CPU time (profiler)", lambda r, e: (
        "–" if not e["profile"] else f"{100 * e['profile']['copy_share']:.1f} %"))
    row("2 full chunks: top ops (self CPU share)", lambda r, e: (
        "–" if not e["profile"] else ", ".join(f"{k.split('::')[-1]} {100 * v:.0f} %" for k, v in e["profile"]["top"][:4])))
    row("deviation from float32, 4 full chunks: max utterance score / max logit (batch vs alone)", lambda r, e: (
        "reference" if not e["deviation_from_float32"] else
        f"{e['deviation_from_float32']['max_score_diff']:.1e} / {e['deviation_from_float32']['max_logit_diff']:.3f} "
        f"({e['deviation_from_float32']['max_logit_diff_batch_vs_alone']:.3f})"))
    row("compile time at start-up, s", lambda r, e: _fmt(e["compile_seconds"], ".0f"))
    row("other processes' CPU load, max over rounds: (a) / (b), cores", lambda r, e: (
        f"{_fmt(r['naive']['foreign_load_cores'], '.2f')} / {_fmt(e['foreign_load_cores'], '.2f')}"))
    row("(a) naive: achieved GFLOP/s (% of float32 peak)", lambda r, e: f"{r['naive']['achieved_gflops']:.0f} ({100 * r['naive']['achieved_gflops'] / peaks['float32']:.0f} %)")

    lines = ["| metric | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    lines += [f"| {name} | " + " | ".join(vals) + " |" for name, vals in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="+", default=["base", "large"], choices=["tiny", "base", "large"])
    p.add_argument("--minutes", type=float, default=3.0, help="length of the espeak-ng recording")
    p.add_argument("--naive-windows", type=int, default=40, help="naive windows timed per round (after 2 warm-up calls)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of (a) and every (b) path (medians and spread)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--chunk-seconds", type=float, nargs="+", default=[2.0], help="engine chunk length(s)")
    p.add_argument("--context-seconds", type=float, nargs="+", default=[1.0], help="engine left context(s), paired with --chunk-seconds")
    p.add_argument("--dtypes", nargs="+", default=None, choices=["float32", "bfloat16", "float16", "int8"],
                   help="engine precisions (default: float32, plus bfloat16 where the CPU has it natively); "
                   "the naive side always runs float32 as funasr does by default")
    p.add_argument("--no-compile", action="store_true",
                   help="skip the torch.compile path (by default the last precision runs once more compiled, on the CPU)")
    p.add_argument("--feed-seconds", type=float, default=0.1, help="piece size of the live feed")
    p.add_argument("--skip-at-once", action="store_true", help="skip the fed-at-once engine run")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated speech")
    p.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EMOSTREAM_BENCH_CACHE", "~/.cache/emostream-bench")))
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write all figures as JSON")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    chunks, contexts = args.chunk_seconds, args.context_seconds
    if len(chunks) != len(contexts) and 1 not in (len(chunks), len(contexts)):
        p.error("--chunk-seconds and --context-seconds need equal counts (or one value for either)")
    pairs = list(zip(chunks * (len(contexts) if len(chunks) == 1 else 1), contexts * (len(chunks) if len(contexts) == 1 else 1)))

    import torch

    from bench.speech import benchmark_audio
    from stream.engine.config import AnalyzerConfig

    configs = [AnalyzerConfig(chunk_seconds=c, context_seconds=x) for c, x in pairs]
    t_start = time.perf_counter()
    whole_run = CpuLoad()
    load_start = os.getloadavg()
    cache_dir = args.cache_dir.expanduser()
    print("=" * 78 + "\n" + RANDOM_BANNER + "\n" + "=" * 78, flush=True)

    audio, wav_path, cached = benchmark_audio(cache_dir, args.minutes, args.seed)
    duration = len(audio) / RATE
    log(f"audio: {wav_path} ({'cached' if cached else 'generated with espeak-ng'})")

    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    paths = engine_paths(args, device)
    dtypes = sorted({name.partition("+")[0] for name in paths} | {"float32"})
    log(f"matmul peaks on {device}, {threads} threads")
    start_peaks = {d: matmul_peak(device, "float32" if d == "int8" else d) for d in dtypes}

    results = [bench_arch(arch, args, audio, configs, cache_dir) for arch in args.archs]
    end_peaks = {d: matmul_peak(device, "float32" if d == "int8" else d) for d in dtypes}
    peak_by_dtype = {d: max(start_peaks[d], end_peaks[d]) for d in dtypes}
    peaks = [start_peaks["float32"], end_peaks["float32"]]
    total = time.perf_counter() - t_start
    foreign = whole_run.foreign_cores()
    load_end = os.getloadavg()

    import funasr

    speech = results[0]["engine"][0]["live"]["speech_seconds"] if results else float("nan")
    machine = {
        "date": _dt.date.today().isoformat(),
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cpu_described": describe_cpu(),
        "cores": os.cpu_count(),
        "device": device,
        "torch_threads": threads,
        "dtypes": {"naive": "float32", "engine": paths},
        "torch": torch.__version__,
        "funasr": funasr.__version__,
        "python": platform.python_version(),
        "load_average_start": load_start,
        "load_average_end": load_end,
    }
    print(f"\nmachine: {machine['cpu_described']}, {machine['cores']} cores, device {device}, naive float32, "
          f"engine paths {', '.join(paths)}, "
          f"torch {machine['torch']} with {threads} threads, funasr {machine['funasr']}, {machine['date']}")
    print("cpu flags: " + " ".join(f"{k}={'yes' if v else 'no'}" for k, v in machine["cpu_flags"].items()))
    print(f"load average (1/5/15 min) at start {' / '.join(f'{x:.2f}' for x in load_start)}, "
          f"at end {' / '.join(f'{x:.2f}' for x in load_end)}")
    print(f"audio: {duration:.1f} s ({duration / 60:.2f} min) of espeak-ng speech, {wav_path.name}; "
          f"the engine's VAD kept {speech:.1f} s = {100 * speech / duration:.1f} % as speech "
          f"in {results[0]['engine'][0]['live']['segments'] if results else 0} segments")
    print(f"windows: {WINDOW_S} s at a {HOP_S} s hop; engine fed in {args.feed_seconds:g} s pieces; "
          f"(a) is extrapolated from {results[0]['naive']['windows_timed'] if results else 0} timed "
          f"generate() calls per round; {args.rounds} rounds alternate (a) and every (b) path "
          "(order reversed every other round)")
    for d in dtypes:
        print(f"{d} matmul peak (2048x2048, best of 10): {start_peaks[d]:.0f} GFLOP/s at start, "
              f"{end_peaks[d]:.0f} at end; {peak_by_dtype[d]:.0f} used below")
    print("FLOPs: torch.utils.flop_counter.FlopCounterMode (matmul/linear/conv/bmm; elementwise ops, "
          "norms and softmax not counted) on the float32 path, one forward per distinct chunk length, times its uses\n")
    print(table(results, peak_by_dtype, duration, args.naive_windows))
    print(f"\ntotal runtime {total:.0f} s; other processes kept {_fmt(foreign, '.2f')} of "
          f"{os.cpu_count()} cores busy on average during the run")
    if foreign is not None and foreign > 0.1:
        print("WARNING: the machine was shared during the run; with every core used by torch, "
              "foreign load slows small operations (the naive side) disproportionately. "
              "Read the medians and the spread; repeat on an idle machine for clean figures.")
    print(RANDOM_BANNER.splitlines()[0])
    if args.json:
        doc = {
            "warning": RANDOM_BANNER,
            "machine": machine,
            "audio": {"path": str(wav_path), "seconds": duration, "speech_seconds": speech},
            "matmul_peak_gflops": peaks,
            "matmul_peak_gflops_by_dtype": peak_by_dtype,
            "window_seconds": WINDOW_S,
            "hop_seconds": HOP_S,
            "feed_seconds": args.feed_seconds,
            "rounds": args.rounds,
            "results": results,
            "runtime_seconds": total,
            "foreign_load_cores": foreign,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=str))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

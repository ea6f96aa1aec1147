"""The model alone at the device's pace: owned audio-seconds per second per precision and batch.

`Emotion2vecScorer.score` runs on B chunks of (chunk + context) seconds; each chunk owns `chunk`
seconds, so "owned audio-s/s" = chunk x B / time. FLOPs are counted once per precision with
torch's FlopCounterMode (matmul, linear, conv, bmm; elementwise ops not counted) and set against
the device's matmul peak in the same precision, measured in the same run — the "fraction of
peak" the issue's targets are written in. `--check` first compares each precision on the device
with CPU float32 (funasr's own arithmetic) and a batch with its items run alone.

    PYTHONPATH=. python -m bench.gpu --archs large --device cuda --json bench/results/gpu-$(date +%F).json
    PYTHONPATH=. python -m bench.gpu --archs tiny --device cpu --batches 1 4 --check    # proves it runs here

It also profiles one eager forward (no CUDA graph: a replay hides its ops) per precision at
`--profile-batches`: the share of device time (CPU: self CPU time) in aten::copy_ and the top
ops, with the scorer's time-major front end (models/frontend.py) and with last turn's funasr
conv stack (transposes around every layer norm; its norms in the compute dtype), side by side.

Random weights: time and FLOPs are real, the scores mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.throughput import RANDOM_BANNER, _sync, cpu_name, flops_of, log, matmul_peak, random_model_dir

RATE = 16_000
# Tolerances the issue sets on CUDA (max |score difference| against CPU float32, batch vs alone).
TOLERANCE = {"float32": 1e-4, "float16": 1e-3, "bfloat16": 2e-3, "int8": 3e-3}


def load(arch: str, device: str, dtype: str, cache_dir: Path, threads: int | None):
    """A random-weight scorer of `arch` in `dtype` on `device`."""
    from models.loader import ModelOptions, load_scorer

    return load_scorer(ModelOptions(model_dir=str(random_model_dir(cache_dir, arch)), device=device, dtype=dtype,
                                    threads=threads))  # fmt: skip


def speech(cache_dir: Path, seconds: float, n: int) -> list[np.ndarray]:
    """`n` different pieces of the benchmark's espeak-ng speech, `seconds` long each."""
    from bench.speech import benchmark_audio

    audio, _, _ = benchmark_audio(cache_dir, 3.0, 0)
    size = round(seconds * RATE)
    return [np.roll(audio, -k * 7 * RATE)[:size].astype(np.float32) for k in range(n)]


def check(arch: str, args, dtypes: list[str]) -> list[dict]:
    """Each precision on the device against CPU float32, and batch against alone."""
    from models.scoring import softmax

    waves = speech(args.cache_dir, 4.0, 4)
    waves[1] = waves[1][: 3 * RATE]  # a padded item in the batch
    reference = load(arch, "cpu", "float32", args.cache_dir, args.threads)
    ref = [reference.score([w])[0] for w in waves]
    del reference
    rows = []
    for dtype in dtypes:
        scorer = load(arch, args.device, dtype, args.cache_dir, args.threads)
        alone = [scorer.score([w])[0] for w in waves]
        batch = scorer.score(waves)
        logit = max(float(np.abs(a.logits - r.logits).max()) for a, r in zip(alone, ref))
        score = max(float(np.abs(softmax(a.logits.mean(0)) - softmax(r.logits.mean(0))).max()) for a, r in zip(alone, ref))
        batch_logit = max(float(np.abs(a.logits - b.logits).max()) for a, b in zip(alone, batch))
        batch_score = max(float(np.abs(softmax(a.logits.mean(0)) - softmax(b.logits.mean(0))).max())
                          for a, b in zip(alone, batch))  # fmt: skip
        bound = TOLERANCE[scorer.precision]
        row = {"arch": arch, "device": str(scorer.device), "dtype": dtype, "precision": scorer.precision,
               "max_logit_diff": logit, "max_score_diff": score, "batch_vs_alone_logit": batch_logit,
               "batch_vs_alone_score": batch_score, "tolerance": bound,
               "ok": score <= bound and batch_score <= bound}  # fmt: skip
        log(f"check {arch} {scorer.precision} on {scorer.device}: score diff {score:.2e}, logit diff {logit:.2e}, "
            f"batch vs alone {batch_score:.2e} -> {'ok' if row['ok'] else 'OUT OF TOLERANCE'}")
        rows.append(row)
        del scorer
    return rows


def time_batches(arch: str, dtype: str, args) -> list[dict]:
    """Median time of `score` on B chunks for every B, with FLOPs and the fraction of peak."""
    scorer = load(arch, args.device, dtype, args.cache_dir, args.threads)
    device = str(scorer.device)
    peak = matmul_peak(device, "float32" if scorer.precision == "int8" else scorer.precision,
                       n=8192 if device.startswith("cuda") else 2048) * 1e9  # fmt: skip
    x = speech(args.cache_dir, args.chunk + args.context, max(args.batches))
    flops_one, _ = flops_of(lambda: scorer.score([x[0]]))  # before any graph: the counter sees eager ops only
    if args.graphs and scorer.device.type == "cuda":
        scorer.prepare(max(args.batches), len(x[0]), capture_now=False)  # each batch's warm-up captures its graph
    rows = []
    for b in args.batches:
        waves = x[:b]
        try:
            for _ in range(args.warmup):
                scorer.score(waves)
            _sync(device)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                scorer.score(waves)
                _sync(device)
                times.append(time.perf_counter() - t)
        except RuntimeError as exc:  # out of memory at the largest batches
            log(f"{arch} {scorer.precision} batch {b}: {type(exc).__name__}: {str(exc)[:120]}")
            break
        t = statistics.median(times)
        graphed = scorer.graphs is not None and scorer.graphs.covers(b, len(x[0]))
        row = {"arch": arch, "device": device, "dtype": dtype, "precision": scorer.precision, "batch": b,
               "cuda_graph": graphed,
               "ms": 1000 * t, "owned_audio_s_per_s": args.chunk * b / t, "gflop": flops_one * b / 1e9,
               "achieved_tflops": flops_one * b / t / 1e12, "peak_tflops": peak / 1e12,
               "fraction_of_peak": flops_one * b / t / peak}  # fmt: skip
        log(f"{arch} {scorer.precision} batch {b}{' (CUDA graph)' if graphed else ''}: {row['ms']:.1f} ms, "
            f"{row['owned_audio_s_per_s']:.0f} owned audio-s/s, "
            f"{100 * row['fraction_of_peak']:.1f} % of peak")
        rows.append(row)
    return rows


def op_profile(scorer, waves: list[np.ndarray], device: str, top: int = 6) -> dict:
    """Shares of one eager forward's device time (CUDA) or self CPU time per op: aten::copy_ and the top ops."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    scorer.score(waves)
    _sync(device)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        scorer.score(waves)
        _sync(device)
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    totals: dict[str, float] = {}
    for e in prof.key_averages():
        totals[e.key] = totals.get(e.key, 0.0) + float(getattr(e, attr, 0.0) or 0.0)
    whole = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return {"batch": len(waves), "time": "device" if cuda else "cpu", "total_ms": whole / 1000,
            "copy_share": totals.get("aten::copy_", 0.0) / whole, "top": [(k, v / whole) for k, v in ranked]}


def legacy_front_end(scorer):
    """Last turn's front end on this scorer: funasr's conv stack (transposing around each layer
    norm) and feature projection, its Fp32LayerNorms swapped for norms in the compute dtype as
    last turn did in half precision on CUDA. Returns a function to put the scorer's own back."""
    import copy

    import torch
    from funasr.models.emotion2vec.fairseq_modules import Fp32LayerNorm

    enc = scorer.model.modality_encoders["AUDIO"]
    extractor = copy.deepcopy(enc.local_encoder)
    if scorer.device.type == "cuda" and scorer.dtype != torch.float32:
        for block in extractor.conv_layers:
            old = block[2][1]
            if isinstance(old, Fp32LayerNorm):
                norm = torch.nn.LayerNorm(old.normalized_shape, eps=old.eps, elementwise_affine=old.elementwise_affine)
                norm.load_state_dict(old.state_dict())
                block[2][1] = norm.to(device=scorer.device, dtype=scorer.dtype)
    own = scorer.frontend
    scorer.frontend = lambda wav: enc.project_features(extractor(wav))
    return lambda: setattr(scorer, "frontend", own)


def profile_front_ends(arch: str, dtype: str, args) -> list[dict]:
    """`op_profile` at each --profile-batches, with the scorer's front end and with last turn's."""
    scorer = load(arch, args.device, dtype, args.cache_dir, args.threads)
    device = str(scorer.device)
    rows = []
    for b in args.profile_batches:
        waves = speech(args.cache_dir, args.chunk + args.context, b)
        for front in ("time-major", "funasr (last turn)"):
            restore = legacy_front_end(scorer) if front != "time-major" else (lambda: None)
            try:
                prof = op_profile(scorer, waves, device)
            except RuntimeError as exc:  # out of memory
                log(f"profile {arch} {scorer.precision} batch {b}: {type(exc).__name__}: {str(exc)[:120]}")
                restore()
                break
            restore()
            row = {"arch": arch, "precision": scorer.precision, "front_end": front, **prof}
            log(f"profile {arch} {scorer.precision} batch {b}, {front} front end: aten::copy_ "
                f"{100 * prof['copy_share']:.1f} % of {prof['time']} time ({prof['total_ms']:.1f} ms); top: "
                + ", ".join(f"{k} {100 * v:.0f} %" for k, v in prof["top"][:4]))
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: one line per batch, per precision ms / owned audio-s/s / % of peak."""
    precisions = list(dict.fromkeys(r["precision"] for r in rows))
    head = ["arch", "batch"] + [f"{p} {what}" for p in precisions for what in ("ms", "owned audio-s/s", "% of peak")]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        for b in dict.fromkeys(r["batch"] for r in rows if r["arch"] == arch):
            cells = [arch, str(b)]
            for p in precisions:
                r = next((r for r in rows if r["arch"] == arch and r["batch"] == b and r["precision"] == p), None)
                cells += ["—"] * 3 if r is None else [
                    f"{r['ms']:.1f}", f"{r['owned_audio_s_per_s']:,.0f}", f"{100 * r['fraction_of_peak']:.1f}"
                ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", nargs="+", default=["large"], choices=["tiny", "base", "large"])
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ap.add_argument("--dtypes", nargs="+", default=None, choices=["float16", "bfloat16", "float32", "int8"],
                    help="default: float16 bfloat16 float32 on CUDA; this CPU's auto precision and float32 on the CPU")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="default: 1 8 32 128 256 512 on CUDA, 1 2 4 on the CPU")
    ap.add_argument("--chunk", type=float, default=2.0, help="owned seconds per chunk")
    ap.add_argument("--context", type=float, default=1.0, help="left context per chunk, seconds")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per batch (default 10 on CUDA, 3 on the CPU)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-graphs", dest="graphs", action="store_false",
                    help="CUDA: launch every forward's kernels (default: replay captured graphs where a batch fits)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    ap.add_argument("--check", action="store_true", help="first compare every precision with CPU float32")
    ap.add_argument("--check-arch", default="base", choices=["tiny", "base", "large"], help="model of --check")
    ap.add_argument("--skip-table", action="store_true", help="only --check")
    ap.add_argument("--profile-batches", type=int, nargs="*", default=None,
                    help="profile one eager forward at these batches (default: 8 128 on CUDA, 2 on the CPU; none: skip)")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("EMOSTREAM_BENCH_CACHE", "~/.cache/emostream-bench")))
    ap.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = ap.parse_args(argv)
    args.cache_dir = args.cache_dir.expanduser()

    import torch

    from models.loader import pick_device, resolve_dtype

    args.device = pick_device(args.device)
    cuda = args.device.startswith("cuda")
    dtypes = args.dtypes or (["float16", "bfloat16", "float32"] if cuda else
                             list(dict.fromkeys([resolve_dtype("auto", "cpu"), "float32"])))  # fmt: skip
    args.batches = args.batches or ([1, 8, 32, 128, 256, 512] if cuda else [1, 2, 4])
    args.repeats = args.repeats or (10 if cuda else 3)
    if args.profile_batches is None:
        args.profile_batches = [8, 128] if cuda else [2]
    print("=" * 78 + "\n" + RANDOM_BANNER + "\n" + "=" * 78, flush=True)
    device_name = torch.cuda.get_device_name(args.device) if cuda else cpu_name()
    doc: dict = {
        "warning": RANDOM_BANNER,
        "machine": {"date": _dt.date.today().isoformat(), "device": args.device, "device_name": device_name,
                    "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }  # fmt: skip
    started = time.perf_counter()
    if args.check:
        doc["check"] = check(args.check_arch, args, dtypes)
        print(f"\nagainst CPU float32 ({args.check_arch}, 4 s of speech, 4 items, one padded):")
        for r in doc["check"]:
            print(f"  {r['precision']:>9} on {r['device']}: score diff {r['max_score_diff']:.2e}, logit diff "
                  f"{r['max_logit_diff']:.2e}, batch vs alone {r['batch_vs_alone_score']:.2e} "
                  f"(tolerance {r['tolerance']:g}) {'ok' if r['ok'] else 'FAIL'}")
        _write(args.json, doc)
    if args.profile_batches and not args.skip_table:
        doc["profile"] = [row for arch in args.archs for dtype in dtypes for row in profile_front_ends(arch, dtype, args)]
        print(f"\none eager forward (no CUDA graph), aten::copy_'s share of {'device' if cuda else 'CPU'} time, "
              "the scorer's time-major front end against last turn's funasr conv stack:")
        for r in doc["profile"]:
            print(f"  {r['arch']} {r['precision']:>9} batch {r['batch']:>4}, {r['front_end']:>18}: copy_ "
                  f"{100 * r['copy_share']:5.1f} % of {r['total_ms']:.1f} ms; top: "
                  + ", ".join(f"{k} {100 * v:.0f} %" for k, v in r["top"][:4]))
        _write(args.json, doc)
    if not args.skip_table:
        doc["rows"] = [row for arch in args.archs for dtype in dtypes for row in time_batches(arch, dtype, args)]
        print(f"\n{device_name} ({args.device}), torch {torch.__version__}; chunks of {args.chunk:g} s owned + "
              f"{args.context:g} s context; median of {args.repeats}; % of the same precision's matmul peak "
              "(int8: of float32's)")
        print(table(doc["rows"]))
    doc["runtime_seconds"] = time.perf_counter() - started
    _write(args.json, doc)
    print(RANDOM_BANNER.splitlines()[0])
    return 0 if all(r["ok"] for r in doc.get("check", [])) else 1


def _write(path: Path | None, doc: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2))
        log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())

"""`emostream` command line: a thin shell over the engine (decode, analyze, write, print)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import EmostreamError


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=("seed", "base", "large"), default=None, help="emotion2vec+ size (default large)")
    g.add_argument("--hub", choices=("ms", "hf"), default=None, help="ModelScope (ms, default) or Hugging Face (hf)")
    g.add_argument("--model-dir", default=None, help="local funasr model directory (or EMOSTREAM_MODEL_DIR)")
    g.add_argument("--device", default=None, help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    g.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                   help="compute precision (default float32; bfloat16 on CPUs with native bf16 or CUDA)")
    g.add_argument("--half", dest="dtype", action="store_const", const="float16", help="float16 on CUDA")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    g.add_argument("--offline", action="store_true", default=None, help="never download (or EMOSTREAM_OFFLINE=1)")


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("analysis")
    g.add_argument("--window", type=float, default=0.4, help="window length in seconds (default 0.4)")
    g.add_argument("--hop", type=float, default=0.1, help="window hop in seconds (default 0.1)")
    g.add_argument("--chunk", type=float, default=2.0, help="scoring chunk in seconds (default 2.0)")
    g.add_argument("--chunk-context", type=float, default=1.0, help="left context per chunk, seconds (default 1.0)")
    g.add_argument("--vad", choices=("webrtc", "silero"), default="webrtc", help="VAD backend (default webrtc)")
    g.add_argument("--vad-aggressiveness", type=int, choices=(0, 1, 2, 3), default=2)
    g = p.add_argument_group("fear/disgust decision layer (README: 'The fear/disgust layer')")
    g.add_argument("--profiles", type=Path, default=os.environ.get("EMOSTREAM_PROFILES"),
                   help="domain-profile library YAML (default: the shipped, neutral stream/profiles.yaml)")
    g.add_argument("--centroids", type=Path, default=os.environ.get("EMOSTREAM_CENTROIDS"),
                   help="fear/disgust centres from `emostream calibrate` (enables fusion)")
    g.add_argument("--review-gap", type=float, default=0.15, help="review when |fear - disgust| < this (0.15)")
    g.add_argument("--dual-min-peak", type=float, default=0.60, help="dual report: both peaks above this (0.60)")
    g.add_argument("--dual-max-gap", type=float, default=0.05, help="dual report: peaks closer than this (0.05)")
    g.add_argument("--fusion-gap", type=float, default=0.12, help="fuse when |fear - disgust| < this (0.12)")
    g.add_argument("--no-fusion", action="store_true", help="never fuse, even with --centroids")
    g.add_argument("--no-quality-gate", action="store_true", help="never withhold a fear/disgust call on poor audio")
    g.add_argument("--min-snr", type=float, default=15.0, help="quality bar: SNR in dB (15)")
    g.add_argument("--max-clipping", type=float, default=0.01, help="quality bar: clipped fraction (0.01)")
    g.add_argument("--min-bandwidth", type=float, default=3000.0, help="quality bar: bandwidth in Hz (3000)")
    g.add_argument("--cues", choices=("flagged", "always", "off"), default="flagged",
                   help="acoustic cues for segments where fear/disgust lead or a dual report fires (default), all, none")
    g.add_argument("--no-focus", action="store_true", help="do not re-score the focus crop of ambiguous segments")
    g.add_argument("--focus-decides", action="store_true", help="let the focus crop's fear/disgust call replace the segment's")


def analyzer_config(args):
    """The AnalyzerConfig the analysis options describe."""
    from vad import VadConfig

    from .calibration import FusionConfig
    from .config import AnalyzerConfig, DecisionConfig, FocusConfig
    from .quality import QualityBar

    return AnalyzerConfig(
        window_seconds=args.window,
        hop_seconds=args.hop,
        chunk_seconds=args.chunk,
        context_seconds=args.chunk_context,
        vad=VadConfig(backend=args.vad, aggressiveness=args.vad_aggressiveness),
        decisions=DecisionConfig(
            review_gap=args.review_gap,
            dual_min_peak=args.dual_min_peak,
            dual_max_gap=args.dual_max_gap,
            quality_gate=not args.no_quality_gate,
            quality=QualityBar(args.min_snr, args.max_clipping, args.min_bandwidth),
            cues=args.cues,
            fusion=FusionConfig(enabled=not args.no_fusion, close_gap=args.fusion_gap),
            focus=FocusConfig(enabled=not args.no_focus, decide=args.focus_decides),
        ),
    )


def decision_data(args, scorer):
    """The profile library and centres the options name, checked against the loaded model."""
    from .fear_disgust import DecisionData

    return DecisionData.load(scorer, args.profiles, args.centroids)


def load_scorer_from_args(args):
    """Load the scorer the model options describe."""
    from models.loader import ModelOptions, load_scorer

    opts = ModelOptions.from_env(
        model=args.model,
        hub=args.hub,
        model_dir=args.model_dir,
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        offline=args.offline,
    )
    return load_scorer(opts)


def cmd_analyze(args) -> int:
    """Analyze files like the seed's WebUI; one output folder per input."""
    from tqdm import tqdm

    from models.labels import with_emoji

    from .audio_file import load
    from .offline import analyze_audio, output_dir, write_outputs

    config = analyzer_config(args)
    scorer = load_scorer_from_args(args)
    data = decision_data(args, scorer)
    failures = 0
    decoded = []
    for path in args.files:  # decode first so the progress bar knows the total audio length
        try:
            decoded.append((path, load(path)))
        except EmostreamError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failures += 1
    total = sum(audio.duration for _, audio in decoded)
    with tqdm(total=round(total, 1), unit="s audio", disable=args.quiet or None, file=sys.stderr) as bar:
        for path, audio in decoded:
            try:
                result = analyze_audio(
                    scorer, audio, str(path), args.granularity, args.context, config,
                    progress=lambda s: bar.update(round(s, 1)), data=data,
                )
                out = output_dir(args.out, path)
                write_outputs(result, audio.samples, out, config, args.embedding)
            except EmostreamError as exc:
                print(f"error: {path}: {exc}", file=sys.stderr)
                failures += 1
                continue
            note = " [random weights: not emotion recognition]" if result.random_weights else ""
            withheld = f" [{result.decision.withheld}]" if result.decision.withheld else ""
            bar.write(
                f"{path}: {with_emoji(result.emotion)} {result.confidence:.1%}{withheld} "
                f"({len(result.of_type('segment'))} segments, {len(result.of_type('transition'))} transitions, "
                f"{len(result.of_type('review'))} review flags) -> {out}{note}"
            )
    return 1 if failures else 0


def _skip(item, exc) -> None:
    print(f"error: {item.path}: {exc} (skipped)", file=sys.stderr)


def _embedded_items(args):
    """Items of `args.source` with their embeddings; the model is loaded only for audio items."""
    from .labelled import embed, find_items, needs_model, saved_model_id

    items = find_items(args.source)
    scorer = load_scorer_from_args(args) if needs_model(items) else None
    model_id = scorer.model_id if scorer else (getattr(args, "model_id", None) or saved_model_id(items))
    return embed(items, scorer, on_error=_skip), model_id, scorer


def cmd_calibrate(args) -> int:
    """Fear/disgust centres (and optionally a domain's logit bias) from labelled data."""
    import json

    import numpy as np

    from .calibration import DISGUST, FEAR, compute_centroids, cosine, kmeans_view

    embedded, model_id, scorer = _embedded_items(args)
    pair = [e for e in embedded if e.item.label in (FEAR, DISGUST)]
    unlabelled = [e for e in embedded if e.item.label is None]
    view_of = pair or unlabelled
    if len(view_of) < 2:
        raise EmostreamError(f"need at least two {FEAR}/{DISGUST} (or unlabelled) items, found {len(view_of)}")
    _, clusters = kmeans_view(np.stack([e.embedding for e in view_of]))
    kmeans = [{"cluster": int(k), "size": int((clusters == k).sum()),
               "labels": {str(lab): int(sum(1 for e, c in zip(view_of, clusters) if c == k and e.item.label == lab))
                          for lab in sorted({str(e.item.label) for e in view_of})}}
              for k in sorted(set(clusters.tolist()))]  # fmt: skip
    report = {"kmeans_view": kmeans, "items": len(embedded)}
    for row in kmeans:
        print(f"KMeans cluster {row['cluster']}: {row['size']} items {row['labels']}")
    if not pair:
        assignments = args.out.with_suffix(".kmeans.jsonl")
        assignments.parent.mkdir(parents=True, exist_ok=True)
        assignments.write_text("".join(json.dumps({"path": str(e.item.path), "cluster": int(c)}) + "\n"
                                       for e, c in zip(view_of, clusters)), encoding="utf-8")  # fmt: skip
        print(f"no labelled {FEAR}/{DISGUST} items: wrote the cluster of each item to {assignments}.\n"
              "KMeans cannot tell which cluster is fear; label some items and run calibrate again.")  # fmt: skip
        return 0
    if model_id is None:
        raise EmostreamError("saved embeddings without a result.json beside them: pass --model-id")
    centres = compute_centroids(np.stack([e.embedding for e in pair]), [e.item.label for e in pair], model_id)
    centres.save(args.out)
    report.update(centres.describe(), centre_cosine=cosine(centres.fear, centres.disgust))
    print(f"wrote {args.out}: {FEAR} {centres.counts[FEAR]} items, {DISGUST} {centres.counts[DISGUST]} items, "
          f"model {model_id}, dim {centres.dim}, cosine between centres {report['centre_cosine']:.3f}")  # fmt: skip
    if args.domain:
        report["domain"] = _calibrate_domain(args, embedded)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if scorer is not None and scorer.random_weights:
        print("warning: random-weight model: these centres are for testing only", file=sys.stderr)
    return 0


def _calibrate_domain(args, embedded) -> dict:
    """Estimate the domain profile's logit bias (label shift) and write an updated library."""
    from dataclasses import replace

    import numpy as np

    from .profiles import ProfileLibrary, estimate_bias, load_library, save_library

    usable = [e for e in embedded if e.logits is not None and e.item.label is not None]
    if not usable:
        raise EmostreamError("--domain needs labelled audio items (saved embeddings carry no logits)")
    if not args.profiles_out:
        raise EmostreamError("--domain needs --profiles-out FILE (where to write the updated library)")
    library = load_library(args.profiles)
    profile = library[args.domain]
    bias = estimate_bias(np.stack([e.logits for e in usable]), [e.item.label for e in usable])
    profiles = tuple(replace(p, logit_bias=bias) if p.name == profile.name else p for p in library.profiles)
    save_library(ProfileLibrary(profiles, library.default), args.profiles_out)
    print(f"wrote {args.profiles_out}: profile {profile.name} bias from {len(usable)} items: "
          + ", ".join(f"{k} {v:+.2f}" for k, v in bias.items()))  # fmt: skip
    return {"profile": profile.name, "items": len(usable), "logit_bias": bias, "library": str(args.profiles_out)}


def cmd_evaluate(args) -> int:
    """Metrics of the model plus decision layer on a labelled manifest."""
    import json

    from .evaluation import evaluate, read_manifest, write_report

    config = analyzer_config(args)
    items = read_manifest(args.manifest)
    scorer = load_scorer_from_args(args)
    result = evaluate(scorer, items, config, decision_data(args, scorer), args.context, on_error=_skip)
    metrics = result["metrics"]
    paths = write_report(metrics, args.out)
    with open(args.out / "predictions.jsonl", "w", encoding="utf-8") as f:
        for row in result["items"]:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    pa = metrics["pair_accuracy"]
    print(f"{metrics['n']} items: accuracy {metrics['accuracy']:.3f}, UAR {metrics['uar']:.3f}, "
          f"macro-F1 {metrics['macro_f1']:.3f}, fear/disgust pair accuracy "
          f"{'n/a' if pa is None else f'{pa:.3f}'}, review rate {metrics['review_rate']:.3f}")  # fmt: skip
    for row in metrics["steps"]:
        value = "n/a" if row["pair_accuracy"] is None else f"{row['pair_accuracy']:.3f}"
        print(f"  {row['step']:<14} pair accuracy {value}")
    print(f"wrote {paths['metrics']}, {paths['confusion_matrix']}, {args.out / 'predictions.jsonl'}")
    if scorer.random_weights:
        print("warning: random-weight model: these numbers measure nothing about emotion", file=sys.stderr)
    return 0


def cmd_embeddings_plot(args) -> int:
    """A 2-D map of embeddings coloured by label."""
    import numpy as np

    from .evaluation import plot_embeddings

    embedded, _, _ = _embedded_items(args)
    path = plot_embeddings(np.stack([e.embedding for e in embedded]),
                           [e.item.label or "unlabelled" for e in embedded], args.out, args.method)  # fmt: skip
    print(f"wrote {path} ({len(embedded)} embeddings, {args.method})")
    return 0


def cmd_make_model(args) -> int:
    """Write a random-weight model directory (for tests, demos, benchmarks)."""
    from models.random_weights import WARNING, write_random_model_dir

    path = write_random_model_dir(args.dir, args.arch, args.seed)
    print(f"wrote {args.arch} model with random weights to {path}\n{WARNING}")
    return 0


def cmd_serve(args) -> int:
    """Run the live server."""
    import server

    return server.serve(args)


def cmd_repair(args) -> int:
    """Repair recordings of sessions whose server was killed."""
    from .recording import repair

    for path in args.sessions:
        report = repair(path)
        print(f"{path}: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `emostream` command."""
    parser = argparse.ArgumentParser(prog="emostream", description="Real-time speech-emotion analysis with emotion2vec+.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and library messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="analyze audio files (WAV, MP3, M4A, FLAC, OGG)")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--granularity", choices=("utterance", "frame"), default="utterance")
    p.add_argument("--context", default=None, help="domain context text: selects a profile from --profiles (e.g. 'medical consultation')")
    p.add_argument("--embedding", action="store_true", help="also write embedding.npy")
    p.add_argument("--out", type=Path, default=Path("outputs"), help="parent folder of the result folders")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_model_options(p)
    _add_analysis_options(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("serve", help="run the live server (WebSocket, Twilio, HTTP API)")
    import server

    server.add_server_options(p)
    _add_model_options(p)
    _add_analysis_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("listen", help="analyze the microphone live in the terminal")
    from .listen import add_listen_options, run as run_listen

    add_listen_options(p)
    _add_model_options(p)
    _add_analysis_options(p)
    p.set_defaults(func=run_listen)

    p = sub.add_parser("repair", help="repair recordings after a crash (WAV header, torn JSONL line)")
    p.add_argument("sessions", nargs="+", type=Path, help="recordings/<session_id> folders")
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("calibrate", help="fear/disgust centres (and a domain's bias) from labelled data")
    p.add_argument("source", type=Path, help="JSONL manifest, a folder per label, or a folder of unlabelled files"
                   " (audio, or .npy embeddings from `analyze --embedding`)")
    p.add_argument("--out", type=Path, required=True, help="centres file to write (.npz; a .json report beside it)")
    p.add_argument("--model-id", default=None, help="model id of saved embeddings without a result.json beside them")
    p.add_argument("--domain", default=None, help="also estimate this profile's logit bias from the labelled audio")
    p.add_argument("--profiles", type=Path, default=None, help="library to start from (default: the shipped one)")
    p.add_argument("--profiles-out", type=Path, default=None, help="where --domain writes the updated library")
    _add_model_options(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="accuracy, UAR, macro-F1, confusion and fear/disgust pair accuracy per step")
    p.add_argument("manifest", type=Path, help="JSONL manifest: path/wav/audio + label/emo per line")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json, confusion_matrix.png, predictions.jsonl")
    p.add_argument("--context", default=None, help="domain context text for every item (selects a profile)")
    _add_model_options(p)
    _add_analysis_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("embeddings", help="work with exported embeddings")
    emb = p.add_subparsers(dest="action", required=True)
    p = emb.add_parser("plot", help="2-D map (t-SNE or UMAP) of embeddings coloured by label")
    p.add_argument("source", type=Path, help="JSONL manifest or folder per label (.npy embeddings or audio)")
    p.add_argument("--out", type=Path, default=Path("embeddings.png"))
    p.add_argument("--method", choices=("tsne", "umap"), default="tsne")
    _add_model_options(p)
    p.set_defaults(func=cmd_embeddings_plot)

    p = sub.add_parser("make-model", help="write a model directory with RANDOM weights (tests/demos)")
    p.add_argument("dir", type=Path)
    p.add_argument("--arch", choices=("tiny", "seed", "base", "large"), default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_model)
    return parser


def _quiet_libraries() -> None:
    """funasr prints import diagnostics and INFO logs on every load; keep the terminal readable."""
    os.environ.setdefault("FUNASR_IMPORT_DEBUG", "0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `emostream` console script."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO)
    else:
        _quiet_libraries()
    try:
        return args.func(args)
    except EmostreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

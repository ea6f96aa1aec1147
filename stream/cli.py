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


def analyzer_config(args):
    """The AnalyzerConfig the analysis options describe."""
    from vad import VadConfig

    from .config import AnalyzerConfig

    return AnalyzerConfig(
        window_seconds=args.window,
        hop_seconds=args.hop,
        chunk_seconds=args.chunk,
        context_seconds=args.chunk_context,
        vad=VadConfig(backend=args.vad, aggressiveness=args.vad_aggressiveness),
    )


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
                    progress=lambda s: bar.update(round(s, 1)),
                )
                out = output_dir(args.out, path)
                write_outputs(result, audio.samples, out, config, args.embedding)
            except EmostreamError as exc:
                print(f"error: {path}: {exc}", file=sys.stderr)
                failures += 1
                continue
            note = " [random weights: not emotion recognition]" if result.random_weights else ""
            bar.write(
                f"{path}: {with_emoji(result.emotion)} {result.confidence:.1%} "
                f"({len(result.of_type('segment'))} segments, {len(result.of_type('transition'))} transitions, "
                f"{len(result.of_type('review'))} review flags) -> {out}{note}"
            )
    return 1 if failures else 0


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
    p.add_argument("--context", default=None, help="domain context text (recorded; used by a later release)")
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

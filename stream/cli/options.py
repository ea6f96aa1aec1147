"""Options the commands share (model, analysis, server) and what they build.

Choices and defaults come from the constants and dataclasses that own them, so an option is
never restated here: the model's sizes, hubs and precisions from `models`, the VAD's backends
from `vad`, thresholds from the engine's and the decision layer's configs, server options from
`ServerSettings`' fields.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import fields
from pathlib import Path

from models.architectures import HUBS, SIZES
from models.loader import DTYPES, ModelOptions, load_scorer
from models.scoring import Scorer
from stream.cluster.topology import ClusterOptions
from stream.decision.config import CUE_MODES, DecisionConfig, FocusConfig
from stream.decision.fear_disgust import DecisionData
from stream.decision.fusion import FusionConfig
from stream.decision.quality import QualityBar
from stream.engine.config import CHUNK_MODES, LATENCY_CHUNK_SECONDS, AnalyzerConfig
from stream.server.settings import ServerSettings, repeated
from vad.config import AGGRESSIVENESS, BACKENDS, VadConfig


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Which emotion2vec+ to load and where to run it."""
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=SIZES, default=None, help=f"emotion2vec+ size (default {ModelOptions.model})")
    g.add_argument("--hub", choices=HUBS, default=None, help="ModelScope (ms, default) or Hugging Face (hf)")
    g.add_argument("--model-dir", default=None, help="local funasr model directory (or EMOSTREAM_MODEL_DIR)")
    g.add_argument("--device", default=None, help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    g.add_argument("--dtype", choices=DTYPES, default=None,
                   help=f"compute precision (default {ModelOptions.dtype}: float16 on CUDA, bfloat16 on CPUs with native "
                   "BF16, float32 elsewhere; int8 = dynamically quantized linear layers, for CPUs without BF16; "
                   "or EMOSTREAM_DTYPE)")
    g.add_argument("--half", dest="dtype", action="store_const", const="float16", help="float16 on CUDA")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all cores)")
    g.add_argument("--offline", action="store_true", default=None, help="never download (or EMOSTREAM_OFFLINE=1)")
    g.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false", default=None,
                   help="on CUDA, launch every forward's kernels instead of replaying captured graphs")
    g.add_argument("--compile", action="store_true", default=None,
                   help="on the CPU, run the transformer through torch.compile (inductor): compiled at start-up "
                   "(minutes on 2 cores the first time, then loaded from ~/.cache/emostream/inductor)")


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """Windows, chunks, VAD and the fear/disgust decision layer."""
    cfg, decisions, bar = AnalyzerConfig, DecisionConfig, QualityBar
    g = p.add_argument_group("analysis")
    g.add_argument("--window", type=float, default=cfg.window_seconds, help="window length in seconds (%(default)s)")
    g.add_argument("--hop", type=float, default=cfg.hop_seconds, help="window hop in seconds (%(default)s)")
    g.add_argument("--chunk", type=float, default=None,
                   help=f"scoring chunk in seconds (default {cfg.chunk_seconds:g}; the live server on CUDA: 0.5)")
    g.add_argument("--chunk-context", type=float, default=None,
                   help=f"left context per chunk, seconds (default {cfg.context_seconds:g})")
    g.add_argument("--chunk-mode", choices=CHUNK_MODES, default="auto",
                   help=f"latency: {LATENCY_CHUNK_SECONDS:g} s chunks, window events within ~1 s for about twice the "
                   "compute; throughput: --chunk's long chunks; auto (default): latency for a stream served alone "
                   "(listen, a server's only session), else throughput; files recorded by the server: their "
                   "session.json's mode (replay gives the live events)")
    g.add_argument("--vad", choices=BACKENDS, default=VadConfig.backend, help="VAD backend (%(default)s)")
    g.add_argument("--vad-aggressiveness", type=int, choices=AGGRESSIVENESS, default=VadConfig.aggressiveness)
    g = p.add_argument_group("fear/disgust decision layer (docs/decision-layer.md)")
    g.add_argument("--profiles", type=Path, default=os.environ.get("EMOSTREAM_PROFILES"),
                   help="domain-profile library YAML (default: the shipped, neutral stream/decision/profiles.yaml)")
    g.add_argument("--centroids", type=Path, default=os.environ.get("EMOSTREAM_CENTROIDS"),
                   help="fear/disgust centres from `emostream calibrate` (enables fusion)")
    g.add_argument("--review-gap", type=float, default=decisions.review_gap,
                   help="review when |fear - disgust| < this (%(default)s)")
    g.add_argument("--dual-min-peak", type=float, default=decisions.dual_min_peak,
                   help="dual report: both peaks above this (%(default)s)")
    g.add_argument("--dual-max-gap", type=float, default=decisions.dual_max_gap,
                   help="dual report: peaks closer than this (%(default)s)")
    g.add_argument("--fusion-gap", type=float, default=FusionConfig.close_gap,
                   help="fuse when |fear - disgust| < this (%(default)s)")
    g.add_argument("--no-fusion", action="store_true", help="never fuse, even with --centroids")
    g.add_argument("--no-quality-gate", action="store_true", help="never withhold a fear/disgust call on poor audio")
    g.add_argument("--min-snr", type=float, default=bar.min_snr_db, help="quality bar: SNR in dB (%(default)s)")
    g.add_argument("--max-clipping", type=float, default=bar.max_clipping,
                   help="quality bar: clipped fraction (%(default)s)")
    g.add_argument("--min-bandwidth", type=float, default=bar.min_bandwidth_hz,
                   help="quality bar: bandwidth in Hz (%(default)s)")
    g.add_argument("--cues", choices=CUE_MODES, default=decisions.cues,
                   help="acoustic cues for segments where fear/disgust lead or a dual report fires (default), all, none")
    g.add_argument("--no-focus", action="store_true", help="do not re-score the focus crop of ambiguous segments")
    g.add_argument("--focus-decides", action="store_true",
                   help="let the focus crop's fear/disgust call replace the segment's")


def analyzer_config(args) -> AnalyzerConfig:
    """The AnalyzerConfig the analysis options describe."""
    cfg = AnalyzerConfig
    mode = getattr(args, "chunk_mode", None) or "auto"
    if mode == "auto" and args.chunk is not None:
        mode = "throughput"  # a chunk length given is a chunk length kept
    default_chunk = LATENCY_CHUNK_SECONDS if mode == "latency" else cfg.chunk_seconds
    chunk = default_chunk if args.chunk is None else args.chunk
    context = cfg.context_seconds if args.chunk_context is None else args.chunk_context
    recorded = recorded_chunking(getattr(args, "files", None) or ()) if mode == "auto" and args.chunk_context is None else None
    if recorded is not None:  # re-analyzing a live recording: its own chunk plan, so the same events
        mode, chunk, context = recorded
    return AnalyzerConfig(
        window_seconds=args.window,
        hop_seconds=args.hop,
        chunk_seconds=chunk,
        context_seconds=context,
        chunk_mode=mode,
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


def recorded_chunking(paths) -> tuple[str, float, float] | None:
    """(mode, chunk, context) a live recording was analyzed with, when every path is a recording's
    audio (its session.json beside it records `parameters.chunk_mode`) and they all agree; else None.

    `--chunk-mode auto` on files uses it: a session recorded in the latency mode (a server's lone
    stream) is re-analyzed in that mode, so replaying it gives the events it gave live.
    """
    found = set()
    for path in paths:
        try:
            params = json.loads((Path(path).parent / "session.json").read_text()).get("parameters") or {}
            found.add((params["chunk_mode"], float(params["chunk_seconds"]), float(params["context_seconds"])))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
    return found.pop() if len(found) == 1 else None


def load_scorer_from_args(args) -> Scorer:
    """Load the scorer the model options describe."""
    return load_scorer(model_options_from_args(args))


def model_options_from_args(args) -> ModelOptions:
    """The ModelOptions the model options describe (nothing loaded)."""
    return ModelOptions.from_env(
        model=args.model,
        hub=args.hub,
        model_dir=args.model_dir,
        device=args.device,
        dtype=args.dtype,
        threads=args.threads,
        offline=args.offline,
        cuda_graphs=args.cuda_graphs,
        compile=getattr(args, "compile", None),
    )


def decision_data(args, scorer: Scorer) -> DecisionData:
    """The profile library and centres the options name, checked against the loaded model."""
    return DecisionData.load(scorer, args.profiles, args.centroids)


SECRET_SUFFIXES = ("token", "password", "secret", "api_key")  # server options whose values are credentials
_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")  # scheme://user:PASSWORD@host


def _server_options():
    """The ServerSettings fields that are command-line options of their own."""
    return [f for f in fields(ServerSettings) if "group" in f.metadata]


def shown_default(name: str, value) -> str:
    """A default as --help prints it: a credential (from EMOSTREAM_*) as ***, a URL's password masked."""
    if value is not None and value != () and name.endswith(SECRET_SUFFIXES):
        return "***"
    if isinstance(value, tuple):  # a repeatable option's values, as EMOSTREAM_* holds them
        return " ".join(shown_default(name, item) for item in value) or "none"
    if isinstance(value, str):
        value = _URL_PASSWORD.sub(r"\1***@", value)
    return str(value).replace("%", "%%")  # argparse %-formats help texts


def add_server_options(p: argparse.ArgumentParser) -> None:
    """Options of `emostream serve` / `python server.py`, one per ServerSettings option field.

    Each also reads EMOSTREAM_<NAME> (a flag is on when that is "1").
    """
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in _server_options():
        name = f.metadata["group"]
        group = groups[name] if name in groups else groups.setdefault(name, p.add_argument_group(name))
        flag, env = "--" + f.name.replace("_", "-"), os.environ.get(f"EMOSTREAM_{f.name.upper()}")
        kind, help = f.metadata["kind"], f"{f.metadata['help']} (or EMOSTREAM_{f.name.upper()})"
        if kind is bool:
            group.add_argument(flag, action="store_true", default=f.default if env is None else env == "1", help=help)
        elif f.metadata.get("many"):  # repeatable; EMOSTREAM_<NAME> holds several, separated by whitespace
            default = f.default if env is None else repeated(env, kind)
            help = f"{f.metadata['help']} (or EMOSTREAM_{f.name.upper()}: several separated by spaces)"
            group.add_argument(flag, action=Repeated, type=kind, default=default,
                               help=f"{help}; default {shown_default(f.name, default)}")
        else:
            default = f.default if env is None else kind(env)
            # Not %(default)s: --help would print the secrets read from the environment.
            group.add_argument(flag, type=kind, default=default, help=f"{help}; default {shown_default(f.name, default)}")


class Repeated(argparse.Action):
    """A repeatable option collecting a tuple: the values given replace its default (EMOSTREAM_*'s), never add to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, self.dest)
        setattr(namespace, self.dest, (*(() if given is self.default else given), values))


def settings_from_args(args, analyzer: AnalyzerConfig) -> ServerSettings:
    """ServerSettings from parsed options (an empty string leaves an optional setting unset)."""
    values = {}
    for f in _server_options():
        value = getattr(args, f.name)
        values[f.name] = (value or None) if f.default is None else value
    return ServerSettings(**values, analyzer=analyzer, profiles=args.profiles, centroids=args.centroids,
                          chunk_seconds=args.chunk, context_seconds=args.chunk_context)


def _cluster_flag(name: str) -> str:
    return "--ray-address" if name == "address" else "--" + name.replace("_", "-")


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """`--ray` and the layout of the Ray Serve application, one option per ClusterOptions field."""
    g = p.add_argument_group("ray", "serve on Ray Serve (needs the extra: pip install 'emostream[ray]')")
    g.add_argument("--ray", action="store_true", help="run as a Ray Serve application (docs/scaling.md)")
    for f in fields(ClusterOptions):
        if "help" in f.metadata:
            g.add_argument(_cluster_flag(f.name), dest=f"ray_{f.name}", type=f.metadata["kind"], default=f.default,
                           help=f"{f.metadata['help']}; default %(default)s")


def cluster_options_from_args(args) -> ClusterOptions:
    """ClusterOptions from parsed options."""
    return ClusterOptions(**{f.name: getattr(args, f"ray_{f.name}") for f in fields(ClusterOptions) if "help" in f.metadata})

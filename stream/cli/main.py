"""`emostream` command line: a thin shell over the engine (decode, analyze, write, print)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.architectures import ARCHITECTURES
from models.errors import EmostreamError
from models.labels import with_emoji
from models.planted import PLANTED_KINDS, write_planted_model_dir
from models.random_weights import demo_model_dir, write_random_model_dir
from models.scoring import RANDOM_WEIGHTS_WARNING, weights_warning
from stream.decision.fusion import DISGUST, FEAR, compute_centroids, cosine, kmeans_view
from stream.decision.profiles import ProfileLibrary, estimate_bias, load_library, save_library
from stream.offline.analyze import GRANULARITIES, analyze_audio, output_dir, write_outputs
from stream.offline.audio_file import load, load_channels
from stream.offline.evaluation import EMBEDDING_METHODS, evaluate, plot_embeddings, read_manifest, write_report
from stream.offline.labelled import embed, find_items, needs_model, saved_model_id
from stream.offline.split import analyze_channels, write_split_outputs
from stream.server import audit
from stream.server.app import serve
from stream.server.catalog import catalog_url, rebuild_folder, redacted
from stream.server.recording import repair
from stream.server.settings import ServerSettings

from .listen import add_listen_options
from .listen import run as run_listen
from .replay import add_replay_options
from .replay import run as run_replay
from .options import (
    add_analysis_options,
    add_cluster_options,
    add_model_options,
    add_server_options,
    analyzer_config,
    cluster_options_from_args,
    decision_data,
    load_scorer_from_args,
    model_options_from_args,
    settings_from_args,
)


def cmd_analyze(args) -> int:
    """Analyze files like the seed's WebUI; one output folder per input."""
    if args.split_channels:
        return cmd_analyze_split(args)
    if args.parties:
        print("error: --parties names the channels of --split-channels; add --split-channels", file=sys.stderr)
        return 2
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
            note = f" [{'planted' if result.planted else 'random'} weights: not emotion recognition]" if result.random_weights else ""
            withheld = f" [{result.decision.withheld}]" if result.decision.withheld else ""
            bar.write(
                f"{path}: {with_emoji(result.emotion)} {result.confidence:.1%}{withheld} "
                f"({len(result.of_type('segment'))} segments, {len(result.of_type('transition'))} transitions, "
                f"{len(result.of_type('review'))} review flags) -> {out}{note}"
            )
    return 1 if failures else 0


def cmd_analyze_split(args) -> int:
    """`analyze --split-channels`: each channel of each file analyzed as its own party."""
    config = analyzer_config(args)
    scorer = load_scorer_from_args(args)
    data = decision_data(args, scorer)
    failures = 0
    for path in args.files:
        try:
            split = analyze_channels(scorer, load_channels(path), str(path), args.parties, args.granularity,
                                     args.context, config, data=data)
            out = output_dir(args.out, path)
            write_split_outputs(split, out, config, args.embedding)
        except EmostreamError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            failures += 1
            continue
        note = " [random weights: not emotion recognition]" if scorer.random_weights else ""
        readings = "; ".join(
            f"{p.party}: {with_emoji(p.result.emotion)} {p.result.confidence:.1%} "
            f"({len(p.result.of_type('segment'))} segments, {len(p.result.of_type('review'))} review flags)"
            for p in split.parties
        )
        print(f"{path}: {readings} -> {out}{note}")
    return 1 if failures else 0


def _skip(item, exc) -> None:
    print(f"error: {item.path}: {exc} (skipped)", file=sys.stderr)


def _embedded_items(args):
    """Items of `args.source` with their embeddings; the model is loaded only for audio items."""
    items = find_items(args.source)
    scorer = load_scorer_from_args(args) if needs_model(items) else None
    model_id = scorer.model_id if scorer else (getattr(args, "model_id", None) or saved_model_id(items))
    return embed(items, scorer, on_error=_skip), model_id, scorer


def cmd_calibrate(args) -> int:
    """Fear/disgust centres (and optionally a domain's logit bias) from labelled data."""
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
    embedded, _, _ = _embedded_items(args)
    path = plot_embeddings(np.stack([e.embedding for e in embedded]),
                           [e.item.label or "unlabelled" for e in embedded], args.out, args.method)  # fmt: skip
    print(f"wrote {path} ({len(embedded)} embeddings, {args.method})")
    return 0


def cmd_make_model(args) -> int:
    """Write a random-weight (or planted-head) model directory (for tests, demos, benchmarks)."""
    if args.planted:
        path = write_planted_model_dir(args.dir, args.arch, args.planted, args.seed)
        print(f"wrote {args.arch} model with PLANTED weights ({args.planted}) to {path}\n"
              f"{weights_warning(True, args.planted)}")  # fmt: skip
        return 0
    path = write_random_model_dir(args.dir, args.arch, args.seed)
    print(f"wrote {args.arch} model with random weights to {path}\n{RANDOM_WEIGHTS_WARNING}")
    return 0


def cmd_serve(args) -> int:
    """Run the live server."""
    settings = settings_from_args(args, analyzer_config(args))
    settings.check()  # before the model loads: a bad option fails fast
    if args.demo:
        if args.model_dir or args.model:
            raise EmostreamError("--demo runs its own random-weight model: leave out --model and --model-dir")
        args.model_dir = str(demo_model_dir())
        print(f"demo: serving the random-weight model in {args.model_dir}\n{RANDOM_WEIGHTS_WARNING}", file=sys.stderr)
    # Downloads and deletions reach the server log at the default level too: an audit trail, not chatter.
    audit.log.setLevel(logging.INFO)
    if args.ray:
        return _serve_on_ray(settings, args)
    serve(settings, load_scorer_from_args(args))
    return 0


def _serve_on_ray(settings, args) -> int:
    """`serve --ray`: the same server as a Ray Serve application; Ray is imported only here."""
    options = cluster_options_from_args(args)
    options.check()
    try:
        from stream.cluster.launch import run
    except ImportError as exc:
        raise EmostreamError(f"--ray needs Ray Serve: pip install 'emostream[ray]' ({exc})") from exc
    run(settings, model_options_from_args(args), options)
    return 0


def cmd_repair(args) -> int:
    """Repair recordings of sessions whose server was killed."""
    for path in args.sessions:
        report = repair(path)
        print(f"{path}: {report}")
    return 0


def cmd_catalog_rebuild(args) -> int:
    """Re-index a recordings folder into the session catalog; running it twice changes nothing."""
    url = catalog_url(args.recordings, args.catalog)
    report = rebuild_folder(args.recordings, url)
    print(f"{redacted(url)}: {report}")
    return 0


def _default_recordings() -> Path:
    """The server's recordings folder: EMOSTREAM_RECORDINGS, else ServerSettings' default."""
    return Path(os.environ.get("EMOSTREAM_RECORDINGS") or ServerSettings.recordings)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `emostream` command."""
    parser = argparse.ArgumentParser(prog="emostream", description="Real-time speech-emotion analysis with emotion2vec+.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and library messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("analyze", help="analyze audio files (WAV, MP3, M4A, FLAC, OGG)")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--granularity", choices=GRANULARITIES, default=GRANULARITIES[0])
    p.add_argument("--context", default=None, help="domain context text: selects a profile from --profiles (e.g. 'medical consultation')")
    p.add_argument("--embedding", action="store_true", help="also write embedding.npy")
    p.add_argument("--split-channels", action="store_true",
                   help="analyze each channel as its own party (a call recorder's caller and agent)")
    p.add_argument("--parties", type=lambda s: [n.strip() for n in s.split(",")], default=None,
                   help="with --split-channels: party names in channel order, e.g. caller,agent (default 0,1,...)")
    p.add_argument("--out", type=Path, default=Path("outputs"), help="parent folder of the result folders")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_model_options(p)
    add_analysis_options(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("serve", help="run the live server (WebSocket, Twilio, HTTP API)")
    p.add_argument("--demo", action="store_true",
                   help="no weights needed: serve a tiny RANDOM-weight model (written once to ~/.cache/emostream) "
                        "to see the server and dashboard work; its output is not emotion recognition")
    add_server_options(p)
    add_cluster_options(p)
    add_model_options(p)
    add_analysis_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("listen", help="analyze the microphone live in the terminal")
    add_listen_options(p)
    add_model_options(p)
    add_analysis_options(p)
    p.set_defaults(func=run_listen)

    p = sub.add_parser("replay", help="play recorded sessions back through a server as replays (drills, load tests)")
    add_replay_options(p)
    p.set_defaults(func=run_replay)

    p = sub.add_parser("repair", help="repair recordings after a crash (WAV header, torn JSONL line)")
    p.add_argument("sessions", nargs="+", type=Path, help="recordings/<session_id> folders")
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("catalog", help="the session catalog: recordings, alerts and access log in SQLite or PostgreSQL")
    cat = p.add_subparsers(dest="action", required=True)
    p = cat.add_parser("rebuild", help="re-index a recordings folder (sessions, alerts, access log); twice changes nothing")
    p.add_argument("--recordings", type=Path, default=_default_recordings(),
                   help="the recordings folder (default %(default)s: EMOSTREAM_RECORDINGS, else the server's)")
    p.add_argument("--catalog", default=None,
                   help="database URL: postgresql://user:password@host/db, or a SQLite file "
                        "(default: EMOSTREAM_CATALOG, else <recordings>/.catalog.sqlite3)")
    p.set_defaults(func=cmd_catalog_rebuild)

    p = sub.add_parser("calibrate", help="fear/disgust centres (and a domain's bias) from labelled data")
    p.add_argument("source", type=Path, help="JSONL manifest, a folder per label, or a folder of unlabelled files"
                   " (audio, or .npy embeddings from `analyze --embedding`)")
    p.add_argument("--out", type=Path, required=True, help="centres file to write (.npz; a .json report beside it)")
    p.add_argument("--model-id", default=None, help="model id of saved embeddings without a result.json beside them")
    p.add_argument("--domain", default=None, help="also estimate this profile's logit bias from the labelled audio")
    p.add_argument("--profiles", type=Path, default=None, help="library to start from (default: the shipped one)")
    p.add_argument("--profiles-out", type=Path, default=None, help="where --domain writes the updated library")
    add_model_options(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="accuracy, UAR, macro-F1, confusion and fear/disgust pair accuracy per step")
    p.add_argument("manifest", type=Path, help="JSONL manifest: path/wav/audio + label/emo per line")
    p.add_argument("--out", type=Path, required=True, help="folder for metrics.json, confusion_matrix.png, predictions.jsonl")
    p.add_argument("--context", default=None, help="domain context text for every item (selects a profile)")
    add_model_options(p)
    add_analysis_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("embeddings", help="work with exported embeddings")
    emb = p.add_subparsers(dest="action", required=True)
    p = emb.add_parser("plot", help="2-D map (t-SNE or UMAP) of embeddings coloured by label")
    p.add_argument("source", type=Path, help="JSONL manifest or folder per label (.npy embeddings or audio)")
    p.add_argument("--out", type=Path, default=Path("embeddings.png"))
    p.add_argument("--method", choices=EMBEDDING_METHODS, default=EMBEDDING_METHODS[0])
    add_model_options(p)
    p.set_defaults(func=cmd_embeddings_plot)

    p = sub.add_parser("make-model", help="write a model directory with RANDOM weights (tests/demos)")
    p.add_argument("dir", type=Path)
    p.add_argument("--arch", choices=tuple(ARCHITECTURES), default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--planted", choices=PLANTED_KINDS, default=None,
        help="keep the random encoder but plant the head so real speech raises fear/disgust alerts "
        "(fitted on espeak-ng speech; to test alerts, never emotion recognition)",
    )
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

"""Evaluation on a labelled manifest: metrics, the fear/disgust pair accuracy, report files.

Used by ``emostream evaluate MANIFEST --out DIR``. A manifest is JSON Lines, one item a line:

    {"path": "clips/a.wav", "label": "fearful"}
    {"key": "Ses01F_impro01_F000", "wav": "/data/iemocap/a.wav", "emo": "ang"}   # EmoBox style

The audio field may be ``path``, ``audio``, ``source`` or ``wav``; the label field ``label`` or
``emo``. Relative paths are resolved against the manifest's folder. Labels are the nine model
labels or common short/alternative names (``ang``, ``anger``, ``fear``, ``disgust``, ...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.errors import ConfigError, EmostreamError
from models.labels import LABELS
from models.scoring import Scorer, softmax
from stream.decision.checks import plan_checks, run_checks
from stream.decision.fear_disgust import decide, leader
from stream.decision.fusion import l2_normalise
from stream.decision.rules import review_flag

from .analyze import encode_whole
from .audio_file import load

PAIR = ("fearful", "disgusted")
AUDIO_FIELDS = ("path", "audio", "source", "wav")
LABEL_FIELDS = ("label", "emo")
EMBEDDING_METHODS = ("tsne", "umap")  # `plot_embeddings`: sklearn t-SNE, or umap-learn when installed

ALIASES: dict[str, str] = {
    "ang": "angry", "anger": "angry", "angry": "angry",
    "dis": "disgusted", "disgust": "disgusted", "disgusted": "disgusted",
    "fea": "fearful", "fear": "fearful", "fearful": "fearful",
    "hap": "happy", "happiness": "happy", "happy": "happy", "joy": "happy",
    "neu": "neutral", "neutral": "neutral",
    "oth": "other", "other": "other",
    "sad": "sad", "sadness": "sad",
    "sur": "surprised", "surprise": "surprised", "surprised": "surprised",
    "unk": "unknown", "unknown": "unknown", "<unk>": "unknown",
}  # fmt: skip


@dataclass(frozen=True)
class ManifestItem:
    """One labelled recording."""

    path: Path  # absolute or resolved against the manifest's folder
    label: str  # one of LABELS
    key: str  # the item's id (``key`` field, else the file stem)
    line: int  # 1-based line number in the manifest


def normalise_label(raw: str) -> str:
    """A model label from a label or a common alias (case-insensitive); ``ConfigError`` otherwise."""
    label = ALIASES.get(str(raw).strip().casefold())
    if label is None:
        raise ConfigError(f"unknown label {raw!r}; use one of {list(LABELS)}")
    return label


def read_manifest(path: str | Path) -> list[ManifestItem]:
    """Read a JSONL manifest; errors name the file and line. Blank lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read manifest {path}: {exc}") from exc
    items = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected a JSON object")
        audio = next((row[f] for f in AUDIO_FIELDS if row.get(f)), None)
        if not isinstance(audio, str):
            raise ConfigError(f"{where}: no audio path (one of fields {list(AUDIO_FIELDS)})")
        raw_label = next((row[f] for f in LABEL_FIELDS if row.get(f) is not None), None)
        if raw_label is None:
            raise ConfigError(f"{where}: no label (one of fields {list(LABEL_FIELDS)})")
        try:
            label = normalise_label(raw_label)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        audio_path = Path(audio).expanduser()
        if not audio_path.is_absolute():
            audio_path = path.parent / audio_path
        items.append(ManifestItem(path=audio_path, label=label, key=str(row.get("key") or audio_path.stem), line=n))
    if not items:
        raise ConfigError(f"manifest {path} has no items")
    return items


def _safe_div(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def confusion_matrix(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] = LABELS) -> np.ndarray:
    """(L, L) integer counts; rows are true labels, columns predicted, both in ``labels`` order."""
    index = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        for v in (t, p):
            if v not in index:
                raise ConfigError(f"label {v!r} is not one of {list(labels)}")
        cm[index[t], index[p]] += 1
    return cm


def pair_accuracy(y_true: Sequence[str], y_pred: Sequence[str], pair: Sequence[str] = PAIR) -> float | None:
    """Among items whose true label is in ``pair``: the fraction predicted exactly right (None if none)."""
    hits = [t == p for t, p in zip(y_true, y_pred) if t in pair]
    return _safe_div(sum(hits), len(hits)) if hits else None


def compute_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str] = LABELS,
    review_flags: Sequence[bool] | None = None,
) -> dict:
    """Accuracy, UAR, macro-F1, confusion matrix, per-class scores, pair accuracy, review rate.

    - ``uar``: mean recall over the classes present in ``y_true`` (the usual SER definition).
    - ``macro_f1``: mean F1 over the classes present in ``y_true`` or ``y_pred`` — a class that
      is predicted but never true counts with F1 = 0 (it only made false positives); classes
      absent from both are left out rather than counted as 0 or 1.
    - ``pair_accuracy``: on items whose true label is fearful or disgusted, the fraction
      predicted correctly (a fearful item predicted as sad is wrong too); None without such items.
    - ``review_rate``: fraction of items flagged for review (None when no flags are given).
    - ``confusion_matrix``: rows = true, columns = predicted, in ``labels`` order.
    """
    y_true, y_pred = [str(x) for x in y_true], [str(x) for x in y_pred]
    if len(y_true) != len(y_pred):
        raise ConfigError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise ConfigError("no items to evaluate")
    labels = list(labels)
    cm = confusion_matrix(y_true, y_pred, labels)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    per_class = {}
    for i, lab in enumerate(labels):
        precision = _safe_div(tp[i], predicted[i])
        recall = _safe_div(tp[i], support[i])
        f1 = _safe_div(2 * precision * recall, precision + recall)
        per_class[lab] = {"precision": precision, "recall": recall, "f1": f1, "support": int(support[i])}
    in_true = [lab for i, lab in enumerate(labels) if support[i] > 0]
    in_either = [lab for i, lab in enumerate(labels) if support[i] > 0 or predicted[i] > 0]
    review_rate = None
    if review_flags is not None:
        flags = [bool(f) for f in review_flags]
        if len(flags) != len(y_true):
            raise ConfigError(f"{len(flags)} review flags for {len(y_true)} items")
        review_rate = _safe_div(sum(flags), len(flags))
    return {
        "n": len(y_true),
        "labels": labels,
        "accuracy": _safe_div(tp.sum(), len(y_true)),
        "uar": float(np.mean([per_class[lab]["recall"] for lab in in_true])),
        "macro_f1": float(np.mean([per_class[lab]["f1"] for lab in in_either])),
        "pair_accuracy": pair_accuracy(y_true, y_pred),
        "pair_support": int(sum(t in PAIR for t in y_true)),
        "review_rate": review_rate,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def compare_steps(y_true: Sequence[str], predictions_by_step: Mapping[str, Sequence[str]]) -> list[dict]:
    """Pair accuracy with and without each remedy step.

    ``predictions_by_step`` is ordered: the first entry is the baseline (no step), each next
    entry the predictions with one more step switched on (e.g. ``baseline``, ``+focus``,
    ``+centroids``, ``+context``). Returns one row per entry with its accuracy, pair accuracy,
    and the pair-accuracy change against the previous entry (this step's own effect) and the
    baseline (all steps so far); changes are None where a pair accuracy is None.
    """
    rows: list[dict] = []
    base = prev = None
    for i, (step, pred) in enumerate(predictions_by_step.items()):
        pa = pair_accuracy(y_true, pred)
        if len(pred) != len(y_true):
            raise ConfigError(f"step {step!r}: {len(pred)} predictions for {len(y_true)} items")
        acc = _safe_div(sum(t == p for t, p in zip(y_true, pred)), len(y_true))
        if i == 0:
            base = pa
        rows.append(
            {
                "step": step,
                "accuracy": acc,
                "pair_accuracy": pa,
                "delta_vs_previous": None if i == 0 or pa is None or prev is None else pa - prev,
                "delta_vs_baseline": None if i == 0 or pa is None or base is None else pa - base,
            }
        )
        prev = pa
    return rows


def _pyplot():
    # matplotlib loads here, only for the plots; Agg must be chosen before pyplot is imported.
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_png: str | Path) -> Path:
    """Write a finished figure as PNG, creating its folder."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    return out_png


def plot_confusion(metrics: Mapping, out_png: str | Path) -> Path:
    """The confusion matrix as a PNG: counts annotated, label names on both axes."""
    plt = _pyplot()
    cm = np.asarray(metrics["confusion_matrix"])
    labels = list(metrics["labels"])
    fig, ax = plt.subplots(figsize=(7, 6))
    try:
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        top = cm.max() if cm.size else 0
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                        color="white" if top and cm[i, j] > top / 2 else "black", fontsize=8)  # fmt: skip
        ax.set_title(f"confusion matrix (n={metrics.get('n', int(cm.sum()))})")
        return _save(fig, out_png)
    finally:
        plt.close(fig)


def write_report(metrics: Mapping, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json`` and ``confusion_matrix.png`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "metrics.json"
    json_path.write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"metrics": json_path, "confusion_matrix": plot_confusion(metrics, out / "confusion_matrix.png")}


def plot_embeddings(
    embeddings: np.ndarray,
    labels: Sequence[str],
    out_png: str | Path,
    method: str = "tsne",
    seed: int = 0,
) -> Path:
    """A 2-D map of embeddings (N, D) coloured by label (the seed's t-SNE view of embedding.npy).

    ``method="tsne"``: sklearn TSNE on L2-normalised embeddings with perplexity
    ``min(30, max(2, (N - 1) / 3))`` (t-SNE needs perplexity < N). ``method="umap"`` uses
    umap-learn when it is installed and raises ``ConfigError`` otherwise.
    """
    x = l2_normalise(np.asarray(embeddings, dtype=np.float64))
    labels = [str(v) for v in labels]
    if x.ndim != 2 or x.shape[0] != len(labels):
        raise ConfigError(f"embeddings {x.shape} and {len(labels)} labels do not match")
    n = x.shape[0]
    if n < 3:
        raise ConfigError(f"need at least 3 embeddings for a 2-D map, got {n}")
    if method == "tsne":
        from sklearn.manifold import TSNE  # ~0.8 s to import: only the embeddings map needs it

        perplexity = min(30.0, max(2.0, (n - 1) / 3.0))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    elif method == "umap":
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError as exc:
            raise ConfigError("method='umap' needs the umap-learn package; use method='tsne'") from exc
        xy = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed).fit_transform(x)
    else:
        raise ConfigError(f"method must be one of {', '.join(EMBEDDING_METHODS)}, got {method!r}")
    plt = _pyplot()
    palette = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6, 5))
    try:
        for lab in sorted(set(labels), key=lambda v: (LABELS.index(v) if v in LABELS else len(LABELS), v)):
            m = np.array([v == lab for v in labels])
            colour = palette(LABELS.index(lab) if lab in LABELS else 9)
            ax.scatter(xy[m, 0], xy[m, 1], s=14, label=f"{lab} ({int(m.sum())})", color=colour)
        ax.legend(fontsize=8)
        ax.set_title(f"embeddings ({method}, n={n})")
        ax.set_xticks([])
        ax.set_yticks([])
        return _save(fig, out_png)
    finally:
        plt.close(fig)


STEPS = ("model", "+profile", "+focus", "+fusion", "+quality gate")


def step_predictions(
    config, raw_scores: Mapping[str, float], scores: Mapping[str, float], evidence, profile,
    embedding: np.ndarray, centroids, focus,
) -> dict[str, str]:
    """One item's call as the steps are switched on one after another (see `STEPS`).

    `raw_scores` are the model's, `scores` carry the profile's bias. Focus here *decides* (the
    crop's fear/disgust call replaces the whole input's), so its effect can be measured even where
    the configuration only reports it; fusion needs centres and is a no-op without them.
    """
    cfg = replace(config, quality_gate=False, fusion=replace(config.fusion, enabled=False),
                  focus=replace(config.focus, decide=False))  # fmt: skip
    calls = {"model": leader(raw_scores), "+profile": decide(cfg, scores, evidence, profile).emotion}
    cfg = replace(cfg, focus=replace(cfg.focus, decide=True))
    calls["+focus"] = decide(cfg, scores, evidence, profile, focus=focus).emotion
    cfg = replace(cfg, fusion=replace(cfg.fusion, enabled=True))
    calls["+fusion"] = decide(cfg, scores, evidence, profile, embedding, centroids, focus).emotion
    cfg = replace(cfg, quality_gate=True)
    calls["+quality gate"] = decide(cfg, scores, evidence, profile, embedding, centroids, focus).emotion
    return calls


def evaluate(scorer: Scorer, items: Sequence[ManifestItem], config, data, context: str | None = None, on_error=None) -> dict:
    """Run every item through the model and the decision layer; metrics for the configured layer
    plus pair accuracy step by step. Items that cannot be read go to `on_error` and are skipped."""
    profile = data.profile_for(context)
    bias = profile.bias_vector(scorer.labels).astype(np.float32)
    # Gather the focus crop for every ambiguous item, so "+focus" can be measured whatever the config says.
    gather = replace(config.decisions, focus=replace(config.decisions.focus, enabled=True))
    y_true, predictions, flags, rows = [], [], [], []
    steps: dict[str, list[str]] = {s: [] for s in STEPS}
    for item in items:
        try:
            audio = load(item.path)
            whole = encode_whole(scorer, audio.samples)
        except (EmostreamError, OSError) as exc:
            if on_error is None:
                raise
            on_error(item, exc)
            continue
        logits = whole.logits + bias
        named = lambda v: dict(zip(scorer.labels, v.tolist()))  # noqa: E731
        raw, scores = named(softmax(whole.logits.mean(axis=0))), named(softmax(logits.mean(axis=0)))
        plan = plan_checks(gather, scorer.labels, scores, logits, len(audio.samples))
        evidence, focus = run_checks(plan, gather, scorer, audio.samples, audio.rate, bias)
        embedding = whole.features.mean(axis=0)
        used_focus = focus if config.decisions.focus.enabled else None
        decision = decide(config.decisions, scores, evidence, profile, embedding, data.centroids, used_focus)
        review = review_flag(config.decisions, 0, 0.0, audio.duration, scores) is not None
        calls = step_predictions(config.decisions, raw, scores, evidence, profile, embedding, data.centroids, focus)
        for step in STEPS:
            steps[step].append(calls[step])
        y_true.append(item.label)
        predictions.append(decision.emotion)
        flags.append(review)
        rows.append({"key": item.key, "path": str(item.path), "label": item.label, "prediction": decision.emotion,
                     "review": review, "steps": calls, "decision": decision.to_dict()})  # fmt: skip
    if not rows:
        raise ConfigError("no item of the manifest could be analysed")
    metrics = compute_metrics(y_true, predictions, review_flags=flags)
    metrics["steps"] = compare_steps(y_true, steps)
    metrics["withheld"] = sum(1 for r in rows if r["decision"]["withheld"])
    metrics["profile"] = profile.describe()
    metrics["centroids"] = data.centroids.describe() if data.centroids is not None else None
    metrics["model_id"] = scorer.model_id
    metrics["random_weights"] = scorer.random_weights
    return {"metrics": metrics, "items": rows}

"""Fear/disgust centroid fusion (the seed's step 2): embedding centres and the fusion rule.

The seed exports utterance embeddings, keeps one centre for fearful and one for disgusted
speech, and when the two scores are close (``|fear - disgust| < 0.12``) re-decides between
them with ``fused_x = 0.6 * score_x + 0.4 * cosine(embedding, centre_x)``.

Centres are class means of **L2-normalised** embeddings, computed from labelled data
(:func:`compute_centroids`). :func:`kmeans_view` clusters unlabelled embeddings into two groups
the way the seed describes, but KMeans cannot say which cluster is fear: it is a view for
inspection, and only labelled data produces a :class:`Centroids` that :func:`fuse` accepts.

Centres are saved as one ``.npz`` (the seed's ``CLUSTER_CACHE_PATH``): the two arrays plus JSON
metadata (model id, dimension, per-class counts, creation time, method). Centres only make sense
for the model that produced the embeddings, so loading checks the model id and dimension.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from models.errors import ConfigError

FEAR = "fearful"
DISGUST = "disgusted"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Centroids:
    """The fear and disgust centres of one model's utterance-embedding space."""

    fear: np.ndarray  # (D,) mean of L2-normalised fearful embeddings
    disgust: np.ndarray  # (D,) mean of L2-normalised disgusted embeddings
    counts: dict  # label -> number of embeddings behind each centre
    model_id: str  # hub id or model directory name that produced the embeddings
    dim: int  # D
    created: str  # ISO 8601 UTC time of computation
    method: str = "labelled"  # "labelled" (class means) or "kmeans" (unlabelled clusters)

    def __post_init__(self):
        """Validate shapes and method once."""
        if self.method not in ("labelled", "kmeans"):
            raise ConfigError(f"centroid method must be 'labelled' or 'kmeans', got {self.method!r}")
        for name in ("fear", "disgust"):
            arr = getattr(self, name)
            if np.shape(arr) != (self.dim,):
                raise ConfigError(f"{name} centre has shape {np.shape(arr)}, expected ({self.dim},)")

    def describe(self) -> dict:
        """The centres' metadata, as outputs record it (the arrays themselves stay in the file)."""
        return {"model_id": self.model_id, "dim": self.dim, "counts": dict(self.counts),
                "created": self.created, "method": self.method}  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """Write the centres and their metadata to one ``.npz`` file; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT_VERSION,
            "counts": {str(k): int(v) for k, v in self.counts.items()},
            "model_id": self.model_id,
            "dim": int(self.dim),
            "created": self.created,
            "method": self.method,
        }
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
            np.savez(
                f,
                fear=np.asarray(self.fear, dtype=np.float32),
                disgust=np.asarray(self.disgust, dtype=np.float32),
                meta=np.array(json.dumps(meta)),
            )
        return path

    @classmethod
    def load(
        cls, path: str | Path, expect_model_id: str | None = None, expect_dim: int | None = None
    ) -> Centroids:
        """Read centres saved by :meth:`save`; refuse centres made by another model or dimension."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                fear = np.array(data["fear"], dtype=np.float32)
                disgust = np.array(data["disgust"], dtype=np.float32)
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"cannot read centroid file {path}: {exc}") from exc
        if expect_model_id is not None and meta["model_id"] != expect_model_id:
            raise ConfigError(
                f"centroid file {path} was made with model {meta['model_id']!r}, "
                f"but the loaded model is {expect_model_id!r}; recompute the centres"
            )
        if expect_dim is not None and int(meta["dim"]) != int(expect_dim):
            raise ConfigError(
                f"centroid file {path} has dimension {meta['dim']}, "
                f"but the model's embeddings have dimension {expect_dim}; recompute the centres"
            )
        return cls(
            fear=fear,
            disgust=disgust,
            counts=dict(meta["counts"]),
            model_id=meta["model_id"],
            dim=int(meta["dim"]),
            created=meta["created"],
            method=meta["method"],
        )


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (..., D) scaled to unit length; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two (D,) vectors; 0.0 when either is all zeros."""
    return float(np.dot(l2_normalise(a), l2_normalise(b)))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def compute_centroids(embeddings: np.ndarray, labels: Sequence[str], model_id: str) -> Centroids:
    """Fear and disgust centres: class means of L2-normalised embeddings (N, D) with labels (N,).

    Other labels are ignored. Raises ``ConfigError`` when either class has no sample or the
    shapes disagree.
    """
    emb = np.asarray(embeddings)
    labels = np.asarray([str(x) for x in labels])
    if emb.ndim != 2:
        raise ConfigError(f"embeddings must be (N, D), got shape {emb.shape}")
    if len(labels) != emb.shape[0]:
        raise ConfigError(f"{emb.shape[0]} embeddings but {len(labels)} labels")
    unit = l2_normalise(emb)
    counts = {FEAR: int(np.sum(labels == FEAR)), DISGUST: int(np.sum(labels == DISGUST))}
    missing = [k for k, n in counts.items() if n == 0]
    if missing:
        raise ConfigError(f"no {' or '.join(missing)} samples: both classes are needed for centres")
    return Centroids(
        fear=unit[labels == FEAR].mean(axis=0).astype(np.float32),
        disgust=unit[labels == DISGUST].mean(axis=0).astype(np.float32),
        counts=counts,
        model_id=model_id,
        dim=int(emb.shape[1]),
        created=_now(),
        method="labelled",
    )


def kmeans_view(embeddings: np.ndarray, k: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """KMeans on L2-normalised embeddings (N, D): returns centres (k, D) and assignments (N,).

    This is the seed's "cluster fear vs disgust samples" for unlabelled data. Cluster numbers
    are arbitrary: without labels nothing says which centre is fear, so the result cannot be
    turned into :class:`Centroids` directly. Use it to inspect whether the two classes separate,
    or label a few items per cluster and then call :func:`compute_centroids`.
    """
    from sklearn.cluster import KMeans  # ~0.8 s to import: only `calibrate` needs it, never a live stream

    unit = l2_normalise(np.asarray(embeddings))
    if unit.ndim != 2 or unit.shape[0] < k:
        raise ConfigError(f"kmeans_view needs at least k={k} embeddings of shape (N, D), got {unit.shape}")
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(unit)
    return km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int64)


@dataclass(frozen=True)
class FusionConfig:
    """When and how scores and centre similarities are fused (the seed's constants)."""

    enabled: bool = True  # the seed's FEAR_DISGUST_ENHANCEMENT
    close_gap: float = 0.12  # fuse only when |fear - disgust| < close_gap
    score_weight: float = 0.6  # weight of the model score in the fused value
    similarity_weight: float = 0.4  # weight of cosine(embedding, centre)

    def __post_init__(self):
        """Validate ranges once, naming the offending option."""
        if not 0.0 <= self.close_gap <= 1.0:
            raise ConfigError(f"close_gap must be in [0, 1], got {self.close_gap}")
        for name in ("score_weight", "similarity_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.score_weight + self.similarity_weight <= 0:
            raise ConfigError("score_weight and similarity_weight cannot both be 0")


@dataclass(frozen=True)
class FusionResult:
    """One fusion decision and every number behind it."""

    emotion: str  # final emotion
    emotion_before: str  # argmax of the model's scores
    enhanced: bool  # True when the fused values decided between fear and disgust
    scores: dict  # the model's nine scores, unchanged
    fear_score: float
    disgust_score: float
    gap: float  # |fear - disgust| of the model's scores
    fear_similarity: float | None = None  # cosine(embedding, fear centre); None when not fused
    disgust_similarity: float | None = None
    fused_fear: float | None = None
    fused_disgust: float | None = None
    reason: str = ""
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dictionary of the result."""
        return asdict(self)


def fuse(
    scores: Mapping[str, float],
    embedding: np.ndarray,
    centroids: Centroids,
    config: FusionConfig = FusionConfig(),
) -> FusionResult:
    """Re-decide a close fear/disgust call with centre similarities.

    ``scores``: label -> probability (all nine labels); ``embedding``: the utterance's (D,)
    embedding from the same model as ``centroids``.

    Rule: when enabled and ``|fear - disgust| < close_gap``,
    ``fused_x = score_weight * score_x + similarity_weight * cosine(embedding, centre_x)`` for
    x in {fearful, disgusted}. The nine ``scores`` are returned unchanged (fused values mix a
    probability with a cosine, so they are not probabilities and are reported separately).
    The final ``emotion``: if fearful or disgusted led the scores, the larger fused value wins
    (ties keep the model's choice) and ``enhanced`` is True; if another emotion led, that
    emotion stays and ``enhanced`` is False — fusion only arbitrates between the pair, it never
    promotes one of them over a third emotion. Similarities and fused values are still
    reported whenever the gap is small.
    """
    for key in (FEAR, DISGUST):
        if key not in scores:
            raise ConfigError(f"scores lack {key!r}; got {sorted(scores)}")
    scores = {k: float(v) for k, v in scores.items()}
    before = max(scores, key=scores.get)
    fear, disgust = scores[FEAR], scores[DISGUST]
    gap = abs(fear - disgust)
    base = {
        "emotion_before": before,
        "scores": scores,
        "fear_score": fear,
        "disgust_score": disgust,
        "gap": gap,
        "config": asdict(config),
    }
    if not config.enabled:
        return FusionResult(emotion=before, enhanced=False, reason="fusion disabled", **base)
    if gap >= config.close_gap:
        return FusionResult(
            emotion=before,
            enhanced=False,
            reason=f"clear call: gap {gap:.3f} >= {config.close_gap:.2f}",
            **base,
        )
    emb = np.asarray(embedding, dtype=np.float64).reshape(-1)
    if emb.shape[0] != centroids.dim:
        raise ConfigError(
            f"embedding has dimension {emb.shape[0]}, centres have {centroids.dim} "
            f"(model {centroids.model_id!r})"
        )
    sim_f = cosine(emb, centroids.fear)
    sim_d = cosine(emb, centroids.disgust)
    fused_f = config.score_weight * fear + config.similarity_weight * sim_f
    fused_d = config.score_weight * disgust + config.similarity_weight * sim_d
    numbers = {
        "fear_similarity": sim_f,
        "disgust_similarity": sim_d,
        "fused_fear": fused_f,
        "fused_disgust": fused_d,
    }
    if before not in (FEAR, DISGUST):
        return FusionResult(
            emotion=before,
            enhanced=False,
            reason=f"{before} leads; fusion only arbitrates between {FEAR} and {DISGUST}",
            **numbers,
            **base,
        )
    if fused_f > fused_d:
        after = FEAR
    elif fused_d > fused_f:
        after = DISGUST
    else:
        after = before
    return FusionResult(
        emotion=after,
        enhanced=True,
        reason=(
            f"gap {gap:.3f} < {config.close_gap:.2f}: fused {FEAR} {fused_f:.3f} vs "
            f"{DISGUST} {fused_d:.3f} -> {after}"
        ),
        **numbers,
        **base,
    )

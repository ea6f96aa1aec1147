"""Labelled data for `calibrate`, `evaluate` and `embeddings plot`: find the items, embed them.

A source is a JSONL manifest (see `evaluation.py`), a folder with one sub-folder per
label (`fearful/…`, `disgust/…`; aliases allowed), or a folder of unlabelled files. Items may be
audio (decoded and run through the model) or saved embeddings (`.npy` from
`emostream analyze --embedding`; an (T, D) frame embedding is averaged over time).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from models.errors import ConfigError, EmostreamError
from models.scoring import Scorer

from .analyze import encode_whole
from .audio_file import load
from .evaluation import ManifestItem, normalise_label, read_manifest

AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".aac", ".webm"}
ITEM_SUFFIXES = AUDIO_SUFFIXES | {".npy"}


@dataclass(frozen=True)
class Embedded:
    """One item after the model (or its saved embedding): what calibration and plots need."""

    item: ManifestItem
    embedding: np.ndarray  # (D,) utterance embedding
    logits: np.ndarray | None  # (9,) mean frame logits, None for saved embeddings


def find_items(source: str | Path) -> list[ManifestItem]:
    """Items of a manifest file or a folder (label sub-folders, or unlabelled files: label None)."""
    source = Path(source)
    if source.is_file():
        return read_manifest(source)
    if not source.is_dir():
        raise ConfigError(f"{source} is neither a manifest file nor a folder")
    items = []
    subfolders = sorted(p for p in source.iterdir() if p.is_dir())
    for folder in subfolders:
        label = normalise_label(folder.name)
        items += [_item(path, label, len(items)) for path in _files(folder)]
    if not subfolders:
        items = [_item(path, None, n) for n, path in enumerate(_files(source))]
    if not items:
        raise ConfigError(f"no audio or .npy files in {source}")
    return items


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in ITEM_SUFFIXES)


def _item(path: Path, label: str | None, n: int) -> ManifestItem:
    return ManifestItem(path=path, label=label, key=path.stem, line=n + 1)


def needs_model(items: Iterable[ManifestItem]) -> bool:
    """True when some item is audio (not a saved embedding)."""
    return any(item.path.suffix.lower() != ".npy" for item in items)


def saved_model_id(items: Iterable[ManifestItem]) -> str | None:
    """The model id recorded in the `result.json` beside saved embeddings, if they agree on one."""
    ids = set()
    for item in items:
        result = item.path.with_name("result.json")
        if item.path.suffix.lower() == ".npy" and result.is_file():
            ids.add(json.loads(result.read_text(encoding="utf-8")).get("model_id"))
    if len(ids) > 1:
        raise ConfigError(f"the saved embeddings come from different models: {sorted(map(str, ids))}")
    return ids.pop() if ids else None


def embed(
    items: list[ManifestItem], scorer: Scorer | None = None, on_error: Callable[[ManifestItem, Exception], None] | None = None
) -> list[Embedded]:
    """Embed each item: audio through `scorer` (whole input, as `analyze` does), `.npy` as saved.

    An item that cannot be read is reported to `on_error` and skipped (raised when no handler).
    """
    done = []
    for item in items:
        try:
            if item.path.suffix.lower() == ".npy":
                emb = np.load(item.path)
                if emb.ndim not in (1, 2):
                    raise ConfigError(f"{item.path}: expected an (D,) or (T, D) embedding, got shape {emb.shape}")
                done.append(Embedded(item, emb.reshape(-1, emb.shape[-1]).mean(axis=0), None))
            else:
                out = encode_whole(scorer, load(item.path).samples)
                done.append(Embedded(item, out.features.mean(axis=0), out.logits.mean(axis=0)))
        except (EmostreamError, OSError, ValueError) as exc:
            if on_error is None:
                raise
            on_error(item, exc)
    dims = {e.embedding.shape[0] for e in done}
    if len(dims) > 1:
        raise ConfigError(f"embeddings of different dimensions {sorted(dims)}: mixed models?")
    return done

"""timeline.png: the nine window scores over time, with segments and events marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from models.scoring import weights_warning  # noqa: E402
from stream.decision.rules import DualEmotion, Review  # noqa: E402
from stream.engine.events import Segment, Transition, Window  # noqa: E402

COLORS = {
    "angry": "#d62728",
    "disgusted": "#2ca02c",
    "fearful": "#9467bd",
    "happy": "#ff7f0e",
    "neutral": "#7f7f7f",
    "other": "#8c564b",
    "sad": "#1f77b4",
    "surprised": "#e377c2",
    "unknown": "#bcbd22",
}


def plot_timeline(result, path: str | Path) -> None:
    """Draw the window scores (lines), smoothed dominant emotion (band), segments and events."""
    fig, ax = plt.subplots(figsize=(12, 4.8), dpi=100)
    _draw(ax, result, f"{Path(result.source).name} — {result.emotion} {result.confidence:.2f} ({result.model_id})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_parties(parties, path: str | Path) -> None:
    """One lane per party of a split file, stacked on one time axis: [(party, result), ...]."""
    fig, axes = plt.subplots(len(parties), 1, figsize=(12, 3.6 * len(parties)), dpi=100, sharex=True, squeeze=False)
    for ax, (party, result) in zip(axes[:, 0], parties):
        _draw(ax, result, f"{party} — {Path(result.source).name} — {result.emotion} {result.confidence:.2f} ({result.model_id})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _draw(ax, result, title: str) -> None:
    """One result's timeline on `ax`."""
    windows = [e for e in result.events if isinstance(e, Window)]
    for seg in (e for e in result.events if isinstance(e, Segment)):
        ax.axvspan(seg.start, seg.end, color="#000000", alpha=0.06, lw=0)
        ax.text(seg.start, 1.02, f"seg {seg.index}: {seg.emotion}", fontsize=7, va="bottom")
    for label in result.labels:
        xs, ys, last = [], [], None
        for w in windows:
            if last is not None and w.segment != last:  # break the line between segments
                xs.append(float("nan"))
                ys.append(float("nan"))
            xs.append((w.start + w.end) / 2)
            ys.append(w.scores[label])
            last = w.segment
        ax.plot(xs, ys, lw=1.2, color=COLORS.get(label), label=label)
    for w in windows:  # the smoother's dominant emotion as a band under the plot
        ax.axvspan(w.start, w.end, ymin=0, ymax=0.025, color=COLORS.get(w.dominant), lw=0)
    for e in result.events:
        if isinstance(e, Transition):
            ax.axvline(e.time, color="red" if e.flagged else "black", ls="--", lw=1)
            ax.text(e.time, 0.93, f"{e.from_emotion}→{e.to_emotion}", fontsize=7, rotation=90, va="top")
        elif isinstance(e, (Review, DualEmotion)):
            ax.axvspan(e.start, e.end, ymin=0.97, ymax=1.0, color="red" if isinstance(e, Review) else "orange", lw=0)
    ax.set_xlim(0, max(result.duration, 0.1))
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("window score (0.4 s)")
    if result.random_weights:
        title += f"\n{weights_warning(result.random_weights, result.planted)}"
    ax.set_title(title, fontsize=9, color="red" if result.random_weights else "black")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    if not windows:
        ax.text(0.5, 0.5, "no speech detected", transform=ax.transAxes, ha="center")

"""The events an analyzer emits: frozen, JSON-serialisable, documented in docs/events.md.

`Review` and `DualEmotion` are the decision layer's findings (stream.decision.rules); the
engine emits them beside its own events, and this module gathers every type into `Event`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, Mapping, Union

from stream.decision.rules import DualEmotion, Review


def _r(x: float) -> float:
    """Round for JSON: times to 0.1 ms and scores to 1e-6 keep files small and stable."""
    return round(float(x), 6)


@dataclass(frozen=True)
class Info:
    """First event of every stream: which model and parameters produced what follows."""

    type: ClassVar[str] = "info"
    model_id: str
    random_weights: bool
    labels: tuple[str, ...]
    parameters: Mapping[str, object]
    warning: str | None = None  # set when the weights are random: the scores mean nothing
    profile: Mapping[str, object] | None = None  # the domain profile applied: name, context, logit bias
    centroids: Mapping[str, object] | None = None  # metadata of the loaded fear/disgust centres, if any
    planted: str | None = None  # a planted head's kind ("fear-disgust"): scores follow a planted rule, not emotion
    precision: str | None = None  # what the model computed in: float32 | bfloat16 | float16 | int8


@dataclass(frozen=True)
class Window:
    """Scores of one 0.4 s window of speech and the smoother's state after it."""

    type: ClassVar[str] = "window"
    index: int  # running window number in the stream
    segment: int  # speech segment number
    start: float  # stream time in seconds
    end: float
    scores: Mapping[str, float]  # softmax of the window's mean frame logits
    smoothed: Mapping[str, float]  # the smoother's scores after this window
    dominant: str  # the smoother's current emotion (hysteresis and dwell applied)
    dominant_score: float


@dataclass(frozen=True)
class Segment:
    """One VAD speech segment, closed: its utterance scores and per-emotion peaks."""

    type: ClassVar[str] = "segment"
    index: int
    start: float
    end: float
    emotion: str  # the decision layer's call (`decision.emotion`): argmax of `scores` unless a step changed it
    confidence: float  # the highest of `scores`
    scores: Mapping[str, float]  # softmax of the mean frame logits over the whole segment
    peaks: Mapping[str, float]  # each emotion's highest smoothed score over the segment's windows
    n_windows: int
    decision: Mapping[str, object] | None = None  # decision.Decision.to_dict(): what each step did


@dataclass(frozen=True)
class Transition:
    """The smoothed dominant emotion changed."""

    type: ClassVar[str] = "transition"
    time: float  # when the new emotion first took the lead (start of that window)
    confirmed_at: float  # end of the window that completed the minimum dwell
    segment: int
    from_emotion: str
    to_emotion: str
    flagged: bool  # fear <-> disgust: the pair the seed cares most about


Event = Union[Info, Window, Segment, Transition, DualEmotion, Review]
EVENT_TYPES: dict[str, type] = {
    cls.type: cls for cls in (Info, Window, Segment, Transition, DualEmotion, Review)
}


def _json_value(value):
    if isinstance(value, float):
        return _r(value)
    if isinstance(value, Mapping):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    return value


def to_dict(event: Event) -> dict:
    """The event as a JSON-ready dict with its `type` first."""
    body = {f.name: _json_value(getattr(event, f.name)) for f in fields(event)}
    if isinstance(event, Transition):
        body["from"] = body.pop("from_emotion")
        body["to"] = body.pop("to_emotion")
    return {"type": event.type, **body}


def from_dict(data: Mapping) -> Event:
    """Rebuild an event from `to_dict` output (for replays and tests)."""
    data = dict(data)
    cls = EVENT_TYPES[data.pop("type")]
    if cls is Transition:
        data["from_emotion"] = data.pop("from")
        data["to_emotion"] = data.pop("to")
    for f in fields(cls):
        if f.name in data and isinstance(data[f.name], list):
            data[f.name] = tuple(data[f.name])
    return cls(**data)


__all__ = [
    "DualEmotion", "EVENT_TYPES", "Event", "Info", "Review", "Segment", "Transition", "Window",
    "from_dict", "to_dict",
]

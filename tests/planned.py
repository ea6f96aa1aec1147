"""Planned model outputs for the sans-I/O core: frame logits chosen per stream time, jobs done in a loop."""

from __future__ import annotations

import numpy as np

from models.frames import FRAME_STRIDE, n_frames
from models.labels import LABELS
from models.scoring import FrameOutput
from stream.engine.analyzer import StreamCore
from stream.engine.config import AnalyzerConfig
from stream.engine.jobs import EvidenceJob, FocusJob


def planned_logits(plan, dim=4, feature=None):
    """Frame logits from `plan(t) -> {label: logit}` at each frame's stream time, for chunk and focus jobs.

    Features are zeros, or `feature(t)` -> (dim,) when given.
    """

    def logits_for(job):
        if isinstance(job, FocusJob):  # the crop alone: no context frames
            t0, skip, n = job.start, 0, n_frames(len(job.audio))
        else:
            t0, skip, n = job.origin / 16000, job.skip_frames, job.n_owned
        times = [t0 + (i - skip) * FRAME_STRIDE / 16000 for i in range(skip + n)]
        rows = []
        for t in times:
            row = np.zeros(9, np.float32)
            for label, value in plan(t).items():
                row[LABELS.index(label)] = value
            rows.append(row)
        features = np.stack([feature(t) for t in times]) if feature else np.zeros((len(rows), dim), np.float32)
        return FrameOutput(logits=np.stack(rows), features=features.astype(np.float32))

    return logits_for


def drive(core, make):
    """Do every pending job (model jobs with `make`, evidence jobs for real) until none is left."""
    while jobs := core.pending_jobs():
        for job in jobs:
            core.complete(job, job.run() if isinstance(job, EvidenceJob) else make(job))


def run_core(samples, plan, config=None, feed=16000, feature=None, **core_options):
    core = StreamCore(config or AnalyzerConfig(), LABELS, "planned", random_weights=False, **core_options)
    make = planned_logits(plan, feature=feature)
    events = []
    for start in range(0, len(samples), feed):
        core.push(samples[start : start + feed])
        drive(core, make)
        events += core.take_events()
    core.finish()
    drive(core, make)
    return events + core.take_events()

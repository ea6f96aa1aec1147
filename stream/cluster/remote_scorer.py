"""The model as an ingress replica sees it: the Scorer protocol answered by the Scorer deployment."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from models.scoring import FrameOutput

from .scorer import ModelInfo


class RemoteScorer:
    """Labels, id and flags from the Scorer deployment; `score` sends whole waveforms there.

    Nothing in the server calls `score`: live sessions' jobs and `/api/predict`'s file pieces
    (through `ScheduledScorer`, at background priority) both go through `RemoteScheduler`, which
    calls the deployment itself. `score` completes the Scorer protocol for any other holder.
    """

    def __init__(self, info: ModelInfo, handle):
        """`handle`: a DeploymentHandle to ScorerDeployment; `info`: what it answered to `info()`."""
        self.labels = info.labels
        self.model_id = info.model_id
        self.random_weights = info.random_weights
        self.embed_dim = info.embed_dim
        self.precision = info.precision
        self.planted = info.planted
        self.device = info.device
        self.handle = handle

    def score(self, waveforms: Sequence[np.ndarray]) -> list[FrameOutput]:
        """Score waveforms on a scorer replica (blocking: call it off the event loop)."""
        return self.handle.score.remote(list(waveforms)).result()

"""The scorer's forward as CUDA graphs, one per (batch, length) bucket.

A `large` forward launches hundreds of small kernels; on a GPU a batch of 1–8 chunks costs the
launching thread's time (13–18 ms measured), not the GPU's. A captured graph replays them all
in one launch. Batches are padded up to a bucket so that a few graphs serve every chunk a
server sends: the batch to a power of two, the length to the frame lookahead plus a multiple
of 0.25 s (live chunks, their tails and focus crops all fall on few such lengths).

Padding is exact: padded samples never reach a real frame and padded rows are dropped (the
scorer's masks, the same ones that make a padded batch equal to its items run alone). Each
graph is checked against the eager forward once when it is captured; a graph that fails to
capture or to match is never used, and that bucket runs eagerly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

from .frames import CONV_LAYERS, LOOKAHEAD, SAMPLE_RATE

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LENGTH_STEP = SAMPLE_RATE // 4  # 0.25 s
CHECK_TOLERANCE = 1e-2  # replay against eager, relative to the logits' scale: same kernels, same shapes

# forward(wav (B, L) float32, lengths (B,) int64) -> (features (B, T, D), logits (B, T, K)), all on the device.
Forward = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def bucket_batch(batch: int) -> int | None:
    """The captured batch size that holds `batch` rows (None: larger than any bucket)."""
    return next((b for b in BATCH_BUCKETS if b >= batch), None)


def bucket_length(samples: int) -> int:
    """The captured length that holds `samples`: LOOKAHEAD plus a whole number of 0.25 s steps."""
    steps = -(-max(samples - LOOKAHEAD, 1) // LENGTH_STEP)
    return LOOKAHEAD + steps * LENGTH_STEP


@dataclass
class _Graph:
    """One captured forward and the static tensors it reads and writes."""

    graph: torch.cuda.CUDAGraph | None  # None: `replay` runs the forward eagerly (CPU tests)
    wav: torch.Tensor
    lengths: torch.Tensor
    outputs: tuple[torch.Tensor, torch.Tensor]
    kept: object = None  # what the graph reads that its owner might otherwise free (cached biases)


class GraphedForward:
    """Runs `forward` through captured graphs where a bucket fits, else says so (None)."""

    def __init__(
        self, forward: Forward, device: torch.device, max_batch: int, max_samples: int,
        keep: Callable[[int], object] = lambda samples: None, capture: bool = True,
    ):
        """Graphs for batches up to `max_batch` rows of up to `max_samples` samples (bucketed).

        `keep(samples)` returns what a forward of that length reads from outside the graph's own
        memory (the scorer's cached ALiBi biases): each graph holds on to it. `capture=False`
        replays by calling `forward` on the same static buffers: the CPU tests use it to check
        the bucketing and the buffer handling without a GPU.
        """
        self.forward = forward
        self.device = device
        self.max_batch = bucket_batch(max_batch) or BATCH_BUCKETS[-1]
        self.max_samples = bucket_length(max_samples)
        self.keep = keep
        self.capture = capture
        self._graphs: dict[tuple[int, int], _Graph | None] = {}  # None: this bucket runs eagerly
        self._pool = torch.cuda.graph_pool_handle() if capture else None  # one memory pool for all graphs

    def bucket(self, batch: int, samples: int) -> tuple[int, int] | None:
        """The (rows, samples) bucket of a batch, None when it is larger than the graphs cover."""
        rows, length = bucket_batch(batch), bucket_length(samples)
        if rows is None or rows > self.max_batch or length > self.max_samples:
            return None
        return rows, length

    @property
    def ready(self) -> int:
        """Graphs captured and checked (buckets that fell back to eager not counted)."""
        return sum(g is not None for g in self._graphs.values())

    def covers(self, batch: int, samples: int) -> bool:
        """Whether a captured, checked graph serves a batch of this shape."""
        key = self.bucket(batch, samples)
        return key is not None and self._graphs.get(key) is not None

    @torch.inference_mode()  # the static buffers are inference tensors: every use stays in this mode
    def prepare(self) -> int:
        """Capture every bucket now (server start-up: no live batch waits on a capture); returns graphs ready."""
        for samples in range(bucket_length(1), self.max_samples + 1, LENGTH_STEP):
            for rows in (b for b in BATCH_BUCKETS if b <= self.max_batch):
                self._graph((rows, samples))
        return self.ready

    @torch.inference_mode()
    def __call__(self, host: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Run a bucket-shaped batch (`host`: (rows, samples) float32, padded; `lengths` per row).

        Returns views of the graph's static outputs, valid until the next call; None when this
        bucket has no working graph (the caller runs its forward eagerly).
        """
        graph = self._graph(tuple(host.shape))
        if graph is None:
            return None
        graph.wav.copy_(host, non_blocking=True)
        graph.lengths.copy_(lengths, non_blocking=True)
        self._replay(graph)
        return graph.outputs

    def _replay(self, graph: _Graph) -> None:
        if graph.graph is None:
            graph.outputs = self.forward(graph.wav, graph.lengths)
        else:
            graph.graph.replay()

    def _graph(self, key: tuple[int, int]) -> _Graph | None:
        if key not in self._graphs:
            try:
                self._graphs[key] = self._capture(*key)
            except Exception as exc:  # noqa: BLE001  (any capture failure: run this bucket eagerly)
                log.warning("CUDA graph for batch %d x %d samples failed (%s); that bucket runs eagerly", *key, exc)
                self._graphs[key] = None
        return self._graphs[key]

    def _capture(self, rows: int, samples: int) -> _Graph | None:
        wav = torch.zeros(rows, samples, device=self.device)
        lengths = torch.full((rows,), samples, dtype=torch.int64, device=self.device)
        graph = None
        if self.capture:
            # Warm-up on a side stream first, as capture requires (lazy inits, cached ALiBi biases).
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self.forward(wav, lengths)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                outputs = self.forward(wav, lengths)
        else:
            outputs = self.forward(wav, lengths)
        captured = _Graph(graph, wav, lengths, outputs, kept=self.keep(samples))
        return captured if self._matches_eager(captured) else None

    def _matches_eager(self, graph: _Graph) -> bool:
        """Replay on random speech-like input of mixed lengths and compare with the eager forward."""
        rows, samples = graph.wav.shape
        gen = torch.Generator(device=self.device).manual_seed(0)
        wav = torch.randn(rows, samples, device=self.device, generator=gen) * 0.1
        lengths = torch.randint(min(samples, 400), samples + 1, (rows,), device=self.device, generator=gen)
        lengths[0] = samples
        wav = wav * (torch.arange(samples, device=self.device)[None, :] < lengths[:, None])
        graph.wav.copy_(wav)
        graph.lengths.copy_(lengths)
        self._replay(graph)
        _, replayed = graph.outputs
        _, eager = self.forward(wav, lengths)
        valid = (torch.arange(eager.shape[1], device=self.device)[None, :] < frames_of(lengths)[:, None])[..., None]
        gap = torch.where(valid, replayed.float() - eager.float(), 0).abs().max().item()
        scale = 1.0 + torch.where(valid, eager.float(), 0).abs().max().item()
        if not gap <= CHECK_TOLERANCE * scale:  # NaN fails too
            log.warning("CUDA graph for batch %d x %d samples differs from eager by %.3g; not used", rows, samples, gap)
            return False
        return True


def frames_of(lengths: torch.Tensor) -> torch.Tensor:
    """models.frames.n_frames on a tensor of sample counts, on their device (no host sync)."""
    n = lengths
    for kernel, stride in CONV_LAYERS:
        n = torch.div(n - kernel, stride, rounding_mode="floor") + 1
    return n.clamp_min(0)


__all__ = ["GraphedForward", "bucket_batch", "bucket_length", "frames_of"]

"""CUDA graph buckets (models/cuda_graphs.py) on the CPU: padding a batch to its bucket is exact.

The capture itself needs a GPU (tests/models/test_cuda.py); here `capture=False` replays by
running the scorer's device forward on the graph's static buffers, which checks the bucketing,
the padding and the buffer handling against `score` item by item.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.cuda_graphs import BATCH_BUCKETS, LENGTH_STEP, GraphedForward, bucket_batch, bucket_length, frames_of
from models.frames import LOOKAHEAD, n_frames


def test_buckets_round_up_to_powers_of_two_and_quarter_seconds():
    assert [bucket_batch(n) for n in (1, 2, 3, 5, 128, 129)] == [1, 2, 4, 8, 128, 256]
    assert bucket_batch(BATCH_BUCKETS[-1] + 1) is None
    full_chunk = 24_000 + LOOKAHEAD  # 0.5 s chunk + 1 s context + lookahead: a bucket of its own
    assert bucket_length(full_chunk) == full_chunk
    assert bucket_length(full_chunk + 1) == full_chunk + LENGTH_STEP
    assert bucket_length(400) == LOOKAHEAD + LENGTH_STEP


def test_frames_of_matches_n_frames():
    lengths = [400, 401, 719, 720, 4080, 24_080, 48_080]
    assert frames_of(torch.tensor(lengths)).tolist() == [n_frames(n) for n in lengths]


def test_bucket_limits():
    graphs = GraphedForward(lambda w, n: (w, w), torch.device("cpu"), max_batch=8, max_samples=24_080, capture=False)
    assert graphs.bucket(3, 10_000) == (4, 12_080)
    assert graphs.bucket(9, 10_000) is None  # more rows than the server batches
    assert graphs.bucket(1, 24_081) is None  # longer than a live chunk: eager


@pytest.mark.parametrize("lengths", [[9_000], [24_080, 7_000, 16_400], [4_000, 4_000, 3_000, 12_000, 400]])
def test_padded_bucket_equals_each_item_alone(scorer, lengths):
    rng = np.random.default_rng(len(lengths))
    waves = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    graphs = GraphedForward(scorer._device_forward, scorer.device, max_batch=8, max_samples=24_080, capture=False)
    rows, samples = graphs.bucket(len(waves), max(lengths))
    host = torch.zeros(rows, samples)
    for i, w in enumerate(waves):
        host[i, : len(w)] = torch.from_numpy(w)
    sizes = torch.full((rows,), samples)
    sizes[: len(lengths)] = torch.tensor(lengths)
    features, logits = graphs(host, sizes)
    assert graphs.prepare() == len(graphs._graphs)  # every bucket passed its check against eager
    for i, w in enumerate(waves):
        alone = scorer.score([w])[0]
        frames = len(alone.logits)
        assert np.abs(logits[i, :frames].numpy() - alone.logits).max() < 1e-4
        assert np.abs(features[i, :frames].numpy() - alone.features).max() < 1e-4


def test_the_cuda_forward_never_asks_the_device_for_a_value(tiny_model_dir):
    """A CUDA graph cannot capture a host sync (`.item()`, `bool(t.any())`). On the meta device
    every such call raises, so the forward the graphs capture must run there from end to end."""
    from models.loader import ModelOptions, load_scorer

    meta = torch.device("meta")
    scorer = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", dtype="float32", threads=2))
    scorer.model.to(meta)
    scorer.device, scorer._used_index, scorer.fused_attention = meta, scorer._used_index.to(meta), True
    wav = torch.zeros(3, 24_080, device=meta)
    lengths = torch.tensor([24_080, 9_000, 400], device=meta)
    with torch.inference_mode():
        features, logits = scorer._device_forward(wav, lengths)
    assert features.shape == (3, n_frames(24_080), scorer.embed_dim) and logits.shape[-1] == len(scorer.labels)
    scorer.fused_attention = False  # funasr's own attention asks `padding_mask.any()`: the check sees it
    with pytest.raises(Exception, match="meta"), torch.inference_mode():
        scorer._device_forward(wav, lengths)

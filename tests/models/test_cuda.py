"""CUDA precision and batching tolerances; skipped where torch sees no GPU.

Run on a GPU machine by bench/device_check.sh. The audio is synthetic (a voiced harmonic
sweep with noise): GPU machines have no espeak-ng.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# Max |utterance-score difference| against CPU float32, and batch against alone.
TOLERANCE = {"float32": 1e-4, "float16": 1e-3, "bfloat16": 2e-3}


def voiced(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A harmonic tone gliding around `f0`, amplitude-modulated like syllables, with noise."""
    t = np.arange(round(seconds * 16000)) / 16000
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return (0.1 * x + 0.005 * np.random.default_rng(seed).normal(size=t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def waves():
    return [voiced(3.0, 140, 0), voiced(2.2, 220, 1), voiced(3.0, 110, 2)]


def load(model_dir, device: str, dtype: str):
    from models.loader import ModelOptions, load_scorer

    return load_scorer(ModelOptions(model_dir=str(model_dir), device=device, dtype=dtype, threads=2))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cuda_precision_against_cpu_float32_and_batch_against_alone(tiny_model_dir, waves, dtype):
    cpu = load(tiny_model_dir, "cpu", "float32")
    gpu = load(tiny_model_dir, "cuda", dtype)
    assert gpu.precision == dtype and gpu.fused_attention
    if dtype == "float32":
        assert not torch.backends.cuda.matmul.allow_tf32  # fp32 means fp32
    else:  # the conv layers' norms compute in the half precision (no float32 round trips, no transposes)
        assert not gpu.frontend.mixed_norm
    alone = [gpu.score([w])[0] for w in waves]
    batch = gpu.score(waves)
    for w, a, b in zip(waves, alone, batch):
        ref = cpu.score([w])[0]
        assert a.logits.dtype == np.float32 and a.logits.shape == ref.logits.shape
        assert np.abs(cpu.utterance_scores(ref) - gpu.utterance_scores(a)).max() <= TOLERANCE[dtype]
        assert np.abs(gpu.utterance_scores(a) - gpu.utterance_scores(b)).max() <= TOLERANCE[dtype]


def test_auto_is_float16_on_cuda(tiny_model_dir):
    assert load(tiny_model_dir, "cuda", "auto").precision == "float16"


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_cuda_graphs_equal_the_eager_forward(tiny_model_dir, waves, dtype):
    gpu = load(tiny_model_dir, "cuda", dtype)
    eager = [gpu.score(waves[:n]) for n in (1, 3)]
    gpu.prepare(max_batch=8, max_samples=48_080)  # 3 s chunks: every wave fits a bucket
    assert gpu.graphs is not None and gpu.graphs.prepare() == len(gpu.graphs._graphs) > 0  # all captured and checked
    for n, before in zip((1, 3), eager):
        for a, b in zip(before, gpu.score(waves[:n])):
            assert a.logits.shape == b.logits.shape
            assert np.abs(gpu.utterance_scores(a) - gpu.utterance_scores(b)).max() <= TOLERANCE[dtype]
            assert np.abs(a.logits - b.logits).max() <= 1e-2 * (1 + np.abs(a.logits).max())

"""Batching and latency defaults per device, the audio-seconds queue bound and the adaptive wait."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from stream.cli.main import build_parser
from stream.cli.options import analyzer_config, settings_from_args
from stream.engine.analyzer import StreamAnalyzer, analyze_array
from stream.engine.config import AnalyzerConfig
from stream.engine.events import to_dict
from stream.engine.jobs import ChunkJob
from stream.server.device_policy import CPU, CUDA, policy_for
from stream.server.scheduler import BatchScheduler, Overloaded
from stream.server.settings import ServerSettings, for_device


def serve_settings(*options: str) -> ServerSettings:
    args = build_parser().parse_args(["serve", *options])
    return settings_from_args(args, analyzer_config(args))


def test_unset_options_follow_the_device():
    settings = serve_settings()
    cpu, policy = for_device(settings, "cpu")
    assert policy is CPU and (cpu.max_batch, cpu.max_wait_ms, cpu.max_pending) == (8, 10.0, 180.0)
    assert (cpu.analyzer.chunk_seconds, cpu.analyzer.context_seconds) == (2.0, 1.0)  # the CPU keeps 2 s chunks
    gpu, policy = for_device(settings, "cuda:0")
    assert policy is CUDA and policy_for("cuda") is CUDA
    assert (gpu.max_batch, gpu.max_wait_ms, gpu.max_pending) == (128, 20.0, 1800.0) and policy.adaptive_wait
    assert (gpu.analyzer.chunk_seconds, gpu.analyzer.context_seconds) == (0.5, 1.0)


def test_explicit_options_win_on_every_device():
    settings = serve_settings("--max-batch", "32", "--max-wait-ms", "5", "--max-pending", "60",
                              "--chunk", "1.0", "--chunk-context", "1.5")
    for device in ("cpu", "cuda"):
        s, _ = for_device(settings, device)
        assert (s.max_batch, s.max_wait_ms, s.max_pending) == (32, 5.0, 60.0)
        assert (s.analyzer.chunk_seconds, s.analyzer.context_seconds) == (1.0, 1.5)


def chunk(seconds: float) -> ChunkJob:
    return ChunkJob(0, 0, 0, 0, 50, np.zeros(round(seconds * 16000), np.float32))


def test_queue_is_bounded_in_seconds_of_audio(scorer):
    async def run():
        sched = BatchScheduler(scorer, max_pending=5.0)  # not started: nothing leaves the queue
        sched.submit(chunk(3.0))
        sched.submit(chunk(1.5))  # 3 s < 5 s: still room
        assert sched.pending_seconds == pytest.approx(4.5) and not sched.saturated
        sched.submit(chunk(3.0))
        assert sched.saturated
        with pytest.raises(Overloaded, match=r"\(7.5 s of audio"):
            sched.submit(chunk(0.5))
        await sched.stop()

    asyncio.run(run())


def test_adaptive_wait_ends_when_jobs_stop_arriving(scorer):
    async def first_batch_after(adaptive: bool) -> float:
        started = []
        sched = BatchScheduler(scorer, max_batch=64, max_wait=0.8, adaptive_wait=adaptive,
                               on_batch=lambda stats: started.append(time.monotonic() - stats.seconds))
        sched.start()
        t0 = time.monotonic()
        futures = [sched.submit(chunk(1.0)) for _ in range(3)]
        await asyncio.gather(*futures)
        await sched.stop()
        return started[0] - t0

    assert asyncio.run(first_batch_after(True)) < 0.5  # a quarter of 0.8 s without arrivals
    assert asyncio.run(first_batch_after(False)) >= 0.75  # the whole wait


def test_cuda_chunking_keeps_feed_size_invariance(scorer, speech_silence_speech):
    samples = speech_silence_speech.samples
    config = AnalyzerConfig(chunk_seconds=CUDA.chunk_seconds, context_seconds=CUDA.context_seconds)
    reference = [to_dict(e) for e in analyze_array(scorer, samples, config)]
    analyzer = StreamAnalyzer(scorer, config, max_batch=8)
    events, prev = [], 0
    for cut in (1234, 16000, 40000, 40001, 100000, len(samples)):
        events += analyzer.feed(samples[prev:cut])
        prev = cut
    events += analyzer.flush()
    got = [to_dict(e) for e in events]
    assert [e["type"] for e in got] == [e["type"] for e in reference]
    for a, b in zip(got, reference):  # batches of 8 vs 1: float rounding only
        for key in ("scores", "smoothed"):
            if key in a:
                assert max(abs(a[key][k] - b[key][k]) for k in a[key]) < 1e-4

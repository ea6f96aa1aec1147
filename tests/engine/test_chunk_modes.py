"""Chunk modes: short chunks for a stream served alone, long ones beside others; recorded, replayable."""

from __future__ import annotations

import pytest

from models.errors import ConfigError
from stream.cli.main import build_parser
from stream.cli.options import analyzer_config, settings_from_args
from stream.engine.analyzer import StreamAnalyzer, analyze_array
from stream.engine.config import LATENCY_CHUNK_SECONDS, AnalyzerConfig
from stream.engine.events import to_dict
from stream.server.device_policy import CPU, CUDA, session_analyzer
from stream.server.settings import for_device


def test_auto_resolves_per_stream_and_is_recorded():
    auto = AnalyzerConfig(chunk_mode="auto")
    assert auto.describe()["chunk_mode"] == "throughput"  # unresolved: runs as throughput
    alone, beside = auto.for_stream(alone=True), auto.for_stream(alone=False)
    assert (alone.chunk_mode, alone.chunk_seconds, alone.context_seconds) == ("latency", LATENCY_CHUNK_SECONDS, 1.0)
    assert (beside.chunk_mode, beside.chunk_seconds) == ("throughput", 2.0)
    assert alone.describe()["chunk_mode"] == "latency" and alone.describe()["chunk_seconds"] == 0.5
    fixed = AnalyzerConfig(chunk_mode="latency", chunk_seconds=0.8).for_stream(alone=False, chunk_given=True)
    assert (fixed.chunk_mode, fixed.chunk_seconds) == ("latency", 0.8)
    with pytest.raises(ConfigError, match="chunk_mode"):
        AnalyzerConfig(chunk_mode="fast")


@pytest.mark.parametrize("command", ["analyze", "serve", "listen"])
def test_cli_chunk_mode(command):
    def config(*options):
        args = build_parser().parse_args([command, *(["x.wav"] if command == "analyze" else []), *options])
        return analyzer_config(args)

    assert config().chunk_mode == "auto" and config().chunk_seconds == 2.0
    assert (config("--chunk", "1.0").chunk_mode, config("--chunk", "1.0").chunk_seconds) == ("throughput", 1.0)
    latency = config("--chunk-mode", "latency")
    assert (latency.chunk_mode, latency.chunk_seconds) == ("latency", LATENCY_CHUNK_SECONDS)
    assert config("--chunk-mode", "throughput").chunk_seconds == 2.0


def test_server_gives_a_lone_session_short_chunks_and_the_rest_long_ones():
    def template(*options):
        args = build_parser().parse_args(["serve", *options])
        settings = settings_from_args(args, analyzer_config(args))
        resolved, policy = for_device(settings, "cpu")
        return resolved.analyzer, policy, settings.chunk_seconds is not None

    analyzer, policy, given = template()
    assert policy is CPU
    first = session_analyzer(policy, analyzer, others_live=0, chunk_given=given)
    second = session_analyzer(policy, analyzer, others_live=1, chunk_given=given)
    assert (first.chunk_mode, first.chunk_seconds) == ("latency", 0.5)
    assert (second.chunk_mode, second.chunk_seconds) == ("throughput", 2.0)
    for others in (0, 3):  # an explicit --chunk is kept whatever the load
        s = session_analyzer(*template("--chunk", "1.0")[1::-1], others_live=others, chunk_given=True)
        assert (s.chunk_mode, s.chunk_seconds) == ("throughput", 1.0)
        s = session_analyzer(*template("--chunk-mode", "latency")[1::-1], others_live=others, chunk_given=False)
        assert (s.chunk_mode, s.chunk_seconds) == ("latency", 0.5)
        s = session_analyzer(*template("--chunk-mode", "throughput")[1::-1], others_live=others, chunk_given=False)
        assert (s.chunk_mode, s.chunk_seconds) == ("throughput", 2.0)
    cuda = session_analyzer(CUDA, for_device(settings_from_args(args := build_parser().parse_args(["serve"]),
                                                                analyzer_config(args)), "cuda")[0].analyzer,
                            others_live=0, chunk_given=False)
    assert (cuda.chunk_mode, cuda.chunk_seconds) == ("latency", CUDA.latency_chunk_seconds)


def test_latency_mode_plan_depends_only_on_the_audio(scorer, speech_silence_speech):
    """The same audio in any pieces gives the same events in the latency mode (0.5 s chunks)."""
    samples = speech_silence_speech.samples
    config = AnalyzerConfig(chunk_mode="auto").for_stream(alone=True)
    reference = [to_dict(e) for e in analyze_array(scorer, samples, config)]
    assert reference[0]["type"] == "info" and reference[0]["parameters"]["chunk_mode"] == "latency"
    analyzer = StreamAnalyzer(scorer, config)
    events, prev = [], 0
    for cut in (1600, 1601, 16000, 40000, 77777, len(samples)):
        events += analyzer.feed(samples[prev:cut])
        prev = cut
    events += analyzer.flush()
    assert [to_dict(e) for e in events] == reference
    throughput = [to_dict(e) for e in analyze_array(scorer, samples, AnalyzerConfig())]
    windows = lambda evs: [e for e in evs if e["type"] == "window"]  # noqa: E731
    assert len(windows(reference)) == len(windows(throughput))  # the same windows, scored from other chunks


def test_analyze_replays_a_recording_in_its_recorded_mode(tmp_path):
    """`analyze` of a live recording's audio (its session.json beside it) takes the recorded chunk
    plan under --chunk-mode auto; anything else stays in the throughput mode."""
    import json

    def recording(name: str, mode: str, chunk: float):
        folder = tmp_path / name
        folder.mkdir()
        params = AnalyzerConfig(chunk_mode=mode, chunk_seconds=chunk).describe()
        (folder / "session.json").write_text(json.dumps({"session_id": name, "parameters": params}))
        return folder / "audio.wav"

    lone, busy = recording("lone", "latency", 0.5), recording("busy", "throughput", 2.0)

    def config(*argv):
        return analyzer_config(build_parser().parse_args(["analyze", *map(str, argv)]))

    assert (config(lone).chunk_mode, config(lone).chunk_seconds) == ("latency", 0.5)
    assert (config(busy).chunk_mode, config(busy).chunk_seconds) == ("throughput", 2.0)
    assert config(lone, busy).chunk_mode == "auto"  # disagreeing recordings: the default plan
    assert config(tmp_path / "plain.wav").chunk_mode == "auto"
    assert config(lone, "--chunk-mode", "throughput").chunk_seconds == 2.0  # an explicit mode wins
    assert config(lone, "--chunk", "1.0").chunk_seconds == 1.0

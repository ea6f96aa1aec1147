"""`emostream listen --split-channels`: a stereo input device, each channel analyzed as its own party.

A private PulseAudio daemon's default source is a two-channel FIFO: the caller speaks on the
left channel, the agent on the right one, at different times.
"""

from __future__ import annotations

import numpy as np
import pytest
from audio_fixtures import compose
from test_listen import RATE, FifoMic, listen, of_type, pulse_daemon


class StereoMic(FifoMic):
    """The FIFO microphone with two interleaved channels: `play` takes (n, 2) float frames."""

    def play(self, frames: np.ndarray) -> None:
        with self.lock:
            self.pending.append((np.clip(frames, -1, 1) * 32767).astype("<i2").reshape(-1))

    def _next_block(self, n: int) -> np.ndarray:
        return super()._next_block(2 * n)


@pytest.fixture(scope="module")
def stereo_pulse(tmp_path_factory):
    with pulse_daemon(tmp_path_factory.mktemp("pulse2"), channels=2, mic_class=StereoMic) as running:
        yield running


@pytest.fixture(scope="module")
def call(speech):
    """Left: the caller speaks first; right: the agent answers after the caller stopped."""
    a, b = speech
    left = compose([0.5, a, 4.5]).samples
    right = compose([0.5 + len(a) / RATE + 1.0, b[: 2 * RATE], 0.8], seed=1).samples
    n = max(len(left), len(right))
    frames = np.stack([np.pad(left, (0, n - len(left))), np.pad(right, (0, n - len(right)))], axis=1)
    return frames, len(a) / RATE


def test_listen_splits_a_stereo_device_into_two_parties(stereo_pulse, tiny_model_dir, call):
    env, mic = stereo_pulse
    frames, caller_seconds = call
    rc, messages, stderr, _ = listen(
        env, mic, "--input-device", "pulse", "--plain", "--split-channels", "--parties", "caller,agent",
        "--seconds", f"{len(frames) / RATE + 0.5:.1f}", "--model-dir", str(tiny_model_dir), "--device", "cpu",
        "--threads", "1", speech=frames,
    )
    assert rc == 0, stderr
    assert "2 channels split" in stderr
    assert [m["party"] for m in of_type(messages, "info")] == ["caller", "agent"]
    segments = {p: [m for m in of_type(messages, "segment") if m["party"] == p] for p in ("caller", "agent")}
    assert len(segments["caller"]) == 1 and len(segments["agent"]) == 1, segments
    caller, agent = segments["caller"][0], segments["agent"][0]
    # Each party heard only its own voice: the caller's speech, then the agent's answer a second later.
    assert abs((caller["end"] - caller["start"]) - caller_seconds) < 0.8
    # Both channels share one capture clock: the agent starts when it spoke, 1 s after the caller stopped.
    assert abs(agent["start"] - caller["start"] - (caller_seconds + 1.0)) < 0.3, (caller, agent)
    assert all(m.get("party") in ("caller", "agent") for m in messages if m["type"] in ("window", "segment"))


def test_split_needs_a_stereo_device_and_two_names(stereo_pulse, tiny_model_dir):
    env, _ = stereo_pulse
    rc, _, stderr, _ = listen(env, None, "--input-device", "pulse", "--split-channels", "--parties", "a,b,c",
                              "--model-dir", str(tiny_model_dir), timeout=60)
    assert rc == 2 and "give one name per channel" in stderr
    rc, _, stderr, _ = listen(env, None, "--input-device", "pulse", "--parties", "a,b", timeout=60)
    assert rc == 2 and "add --split-channels" in stderr


def test_listen_sends_a_split_stereo_stream_to_a_server(stereo_pulse, tiny_model_dir, call, tmp_path):
    from server_harness import start_server

    env, mic = stereo_pulse
    frames, _ = call
    server = start_server(tiny_model_dir, tmp_path, token="s3cret")
    try:
        rc, messages, stderr, _ = listen(
            env, mic, "--input-device", "pulse", "--plain", "--split-channels", "--server", server.ws,
            "--token", "s3cret", "--seconds", f"{len(frames) / RATE + 0.5:.1f}", speech=frames,
        )
    finally:
        server.stop()
    assert rc == 0, stderr
    assert messages[0]["type"] == "ready" and messages[0]["parties"] == ["caller", "agent"]
    stats = messages[-1]["stats"]
    assert stats["status"] == "complete" and set(stats["parties"]) == {"caller", "agent"}
    for party in ("caller", "agent"):
        assert stats["parties"][party]["events"].get("segment") == 1
    folder = server.recordings / messages[0]["session_id"]
    assert (folder / "audio-caller.wav").exists() and (folder / "audio-agent.wav").exists()

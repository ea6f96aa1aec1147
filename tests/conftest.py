"""Shared fixtures: the tiny random-weight model loaded through the user's loader, and real speech."""

from __future__ import annotations

import os

import numpy as np
import pytest

from audio_fixtures import compose, espeak

os.environ.setdefault("EMOSTREAM_OFFLINE", "1")  # tests never touch the network
# Tests compare against funasr's own float32 arithmetic; the precision tests ask for others explicitly.
os.environ.setdefault("EMOSTREAM_DTYPE", "float32")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A funasr-layout emotion2vec+ directory, tiny architecture, fixed random weights."""
    from models.random_weights import write_random_model_dir

    return write_random_model_dir(tmp_path_factory.mktemp("model") / "tiny", arch="tiny", seed=0)


@pytest.fixture(scope="session")
def scorer(tiny_model_dir):
    """The tiny model loaded exactly as users load a local model directory."""
    from models.loader import ModelOptions, load_scorer

    return load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", threads=2, dtype="float32"))


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """Two real synthetic utterances (16 kHz float32)."""
    d = tmp_path_factory.mktemp("speech")
    a = espeak("The quick brown fox jumps over the lazy dog near the river bank.", d / "a.wav")
    b = espeak("Please call me back as soon as you can, it is really important.", d / "b.wav", voice="en+f3", pitch=60)
    return a, b


@pytest.fixture(scope="session")
def speech_silence_speech(speech):
    """speech – 1.5 s silence – speech, with 0.8 s of silence around, and the true spans."""
    a, b = speech
    return compose([0.8, a, 1.5, b, 0.8])


@pytest.fixture()
def rng():
    """A seeded random generator."""
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def two_voices(speech, speech_silence_speech):
    """Two channels of equal length holding different speech: a caller and an agent."""
    from party_helpers import two_voices as make

    return make(speech, speech_silence_speech)


@pytest.fixture(scope="session")
def planted_model_dir(tmp_path_factory):
    """The tiny architecture with its head PLANTED for fear/disgust alerts, made by the user's command."""
    from stream.cli.main import main

    path = tmp_path_factory.mktemp("model") / "planted"
    assert main(["make-model", str(path), "--arch", "tiny", "--planted", "fear-disgust"]) == 0
    return path


@pytest.fixture(scope="session")
def planted_scorer(planted_model_dir):
    """The planted model loaded exactly as users load a local model directory."""
    from models.loader import ModelOptions, load_scorer

    return load_scorer(ModelOptions(model_dir=str(planted_model_dir), device="cpu", threads=2, dtype="float32"))


@pytest.fixture(scope="session")
def alert_speech(tmp_path_factory):
    """Two sentences (~10 s) on which the planted model raises flagged transitions, reviews and a dual report."""
    d = tmp_path_factory.mktemp("alert_speech")
    a = espeak("That smell in the kitchen is absolutely revolting to me.", d / "a.wav", voice="en+m3", pitch=50)
    b = espeak("Please call me back as soon as you can, it is really important.", d / "b.wav", voice="en+f3", pitch=60)
    return compose([0.8, a, 1.2, b, 0.8])

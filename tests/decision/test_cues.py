"""Acoustic cues on synthetic signals of known properties, and on real (espeak) speech."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from stream.decision.cues import MIN_VOICED_FRAMES, AcousticCues, acoustic_cues, contour_shape, describe

RATE = 16000


def harmonic(f0: np.ndarray, amplitude: float = 0.3, harmonics: int = 8) -> np.ndarray:
    """A voice-like tone following the F0 track `f0` (Hz per sample), harmonics falling 1/k."""
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
    return (amplitude * x / np.abs(x).max()).astype(np.float32)


def seconds(duration: float) -> np.ndarray:
    return np.arange(round(duration * RATE)) / RATE


def test_rise_then_fall_is_rise_fall():
    t = seconds(1.5)
    cues = acoustic_cues(harmonic(150 * 2 ** (6 * np.sin(np.pi * t / 1.5) / 12)))  # up 6 st, back down
    assert cues.contour == "rise_fall"
    assert cues.voiced_fraction > 0.9
    assert 5.0 < cues.f0_range_st < 6.5


def test_low_then_short_rise_is_low_rise():
    t = seconds(1.5)
    f0 = np.where(t < 1.1, 120.0, 120.0 * 2 ** (6 * (t - 1.1) / 0.4 / 12))  # level, then +6 st in 0.4 s
    assert acoustic_cues(harmonic(f0)).contour == "low_rise"


def test_constant_pitch_is_flat_with_little_variability():
    cues = acoustic_cues(harmonic(np.full(round(1.5 * RATE), 150.0)))
    assert cues.contour == "flat"
    assert cues.f0_std_st < 0.2
    assert cues.f0_median_hz == pytest.approx(150.0, rel=0.02)


def test_steady_rise_is_other():
    t = seconds(1.5)
    assert acoustic_cues(harmonic(120 * 2 ** (8 * t / 1.5 / 12))).contour == "other"  # rises from the start


def test_f0_std_matches_the_constructed_vibrato():
    t = seconds(1.5)
    depth = 3.0  # semitones; a sine's standard deviation is depth / √2
    cues = acoustic_cues(harmonic(150 * 2 ** (depth * np.sin(2 * np.pi * 2 * t) / 12)))
    assert cues.f0_std_st == pytest.approx(depth / np.sqrt(2), abs=0.25)


def test_contour_shape_rules_directly():
    n = 100
    up_down = np.concatenate([np.linspace(0, 5, n // 2), np.linspace(5, 0, n // 2)])
    assert contour_shape(up_down) == "rise_fall"
    assert contour_shape(np.concatenate([np.zeros(70), np.linspace(0, 5, 30)])) == "low_rise"
    assert contour_shape(np.zeros(n)) == "flat"
    assert contour_shape(np.zeros(MIN_VOICED_FRAMES - 1)) == "unknown"  # under 0.1 s of voicing
    assert contour_shape(np.zeros(MIN_VOICED_FRAMES)) == "flat"


def test_band_2_4k_ratio(rng):
    sos = butter(8, [2000, 4000], btype="bandpass", fs=RATE, output="sos")
    noise = sosfiltfilt(sos, rng.standard_normal(RATE)).astype(np.float32)
    assert acoustic_cues(0.3 * noise / np.abs(noise).max()).band_2_4k_ratio > 0.9
    tone = (0.3 * np.sin(2 * np.pi * 300 * seconds(1.0))).astype(np.float32)
    assert acoustic_cues(tone).band_2_4k_ratio < 0.01


def test_bursts_at_4_hz_give_4_syllables_per_second():
    t = seconds(3.0)
    bursts = 0.3 * np.sin(2 * np.pi * 200 * t) * np.sin(np.pi * 4 * t) ** 2  # 12 bursts
    assert acoustic_cues(bursts.astype(np.float32)).syllable_rate == pytest.approx(4.0, abs=0.4)


def test_steady_tone_has_no_syllables():
    assert acoustic_cues(harmonic(np.full(RATE, 150.0))).syllable_rate == 0.0


def test_pause_ratio_matches_the_silence_fraction():
    tone = harmonic(np.full(RATE, 150.0))
    x = np.concatenate([tone, np.zeros(RATE // 2, np.float32), tone, np.zeros(RATE // 2, np.float32)])
    assert acoustic_cues(x).pause_ratio == pytest.approx(1 / 3, abs=0.05)


@pytest.mark.parametrize("samples", [np.zeros(RATE, np.float32), np.zeros(100, np.float32), np.zeros(0, np.float32)])
def test_silence_and_short_input_are_unknown(samples):
    cues = acoustic_cues(samples)
    assert cues.contour == "unknown"
    assert cues.f0_median_hz is None and cues.f0_std_st is None and cues.syllable_rate is None
    assert describe(cues) == "no speech (silent or too short)"
    json.dumps(cues.to_dict())


def test_unvoiced_noise_has_no_contour(rng):
    cues = acoustic_cues((0.1 * rng.standard_normal(RATE)).astype(np.float32))
    assert cues.contour == "unknown"
    assert cues.band_2_4k_ratio == pytest.approx(0.25, abs=0.05)  # white: 2 kHz of 7.92 kHz


def test_real_speech_gives_plausible_cues(speech):
    for samples in speech:
        cues = acoustic_cues(samples)
        assert 60 <= cues.f0_median_hz <= 400
        assert cues.voiced_fraction > 0.3
        assert cues.contour in ("rise_fall", "low_rise", "flat", "other")
        assert 1.0 < cues.syllable_rate < 8.0
        assert 0.0 <= cues.pause_ratio < 0.5
        assert 0.0 < cues.band_2_4k_ratio < 0.5
        assert cues.f0_std_st > 0.5  # speech is not monotone


def test_describe_names_notable_cues():
    cues = AcousticCues(2.0, 220.0, 8.0, 3.4, 0.7, "rise_fall", 0.31, 5.2, 0.1)
    assert describe(cues) == "F0 rise-fall, strong F0 fluctuation (3.4 st), high 2–4 kHz energy (0.31), fast (5.2 syl/s)"
    plain = AcousticCues(2.0, 120.0, 3.0, 1.5, 0.7, "other", 0.06, 4.0, 0.1)
    assert describe(plain) == "F0 other"


def test_to_dict_is_json_ready_and_rounded():
    d = AcousticCues(1.23456789, 150.123456, None, None, 0.5, "flat", 0.0123456, None, 0.25).to_dict()
    assert d == {
        "duration": 1.2346, "f0_median_hz": 150.1235, "f0_range_st": None, "f0_std_st": None,
        "voiced_fraction": 0.5, "contour": "flat", "band_2_4k_ratio": 0.0123, "syllable_rate": None,
        "pause_ratio": 0.25,
    }
    json.dumps(d)

"""The audio-quality gate on real (espeak) speech with noise at known SNRs, clipping and telephony."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soxr
from scipy.signal import ellip, sosfiltfilt

from audio_fixtures import with_noise
from stream.decision.quality import (
    TELEPHONY_LABEL,
    AudioQuality,
    QualityBar,
    assess_quality,
    clipping,
)

RATE = 16000
SNRS = (30, 20, 10, 0)


@pytest.fixture(scope="module")
def noisy(speech):
    """{utterance index: {true SNR: AudioQuality}}."""
    return {i: {snr: assess_quality(with_noise(x, snr)) for snr in SNRS} for i, x in enumerate(speech)}


def test_snr_estimate_is_monotonic_and_close(noisy):
    for results in noisy.values():
        estimates = [results[snr].snr_db for snr in SNRS]
        assert estimates == sorted(estimates, reverse=True), estimates
        for snr in (30, 20, 10):
            assert results[snr].snr_db == pytest.approx(snr, abs=5.0)


def test_gate_passes_30_db_and_withholds_at_10_db_and_below(noisy):
    for results in noisy.values():
        assert results[30].ok, results[30].reasons
        for snr in (10, 0):
            assert not results[snr].ok
            assert any(r.startswith("SNR ") and r.endswith("< 15 dB") for r in results[snr].reasons)


def test_clean_wideband_speech_passes(speech):
    for x in speech:
        q = assess_quality(x)
        assert q.ok and q.reasons == ()
        assert q.bandwidth_hz > 5000
        assert not q.telephony and q.band == "wideband"
        assert q.clipping_ratio == 0.0


def test_clipping_is_detected(speech):
    q = assess_quality(np.clip(8 * speech[0], -1, 1))
    assert q.clipping_ratio > 0.01
    assert q.clipped_runs > 0 and q.longest_clip_run >= 3
    assert not q.ok
    assert any(r.startswith("clipping ") for r in q.reasons)


def test_clipping_counts_runs_exactly():
    x = np.zeros(100, np.float32)
    x[10:15] = 1.0  # one run of 5
    x[50] = -1.0  # a single full-scale sample: clipped, but no run
    assert clipping(x) == (0.06, 1, 5)


def test_8_khz_audio_is_telephony(speech):
    for x in speech:
        narrow = soxr.resample(soxr.resample(x, RATE, 8000), 8000, RATE).astype(np.float32)
        q = assess_quality(narrow)
        assert q.telephony and q.band == TELEPHONY_LABEL
        assert q.bandwidth_hz < 4000
        assert q.ok  # telephony alone is no reason to withhold: 3.4 kHz clears the 3 kHz bar
        assert assess_quality(narrow, source_rate=8000).telephony


def test_3_4_khz_low_pass_is_telephony(speech):
    sos = ellip(8, 0.5, 60, 3400, fs=RATE, output="sos")  # a telephone channel's steep edge
    q = assess_quality(sosfiltfilt(sos, speech[1]).astype(np.float32))
    assert q.telephony and q.bandwidth_hz < 4000


def test_8_khz_source_rate_flags_telephony_whatever_the_spectrum(speech):
    q = assess_quality(speech[0], source_rate=8000)
    assert q.telephony and q.bandwidth_hz <= 4000


def test_narrow_band_fails_the_bar(speech):
    sos = ellip(8, 0.5, 60, 2000, fs=RATE, output="sos")
    q = assess_quality(sosfiltfilt(sos, speech[0]).astype(np.float32))
    assert not q.ok
    assert any(r.startswith("bandwidth ") and r.endswith("< 3000 Hz") for r in q.reasons)


def test_bar_is_configurable(speech):
    x = with_noise(speech[1], 10)
    assert not assess_quality(x).ok
    relaxed = assess_quality(x, bar=QualityBar(min_snr_db=5.0))
    assert relaxed.ok, relaxed.reasons
    with pytest.raises(ValueError, match="max_clipping"):
        QualityBar(max_clipping=2.0)


@pytest.mark.parametrize("samples", [np.zeros(RATE, np.float32), np.zeros(0, np.float32), np.zeros(10, np.float32)])
def test_silence_is_no_speech(samples):
    q = assess_quality(samples)
    assert q.snr_db is None and q.bandwidth_hz is None
    assert not q.ok and q.reasons == ("no speech",)
    json.dumps(q.to_dict())


def test_to_dict_is_json_ready_and_rounded():
    q = AudioQuality(12.345, -20.04, -32.38, 0.0123456, 2, 7, 3937.5, True, TELEPHONY_LABEL, False, ("SNR 12.3 dB < 15 dB",))
    assert q.to_dict() == {
        "snr_db": 12.3, "speech_dbfs": -20.0, "noise_dbfs": -32.4, "clipping_ratio": 0.01235,
        "clipped_runs": 2, "longest_clip_run": 7, "bandwidth_hz": 3938.0, "telephony": True,
        "band": TELEPHONY_LABEL, "ok": False, "reasons": ["SNR 12.3 dB < 15 dB"],
    }
    json.dumps(q.to_dict())

"""Audio-quality gate: SNR, clipping and bandwidth of a segment, judged against a bar.

The seed (section 3) shows the fear–disgust gap collapsing as recordings get worse (studio
> 40 dB SNR, phone ≈ 25 dB, far-field ≈ 15 dB) and the system answering Unknown instead of
forcing a choice. This module measures the three things that degrade first — noise, clipping
and a narrow (telephone) band — so the decision layer can withhold the fear/disgust call with a
stated reason when `AudioQuality.ok` is false. Sans-I/O: mono float samples in, a result out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import welch

from models.errors import ConfigError
from models.frames import SAMPLE_RATE

# SNR from the distribution of 20 ms frame powers (see `estimate_snr`).
FRAME_SECONDS = 0.020
NOISE_PERCENTILE = 10.0  # the quietest 10 % of frames: pauses, i.e. the noise floor
SPEECH_PERCENTILE = 50.0  # the louder half: frames that carry speech (plus noise)
SILENCE_DBFS = -60.0  # louder-half power under this: no speech at all
POWER_FLOOR = 1e-12  # −120 dBFS: digital silence in pauses gives a large, finite SNR

# Clipping.
CLIP_LEVEL = 0.99  # |x| at or above 99 % of full scale (±1) counts as clipped
MIN_CLIP_RUN = 3  # consecutive clipped samples: a flattened peak, not a lucky loud sample

# Bandwidth from a Welch PSD (see `estimate_bandwidth`).
WELCH_SECONDS = 0.032  # 31 Hz bins at 16 kHz
SMOOTH_HZ = 125.0  # the PSD is averaged over 125 Hz so one stray bin does not count as band
REFERENCE_BAND = (300.0, 3400.0)  # the telephone band, present in every speech recording
BANDWIDTH_DROP_DB = 30.0  # band edge: PSD 30 dB under the reference band's median level
TELEPHONY_MAX_HZ = 4000.0  # an 8 kHz channel carries nothing above 4 kHz (soxr-resampled 8 kHz audio measures ≈ 3.9 kHz)
TELEPHONY_LABEL = "telephony (8 kHz)"
WIDEBAND_LABEL = "wideband"


@dataclass(frozen=True)
class QualityBar:
    """What a segment must reach for the fear/disgust call to be made."""

    min_snr_db: float = 15.0  # the seed's far-field case (≈ 15 dB) is where the gap collapsed
    max_clipping: float = 0.01  # fraction of samples at full scale
    min_bandwidth_hz: float = 3000.0  # telephony (≈ 3.4 kHz) passes; narrower does not

    def __post_init__(self):
        if not 0.0 <= self.max_clipping <= 1.0:
            raise ConfigError(f"max_clipping must lie in [0, 1], got {self.max_clipping}")
        if self.min_bandwidth_hz < 0:
            raise ConfigError(f"min_bandwidth_hz must be ≥ 0, got {self.min_bandwidth_hz}")


@dataclass(frozen=True)
class AudioQuality:
    """Measured quality of one segment and the verdict against a `QualityBar`."""

    snr_db: float | None  # estimated SNR; None when the segment holds no speech
    speech_dbfs: float | None  # mean power of the louder half of 20 ms frames
    noise_dbfs: float | None  # mean power of the quietest 10 % of frames (the noise floor)
    clipping_ratio: float  # fraction of samples with |x| ≥ CLIP_LEVEL
    clipped_runs: int  # runs of ≥ MIN_CLIP_RUN consecutive clipped samples
    longest_clip_run: int  # samples
    bandwidth_hz: float | None  # highest frequency still within BANDWIDTH_DROP_DB of the speech band
    telephony: bool  # narrow band (≤ TELEPHONY_MAX_HZ) or an 8 kHz source
    band: str  # TELEPHONY_LABEL or WIDEBAND_LABEL
    ok: bool  # every check of the bar passed
    reasons: tuple[str, ...] = field(default=())  # why not ok, in words

    def to_dict(self) -> dict:
        """JSON-ready fields, floats rounded."""
        r = lambda v, n: None if v is None else round(float(v), n)
        return {
            "snr_db": r(self.snr_db, 1),
            "speech_dbfs": r(self.speech_dbfs, 1),
            "noise_dbfs": r(self.noise_dbfs, 1),
            "clipping_ratio": round(self.clipping_ratio, 5),
            "clipped_runs": self.clipped_runs,
            "longest_clip_run": self.longest_clip_run,
            "bandwidth_hz": r(self.bandwidth_hz, 0),
            "telephony": self.telephony,
            "band": self.band,
            "ok": self.ok,
            "reasons": list(self.reasons),
        }


def assess_quality(
    samples: np.ndarray, rate: int = SAMPLE_RATE, source_rate: int | None = None, bar: QualityBar = QualityBar()
) -> AudioQuality:
    """Measure SNR, clipping and bandwidth of `samples` and judge them against `bar`.

    `source_rate` is the rate the audio arrived at before resampling to `rate`; an 8 kHz source
    is telephony whatever its spectrum shows, and no band above its Nyquist frequency is real.
    """
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    snr, speech, noise = estimate_snr(x, rate)
    ratio, runs, longest = clipping(x)
    bandwidth = estimate_bandwidth(x, rate) if snr is not None else None
    if bandwidth is not None and source_rate:
        bandwidth = min(bandwidth, source_rate / 2)
    telephony = (source_rate is not None and source_rate <= 8000) or (
        bandwidth is not None and bandwidth <= TELEPHONY_MAX_HZ
    )
    reasons = []
    if snr is None:
        reasons.append("no speech")
    else:
        if snr < bar.min_snr_db:
            reasons.append(f"SNR {snr:.1f} dB < {bar.min_snr_db:g} dB")
        if bandwidth is not None and bandwidth < bar.min_bandwidth_hz:
            reasons.append(f"bandwidth {bandwidth:.0f} Hz < {bar.min_bandwidth_hz:.0f} Hz")
    if ratio > bar.max_clipping:
        reasons.append(f"clipping {ratio:.1%} > {bar.max_clipping:.1%}")
    return AudioQuality(
        snr_db=snr,
        speech_dbfs=speech,
        noise_dbfs=noise,
        clipping_ratio=ratio,
        clipped_runs=runs,
        longest_clip_run=longest,
        bandwidth_hz=bandwidth,
        telephony=telephony,
        band=TELEPHONY_LABEL if telephony else WIDEBAND_LABEL,
        ok=not reasons,
        reasons=tuple(reasons),
    )


def estimate_snr(samples: np.ndarray, rate: int = SAMPLE_RATE) -> tuple[float | None, float | None, float | None]:
    """(SNR dB, speech dBFS, noise dBFS) from the distribution of 20 ms frame powers.

    Noise floor N = mean power of the quietest NOISE_PERCENTILE of frames; speech-plus-noise
    S = mean power of frames at or above SPEECH_PERCENTILE; SNR = 10·log10((S − N) / N).
    Limits: it needs pauses. In continuous speech the quietest frames still hold weak speech,
    so N is too high and the SNR too low (the gate errs towards withholding); non-stationary
    noise (babble, music) that is loud in the speech frames is invisible to it; a steady tone
    reads as 0 dB. Returns Nones when the louder frames are under SILENCE_DBFS.
    """
    n = round(FRAME_SECONDS * rate)
    count = len(samples) // n
    if count == 0:
        return None, None, None
    power = np.mean(samples[: count * n].astype(np.float64).reshape(count, n) ** 2, axis=1)
    power = np.maximum(power, POWER_FLOOR)
    noise = float(power[power <= np.percentile(power, NOISE_PERCENTILE)].mean())
    loud = float(power[power >= np.percentile(power, SPEECH_PERCENTILE)].mean())
    if 10 * np.log10(loud) < SILENCE_DBFS:
        return None, None, None
    speech = max(loud - noise, POWER_FLOOR)
    return float(10 * np.log10(speech / noise)), float(10 * np.log10(speech)), float(10 * np.log10(noise))


def clipping(samples: np.ndarray) -> tuple[float, int, int]:
    """(fraction of clipped samples, runs of ≥ MIN_CLIP_RUN clipped samples, longest run)."""
    if len(samples) == 0:
        return 0.0, 0, 0
    clipped = np.abs(samples) >= CLIP_LEVEL
    padded = np.concatenate([[False], clipped, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    lengths = edges[1::2] - edges[::2]
    return float(clipped.mean()), int((lengths >= MIN_CLIP_RUN).sum()), int(lengths.max(initial=0))


def estimate_bandwidth(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float | None:
    """Highest frequency (Hz) whose smoothed PSD lies within BANDWIDTH_DROP_DB of the speech band.

    The reference is the median PSD level (dB) over REFERENCE_BAND, so the edge is relative to
    the speech itself and independent of gain. Broadband noise raises the PSD up to Nyquist and
    with it the bandwidth — correctly: such audio is not band-limited, only noisy.
    """
    nper = min(len(samples), round(WELCH_SECONDS * rate))
    if nper < 64:
        return None
    freqs, psd = welch(samples, fs=rate, nperseg=nper)
    width = max(1, round(SMOOTH_HZ / (freqs[1] - freqs[0])))
    smooth = np.convolve(np.pad(psd, width, mode="edge"), np.ones(width) / width, mode="same")[width:-width]
    level = 10 * np.log10(smooth + 1e-30)
    in_band = (freqs >= REFERENCE_BAND[0]) & (freqs <= min(REFERENCE_BAND[1], rate / 2))
    if not in_band.any():
        return None
    above = np.flatnonzero(level >= np.median(level[in_band]) - BANDWIDTH_DROP_DB)
    return float(freqs[above[-1]])

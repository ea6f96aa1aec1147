"""Issue 17 findings 1 and 6: what one `/api/predict` upload may cost the server.

Finding 1: a split upload of 8 channels segfaulted the whole server (PyAV's planar frame of 8+
channels). Finding 6: uploads were bounded only in seconds per channel, so a 13 kB FLAC at
655,340 Hz cost hundreds of MB. Uploads are now decoded packed, in a child process, within caps
on rate, channels and decoded bytes; the server answers each with a code and goes on serving.
"""

from __future__ import annotations

import asyncio
import subprocess
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest

from server_harness import start_server

TOKEN = "limits-token"
WIDE = 8  # the server under test allows this many parties (--max-predict-channels)


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        # EMOSTREAM_<NAME>, as an operator may set it: a server without the option still starts.
        mp.setenv("EMOSTREAM_MAX_PREDICT_CHANNELS", str(WIDE))
        s = start_server(tiny_model_dir, tmp_path_factory.mktemp("limits"), "--max-predicts", "1",
                         "--max-predict-seconds", "60", "--measure-processes", "0", token=TOKEN)
    yield s
    s.stop()


def write_channels(path: Path, channels: int, seconds: float = 1.0, rate: int = 16000) -> Path:
    """A 16-bit WAV whose channels hold noise bursts of different loudness (channel i: gain 0.05 * (i + 1))."""
    rng = np.random.default_rng(channels)
    n = int(seconds * rate)
    gains = 0.05 * (np.arange(channels) + 1) / channels
    x = rng.standard_normal((n, channels)) * gains
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def post(srv, path: Path, **form) -> httpx.Response:
    return httpx.post(f"{srv.http}/api/predict", headers=srv.headers, timeout=180,
                      files={"file": (path.name, path.read_bytes(), "application/octet-stream")}, data=form)


def alive(srv) -> bool:
    return srv.process.poll() is None and httpx.get(f"{srv.http}/healthz", timeout=10).status_code == 200


def died(srv) -> str:
    """How the server process ended, when a request found it gone."""
    try:
        return f"the server exited with {srv.process.wait(10)}"  # -11: SIGSEGV
    except subprocess.TimeoutExpired:
        return "the server is still running"


# -- finding 1: many channels --------------------------------------------------------------------


def test_split_upload_of_eight_channels_is_analyzed_and_the_server_lives(server, tmp_path):
    eight = write_channels(tmp_path / "eight.wav", 8)
    assert eight.stat().st_size == 256_044  # the review's file: 1 s, 8 channels, 256 kB
    try:
        r = post(server, eight, split_channels="true")
    except httpx.TransportError as exc:  # the server died under the request
        pytest.fail(f"the request got no answer ({exc!r}); {died(server)}")
    assert alive(server), f"server exited with {server.process.poll()}"
    assert r.status_code == 200, r.text
    assert list(r.json()["parties"]) == [str(i) for i in range(8)]
    stereo = post(server, write_channels(tmp_path / "two.wav", 2), split_channels="true")
    assert stereo.status_code == 200 and list(stereo.json()["parties"]) == ["0", "1"]


def test_more_channels_than_allowed_get_a_code_split_or_mixed(server, tmp_path):
    for channels in (9, 16):
        wav = write_channels(tmp_path / f"c{channels}.wav", channels)
        for form in ({"split_channels": "true"}, {}):
            try:
                r = post(server, wav, **form)
            except httpx.TransportError as exc:
                pytest.fail(f"{channels} channels {form}: no answer ({exc!r}); {died(server)}")
            assert r.status_code == 422 and r.json()["code"] == "unsupported_channels", (channels, form, r.text)
    assert alive(server)
    mixed = post(server, write_channels(tmp_path / "eight.wav", 8))  # down-mixed to one voice, as before
    assert mixed.status_code == 200 and "parties" not in mixed.json()


# -- finding 6: sample rate and decoded bytes ----------------------------------------------------


def test_high_rate_flac_is_refused_before_it_is_decoded(server, tmp_path):
    flac = tmp_path / "high.flac"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "anullsrc=r=655340:cl=mono", "-t", "20", "-c:a", "flac", str(flac)], check=True)
    assert flac.stat().st_size < 20_000  # a few kB that decode to 13 million samples
    r = post(server, flac)
    assert r.status_code == 422 and r.json()["code"] == "unsupported_rate", r.text
    assert "192000" in r.json()["message"]
    assert alive(server)
    ok = post(server, write_channels(tmp_path / "studio.wav", 1, rate=192000))  # the highest rate still taken
    assert ok.status_code == 200, ok.text


def test_default_limits_split_into_two_parties_at_most():
    from stream.server.predict import MAX_RATE, decode_limits
    from stream.server.settings import ServerSettings

    settings = ServerSettings()
    assert settings.max_predict_channels == 2 and MAX_RATE == 192000
    split, mixed = decode_limits(settings, split=True), decode_limits(settings, split=False)
    assert split.channels == 2 and mixed.channels == 8
    # --max-predict-seconds of 48 kHz float32 in --max-predict-channels channels: 345.6 MB.
    assert split.bytes == mixed.bytes == 900 * 48000 * 2 * 4


# -- the decoder in a child process --------------------------------------------------------------


def test_a_decoder_crash_costs_one_request_not_the_server(tiny_model_dir, tmp_path, monkeypatch):
    """A decoder that dies of SIGSEGV answers 422 decode_failed; the next upload is analyzed."""
    from starlette.testclient import TestClient

    from models.loader import ModelOptions, load_scorer
    from stream.server import predict
    from stream.server.app import create_app
    from stream.server.settings import ServerSettings, for_device

    scorer = load_scorer(ModelOptions(model_dir=str(tiny_model_dir), device="cpu", threads=1, dtype="float32"))
    settings, _ = for_device(ServerSettings(recordings=tmp_path / "rec", measure_processes=0), "cpu")
    wav = write_channels(tmp_path / "two.wav", 2)
    with TestClient(create_app(settings, scorer), base_url="http://127.0.0.1") as client:
        def upload():
            return client.post("/api/predict", files={"file": ("two.wav", wav.read_bytes())},
                               data={"split_channels": "true"})

        with monkeypatch.context() as m:
            m.setattr(predict, "DECODER", ("-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"))
            crashed = upload()
        assert crashed.status_code == 422 and crashed.json()["code"] == "decode_failed", crashed.text
        again = upload()
        assert again.status_code == 200 and list(again.json()["parties"]) == ["0", "1"]


def test_decoding_does_not_block_the_event_loop(tmp_path, monkeypatch):
    """While a child decodes, the loop keeps running (the server answers other requests)."""
    from stream.server import predict
    from stream.server.settings import ServerSettings

    wav = write_channels(tmp_path / "two.wav", 2)
    monkeypatch.setattr(predict, "DECODER", ("-c", "import time; time.sleep(1.5)"))

    async def race():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.create_task(tick())
        with pytest.raises(predict.DecodeFailed):
            await predict.decode_upload(wav, tmp_path, split=True, settings=ServerSettings())
        ticker.cancel()
        return ticks

    assert asyncio.run(race()) >= 10  # about 30 when the loop runs freely; 0 if decoding blocked it

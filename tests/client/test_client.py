"""`stream.client` against the real server subprocess: files, live sends, refusals, errors, parties."""

from __future__ import annotations

import asyncio
import json
import time
import wave

import numpy as np
import pytest
from audio_fixtures import espeak, write_stereo16, write_wav16
from server_harness import start_server

from stream.client import Client, ClientError, HandshakeRefused, ServerError, stream_file

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    s = start_server(tiny_model_dir, tmp_path_factory.mktemp("client"), "--max-wait-ms", "20", token=TOKEN)
    yield s
    s.stop()


def collect(aiter) -> list[dict]:
    """Every message of an async iterator of messages, run to its end."""

    async def run():
        return [m async for m in aiter]

    return asyncio.run(run())


def of_type(messages, kind):
    return [m for m in messages if m["type"] == kind]


def test_stream_file_yields_ready_info_windows_segments_summary(server, speech_silence_speech, tmp_path):
    rec = speech_silence_speech
    wav = write_wav16(tmp_path / "call.wav", rec.samples)
    began = time.monotonic()
    messages = collect(stream_file(wav, server.ws, token=TOKEN, pace=4.0, session_id="file-1",
                                   context="crisis hotline", metadata={"line": 3}))
    took = time.monotonic() - began
    assert took >= rec.duration / 4 - 0.2, took  # paced: four times real time, not a burst
    types = [m["type"] for m in messages]
    assert types[0] == "ready" and types[1] == "info" and types[-1] == "summary", types
    assert messages[1]["random_weights"] is True
    assert len(of_type(messages, "segment")) == 2 and of_type(messages, "window")
    assert all(m["session_id"] == "file-1" for m in messages)
    assert messages[-1]["stats"]["status"] == "complete"
    # The server recorded exactly the file's samples, and every event it recorded reached us.
    folder = server.recordings / "file-1"
    with wave.open(str(folder / "audio.wav")) as w:
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    with wave.open(str(wav)) as w:
        assert np.array_equal(got, np.frombuffer(w.readframes(w.getnframes()), "<i2"))
    recorded = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert [r["type"] for r in recorded] == types[1:-1]
    meta = json.loads((folder / "session.json").read_text())
    assert meta["context"] == "crisis hotline" and meta["metadata"] == {"line": 3}


def test_a_file_at_a_rate_the_server_does_not_take_is_resampled(server, tmp_path):
    espeak("Hello, this is a short test call.", tmp_path / "native.wav")  # espeak writes 22050 Hz
    messages = collect(stream_file(tmp_path / "native.wav", server.ws, token=TOKEN, pace=None, session_id="rate-1"))
    assert messages[0]["type"] == "ready" and messages[-1]["type"] == "summary"
    with wave.open(str(server.recordings / "rate-1" / "audio.wav")) as w:
        assert w.getframerate() == 16000
    with wave.open(str(tmp_path / "native.wav")) as w:
        native = w.getnframes() / w.getframerate()
    assert messages[-1]["stats"]["duration_seconds"] == pytest.approx(native, abs=0.01)


def test_nothing_is_dropped_when_the_caller_reads_only_at_the_end(server, speech_silence_speech):
    samples = speech_silence_speech.samples

    async def run():
        async with Client(server.ws, token=TOKEN, encoding="pcm_f32le", session_id="late-reader") as client:
            assert client.session_id == "late-reader" and client.parameters
            for i in range(0, len(samples), 1600):
                await client.send(samples[i : i + 1600])
            await asyncio.sleep(1.0)  # the server answers meanwhile; nobody reads yet
            return await client.finish(), client.close_code

    messages, code = asyncio.run(run())
    assert code == 1000
    recorded = (server.recordings / "late-reader" / "events.jsonl").read_text().splitlines()
    assert [m["type"] for m in messages[1:-1]] == [json.loads(line)["type"] for line in recorded]
    assert len(of_type(messages, "segment")) == 2


def test_a_wrong_token_is_a_clear_refusal(server, speech_silence_speech, tmp_path):
    wav = write_wav16(tmp_path / "call.wav", speech_silence_speech.samples[:16000])
    with pytest.raises(HandshakeRefused) as caught:
        collect(stream_file(wav, server.ws, token="wrong", session_id="never"))
    assert caught.value.status == 401 and "wrong token" in str(caught.value)
    assert isinstance(caught.value, ClientError) and not (server.recordings / "never").exists()
    with pytest.raises(HandshakeRefused):
        collect(stream_file(wav, server.ws, session_id="never"))  # no token at all


def test_a_bad_start_fails_before_connecting_and_a_refused_start_raises():
    with pytest.raises(ClientError, match="unsupported_rate"):
        Client("ws://127.0.0.1:9", sample_rate=12345)
    with pytest.raises(ClientError, match="bad_parties"):
        Client("ws://127.0.0.1:9", channels=2, split_channels=True, parties=["a"])
    with pytest.raises(ClientError, match="ws:// or wss://"):
        Client("http://127.0.0.1:9")


def test_a_session_id_in_use_raises_the_servers_error(server, speech_silence_speech):
    async def run():
        async with Client(server.ws, token=TOKEN, session_id="taken") as first:
            await first.send(speech_silence_speech.samples[:8000])
            with pytest.raises(ServerError) as caught:
                async with Client(server.ws, token=TOKEN, session_id="taken"):
                    pass
            await first.finish()
            return caught.value

    error = asyncio.run(run())
    assert error.code == "session_in_use" and not error.closes


def test_a_split_stereo_file_yields_per_party_events(server, two_voices, tmp_path):
    caller, agent = two_voices
    wav = write_stereo16(tmp_path / "call.wav", caller, agent)
    messages = collect(stream_file(wav, server.ws, token=TOKEN, pace=None, split_channels=True,
                                   parties=["caller", "counsellor"], session_id="split-1"))
    assert messages[0]["type"] == "ready" and messages[0]["parties"] == ["caller", "counsellor"]
    events = [m for m in messages if m["type"] not in ("ready", "summary")]
    assert {e["party"] for e in events if e["type"] in ("window", "segment")} == {"caller", "counsellor"}
    for party in ("caller", "counsellor"):
        assert of_type([e for e in events if e.get("party") == party], "segment")
    assert set(messages[-1]["stats"]["parties"]) == {"caller", "counsellor"}


def test_limits_become_exceptions_and_nothing_is_lost(tiny_model_dir, tmp_path, speech_silence_speech):
    srv = start_server(tiny_model_dir, tmp_path, "--max-sessions", "1", "--max-message-bytes", "20000",
                       "--max-session-seconds", "2", token=None)
    samples = speech_silence_speech.samples

    async def run():
        results = {}
        async with Client(srv.ws) as first:
            with pytest.raises(ServerError) as full:  # the only slot is taken: the server says so, then closes
                async with Client(srv.ws):
                    pass
            results["full"] = full.value
            with pytest.raises(ServerError) as too_long:  # audio past --max-session-seconds
                for i in range(0, 16000 * 3, 1600):
                    await first.send(samples[i : i + 1600])
                    await asyncio.sleep(0.01)
                async for _ in first.messages():
                    pass
            results["long"] = too_long.value
            results["after"] = [m["type"] async for m in first.messages()]  # the summary still comes
            with pytest.raises(ServerError):
                await first.send(samples[:1600])  # the connection is closed: the reason is given again
        async with Client(srv.ws) as big:
            with pytest.raises(ClientError) as too_big:  # the server's error, or its 1009 close alone
                await big.send(np.zeros(20000, np.int16))  # 40000 bytes > --max-message-bytes
                async for _ in big.messages():
                    pass
            results["big"] = (too_big.value, big.close_code)
        return results

    try:
        results = asyncio.run(run())
    finally:
        srv.stop()
    assert results["full"].code == "server_full" and results["full"].closes and "1 sessions" in str(results["full"])
    assert results["long"].code == "session_too_long" and results["long"].closes
    assert results["after"][-1] == "summary"
    error, code = results["big"]
    assert code == 1009 and ("message_too_large" in str(error) or "1009" in str(error))

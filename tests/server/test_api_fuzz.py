"""Issue 18: a spec-driven fuzzer (schemathesis) against a real server on loopback.

Schemathesis' engine runs as its CLI does (`schemathesis run`, settings in schemathesis.toml here)
over every operation /openapi.json lists, so a route added later and documented as http-api.md
says is fuzzed without touching this file: examples, the coverage phase's edge cases and
undeclared methods, positive and negative fuzzing, then the stateful phase through the links it
infers (GET /api/sessions -> the recorded sessions, read and deleted); every check: no 5xx, only
documented status codes, content types and headers, responses that fit their schemas, 405 with
`Allow`, 401 without the credential. Before it, the real recordings and analyses against the
document; after it, request bodies the schema admits (written, and generated with real audio).

Bounded for 2 cores: EMOSTREAM_FUZZ_EXAMPLES (25) examples per operation and phase, from a fixed
seed unless EMOSTREAM_FUZZ_RANDOM=1 (a longer, random hunt: set both).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode, engine
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from audio_fixtures import write_stereo16, write_wav16
from server_harness import start_server
from stream.client import Client

TOKEN = "fuzz-all-rights"  # --token: every right (stream, watch, admin)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = int(os.environ.get("EMOSTREAM_FUZZ_EXAMPLES", "25"))
RANDOM = bool(os.environ.get("EMOSTREAM_FUZZ_RANDOM"))
SEED = 18  # the number: the same requests on every run, unless EMOSTREAM_FUZZ_RANDOM
HYPOTHESIS = dict(deadline=None, suppress_health_check=list(HealthCheck), derandomize=not RANDOM)
FORM_TRUE = ("true", "1", "yes", "on")
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance]
FUZZ_CONFIG = Path(__file__).with_name("schemathesis.toml")  # also for `schemathesis run` by hand


def _config() -> SchemathesisConfig:
    """tests/server/schemathesis.toml, with this run's credential and bounds before it."""
    bounds = f"""
headers = {{ Authorization = "Bearer {TOKEN}" }}
request-timeout = 120
workers = 1
generation.max-examples = {EXAMPLES}
phases.stateful.max-steps = 6
{"" if RANDOM else f"seed = {SEED}"}
"""
    return SchemathesisConfig.from_str(bounds + FUZZ_CONFIG.read_text(), base_dir=str(FUZZ_CONFIG.parent))


def _noise(seconds: float, gain: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * gain


async def _record(srv, session_id: str, channels: int) -> None:
    """One short session through /ws/stream, recorded under `session_id`."""
    frames = np.stack([_noise(1.5, 0.1 / (c + 1), c) for c in range(channels)], axis=1)
    split = {"split_channels": True, "parties": ("left", "right")} if channels == 2 else {}
    async with Client(srv.ws, token=TOKEN, session_id=session_id, channels=channels, **split) as client:
        for i in range(0, len(frames), 3200):
            await client.send(frames[i : i + 3200])
        await client.finish(120)


@pytest.fixture(scope="module")
def api_server(tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    audio = tmp / "audio"
    audio.mkdir()
    write_wav16(audio / "mono.wav", _noise(1.0, 0.1, 1))
    write_stereo16(audio / "stereo.wav", _noise(1.0, 0.1, 2), _noise(1.0, 0.05, 3))
    srv = start_server(tiny_model_dir, tmp, "--audio-root", str(audio), "--max-wait-ms", "20", token=TOKEN)
    try:
        asyncio.run(_record(srv, "fuzz-mono", 1))
        asyncio.run(_record(srv, "fuzz-split", 2))
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def api_schema(api_server):
    return schemathesis.openapi.from_url(f"{api_server.http}/openapi.json", config=_config())


def _call(api_schema, method: str, path: str, **case):
    """One request built from the document's operation, sent with the credential; every check must pass."""
    return api_schema[path][method].Case(**case).call_and_validate(headers=AUTH, timeout=120)


def test_recordings_and_analyses_are_as_documented(api_server, api_schema):
    """The real resources, not generated ids: each answer passes every check against the document."""
    listed = _call(api_schema, "GET", "/api/sessions").json()["sessions"]
    assert {"fuzz-mono", "fuzz-split"} <= {s["session_id"] for s in listed}
    for sid in ("fuzz-mono", "fuzz-split"):
        ids = {"session_id": sid}
        assert _call(api_schema, "GET", "/api/sessions/{session_id}", path_parameters=ids).json()["events"] > 0
        assert _call(api_schema, "GET", "/api/sessions/{session_id}/events", path_parameters=ids).status_code == 200
    audio = "/api/sessions/{session_id}/audio"
    assert _call(api_schema, "GET", audio, path_parameters={"session_id": "fuzz-mono"}).status_code == 200
    split = {"session_id": "fuzz-split"}
    assert _call(api_schema, "GET", audio, path_parameters=split, query={"party": "left"}).status_code == 200
    assert _call(api_schema, "GET", audio, path_parameters=split).status_code == 400  # party_required
    assert _call(api_schema, "GET", "/healthz").json()["model_id"]
    assert _call(api_schema, "GET", "/metrics").status_code == 200


def test_deleting_a_live_session_is_409_then_200_once_it_ended(api_server, api_schema):
    live = {"session_id": "fuzz-live"}

    async def while_live():
        async with Client(api_server.ws, token=TOKEN, session_id="fuzz-live") as client:
            await client.send(_noise(0.5, 0.1, 4))
            busy = await asyncio.to_thread(_call, api_schema, "DELETE", "/api/sessions/{session_id}", path_parameters=live)
            await client.finish(120)
            return busy

    assert asyncio.run(while_live()).status_code == 409
    gone = _call(api_schema, "DELETE", "/api/sessions/{session_id}", path_parameters=live)
    assert gone.json() == {"deleted": "fuzz-live"}
    assert _call(api_schema, "DELETE", "/api/sessions/{session_id}", path_parameters=live).status_code == 404


# -- the fuzzer -----------------------------------------------------------------------------------


def _fuzz(api_schema) -> tuple[list[str], dict[str, Counter]]:
    """Run schemathesis' engine as its CLI does: every phase, every check; what failed, and the statuses seen."""
    problems: list[str] = []
    statuses: dict[str, Counter] = {}
    for event in engine.from_schema(api_schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    key = f"{interaction.request.method} {event.recorder.label.split(' ', 1)[-1]}"
                    statuses.setdefault(key, Counter())[interaction.response.status_code] += 1
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.failure_info is not None:
                        failure = check.failure_info.failure
                        problems.append(f"{event.recorder.label} [{check.name}] {failure.title}: {failure.message}\n"
                                        f"{check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            problems.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            problems += [f"{f.title}: {f.message}" for f in event.failures]
            assert event.stop_reason == "completed", event.stop_reason
    return sorted(set(problems)), statuses


def test_every_documented_operation_under_the_fuzzer(api_server, api_schema):
    problems, statuses = _fuzz(api_schema)
    assert not problems, "\n\n".join(problems)
    documented = {f"{op.method.upper()} {op.path}" for op in (r.ok() for r in api_schema.get_all_operations())}
    assert documented <= set(statuses), documented - set(statuses)  # each one was sent requests, and answered
    assert not [k for k, seen in statuses.items() if any(code >= 500 for code in seen)], statuses
    print("\n".join(f"{key}: {dict(sorted(seen.items()))}" for key, seen in sorted(statuses.items())))
    probed = [k for k, seen in statuses.items() if k.endswith(" /api/predict") and not k.startswith("POST")]
    assert probed and all(set(statuses[k]) == {405} for k in probed), probed  # undeclared methods: 405
    assert statuses["POST /api/predict"][422]  # uploads reached the decoder (the valid-body tests below get 200s)
    assert api_server.process.poll() is None  # and the server is still up


# -- bodies the schema admits are accepted -------------------------------------------------------

FORM_BODIES = [  # as a browser's form or curl -F sends them
    {"granularity": "frame", "context": "crisis hotline", "extract_embedding": "true"},
    {"extract_embedding": "on", "split_channels": "off"},
    {"split_channels": "yes", "parties": "caller, agent", "extract_embedding": "1"},
    {"split_channels": "TRUE"},
    {"split_channels": "1", "parties": "a,b", "granularity": "utterance", "extract_embedding": "No"},
]
JSON_BODIES = [
    {"audio_path": "mono.wav"},
    {"audio_path": "mono.wav", "granularity": "frame", "context": None, "extract_embedding": True, "parties": None},
    {"audio_path": "stereo.wav", "split_channels": True, "parties": ["caller", "agent"], "context": "medical"},
    {"audio_path": "stereo.wav", "split_channels": False, "extract_embedding": False, "unknown": 1},
]


def _wav(api_server, split: bool) -> bytes:
    return (api_server.recordings.parent / "audio" / ("stereo.wav" if split else "mono.wav")).read_bytes()


def test_written_valid_bodies_are_analyzed(api_server, api_schema):
    for form in FORM_BODIES:
        split = str(form.get("split_channels", "false")).lower() in FORM_TRUE
        body = {"file": _wav(api_server, split), **form}
        r = _call(api_schema, "POST", "/api/predict", body=body, media_type="multipart/form-data")
        assert r.status_code == 200, (form, r.text)
        assert ("parties" in r.json()) == split
    for body in JSON_BODIES:
        r = _call(api_schema, "POST", "/api/predict", body=body, media_type="application/json")
        assert r.status_code == 200, (body, r.text)
    url = httpx.post(f"{api_server.http}/api/predict", data={"audio_path": "mono.wav", "granularity": "frame"},
                     headers=AUTH, timeout=120)
    assert url.status_code == 200, url.text  # application/x-www-form-urlencoded


@pytest.fixture(scope="module")
def predict_positive(api_schema):
    return api_schema["/api/predict"]["POST"].as_strategy(generation_mode=GenerationMode.POSITIVE)


def test_generated_valid_bodies_are_analyzed(api_server, api_schema, predict_positive):
    """Whatever body the schema admits is analyzed (200) once it names real audio with one party per channel."""

    @given(case=predict_positive, names=st.lists(st.from_regex(r"\A[a-z]{1,8}\Z"), min_size=2, max_size=2, unique=True))
    @settings(max_examples=max(6, EXAMPLES // 3), **HYPOTHESIS)
    def run(case, names):
        body = dict(case.body)
        form = case.media_type != "application/json"
        split = str(body.get("split_channels")).lower() in FORM_TRUE if form else body.get("split_channels") is True
        if "file" in body:
            body["file"] = _wav(api_server, split)
        if "audio_path" in body:
            body["audio_path"] = "stereo.wav" if split else "mono.wav"
        if body.get("parties") is not None:  # the document cannot know the file's channels: one name each
            body["parties"] = ",".join(names) if form else names
        case.body = body
        # The answer against the document; that the body was accepted is asserted here (the generated
        # case's own positive/negative bookkeeping does not know of the audio put in).
        r = case.call_and_validate(headers=AUTH, timeout=120, checks=CONFORMANCE)
        assert r.status_code == 200, (case.media_type, body.keys(), r.text)

    run()

"""`POST /api/predict`: analyze one file like `emostream analyze`, within limits, behind live streams.

The upload is streamed to a temporary file (never held whole in memory) and refused past
--max-upload-bytes (413); audio past --max-predict-seconds is refused (413); more than
--max-predicts analyses at once are refused (429). The model is reached through the server's
batching scheduler at BACKGROUND priority, so a long file never delays a live stream's windows.

The file is decoded in a child process (`decode_upload`): a crash or a runaway allocation in one
of FFmpeg's decoders costs that request (422 decode_failed), never the server, and decoding never
holds the event loop or its GIL. Before decoding, the child refuses rates above MAX_RATE (422
unsupported_rate) and more channels than --max-predict-channels when split, MIX_CHANNELS when
mixed (422 unsupported_channels); while decoding, it stops past a budget of decoded bytes (413
too_long): --max-predict-seconds x 48 kHz x --max-predict-channels x 4 bytes (345.6 MB by default).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse

from models.errors import AudioError, EmostreamError
from models.scoring import FrameOutput
from stream.offline.analyze import GRANULARITIES, analyze_audio
from stream.offline.audio_file import SAMPLE_BYTES, DecodedAudio, DecodeLimits, decode_job, read_decoded
from stream.engine.parties import PARTY_RE, PartyError, check_party_names
from stream.offline.split import analyze_channels

from .scheduling import BACKGROUND, Scheduler
from .settings import ServerSettings

log = logging.getLogger(__name__)

UPLOAD_SUFFIX_CHARS = 16  # of the uploaded name only its extension is kept (a hint for the demuxer)
MAX_RATE = 192_000  # the highest rate studio recordings use; above it a file is a memory bomb, not speech
MIX_CHANNELS = 8  # 7.1, the widest layout a recording has: more is refused even when down-mixed
BUDGET_RATE = 48_000  # decoded samples are bounded as --max-predict-seconds at this rate would be
# The child runs the decoder alone (numpy, PyAV, soxr: a fresh interpreter starts in a fraction of
# a second), never the server's modules.
DECODER = ("-c", "import sys; from stream.offline.audio_file import decode_main; sys.exit(decode_main())")
DECODE_TIMEOUT = 300.0  # seconds; a decoder that loops on a crafted file must not hold a --max-predicts slot
LOG_TAIL_BYTES = 2000  # of a failed decoder's stderr, written to the server log
JSON_TYPE = "application/json"
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# How a form sends a boolean (any case); JSON sends true or false.
FORM_FLAGS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


class DecodeFailed(AudioError):
    """The child decoding an upload crashed, hung or answered nonsense."""

    code = "decode_failed"


class TooLarge(EmostreamError):
    """The request body passed --max-upload-bytes (413)."""

    code = "too_large"


class Refused(Exception):
    """A request answered with an error before any decoding: its status, code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True, eq=False)
class FileJob:
    """One piece of an uploaded file waiting for the model (the scheduler needs only `audio`)."""

    audio: np.ndarray


class ScheduledScorer:
    """A Scorer whose forward passes go through the live server's scheduler at BACKGROUND priority.

    `score` is called from a worker thread (the offline analysis runs there); each waveform is
    queued on the event loop and waited for, one at a time.
    """

    def __init__(self, scorer, scheduler: Scheduler, loop: asyncio.AbstractEventLoop):
        self._scorer = scorer
        self._scheduler = scheduler
        self._loop = loop

    def __getattr__(self, name: str):
        # Labels, model id, precision, planted...: the wrapped scorer's, so the Scorer protocol can
        # grow without this wrapper copying each new attribute (only `score` takes another path).
        return getattr(self._scorer, name)

    def score(self, waveforms: Sequence[np.ndarray]) -> list[FrameOutput]:
        """Score each waveform through the scheduler, in order."""
        return [asyncio.run_coroutine_threadsafe(self._one(w), self._loop).result() for w in waveforms]

    async def _one(self, waveform: np.ndarray) -> FrameOutput:
        return await self._scheduler.submit(FileJob(np.asarray(waveform, dtype=np.float32)), priority=BACKGROUND)


def decode_limits(settings: ServerSettings, split: bool) -> DecodeLimits:
    """What decoding one upload may cost: its rate, its channels and the bytes of its decoded samples."""
    channels = settings.max_predict_channels if split else max(MIX_CHANNELS, settings.max_predict_channels)
    budget = settings.max_predict_seconds * BUDGET_RATE * settings.max_predict_channels * SAMPLE_BYTES
    return DecodeLimits(rate=MAX_RATE, channels=channels, bytes=int(budget))


async def decode_upload(path: Path, tmp: Path, split: bool, settings: ServerSettings) -> list[DecodedAudio]:
    """Decode `path` in a child process within the upload limits: its channels (split) or its mix."""
    out = tmp / "decoded"
    out.mkdir(exist_ok=True)
    job = decode_job(path, out, split, settings.max_predict_seconds, decode_limits(settings, split))
    # The child imports this checkout's packages as the server did, wherever it was started from.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    errors = tmp / "decoder.log"
    with open(errors, "wb") as stderr:
        child = await asyncio.create_subprocess_exec(
            sys.executable, *DECODER, job, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=stderr, env=env,
        )
        try:
            stdout, _ = await asyncio.wait_for(child.communicate(), DECODE_TIMEOUT)
        except asyncio.TimeoutError:
            raise DecodeFailed(f"decoding took longer than {DECODE_TIMEOUT:g} s") from None
        finally:
            if child.returncode is None:  # timed out, or this request was cancelled
                child.kill()
                await child.wait()
    lines = stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        report = json.loads(lines[-1]) if child.returncode == 0 and lines else None
    except ValueError:
        report = None
    if not isinstance(report, dict):
        tail = errors.read_bytes()[-LOG_TAIL_BYTES:].decode("utf-8", "replace")
        log.warning("decoding an upload failed (exit %s): %s", child.returncode, tail)
        raise DecodeFailed(f"the file could not be decoded (the decoder ended with {child.returncode})")
    return await asyncio.to_thread(read_decoded, out, report)  # hundreds of MB at most: off the loop


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"type": "error", "code": code, "message": message}, status_code=status, headers=headers)


def _flag(form, name: str, json_body: bool) -> bool:
    """A boolean field: JSON true/false, or a form's true/false, 1/0, yes/no, on/off (else 400)."""
    value = form.get(name)
    if value is None and name not in form:
        return False
    if json_body and isinstance(value, bool):
        return value
    if not json_body and isinstance(value, str) and value.lower() in FORM_FLAGS:
        return FORM_FLAGS[value.lower()]
    allowed = "true or false" if json_body else "true/false, 1/0, yes/no or on/off"
    raise Refused(400, "bad_request", f"{name} must be {allowed}")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _limited(request: Request, limit: int) -> Request:
    """The request with a body that raises TooLarge past `limit` bytes (chunked bodies included)."""
    received = 0

    async def receive():
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise TooLarge
        return message

    return Request(request.scope, receive)


async def predict(request: Request) -> JSONResponse:
    """Analyze an uploaded file (`file`) or `audio_path` below --audio-root, like `emostream analyze`.
    ---
    summary: Analyze one file like `emostream analyze` (stream right)
    description: >-
      A multipart upload (`file`), or a file below the server's --audio-root named by `audio_path` (JSON or a
      form). A form sends booleans as true/false, 1/0, yes/no or on/off (any case) and `parties` comma-separated;
      JSON sends true/false and a list. 400 when the body does not fit this schema, 422 when it does but the
      file or the party names cannot be analyzed.
    requestBody:
      required: true
      content:
        multipart/form-data:
          schema:
            type: object
            maxProperties: 16  # fields the server reads of one form, the file included
            additionalProperties: {type: string}  # other fields are ignored, but count (one value each)
            allOf:
              - anyOf: [{required: [file]}, {required: [audio_path]}]
              - $ref: '#/components/schemas/FormPartiesNeedSplit'
            properties:
              file: {type: string, format: binary, description: 'the audio: any format FFmpeg decodes (WAV, MP3, FLAC...)'}
              audio_path: {$ref: '#/components/schemas/AudioPath'}
              granularity: {$ref: '#/components/schemas/Granularity'}
              context: {type: string, description: 'what the audio is about: picks a domain profile by keywords'}
              extract_embedding: {$ref: '#/components/schemas/FormFlag'}
              split_channels: {$ref: '#/components/schemas/FormFlag'}
              parties: {$ref: '#/components/schemas/FormParties'}
        application/x-www-form-urlencoded:
          schema:
            type: object
            maxProperties: 16
            additionalProperties: {type: string}
            required: [audio_path]
            allOf: [{$ref: '#/components/schemas/FormPartiesNeedSplit'}]
            properties:
              audio_path: {$ref: '#/components/schemas/AudioPath'}
              granularity: {$ref: '#/components/schemas/Granularity'}
              context: {type: string}
              extract_embedding: {$ref: '#/components/schemas/FormFlag'}
              split_channels: {$ref: '#/components/schemas/FormFlag'}
              parties: {$ref: '#/components/schemas/FormParties'}
        application/json:
          schema:
            type: object
            required: [audio_path]
            anyOf:  # parties only with split_channels
              - properties: {parties: {enum: [null]}}
              - {required: [split_channels], properties: {split_channels: {enum: [true]}}}
            properties:
              audio_path: {$ref: '#/components/schemas/AudioPath'}
              granularity: {$ref: '#/components/schemas/Granularity'}
              context: {type: string, nullable: true, description: 'what the audio is about: picks a domain profile'}
              extract_embedding: {type: boolean, default: false, description: add the utterance embedding}
              split_channels: {type: boolean, default: false, description: analyze each channel as its own party}
              parties:
                type: array
                nullable: true
                minItems: 1
                uniqueItems: true
                description: one name per channel, with split_channels (else 422)
                items: {$ref: '#/components/schemas/PartyName'}
    responses:
      200:
        description: >-
          result.json's fields, as `emostream analyze` writes them, plus `embedding` with extract_embedding; with
          split_channels each party's under `parties` (by name, with its `channel`) and no emotion of the whole
        content:
          application/json:
            schema: {$ref: '#/components/schemas/PredictResult'}
      400:
        description: "`bad_json`, `bad_request`, `bad_parties`: the body does not fit this schema (or cannot be read)"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      403:
        description: >-
          `forbidden`: audio_path while the server has no --audio-root, or outside it; or the credential lacks the
          stream right. `bad_origin`: a web page of another origin sent it
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      404:
        description: "`not_found`: audio_path names no file below --audio-root"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      413:
        description: >-
          `too_large`: over --max-upload-bytes; `too_long`: over --max-predict-seconds or the decoded-bytes budget
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      415:
        description: "`unsupported_media_type`: a body that is not JSON, multipart/form-data or x-www-form-urlencoded"
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      422:
        description: >-
          The body fits but cannot be analyzed: `unsupported_format` (not audio), `unsupported_rate` (over 192 kHz),
          `unsupported_channels`, `decode_failed`, `bad_audio` (e.g. nothing to split) and other analysis errors;
          `bad_parties`: repeated or reserved ("all") names, not one per channel, or parties without split_channels
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
      429:
        description: "`busy`: --max-predicts analyses are running"
        headers:
          Retry-After: {required: true, description: seconds to wait, schema: {type: integer}}
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Error'}
    """
    server = request.app.state.server
    settings = server.settings
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > settings.max_upload_bytes:
        return _error(413, "too_large", f"uploads are limited to {settings.max_upload_bytes} bytes")
    media = _media_type(request)
    if media and media != JSON_TYPE and media not in FORM_TYPES:
        return _error(415, "unsupported_media_type", f"send {JSON_TYPE}, {FORM_TYPES[0]} or {FORM_TYPES[1]}, not {media}")
    if server.predicts_running >= settings.max_predicts:
        return _error(429, "busy", f"{settings.max_predicts} analyses are running; try again later",
                      {"Retry-After": "5"})
    server.predicts_running += 1
    try:
        with tempfile.TemporaryDirectory(prefix="emostream-predict-") as tmp:
            return await _predict(_limited(request, settings.max_upload_bytes), server, Path(tmp))
    except TooLarge:
        return _error(413, "too_large", f"uploads are limited to {settings.max_upload_bytes} bytes")
    except Refused as exc:
        return _error(exc.status, exc.code, str(exc))
    finally:
        server.predicts_running -= 1


async def _read_form(request: Request) -> tuple[dict, bool]:
    """The request's fields and whether they came as JSON (400 for a body that cannot be read)."""
    if _media_type(request) == JSON_TYPE:
        try:
            form = json.loads(await request.body())
        except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the parser goes
            raise Refused(400, "bad_json", "the body is not valid JSON") from None
        if not isinstance(form, dict):
            raise Refused(400, "bad_json", "the body must be a JSON object")
        return form, True
    try:
        return await request.form(max_files=1, max_fields=16), False
    except TooLarge:
        raise
    except Exception as exc:  # malformed multipart
        raise Refused(400, "bad_request", f"cannot read the form: {type(exc).__name__}") from None


def _parties(form, json_body: bool, split: bool) -> list[str] | None:
    """The checked party names: 400 when they do not fit the schema, 422 (bad_parties) when they cannot be used."""
    parties = form.get("parties")
    if isinstance(parties, str) and not json_body:  # a form field: comma-separated
        parties = [name.strip(" ") for name in parties.split(",")]
    if parties is None:
        return None
    if not (isinstance(parties, list) and parties and all(isinstance(n, str) and PARTY_RE.fullmatch(n) for n in parties)):
        raise Refused(400, "bad_parties", "parties must be a list of names of 1-32 A-Z a-z 0-9 _ - "
                                          "(a form field: comma-separated)")
    try:
        check_party_names(parties)
    except PartyError as exc:
        raise Refused(422, exc.code, str(exc)) from None
    if not split:
        raise Refused(422, "bad_parties", "parties name the channels of split_channels: add split_channels=true")
    return parties


def _audio_path(form, settings: ServerSettings) -> Path:
    """The file `audio_path` names, below --audio-root (403 outside it or without one, 404 when no such file)."""
    name = form["audio_path"]
    root = settings.audio_root
    if root is None:
        raise Refused(403, "forbidden", "audio_path is disabled: the server has no --audio-root")
    try:
        path = (root / name).resolve()
        inside = path.is_relative_to(root.resolve())
        found = inside and path.is_file()
    except (OSError, ValueError):  # a NUL byte, a name too long...: it names no file
        inside, found = True, False
    if not inside:
        raise Refused(403, "forbidden", "audio_path must lie inside the server's --audio-root")
    if not found:
        raise Refused(404, "not_found", "audio_path names no file below the server's --audio-root")
    return path


async def _predict(request: Request, server, tmp: Path) -> JSONResponse:
    settings = server.settings
    form, json_body = await _read_form(request)
    upload = None if json_body else form.get("file")
    granularity = form.get("granularity", "utterance")
    if not isinstance(granularity, str) or granularity not in GRANULARITIES:
        raise Refused(400, "bad_request", f"granularity must be one of {', '.join(GRANULARITIES)}")
    context = form.get("context")
    if context is not None and not isinstance(context, str):
        raise Refused(400, "bad_request", "context must be a string")
    if "audio_path" in form and not (isinstance(form["audio_path"], str) and form["audio_path"]):
        raise Refused(400, "bad_request", "audio_path must be a non-empty string")
    embedding = _flag(form, "extract_embedding", json_body)
    split = _flag(form, "split_channels", json_body)
    parties = _parties(form, json_body, split)
    if upload is not None and hasattr(upload, "read"):
        # Only the extension of the client's name is kept: names like "." or ".." never reach the disk.
        suffix = Path(str(upload.filename or "")).suffix[:UPLOAD_SUFFIX_CHARS]
        suffix = suffix if suffix[1:].isalnum() else ""
        path = tmp / f"upload{suffix}"
        with open(path, "wb") as out:
            await asyncio.to_thread(shutil.copyfileobj, upload.file, out, 1 << 20)
        source = str(upload.filename or "upload")[:200]
    elif "audio_path" in form:
        path = _audio_path(form, settings)
        source = form["audio_path"]
    else:
        raise Refused(400, "bad_request", "send a `file` upload or an `audio_path`")
    config = server.template
    scorer = ScheduledScorer(server.scorer, server.scheduler, asyncio.get_running_loop())
    try:
        channels = await decode_upload(path, tmp, split, settings)
        if split:  # each channel analyzed as its own party, like `analyze --split-channels`
            result = await asyncio.to_thread(
                analyze_channels, scorer, channels, source, parties, granularity, context, config, None, server.data
            )
        else:
            result = await asyncio.to_thread(
                analyze_audio, scorer, channels[0], source, granularity, context, config, None, server.data
            )
    except EmostreamError as exc:
        status = 413 if exc.code == "too_long" else 422
        return _error(status, exc.code, str(exc))
    body = result.to_json(config.describe())
    if embedding and split:
        for p in result.parties:
            body["parties"][p.party]["embedding"] = p.result.embedding.round(6).tolist()
    elif embedding:
        body["embedding"] = result.embedding.round(6).tolist()
    return JSONResponse(body)

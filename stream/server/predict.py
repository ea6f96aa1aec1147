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


class DecodeFailed(AudioError):
    """The child decoding an upload crashed, hung or answered nonsense."""

    code = "decode_failed"


class TooLarge(EmostreamError):
    """The request body passed --max-upload-bytes (413)."""

    code = "too_large"


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


def _flag(value) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


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
    requestBody:
      content:
        multipart/form-data:
          schema:
            type: object
            properties:
              file: {type: string, format: binary}
              granularity: {type: string, enum: [utterance, frame]}
              context: {type: string}
              extract_embedding: {type: boolean}
              split_channels: {type: boolean, description: one result per channel (party)}
              parties: {type: string, description: comma-separated party names, one per channel}
        application/json:
          schema:
            type: object
            properties:
              audio_path: {type: string, description: a file below the server's --audio-root}
              granularity: {type: string, enum: [utterance, frame]}
              context: {type: string}
              extract_embedding: {type: boolean}
              split_channels: {type: boolean}
              parties: {type: array, items: {type: string}}
    responses:
      200:
        description: what `emostream analyze` writes to result.json
      400:
        description: a malformed request
      413:
        description: over --max-upload-bytes or --max-predict-seconds (or the decoded-bytes budget)
      422:
        description: not audio of a supported format, over 192 kHz, too many channels, or undecodable
      429:
        description: --max-predicts analyses are running
    """
    server = request.app.state.server
    settings = server.settings
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > settings.max_upload_bytes:
        return _error(413, "too_large", f"uploads are limited to {settings.max_upload_bytes} bytes")
    if server.predicts_running >= settings.max_predicts:
        return _error(429, "busy", f"{settings.max_predicts} analyses are running; try again later",
                      {"Retry-After": "5"})
    server.predicts_running += 1
    try:
        with tempfile.TemporaryDirectory(prefix="emostream-predict-") as tmp:
            return await _predict(_limited(request, settings.max_upload_bytes), server, Path(tmp))
    except TooLarge:
        return _error(413, "too_large", f"uploads are limited to {settings.max_upload_bytes} bytes")
    finally:
        server.predicts_running -= 1


async def _predict(request: Request, server, tmp: Path) -> JSONResponse:
    settings = server.settings
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            form = json.loads(await request.body())
        except ValueError:
            return _error(400, "bad_json", "the body is not valid JSON")
        if not isinstance(form, dict):
            return _error(400, "bad_json", "the body must be a JSON object")
        upload = None
    else:
        try:
            form = await request.form(max_files=1, max_fields=16)
        except TooLarge:
            raise
        except Exception as exc:  # malformed multipart
            return _error(400, "bad_request", f"cannot read the form: {type(exc).__name__}")
        upload = form.get("file")
    granularity = form.get("granularity", "utterance")
    if granularity not in GRANULARITIES:
        return _error(400, "bad_request", f"granularity must be one of {', '.join(GRANULARITIES)}")
    context = form.get("context")
    if context is not None and not isinstance(context, str):
        return _error(400, "bad_request", "context must be a string")
    embedding = _flag(form.get("extract_embedding", False))
    split, parties = _flag(form.get("split_channels", False)), form.get("parties")
    if isinstance(parties, str):  # a form field: comma-separated; JSON may send a list
        parties = [name.strip() for name in parties.split(",")]
    if parties is not None and not (isinstance(parties, list) and all(isinstance(n, str) for n in parties)):
        return _error(400, "bad_parties", "parties must be a list of names (a form field: comma-separated)")
    if parties and not split:
        return _error(400, "bad_parties", "parties name the channels of split_channels: add split_channels=true")
    if upload is not None and hasattr(upload, "read"):
        # Only the extension of the client's name is kept: names like "." or ".." never reach the disk.
        suffix = Path(str(upload.filename or "")).suffix[:UPLOAD_SUFFIX_CHARS]
        suffix = suffix if suffix[1:].isalnum() else ""
        path = tmp / f"upload{suffix}"
        with open(path, "wb") as out:
            await asyncio.to_thread(shutil.copyfileobj, upload.file, out, 1 << 20)
        source = str(upload.filename or "upload")[:200]
    elif form.get("audio_path"):
        root = settings.audio_root
        if root is None:
            return _error(403, "forbidden", "audio_path is disabled: the server has no --audio-root")
        if not isinstance(form["audio_path"], str):
            return _error(400, "bad_request", "audio_path must be a string")
        try:
            path = (root / form["audio_path"]).resolve()
        except (OSError, ValueError):
            return _error(400, "bad_request", "audio_path is not a usable path")
        if not path.is_relative_to(root.resolve()):
            return _error(403, "forbidden", "audio_path must lie inside the server's --audio-root")
        source = form["audio_path"]
    else:
        return _error(400, "bad_request", "send a `file` upload or an `audio_path`")
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

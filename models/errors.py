"""The root of emostream's one exception hierarchy; each error has a stable code for clients.

It lives in `models/`, the bottom layer, so every layer can raise these. Errors that belong to
one layer subclass `EmostreamError` there: `ProtocolError` (stream.protocol), `Overloaded`
(stream.server), `ListenError` (stream.cli).
"""

from __future__ import annotations


class EmostreamError(Exception):
    """Base class: a failure with a stable machine-readable code and a human message."""

    code = "error"


class ModelUnavailable(EmostreamError):
    """The requested model weights cannot be found or loaded."""

    code = "model_unavailable"


class ConfigError(EmostreamError, ValueError):
    """An option has a value the engine cannot work with."""

    code = "bad_config"


class AudioError(EmostreamError):
    """Audio that cannot be used: unreadable, corrupt, empty or too short."""

    code = "bad_audio"

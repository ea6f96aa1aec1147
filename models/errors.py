"""The one exception hierarchy of emostream; each error has a stable code for clients."""

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

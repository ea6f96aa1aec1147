"""The root of emostream's one exception hierarchy; each error has a stable code for clients.

It lives in `models/`, the bottom layer, so every layer can raise these. The whole tree, with
each class's `code` and the layer that defines it:

    EmostreamError "error"
    ├── ModelUnavailable "model_unavailable"      models: weights missing or unloadable
    ├── ConfigError "bad_config"                  models: an option the engine cannot use
    ├── AudioError "bad_audio"                    models: unreadable, corrupt, empty audio
    │   ├── UnsupportedFormat "unsupported_format"    stream.offline.audio_file
    │   ├── AudioTooLong "too_long"                   stream.offline.audio_file
    │   ├── UnsupportedRate "unsupported_rate"        stream.offline.audio_file
    │   ├── TooManyChannels "unsupported_channels"    stream.offline.audio_file
    │   └── DecodeFailed "decode_failed"              stream.server.predict (the decoder crashed)
    ├── ProtocolError (code per instance)         stream.protocol: the codes of stream.protocol.codes
    ├── Overloaded "overload"                     stream.server.scheduler: the model cannot keep up
    ├── RecordingFailed "recording_failed"        stream.server.session: the disk refused a recording
    ├── TooLarge "too_large"                      stream.server.predict: an upload over a limit (413)
    ├── SessionBusy "session_live"                stream.server.retention: deleting a live session (409)
    ├── ListenError (code per instance)           stream.cli.listen
    └── ClientError "client"                      stream.client: the /ws/stream client's failures
        ├── ConnectError "connect" └── HandshakeRefused "refused"
        ├── ServerError (the server's code)
        └── StreamClosed "closed"

Shells turn them into answers: WebSocket `error` messages and close codes, HTTP statuses
(every code a client can read, with its close or status: stream.protocol.codes), exit codes
(stream.cli).
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

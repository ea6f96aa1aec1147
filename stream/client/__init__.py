"""The Python client of `/ws/stream`: `Client` (one session) and `stream_file` (a file, paced).

The one place the native protocol is spoken from the client side: `emostream listen --server`
and the tests use it. docs/protocol.md#python-client shows it in use.
"""

from .connection import Client, stream_url
from .errors import (
    ClientError,
    ConnectError,
    HandshakeRefused,
    ServerError,
    StreamClosed,
)
from .files import stream_file
from .samples import encode_samples

__all__ = [
    "Client",
    "ClientError",
    "ConnectError",
    "HandshakeRefused",
    "ServerError",
    "StreamClosed",
    "encode_samples",
    "stream_file",
    "stream_url",
]

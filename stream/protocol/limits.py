"""How many messages a socket may send before its session starts, per endpoint: part of the wire contract.

Each wire protocol carries its own limit (`WireProtocol.max_messages_before_start`); they are named
here, together, because the error table (stream.protocol.codes, docs/protocol.md) states them.
"""

from __future__ import annotations

# Enough to correct a few bad starts, too few to make the server hold or answer much for a client that never starts.
STREAM_BEFORE_START = 32  # /ws/stream
TWILIO_BEFORE_START = 8  # /ws/twilio: connected, start, and a little slack; Twilio sends no more
REPLAY_BEFORE_START = 8  # /ws/replay: a replay client sends replay_start first; a few corrections at most
AUDIOHOOK_BEFORE_START = 8  # /ws/audiohook: open (a probe's ping and close, a refused one's close); no corrections

__all__ = ["AUDIOHOOK_BEFORE_START", "REPLAY_BEFORE_START", "STREAM_BEFORE_START", "TWILIO_BEFORE_START"]

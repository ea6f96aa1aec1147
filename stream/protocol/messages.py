"""The `/ws/stream` client's messages as values: what a `start` asks for, and `stop`."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.engine.parties import default_parties


@dataclass(frozen=True)
class StartMessage:
    """The client's first message: how its audio is encoded and what the session is."""

    sample_rate: int  # Hz, one of INPUT_RATES
    encoding: str  # one of ENCODINGS
    channels: int = 1  # interleaved channels per frame, averaged to mono unless split
    session_id: str | None = None  # client-chosen id (SESSION_ID_RE); the server makes one if None
    context: str | None = None  # free text about the conversation, recorded with the session
    metadata: dict = field(default_factory=dict)  # any JSON object, recorded with the session
    split_channels: bool = False  # analyze each channel as its own party instead of the mix
    parties: tuple[str, ...] = ()  # the channels' party names when split; default "0", "1", ...
    resume: bool = False  # continue `session_id`, whose socket dropped less than --resume-seconds ago
    resume_token: str | None = None  # the `ready` message's `resume_token` of that session: proof it is ours

    def to_dict(self) -> dict:
        """The message as a client sends it (JSON-ready; unset optional fields left out)."""
        body = {"type": "start", "sample_rate": self.sample_rate, "encoding": self.encoding, "channels": self.channels}
        for name in ("session_id", "context", "resume_token"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        if self.split_channels:
            body["split_channels"] = True
        if self.parties:
            body["parties"] = list(self.parties)
        if self.resume:
            body["resume"] = True
        return body

    @property
    def party_names(self) -> tuple[str, ...]:
        """One name per analyzed signal: the parties of a split stream, () for the mix."""
        if not self.split_channels:
            return ()
        return self.parties or default_parties(self.channels)


@dataclass(frozen=True)
class StopMessage:
    """End of audio: the server flushes the analyzer, sends the last events and a summary."""

    def to_dict(self) -> dict:
        """The message as a client sends it."""
        return {"type": "stop"}


ClientMessage = StartMessage | StopMessage


__all__ = ["ClientMessage", "StartMessage", "StopMessage"]

"""Sessions whose connection dropped, kept for `--resume-seconds` so their client can continue them.

A native stream's `ready` carries a `resume_token`; when its socket closes without `stop`, the
session is suspended instead of closed: its recording stays open, its analysis finishes what it
had, and a `start` with `resume: true`, the session's id and that token within the grace period
continues it (same recording, events going on, the gap recorded). A Twilio stream re-opened for
the same call (`callSid`, and the same account) continues its session the same way: Twilio's
signature or token authenticates it, the call's SIDs identify it. Anything else — a wrong token,
another format, another call, a session not waiting — is refused and leaves the session alone, so
two different calls are never merged. When the grace period passes, the session ends as
"disconnected", as it would have at once without resumption.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from stream.protocol.native import ProtocolError

from .session import LiveSession, SessionSpec


@dataclass
class _Waiting:
    session: LiveSession
    dropped_at: float  # time.monotonic() when its connection dropped
    expiry: asyncio.TimerHandle


def _same_format(a: SessionSpec, b: SessionSpec) -> bool:
    return (a.sample_rate, a.encoding, a.channels, a.parties, a.source) == (b.sample_rate, b.encoding, b.channels,
                                                                            b.parties, b.source)


def twilio_call(spec: SessionSpec) -> tuple[str, str] | None:
    """(account SID, call SID) of a Twilio session, from the metadata its `start` gave; None for others."""
    twilio = spec.metadata.get("twilio") if spec.source == "twilio" else None
    if not isinstance(twilio, dict) or not twilio.get("call_sid"):
        return None
    return str(twilio.get("account_sid")), str(twilio["call_sid"])


class Resumption:
    """The server's suspended sessions and the tokens that may continue them."""

    def __init__(self, grace_seconds: float, expire: Callable[[LiveSession], None]):
        """`expire(session)` ends a session whose grace period passed (as "disconnected")."""
        self.grace = grace_seconds
        self._expire = expire
        self._tokens: dict[str, str] = {}  # live native session id -> its resume token
        self._calls: dict[tuple[str, str], str] = {}  # live Twilio call -> its session id
        self._waiting: dict[str, _Waiting] = {}

    @property
    def enabled(self) -> bool:
        return self.grace > 0

    def started(self, spec: SessionSpec) -> str | None:
        """A session started: its resume token (native), or None where it resumes another way or not at all."""
        if not self.enabled:
            return None
        call = twilio_call(spec)
        if call is not None:
            self._calls[call] = spec.session_id
            return None
        if spec.source != "native":
            return None
        token = self._tokens[spec.session_id] = secrets.token_urlsafe(24)
        return token

    def suspend(self, session: LiveSession) -> bool:
        """Its connection dropped: keep it for the grace period (True), or not (False: end it now)."""
        sid = session.spec.session_id
        if not self.enabled or (sid not in self._tokens and sid not in self._calls.values()) or sid in self._waiting:
            return False
        handle = asyncio.get_running_loop().call_later(self.grace, self._expired, sid)
        self._waiting[sid] = _Waiting(session, time.monotonic(), handle)
        return True

    @property
    def suspended(self) -> int:
        """How many sessions wait for their client."""
        return len(self._waiting)

    def wanted(self, spec: SessionSpec, resume: bool) -> bool:
        """Whether a start continues a session: `resume: true`, or a Twilio stream of a call whose stream dropped."""
        call = twilio_call(spec)
        return resume or (call is not None and self._calls.get(call) in self._waiting)

    def resume(self, spec: SessionSpec, token: str | None) -> tuple[LiveSession, float]:
        """The suspended session a reconnecting client continues, and the gap in seconds; ProtocolError otherwise."""
        sid = spec.session_id
        if spec.source == "twilio":
            call = twilio_call(spec)
            sid = self._calls.get(call) if call is not None else None
        waiting = self._waiting.get(sid) if sid else None
        if waiting is None:
            raise ProtocolError("resume_refused", f"session {spec.session_id!r} is not waiting to be resumed "
                                                  f"(it never was, it ended, or its {self.grace:g} s passed)")
        if spec.source != "twilio" and not hmac.compare_digest(str(token).encode(), self._tokens.get(sid, "").encode()):
            raise ProtocolError("resume_refused", "wrong resume_token for this session")
        if not _same_format(waiting.session.spec, spec):
            raise ProtocolError("resume_refused", "a resumed session keeps its format: sample_rate, encoding, "
                                                  "channels and parties as it started")
        del self._waiting[sid]
        waiting.expiry.cancel()
        return waiting.session, time.monotonic() - waiting.dropped_at

    def token(self, session_id: str) -> str | None:
        """The resume token a native session was given."""
        return self._tokens.get(session_id)

    def ended(self, session_id: str) -> None:
        """The session ended: it can no longer be resumed."""
        self._tokens.pop(session_id, None)
        for call, sid in list(self._calls.items()):
            if sid == session_id:
                del self._calls[call]
        waiting = self._waiting.pop(session_id, None)
        if waiting is not None:
            waiting.expiry.cancel()

    def _expired(self, session_id: str) -> None:
        waiting = self._waiting.pop(session_id, None)
        if waiting is not None:
            self._expire(waiting.session)


__all__ = ["Resumption", "twilio_call"]

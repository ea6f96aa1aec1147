"""Parties: the voices of one call or file, each analyzed on its own — names, defaults, checks, tags.

A stereo call recorder puts one person on each channel, Twilio streams the caller and the agent
as two tracks, a file may hold several channels. Each analyzed signal is a party with a name;
an unsplit signal has none. Every entry point (the native protocol, Twilio, `listen`, `analyze`,
`/api/predict`) names and checks parties here, and every event of a party carries its name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from models.errors import EmostreamError

PARTY_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")  # party names become MQTT topic levels and file names
WHOLE_SESSION = "all"  # reserved: what a message about the whole session is filed under (MQTT)


class PartyError(EmostreamError):
    """Party names that cannot be used: not a list, a bad or repeated name, one name too many or few."""

    code = "bad_parties"


def default_parties(channels: int) -> tuple[str, ...]:
    """The party names of a split signal that named none: its channel indices."""
    return tuple(str(i) for i in range(channels))


def check_party_names(value, where: str = "parties") -> tuple[str, ...]:
    """A list of distinct party names (PARTY_RE, not the reserved "all"), as a tuple."""
    if not isinstance(value, (list, tuple)) or not value:
        raise PartyError(f"{where} must be a non-empty list of names, got {value!r}")
    for name in value:
        if not isinstance(name, str) or not PARTY_RE.fullmatch(name) or name == WHOLE_SESSION:
            raise PartyError(
                f"{where}: each name must be 1-32 characters of A-Z, a-z, 0-9, '_', '-' and not "
                f"{WHOLE_SESSION!r}, got {name!r}"
            )
    if len(set(value)) != len(value):
        raise PartyError(f"{where} must be distinct, got {', '.join(value)}")
    return tuple(value)


def parties_for(names: Sequence[str] | None, channels: int, where: str = "parties") -> tuple[str, ...]:
    """One checked name per channel: `names`, or the channel indices when none are given."""
    if not names:
        return default_parties(channels)
    checked = check_party_names(list(names), where)
    if len(checked) != channels:
        raise PartyError(
            f"{where} names {len(checked)} part{'y' if len(checked) == 1 else 'ies'} for {channels} channel(s): "
            "give one name per channel"
        )
    return checked


def tagged(body: dict, party: str | None) -> dict:
    """An event's JSON body with its party's name after its type (unchanged for an unsplit signal)."""
    if party is None:
        return body
    rest = dict(body)
    return {"type": rest.pop("type"), "party": party, **rest}


__all__ = ["PARTY_RE", "WHOLE_SESSION", "PartyError", "check_party_names", "default_parties", "parties_for", "tagged"]

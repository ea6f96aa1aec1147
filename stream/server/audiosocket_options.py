"""The AudioSocket listener's options, checked: its allow-list and its legs' party names.

Apart from the listener (stream.server.audiosocket_server) so that `ServerSettings.check` can
read them without importing the socket loop.
"""

from __future__ import annotations

import ipaddress

from models.errors import ConfigError
from stream.protocol.audiosocket import AudioSocketStream
from stream.protocol.native import ProtocolError

LOOPBACK = "127.0.0.0/8,::1"


def allowed_networks(text: str | None) -> tuple:
    """--audiosocket-allow as networks (an address is a network of one); None: loopback only."""
    networks = []
    for item in (text or LOOPBACK).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"--audiosocket-allow: {item!r} is not an address or network (10.0.0.0/8)") from None
    if not networks:
        raise ConfigError("--audiosocket-allow names no address")
    return tuple(networks)


def party_names(text: str) -> tuple[str, ...]:
    """--audiosocket-parties as names, checked like every party name."""
    names = tuple(n.strip() for n in text.split(","))
    try:
        AudioSocketStream(names)
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None
    if len(names) > 9:
        raise ConfigError("--audiosocket-parties names at most 9 legs (the UUID's last digit numbers them)")
    return names


def check_settings(settings) -> None:
    """Refuse AudioSocket settings that cannot work, naming the option."""
    port = settings.audiosocket_port
    if not 1 <= port <= 65535:
        raise ConfigError(f"--audiosocket-port must be a TCP port (1-65535), got {port}")
    if port == settings.port:
        raise ConfigError("--audiosocket-port must differ from --port")
    allowed_networks(settings.audiosocket_allow)
    party_names(settings.audiosocket_parties)


def is_allowed(host: str, networks: tuple) -> bool:
    """Whether a peer address lies in one of `networks` (IPv4-mapped IPv6 addresses count as IPv4)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


__all__ = ["LOOPBACK", "allowed_networks", "check_settings", "is_allowed", "party_names"]

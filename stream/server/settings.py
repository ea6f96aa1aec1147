"""The live server's settings: one frozen dataclass whose fields are also its command-line options.

Each field carrying `option(...)` metadata becomes `--field-name` (and reads `EMOSTREAM_FIELD_NAME`)
in `emostream serve`; the CLI derives the options from here, so a setting is written once.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from models.errors import ConfigError
from stream.engine.config import AnalyzerConfig

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def option(default, help: str, group: str = "server", kind: type | None = None):
    """A settings field that is also a command-line option (`kind` parses it; default: the default's type)."""
    return field(default=default, metadata={"help": help, "group": group, "kind": kind or type(default)})


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs besides the model."""

    host: str = option("127.0.0.1", "address to bind (a non-loopback one needs --token or --allow-public)")
    port: int = option(7860, "TCP port")
    token: str | None = option(None, "access token protecting every endpoint but /healthz", kind=str)
    recordings: Path = option(Path("recordings"), "folder of the session recordings")
    audio_root: Path | None = option(None, "folder /api/predict may read `audio_path` from", kind=Path)
    mqtt: str | None = option(None, "publish every event to mqtt://host:port", kind=str)
    mqtt_prefix: str = option("emostream", "MQTT topic prefix")
    allow_public: bool = option(False, "allow a non-loopback --host without a token (another layer protects it)")
    max_sessions: int = option(64, "concurrent streams", "limits")
    max_message_bytes: int = option(1 << 20, "largest WebSocket message", "limits")
    max_session_seconds: float = option(4 * 3600.0, "longest stream, seconds of audio", "limits")
    max_batch: int = option(8, "chunks per forward pass", "limits")
    max_wait_ms: float = option(10.0, "wait this long for a fuller batch", "limits")
    max_pending: int = option(64, "chunks queued for the model before streams are told 'overload'", "limits")
    max_backlog_seconds: float = option(30.0, "a session's unscored audio before it is closed (1013)", "limits")
    measure_processes: int = option(
        os.cpu_count() or 1,
        "processes measuring the decision layer's quality and cues (0: one thread of the server)", "limits",
    )
    # From the analysis options every command shares (not server options of their own):
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)  # template; sample_rate set per session
    profiles: Path | None = None  # domain-profile library YAML (default: the shipped, neutral one)
    centroids: Path | None = None  # fear/disgust centres from `emostream calibrate` (enables fusion)

    def check(self) -> None:
        """Refuse unsafe or impossible settings with a message naming the option."""
        if not self.token and not self.allow_public and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to serve on {self.host} without a token: set --token (or EMOSTREAM_TOKEN), "
                "or pass --allow-public if another layer protects the server"
            )
        for name in ("max_sessions", "max_message_bytes", "max_batch", "max_pending"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.measure_processes < 0:
            raise ConfigError("--measure-processes must be at least 0")


def is_loopback(host: str) -> bool:
    """True for loopback names and addresses (the safe default bind)."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

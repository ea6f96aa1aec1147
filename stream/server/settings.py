"""The live server's settings: one frozen dataclass whose fields are also its command-line options.

Each field carrying `option(...)` metadata becomes `--field-name` (and reads `EMOSTREAM_FIELD_NAME`)
in `emostream serve`; the CLI derives the options from here, so a setting is written once.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from models.errors import ConfigError
from stream.engine.config import AnalyzerConfig

from .device_policy import DevicePolicy, policy_for

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
    # None: the device's default (stream.server.device_policy: CPU / CUDA).
    max_batch: int | None = option(None, "chunks per forward pass (default: 8 on the CPU, 128 on CUDA)", "limits", int)
    max_wait_ms: float | None = option(
        None, "wait at most this long for a fuller batch (default: 10 on the CPU; 20 on CUDA, ending as soon as "
        "jobs stop arriving)", "limits", float,
    )
    max_pending: float | None = option(
        None, "seconds of audio queued for the model before streams are told 'overload' "
        "(default: 180 on the CPU, 1800 on CUDA)", "limits", float,
    )
    max_backlog_seconds: float = option(30.0, "a session's unscored audio before it is closed (1013)", "limits")
    measure_processes: int = option(
        os.cpu_count() or 1,
        "processes measuring the decision layer's quality and cues (0: one thread of the server)", "limits",
    )
    # From the analysis options every command shares (not server options of their own):
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)  # template; sample_rate set per session
    profiles: Path | None = None  # domain-profile library YAML (default: the shipped, neutral one)
    centroids: Path | None = None  # fear/disgust centres from `emostream calibrate` (enables fusion)
    # --chunk / --chunk-context when given; None: the device's default (`for_device`).
    chunk_seconds: float | None = None
    context_seconds: float | None = None

    def check(self) -> None:
        """Refuse unsafe or impossible settings with a message naming the option."""
        if not self.token and not self.allow_public and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to serve on {self.host} without a token: set --token (or EMOSTREAM_TOKEN), "
                "or pass --allow-public if another layer protects the server"
            )
        for name in ("max_sessions", "max_message_bytes", "max_batch", "max_pending"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.measure_processes < 0:
            raise ConfigError("--measure-processes must be at least 0")


def for_device(settings: ServerSettings, device: str) -> tuple[ServerSettings, DevicePolicy]:
    """`settings` with every unset batching, queue and chunk setting taken from `device`'s policy."""
    policy = policy_for(device)
    analyzer = replace(
        settings.analyzer,
        chunk_seconds=policy.chunk_seconds if settings.chunk_seconds is None else settings.chunk_seconds,
        context_seconds=policy.context_seconds if settings.context_seconds is None else settings.context_seconds,
    )
    resolved = replace(
        settings,
        analyzer=analyzer,
        max_batch=policy.max_batch if settings.max_batch is None else settings.max_batch,
        max_wait_ms=policy.max_wait_ms if settings.max_wait_ms is None else settings.max_wait_ms,
        max_pending=policy.max_pending_seconds if settings.max_pending is None else settings.max_pending,
    )
    return resolved, policy


def is_loopback(host: str) -> bool:
    """True for loopback names and addresses (the safe default bind)."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

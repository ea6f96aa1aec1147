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
RECORD_MODES = ("audio+events", "events", "none")  # what a live session keeps on disk


def option(default, help: str, group: str = "server", kind: type | None = None, many: bool = False):
    """A settings field that is also a command-line option (`kind` parses it; default: the default's type).

    `many`: a tuple of `kind` values, the option repeatable (`--webhook A --webhook B`); its
    EMOSTREAM_* variable holds them separated by whitespace (`repeated`)."""
    metadata = {"help": help, "group": group, "kind": kind or type(default)}
    if many:
        metadata["many"] = True
    return field(default=default, metadata=metadata)


def repeated(value, kind: type = str) -> tuple:
    """A repeatable setting's values: a string split at whitespace (EMOSTREAM_*), or a sequence's items, parsed."""
    items = value.split() if isinstance(value, str) else value
    return tuple(kind(item) for item in items)


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server needs besides the model."""

    host: str = option("127.0.0.1", "address to bind (a non-loopback one needs --token or --allow-public)")
    port: int = option(7860, "TCP port")
    token: str | None = option(None, "access token protecting every endpoint but /healthz", kind=str)
    recordings: Path = option(Path("recordings"), "folder of the session recordings")
    catalog: str | None = option(None, "the session catalog: postgresql://user:password@host/db for a cluster, or a "
                                 "SQLite file (default: <recordings>/.catalog.sqlite3)", kind=str)
    audio_root: Path | None = option(None, "folder /api/predict may read `audio_path` from", kind=Path)
    mqtt: str | None = option(None, "publish every event to mqtt://host:port", kind=str)
    mqtt_prefix: str = option("emostream", "MQTT topic prefix")
    allow_public: bool = option(False, "allow a non-loopback --host without a token (another layer protects it)")
    # Least privilege (docs/server.md, "Access"): each right has its own credential; --token has them all.
    stream_token: str | None = option(None, "credential that may only send audio (/ws/stream, /ws/twilio, /api/predict)",
                                      "access", str)
    watch_token: str | None = option(None, "credential that may only watch (dashboard feed, sessions, recordings, metrics)",
                                     "access", str)
    admin_token: str | None = option(None, "credential that may watch and delete sessions", "access", str)
    twilio_auth_token: str | None = option(None, "Twilio auth token: accept /ws/twilio with a valid X-Twilio-Signature",
                                           "access", str)
    public_url: str | None = option(None, "base URL Twilio calls (wss://host), to check X-Twilio-Signature behind a proxy",
                                    "access", str)
    allowed_hosts: str | None = option(None, "comma-separated Host names answered (default: loopback names; any for a "
                                       "non-loopback --host)", "access", str)
    allowed_origins: str | None = option(None, "comma-separated extra browser origins (https://host:port) allowed besides "
                                         "the server's own", "access", str)
    ssl_certfile: Path | None = option(None, "serve HTTPS/WSS with this certificate (PEM; uvicorn's --ssl-certfile)",
                                       "access", Path)
    ssl_keyfile: Path | None = option(None, "private key of --ssl-certfile (PEM)", "access", Path)
    # Asterisk AudioSocket (docs/connectors/asterisk.md): a TCP listener on --host, off unless a port is given.
    audiosocket_port: int | None = option(None, "TCP port of the Asterisk AudioSocket listener on --host (off unless "
                                          "set)", "telephony", int)
    audiosocket_allow: str | None = option(None, "comma-separated addresses or networks (10.0.0.0/8) allowed to connect to "
                                           "--audiosocket-port, which has no credential (default: loopback only)",
                                           "telephony", str)
    audiosocket_parties: str = option("caller,agent", "party names of AudioSocket legs 1, 2, ... (UUIDs ending in "
                                      "00000000000N)", "telephony")
    # Genesys Cloud AudioHook (docs/connectors/audiohook.md): /ws/audiohook, refused unless an API key is set.
    audiohook_api_key: str | None = option(None, "API key of the Genesys AudioHook Monitor integration: /ws/audiohook "
                                           "takes requests with this X-API-KEY (refused while unset)", "telephony", str)
    audiohook_client_secret: str | None = option(None, "the integration's client secret (base64, as Genesys issues it): "
                                                 "each request's HTTP signature must verify with it", "telephony", str)
    # Privacy (docs/server.md, "Privacy"): what is kept and for how long.
    record: str = option("audio+events", "what a live session keeps: audio+events, events (no audio) or none", "privacy")
    retention_days: float | None = option(None, "delete recordings older than this many days (on start and hourly)",
                                          "privacy", float)
    retention_hours: float | None = option(None, "the same in hours (instead of --retention-days)", "privacy", float)
    mqtt_ca_file: Path | None = option(None, "CA certificate(s) that sign the mqtts:// broker's certificate", kind=Path)
    mqtt_username: str | None = option(None, "MQTT user name (instead of the URL's)", kind=str)
    mqtt_password: str | None = option(None, "MQTT password (instead of the URL's; keeps it out of process lists)",
                                       kind=str)
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
    start_timeout: float = option(10.0, "seconds a stream socket may stay open without a valid start", "limits")
    resume_seconds: float = option(
        30.0, "how long a stream whose connection dropped waits to be resumed (start with resume: true, or Twilio's "
        "re-opened stream of the same call) before it ends as disconnected; 0: never", "limits",
    )
    max_unstarted: int = option(
        64, "stream sockets open at once without a started session, all endpoints together (1013 beyond)", "limits",
    )
    max_queue_bytes: int = option(4 << 20, "bytes waiting to be sent to one socket before it is closed (1013)", "limits")
    max_upload_bytes: int = option(100 << 20, "largest /api/predict request body (413)", "limits")
    max_predict_seconds: float = option(900.0, "longest audio /api/predict analyzes (413)", "limits")
    max_predicts: int = option(2, "concurrent /api/predict analyses (429 beyond)", "limits")
    max_predict_channels: int = option(
        2, "channels /api/predict splits into parties (split_channels; 422 unsupported_channels beyond); "
        "decoded memory grows with it", "limits",
    )
    measure_processes: int = option(
        os.cpu_count() or 1,
        "processes measuring the decision layer's quality and cues (0: one thread of the server)", "limits",
    )
    # Signed webhooks (docs/webhooks.md): each --webhook paired in order with its own --webhook-secret.
    webhook: tuple[str, ...] = option((), "POST alerts, acknowledgements and session starts and ends, signed, to this "
                                      "http(s) URL (repeat for several receivers)", "webhooks", str, many=True)
    webhook_secret: tuple[str, ...] = option((), "whsec_<base64> signing secret of the --webhook in the same place "
                                             "(repeat, one per --webhook)", "webhooks", str, many=True)
    webhook_timeout: float = option(15.0, "seconds a receiver has to answer one delivery", "webhooks")
    webhook_max_delay: float = option(300.0, "longest wait between two attempts of a failing delivery, seconds",
                                      "webhooks")
    webhook_give_up_hours: float = option(24.0, "a delivery still failing this long after it was raised is a dead "
                                          "letter (GET /api/webhooks)", "webhooks")
    # From the analysis options every command shares (not server options of their own):
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)  # template; sample_rate set per session
    profiles: Path | None = None  # domain-profile library YAML (default: the shipped, neutral one)
    centroids: Path | None = None  # fear/disgust centres from `emostream calibrate` (enables fusion)
    # --chunk / --chunk-context when given; None: the device's default (`for_device`).
    chunk_seconds: float | None = None
    context_seconds: float | None = None

    def check(self) -> None:
        """Refuse unsafe or impossible settings with a message naming the option."""
        if not self.protected and not self.allow_public and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to serve on {self.host} without a token: set --token (or EMOSTREAM_TOKEN), "
                "or pass --allow-public if another layer protects the server"
            )
        for name in ("max_sessions", "max_message_bytes", "max_batch", "max_pending", "max_queue_bytes",
                     "max_upload_bytes", "max_predicts", "max_unstarted", "max_predict_channels"):
            if getattr(self, name) is not None and getattr(self, name) < 1:  # None: the device's policy
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.resume_seconds >= 0:
            raise ConfigError("--resume-seconds must be 0 or more")
        if self.measure_processes < 0:
            raise ConfigError("--measure-processes must be at least 0")
        for name in ("start_timeout", "max_predict_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")
        if self.record not in RECORD_MODES:
            raise ConfigError(f"--record must be one of {', '.join(RECORD_MODES)}, got {self.record!r}")
        if self.retention_days is not None and self.retention_hours is not None:
            raise ConfigError("give --retention-days or --retention-hours, not both")
        if self.retention is not None and not self.retention > 0:
            raise ConfigError("--retention-days / --retention-hours must be positive")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("--ssl-certfile and --ssl-keyfile go together")
        if self.mqtt_ca_file is not None and not (self.mqtt or "").startswith("mqtts://"):
            raise ConfigError("--mqtt-ca-file needs an mqtts:// --mqtt URL")
        if self.audiohook_client_secret is not None:
            from stream.protocol.http_signature import decode_secret  # ConfigError-worthy: names what is wrong

            if not self.audiohook_api_key:
                raise ConfigError("--audiohook-client-secret needs --audiohook-api-key (Genesys sends both)")
            try:
                decode_secret(self.audiohook_client_secret)
            except ValueError as exc:
                raise ConfigError(f"--audiohook-client-secret: {exc}") from None
        if self.audiosocket_port is not None:
            from .audiosocket_options import check_settings  # port, allow-list and party names

            check_settings(self)
        if self.catalog:
            from .catalog.location import driver_url  # SQLAlchemy loads only for a server that checks this

            driver_url(self.catalog)  # CatalogUnavailable (a ConfigError) names what is wrong with it
        if self.webhook or self.webhook_secret:
            from .webhooks.receivers import receivers  # ConfigError: unpaired, not http(s), not whsec_<base64>

            receivers(self.webhook, self.webhook_secret)
        for name in ("webhook_timeout", "webhook_max_delay", "webhook_give_up_hours"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive")

    @property
    def retention(self) -> float | None:
        """How long recordings are kept, in seconds (None: forever)."""
        if self.retention_days is not None:
            return self.retention_days * 86400.0
        if self.retention_hours is not None:
            return self.retention_hours * 3600.0
        return None

    @property
    def protected(self) -> bool:
        """True when some credential is configured (else every route is open, as on a loopback dev box)."""
        return any((self.token, self.stream_token, self.watch_token, self.admin_token))


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

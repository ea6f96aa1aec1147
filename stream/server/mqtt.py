"""Publish the server's messages to an MQTT broker, surviving broker outages (aiomqtt, asyncio).

Topic `<prefix>/<session_id>/<party>/<type>`, payload the message's compact JSON; `<party>` is
the event's party in a split session (caller, agent, ...) and `all` for everything about the
session as a whole (its lifecycle, overloads, telephony, and the events of a session that is not
split), so one party's subscribers get only that party. Alerts and session
lifecycle messages go with QoS 1, the rest (windows above all) with QoS 0; see docs/protocol.md
("MQTT") for the semantics.

`publish()` only appends to a bounded in-memory queue and never blocks or raises: one background
task connects, sends the queue in order and reconnects with back-off when the broker goes away.
A message leaves the queue only after aiomqtt's publish call for it returned (QoS 1: after the
broker's PUBACK), so a broker restart loses no QoS 1 message; one whose PUBACK was lost is sent
again after the reconnect (at-least-once). The queue is bounded in messages and in bytes (a
session's metadata can make one message a megabyte); when it is full the oldest QoS 0 messages are
dropped first, and a message larger than the whole byte bound is dropped at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from urllib.parse import unquote, urlsplit

import aiomqtt

from models.errors import ConfigError
from stream.protocol.native import WHOLE_SESSION

log = logging.getLogger("emostream.mqtt")

# Message types always published with QoS 1 (at least once). `transition` is QoS 1 only when
# `flagged`; everything else (window, unflagged transition, info, telephony, ...) is QoS 0.
QOS1_TYPES = frozenset({"review", "dual_emotion", "segment", "session_started", "session_ended", "overload"})

BACKOFF_MIN = 0.2  # seconds before the first reconnection attempt
BACKOFF_MAX = 5.0  # longest wait between attempts
ACK_TIMEOUT = 10.0  # a QoS 1 PUBACK not received within this is treated as a lost connection
KEEPALIVE = 15  # seconds; lets a silently dead broker be noticed
DROP_LOG_SECONDS = 10.0  # dropped alerts are counted always (metrics) and logged at most this often
MAX_BUFFER_BYTES = 64 << 20  # default bound of the queue's topics and payloads: an outage cannot eat the memory
_TOPIC_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\x00": "_"})


def qos_for(message: dict) -> int:
    """1 for alerts and lifecycle messages, 0 for the rest."""
    kind = message.get("type")
    if kind == "transition":
        return 1 if message.get("flagged") else 0
    return 1 if kind in QOS1_TYPES else 0


@dataclass(frozen=True)
class BrokerAddress:
    """A parsed `mqtt[s]://[user[:password]@]host[:port]` URL."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False  # mqtts://: TLS, the broker's certificate checked against the CA file or system CAs

    def __str__(self) -> str:  # never shows the password
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}"


def parse_url(url: str) -> BrokerAddress:
    """Validate an MQTT URL; ConfigError says what is wrong."""
    hint = "expected mqtt://host:port or mqtts://host:port, e.g. mqtt://127.0.0.1:1883"
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"MQTT URL is empty; {hint}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad MQTT URL {url!r}: {exc}; {hint}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"bad MQTT URL {url!r}: the scheme must be mqtt:// or mqtts://; {hint}")
    if not parts.hostname:
        raise ConfigError(f"bad MQTT URL {url!r}: no host; {hint}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"bad MQTT URL {url!r}: no path, query or fragment allowed (the topic prefix is "
                          f"--mqtt-prefix); {hint}")
    if port == 0:
        raise ConfigError(f"bad MQTT URL {url!r}: port 0; {hint}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, port or (8883 if tls else 1883), username, password, tls)


def check_prefix(prefix: str) -> str:
    """A topic prefix: one or more non-empty levels, no wildcards."""
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise ConfigError(f"MQTT topic prefix must be a non-empty string, got {prefix!r}")
    prefix = prefix.strip("/")
    if any(c in prefix for c in "+#\x00") or "" in prefix.split("/"):
        raise ConfigError(f"MQTT topic prefix {prefix!r} may not contain +, #, NUL or empty levels")
    return prefix


class _Entry:
    __slots__ = ("payload", "qos", "size", "topic")

    def __init__(self, topic: str, payload: bytes, qos: int):
        self.topic, self.payload, self.qos = topic, payload, qos
        self.size = len(topic) + len(payload)  # what the byte bound counts


class _Lost(Exception):
    """The connection to the broker went away."""


class MqttPublisher:
    """Sends session messages to `<prefix>/<session_id>/<party>/<type>`; see the module docstring.

    Counters for metrics: `published` (messages whose publish call succeeded), `dropped`
    (messages discarded because the queue was full, or published after `stop`), `dropped_alerts`
    (the QoS 1 part of `dropped`: only when the queue is full of QoS 1 messages), `connected`,
    `connects` (successful connections), `queued` (messages waiting), `queued_bytes` (their size).
    """

    def __init__(self, url: str, prefix: str = "emostream", max_buffer: int = 100_000,
                 flush_timeout: float = 2.0, client_id: str | None = None, ca_file: str | None = None,
                 username: str | None = None, password: str | None = None,
                 max_buffer_bytes: int = MAX_BUFFER_BYTES):
        """Publish to the broker at `url`; `ca_file` verifies an mqtts:// broker; `username`/`password`
        replace the URL's; at most `max_buffer` messages and `max_buffer_bytes` bytes wait."""
        address = parse_url(url)
        if username is not None or password is not None:
            address = replace(address, username=username or address.username,
                              password=password if password is not None else address.password)
        self.address = address
        self.tls_context = None
        if address.tls:
            try:
                self.tls_context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot read the MQTT CA file {ca_file}: {exc}") from None
        self.prefix = check_prefix(prefix)
        if not isinstance(max_buffer, int) or max_buffer < 1:
            raise ConfigError(f"MQTT max_buffer must be a positive integer, got {max_buffer!r}")
        self.max_buffer = max_buffer
        if not isinstance(max_buffer_bytes, int) or max_buffer_bytes < 1:
            raise ConfigError(f"MQTT max_buffer_bytes must be a positive integer, got {max_buffer_bytes!r}")
        self.max_buffer_bytes = max_buffer_bytes
        self.queued_bytes = 0  # topics and payloads of the queued messages
        self.flush_timeout = flush_timeout
        self.client_id = client_id or f"emostream-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Two FIFOs ordered by sequence number: dropping the oldest QoS 0 message is O(1) and the
        # sender merges them back into publication order.
        self._q0: deque[tuple[int, _Entry]] = deque()
        self._q1: deque[tuple[int, _Entry]] = deque()
        self._seq = 0
        self._inflight: tuple[int, _Entry] | None = None
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._closed = False
        self.published = 0
        self.dropped = 0
        self.dropped_alerts = 0
        self._alert_drop_logged = -DROP_LOG_SECONDS  # when a dropped alert was last logged (monotonic)
        self.connected = False
        self.connects = 0

    # -- producer side: synchronous, O(1), never raises --
    @property
    def queued(self) -> int:
        return len(self._q0) + len(self._q1)

    def stats(self) -> dict:
        return {"published": self.published, "dropped": self.dropped, "dropped_alerts": self.dropped_alerts,
                "connected": self.connected, "connects": self.connects, "queued": self.queued,
                "queued_bytes": self.queued_bytes}

    def topic(self, message: dict) -> str:
        """`<prefix>/<session_id>/<party>/<type>` of one message (party `all` when it has none)."""
        session = str(message.get("session_id") or "_server").translate(_TOPIC_UNSAFE)
        party = str(message.get("party") or WHOLE_SESSION).translate(_TOPIC_UNSAFE)
        kind = str(message.get("type") or "unknown").translate(_TOPIC_UNSAFE)
        return f"{self.prefix}/{session}/{party}/{kind}"

    def publish(self, message: dict) -> None:
        """Queue one message for the broker. Non-blocking; never raises."""
        try:
            if self._closed:
                self.dropped += 1
                return
            entry = _Entry(self.topic(message), json.dumps(message, separators=(",", ":"),
                                                           ensure_ascii=False).encode(), qos_for(message))
            if self._loop is not None and self._thread != threading.get_ident():
                self._loop.call_soon_threadsafe(self._enqueue, entry)  # called from another thread
            else:
                self._enqueue(entry)
        except Exception:
            self.dropped += 1
            log.exception("MQTT: could not queue a %r message", message.get("type") if isinstance(message, dict) else message)

    def _enqueue(self, entry: _Entry) -> None:
        if entry.size > self.max_buffer_bytes:  # it would push every other message out, and still not fit
            self._count_drop(entry, f"larger ({entry.size} bytes) than the whole queue")
            return
        self._seq += 1
        (self._q1 if entry.qos else self._q0).append((self._seq, entry))
        self.queued_bytes += entry.size
        while self.queued > self.max_buffer or self.queued_bytes > self.max_buffer_bytes:
            if not self._drop_oldest():
                break  # only the message being sent is left: it leaves the queue when sent
        self._wakeup.set()

    def _drop_oldest(self) -> bool:
        """Drop the oldest QoS 0 message not being sent; only when none is left, the oldest alert."""
        for queue in (self._q0, self._q1):
            index = 1 if queue and queue[0] is self._inflight else 0
            if len(queue) > index:
                _, entry = queue[index]
                del queue[index]
                self.queued_bytes -= entry.size
                self._count_drop(entry, "queue full")
                return True
        return False

    def _count_drop(self, entry: _Entry, why: str) -> None:
        """Count a dropped message and log it now and then: an alert at most every DROP_LOG_SECONDS, QoS 0 per 1000."""
        self.dropped += 1
        if entry.qos:
            self.dropped_alerts += 1
            now = time.monotonic()
            if now - self._alert_drop_logged < DROP_LOG_SECONDS:  # a flood of drops must not flood the log too
                return
            self._alert_drop_logged = now
        elif self.dropped != 1 and self.dropped % 1000:
            return
        log.log(logging.ERROR if entry.qos else logging.WARNING,
                "MQTT: %s (%d messages, %d bytes queued; bounds %d, %d bytes): dropped %s %s (%d dropped so far)",
                why, self.queued, self.queued_bytes, self.max_buffer, self.max_buffer_bytes,
                "alerts such as" if entry.qos else "QoS 0 messages such as", entry.topic, self.dropped)

    def _head(self) -> tuple[int, _Entry] | None:
        if self._q0 and (not self._q1 or self._q0[0][0] < self._q1[0][0]):
            return self._q0[0]
        return self._q1[0] if self._q1 else None

    def _done(self, item: tuple[int, _Entry]) -> None:
        queue = self._q1 if item[1].qos else self._q0
        if queue and queue[0] is item:  # it may have been dropped meanwhile
            queue.popleft()
            self.queued_bytes -= item[1].size

    # -- the background sender --
    async def start(self) -> None:
        """Start the background task. Returns at once, whether or not the broker is reachable."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._closed = False
        self._task = asyncio.create_task(self._run(), name="mqtt-publisher")
        if self.queued:
            self._wakeup.set()

    async def stop(self) -> None:
        """Send what can be sent within `flush_timeout` seconds, then disconnect."""
        self._closed = True
        task, self._task = self._task, None
        if task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.flush_timeout
        # Connected or not: a reconnection that is due within the timeout still flushes the queue.
        while self.queued and not task.done() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
        self.connected = False
        if self.queued:
            log.warning("MQTT: stopped with %d messages undelivered (%s)", self.queued, self.address)

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        failures = 0
        while True:
            try:
                client = aiomqtt.Client(
                    self.address.host, self.address.port, username=self.address.username,
                    password=self.address.password, identifier=self.client_id, clean_session=True,
                    tls_context=self.tls_context,
                    keepalive=KEEPALIVE, timeout=5.0, logger=log,
                )
                async with client:
                    self.connected = True
                    self.connects += 1
                    log.info("MQTT: connected to %s (%d messages queued)", self.address, self.queued)
                    delay, failures = BACKOFF_MIN, 0
                    await self._send_loop(client)
            except asyncio.CancelledError:
                self.connected = False
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect
                was_connected, self.connected = self.connected, False
                failures += 1
                level = logging.WARNING if was_connected or failures == 1 else logging.DEBUG
                log.log(level, "MQTT: %s to %s (%s); %d messages queued, retrying in %.1f s",
                        "lost connection" if was_connected else "cannot connect", self.address,
                        exc or type(exc).__name__, self.queued, delay)
            self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _send_loop(self, client) -> None:
        lost = asyncio.create_task(self._watch(client))
        try:
            while True:
                item = self._head()
                if item is None:
                    self._wakeup.clear()
                    wake = asyncio.create_task(self._wakeup.wait())
                    await asyncio.wait({wake, lost}, return_when=asyncio.FIRST_COMPLETED)
                    wake.cancel()
                    if lost.done():
                        raise _Lost("disconnected")
                    continue
                entry = item[1]
                self._inflight = item
                sending = asyncio.ensure_future(
                    client.publish(entry.topic, entry.payload, qos=entry.qos, timeout=ACK_TIMEOUT)
                )
                if not sending.done():
                    await asyncio.wait({sending, lost}, return_when=asyncio.FIRST_COMPLETED)
                if not sending.done():
                    sending.cancel()
                    raise _Lost("disconnected while publishing")
                sending.result()  # raises when the publish failed: the message stays queued
                self._done(item)
                self._inflight = None
                self.published += 1
        finally:
            self._inflight = None
            lost.cancel()

    @staticmethod
    async def _watch(client) -> None:
        """Returns when the connection is gone (no subscriptions: the iterator only ends that way)."""
        try:
            async for _ in client.messages:
                pass
        except Exception:  # noqa: BLE001
            pass


__all__ = ["QOS1_TYPES", "BrokerAddress", "MqttPublisher", "check_prefix", "parse_url", "qos_for"]

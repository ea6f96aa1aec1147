"""Prometheus metrics of the live server (one registry per app, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .scheduler import BatchStats


class ServerMetrics:
    """Sessions, queue depth, batch sizes, latencies, overloads and dropped input."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        """Create the metrics in a private registry."""
        r = self.registry = CollectorRegistry()
        self.sessions_active = Gauge("emostream_sessions_active", "Live sessions", registry=r)
        self.sessions_total = Counter("emostream_sessions", "Sessions started", ["source"], registry=r)
        self.sessions_refused = Counter("emostream_sessions_refused", "Sessions refused", ["reason"], registry=r)
        self.queue_depth = Gauge("emostream_queue_depth", "Chunks waiting for the model", registry=r)
        self.batch_size = Histogram(
            "emostream_batch_size", "Chunks per forward pass", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r
        )
        self.batch_seconds = Histogram("emostream_batch_seconds", "Forward pass wall time", registry=r)
        self.model_cpu = Counter(
            "emostream_model_cpu_seconds", "CPU time of the thread running forward passes", registry=r
        )
        self.audio_seconds = Counter("emostream_audio_seconds", "Audio seconds received", registry=r)
        self.window_latency = Histogram(
            "emostream_window_latency_seconds",
            "From audio arrival to its window event",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30),
            registry=r,
        )
        self.events = Counter("emostream_events", "Events emitted", ["type"], registry=r)
        self.overloads = Counter("emostream_overloads", "Times a session hit a full model queue", registry=r)
        self.errors = Counter("emostream_client_errors", "Error messages sent to clients", ["code"], registry=r)
        self.dropped = Counter(
            "emostream_dropped_messages", "Client messages rejected (never audio silently lost)", ["code"], registry=r
        )

        self.mqtt_published = Gauge("emostream_mqtt_published", "Messages delivered to MQTT", registry=r)
        self.mqtt_dropped = Gauge("emostream_mqtt_dropped", "MQTT messages dropped (full buffer)", registry=r)
        self.mqtt_queued = Gauge("emostream_mqtt_queued", "MQTT messages waiting for the broker", registry=r)
        self.mqtt_connected = Gauge("emostream_mqtt_connected", "1 while connected to the broker", registry=r)

    def batch(self, stats: BatchStats) -> None:
        """Record one forward pass."""
        self.batch_size.observe(stats.size)
        self.batch_seconds.observe(stats.seconds)
        self.model_cpu.inc(stats.cpu_seconds)

    def mqtt(self, stats: dict) -> None:
        """Copy the MQTT publisher's counters."""
        self.mqtt_published.set(stats["published"])
        self.mqtt_dropped.set(stats["dropped"])
        self.mqtt_queued.set(stats["queued"])
        self.mqtt_connected.set(1 if stats["connected"] else 0)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

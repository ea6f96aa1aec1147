"""Issue 17, findings 2, 4, 5 and 7 on the Ray path, without a Ray cluster: what `serve --ray` and
`serve deploy` refuse or take at start, the health cache and the byte bounds of the monitor relay.

(test_ray_hardening.py checks the same on a running application.)
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from models.errors import ConfigError
from models.labels import LABELS
from models.loader import ModelOptions
from server_harness import free_port
from stream.cluster import ingress, launch, replica
from stream.cluster.hub import HubView, SessionHub
from stream.cluster.remote_scorer import RemoteScorer
from stream.cluster.scorer import ModelInfo
from stream.cluster.topology import ClusterOptions
from stream.server.app import EmostreamServer
from stream.server.settings import ServerSettings
from tls_certs import make_tls

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "serve.yaml"
SECRETS = {
    "EMOSTREAM_TOKEN": "tok-1", "EMOSTREAM_STREAM_TOKEN": "stream-2", "EMOSTREAM_WATCH_TOKEN": "watch-3",
    "EMOSTREAM_ADMIN_TOKEN": "admin-4", "EMOSTREAM_TWILIO_AUTH_TOKEN": "twilio-5", "EMOSTREAM_MQTT_PASSWORD": "mqtt-6",
}  # fmt: skip
MIB = 1 << 20


@pytest.fixture()
def no_serve(monkeypatch):
    """No Serve instance to ask for its HTTP options; no secret in the environment."""
    monkeypatch.setattr(launch, "serve_http_options", lambda: None, raising=False)
    for name in (*SECRETS, "EMOSTREAM_MQTT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def settings_of(app) -> ServerSettings:
    """The ServerSettings an application's ingress replicas get."""
    return app._bound_deployment.init_args[0]


# -- finding 2: TLS and what the cluster cannot honour --
@pytest.fixture()
def fake_ray(monkeypatch):
    """`launch.run` with Ray and Serve replaced by recorders: what it asks Serve for."""
    asked: dict = {}
    monkeypatch.setattr(launch.ray, "init", lambda **kw: None)
    monkeypatch.setattr(launch.ray, "shutdown", lambda: None)
    monkeypatch.setattr(launch.serve, "start", lambda http_options=None, **kw: asked.update(http_options))
    monkeypatch.setattr(launch.serve, "run", lambda *a, **kw: None)
    monkeypatch.setattr(launch.serve, "shutdown", lambda: None)
    monkeypatch.setattr(launch, "build_app", lambda *a: None)
    monkeypatch.setattr(launch.signal, "signal", lambda *a: None)

    def stop(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(launch.time, "sleep", stop)
    monkeypatch.setattr(launch, "serve_http_options", lambda: dict(asked), raising=False)
    return asked


def test_serve_ray_gives_its_tls_to_serves_proxies(fake_ray, tmp_path):
    tls = make_tls(tmp_path / "tls")
    settings = ServerSettings(port=free_port(), token="t", recordings=tmp_path / "r", ssl_certfile=tls.cert,
                              ssl_keyfile=tls.key)  # fmt: skip
    launch.run(settings, ModelOptions(model_dir=str(tmp_path)), ClusterOptions())
    assert fake_ray == {"host": "127.0.0.1", "port": settings.port, "ssl_certfile": str(tls.cert.resolve()),
                        "ssl_keyfile": str(tls.key.resolve())}  # fmt: skip


def test_serve_ray_refuses_what_the_cluster_cannot_honour(fake_ray, monkeypatch, tmp_path):
    settings = ServerSettings(port=free_port(), token="t", recordings=tmp_path / "r")
    model = ModelOptions(model_dir=str(tmp_path))
    # Serve's proxy takes WebSocket messages up to 16 MiB (uvicorn's default), whatever the app wants.
    with pytest.raises(ConfigError, match="max-message-bytes"):
        launch.run(replace(settings, max_message_bytes=16 * MIB + 1), model, ClusterOptions())
    assert fake_ray == {}  # refused before Serve started
    # A Serve instance already running on the cluster keeps its own HTTP options (Ray only warns).
    monkeypatch.setattr(launch, "serve_http_options", lambda: {"host": "0.0.0.0", "port": 8000}, raising=False)
    with pytest.raises(ConfigError, match="port"):
        launch.run(settings, model, ClusterOptions(address="auto"))
    # Off loopback, a cluster names the hosts it answers.
    with pytest.raises(ConfigError, match="allowed-hosts"):
        launch.run(replace(settings, host="0.0.0.0"), model, ClusterOptions())


# -- finding 5: `serve deploy` --
def test_serve_deploy_checks_the_settings_as_serve_does(no_serve):
    with pytest.raises(ConfigError, match="without a token"):
        launch.app_builder({"server": {"host": "0.0.0.0"}})
    no_serve.setenv("EMOSTREAM_TOKEN", "t")
    with pytest.raises(ConfigError, match="allowed-hosts"):
        launch.app_builder({"server": {"host": "0.0.0.0"}})
    with pytest.raises(ConfigError, match="ssl-keyfile"):
        launch.app_builder({"server": {"ssl_certfile": "/etc/cert.pem"}})
    with pytest.raises(ConfigError, match="max-message-bytes"):
        launch.app_builder({"server": {"max_message_bytes": 32 * MIB}})
    settings = settings_of(launch.app_builder({"server": {"host": "0.0.0.0", "allowed_hosts": "emo.example"}}))
    assert settings.host == "0.0.0.0" and settings.token == "t"


def test_serve_deploy_reads_every_secret_from_the_environment_and_none_from_the_file(no_serve):
    for name, value in SECRETS.items():
        no_serve.setenv(name, value)
    settings = settings_of(launch.app_builder({"server": {"mqtt": "mqtt://broker:1883", "mqtt_username": "emo"}}))
    got = (settings.token, settings.stream_token, settings.watch_token, settings.admin_token,
           settings.twilio_auth_token, settings.mqtt_password)  # fmt: skip
    assert got == tuple(SECRETS.values())
    for name in ("token", "watch_token", "twilio_auth_token", "mqtt_password"):
        with pytest.raises(ConfigError, match=f"EMOSTREAM_{name.upper()}"):
            launch.app_builder({"server": {name: "written-in-the-file"}})
    with pytest.raises(ConfigError, match="EMOSTREAM_MQTT_PASSWORD"):
        launch.app_builder({"server": {"mqtt": "mqtt://emo:pw@broker:1883"}})
    no_serve.setenv("EMOSTREAM_MQTT", "mqtt://emo:pw@broker:1883")  # a URL with its password may come from there
    assert settings_of(launch.app_builder({})).mqtt == "mqtt://emo:pw@broker:1883"


def test_serve_deploy_listens_where_serves_http_options_say(no_serve, tmp_path):
    tls = make_tls(tmp_path / "tls")
    http = {"host": "0.0.0.0", "port": 8000, "ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}
    no_serve.setattr(launch, "serve_http_options", lambda: http, raising=False)
    no_serve.setenv("EMOSTREAM_TOKEN", "t")
    settings = settings_of(launch.app_builder({"server": {"allowed_hosts": "emo.example"}}))
    assert (settings.host, settings.port, settings.ssl_certfile, settings.ssl_keyfile) == (
        "0.0.0.0", 8000, tls.cert, tls.key)
    with pytest.raises(ConfigError, match="port"):  # the file cannot say otherwise than the proxies do
        launch.app_builder({"server": {"allowed_hosts": "emo.example", "port": 9000}})
    with pytest.raises(ConfigError, match="allowed-hosts"):  # the proxies bind 0.0.0.0
        launch.app_builder({})


def test_the_shipped_serve_config_is_refused_without_a_token_and_has_no_allow_public(no_serve):
    config = yaml.safe_load(CONFIG.read_text())
    (entry,) = config["applications"]
    assert "allow_public" not in entry["args"]["server"]
    no_serve.setattr(launch, "serve_http_options", lambda: config["http_options"], raising=False)
    with pytest.raises(ConfigError, match="without a token"):
        launch.app_builder(entry["args"])
    no_serve.setenv("EMOSTREAM_TOKEN", "t")
    settings = settings_of(launch.app_builder(entry["args"]))
    assert settings.host == "0.0.0.0" and settings.allowed_hosts and not settings.allow_public


# -- finding 4: /healthz details are cached --
def cluster_server(tmp_path, monkeypatch, hub=None, scorer_handle=None, states=None) -> EmostreamServer:
    """An ingress replica's server, composed as the Ingress builds it, around stand-ins for the handles."""
    monkeypatch.setattr(replica.ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "node-1"))
    scorer = RemoteScorer(ModelInfo(LABELS, "tiny", True, 8, "float32", None, "cpu"), scorer_handle)
    peers = replica.Replica(hub, "replica-1", ClusterOptions(), states)
    return EmostreamServer(ServerSettings(recordings=tmp_path / "r"), scorer, ingress.remote_scheduler(ClusterOptions()),
                           peers)


def remote(answer):
    """A handle method stand-in: `.remote(...)` returns an awaitable of `answer(...)`."""

    async def call(*args):
        return answer(*args)

    return SimpleNamespace(remote=call)


def test_cluster_health_details_are_cached(tmp_path, monkeypatch):
    asked = []
    states = lambda app: asked.append(app) or {"Ingress": {"status": "HEALTHY", "replicas": {"RUNNING": 1}}}
    hub = SimpleNamespace(replicas=remote(lambda: {"replica-1": {"node": "node-1"}}))
    server = cluster_server(tmp_path, monkeypatch, hub, SimpleNamespace(stats=remote(lambda: {"jobs": 0})), states)

    async def twice():
        return await server.health(), await server.health()

    first, second = asyncio.run(twice())
    assert first["status"] == second["status"] == "ok" and first["deployments"] == second["deployments"]
    assert len(asked) == 1  # serve.status() is not asked on every request


# -- finding 7: the monitor relay is bounded in bytes --
BIG = {"type": "session_started", "session_id": "big", "metadata": {"note": "n" * MIB}}


def json_bytes(messages) -> int:
    return sum(len(json.dumps(m)) for m in messages)


def test_the_hub_log_is_bounded_in_bytes():
    hub = SessionHub()

    async def burst():
        for _ in range(10):
            await hub.publish("replica-a", [BIG] * 10, [])  # 100 MiB of messages
        return await hub.poll("replica-b", 0, 0)

    batch = asyncio.run(burst())
    assert batch.messages and json_bytes(batch.messages) <= 32 * MIB  # the newest kept, the oldest dropped
    assert batch.gap


def test_an_ingress_replicas_outgoing_messages_are_bounded_in_bytes(tmp_path, monkeypatch):
    views = []

    def publish(replica, messages, live, node):
        views.append(json_bytes(messages))
        raise ConnectionError("the hub is restarting")

    server = cluster_server(tmp_path, monkeypatch, SimpleNamespace(publish=remote(publish)))
    peers = server.peers
    peers._view = HubView((), True, 0)  # another replica watches: messages are queued for the hub
    for _ in range(100):
        server.sinks.send(BIG)
    assert 0 < json_bytes(peers._outgoing) <= 16 * MIB
    with pytest.raises(ConnectionError):
        asyncio.run(peers._publish(server))
    assert 0 < views[0] <= 16 * MIB
    assert json_bytes(peers._outgoing) == views[0]  # kept for the next exchange, still bounded

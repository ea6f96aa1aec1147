"""Issue 17 on a running Ray Serve application, deployed as `serve deploy` does (a Serve config
applied through the controller, its credential from the runtime environment) behind proxies with TLS.

One application (one ingress, one scorer replica) serves the module: TLS on Serve's proxy and on
--ingress-port, /healthz inside the Host guard and the credential check, and WebSocket messages
over --max-message-bytes closed with 1009 whichever way they arrive.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass

import httpx
import pytest
from websockets.asyncio.client import connect

from ray_harness import TOKEN
from server_harness import free_port
from tls_certs import make_tls

LIMIT = 1 << 16  # --max-message-bytes of the application
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class TlsApp:
    """Where the application answers: Serve's proxy and the ingress replicas' own port, both HTTPS."""

    port: int
    direct: int
    ca: ssl.SSLContext

    def https(self, port: int) -> str:
        return f"https://127.0.0.1:{port}"

    def wss(self, port: int) -> str:
        return f"wss://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def app(tiny_model_dir, tmp_path_factory):
    import ray
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    tmp = tmp_path_factory.mktemp("ray-tls")
    tls = make_tls(tmp / "tls")
    port, direct = free_port(), free_port()
    config = {"applications": [{
        "name": "emostream", "route_prefix": "/", "import_path": "stream.cluster.launch:app_builder",
        "runtime_env": {"env_vars": {"EMOSTREAM_TOKEN": TOKEN, "EMOSTREAM_OFFLINE": "1"}},
        "args": {
            "model": {"model_dir": str(tiny_model_dir), "device": "cpu", "threads": 1, "offline": True, "dtype": "float32"},
            "server": {"recordings": str(tmp / "recordings"), "max_wait_ms": 50, "max_message_bytes": LIMIT},
            "cluster": {"ingress_replicas": 1, "scorer_replicas": 1, "cpus_per_ingress": 0.2, "cpus_per_scorer": 0.2,
                        "cpus_for_hub": 0.05, "ingress_port": direct},
        },
    }]}  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        # TLS is Serve's HTTP option, as in a Serve config's `http_options`; the application takes it from there.
        serve.start(http_options={"host": "127.0.0.1", "port": port, "ssl_certfile": str(tls.cert),
                                  "ssl_keyfile": str(tls.key)}, proxy_location="HeadOnly")  # fmt: skip
        # What `serve deploy` asks of the controller (through the dashboard, not started here): the
        # controller builds the application in a task of its own, where app_builder runs.
        _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config))
        running = TlsApp(port, direct, ssl.create_default_context(cafile=str(tls.ca)))
        deadline = time.monotonic() + 300
        while True:
            try:
                health = httpx.get(f"{running.https(port)}/healthz", headers=AUTH, verify=running.ca, timeout=30).json()
                if health.get("deployments", {}).get("Ingress", {}).get("replicas") == {"RUNNING": 1}:
                    break
            except (httpx.HTTPError, json.JSONDecodeError):
                pass
            assert time.monotonic() < deadline, serve.status()
            time.sleep(1.0)
        yield running
    finally:
        serve.shutdown()
        ray.shutdown()


def test_tls_on_serves_proxy_and_on_the_ingress_port(app):
    for port in (app.port, app.direct):
        r = httpx.get(f"{app.https(port)}/healthz", verify=app.ca, timeout=30)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
    with pytest.raises(httpx.HTTPError):  # the ingress port speaks no plain HTTP
        httpx.get(f"http://127.0.0.1:{app.direct}/healthz", timeout=10)

    async def monitor(port: int) -> dict:
        async with connect(f"{app.wss(port)}/ws/monitor", ssl=app.ca, additional_headers=AUTH) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 30))

    for port in (app.port, app.direct):
        assert asyncio.run(monitor(port))["type"] == "snapshot"


def test_healthz_is_one_route_inside_the_guard(app):
    for port in (app.port, app.direct):
        base = app.https(port)
        anonymous = httpx.get(f"{base}/healthz", verify=app.ca, timeout=30)
        assert anonymous.json() == {"status": "ok"}  # liveness only: no replica, node or deployment ids
        assert anonymous.headers["x-content-type-options"] == "nosniff"  # answered behind the web guard
        details = httpx.get(f"{base}/healthz", headers=AUTH, verify=app.ca, timeout=30).json()
        assert details["status"] == "ok" and details["deployments"]["Scorer"]["status"] == "HEALTHY"
        assert len(details["ingress_replicas"]) == 1 and details["model_id"]
        wrong = httpx.get(f"{base}/healthz", headers={"Authorization": "Bearer nope"}, verify=app.ca, timeout=30)
        assert wrong.json() == {"status": "ok"}
        foreign = httpx.get(f"{base}/healthz", headers={"Host": "rebound.example"}, verify=app.ca, timeout=30)
        assert foreign.status_code == 421


def test_websocket_messages_over_the_limit_are_closed_with_1009(app):
    async def oversize(port: int, path: str, headers: dict, first: bytes | str, big: bytes | str) -> int | None:
        async with connect(f"{app.wss(port)}{path}", ssl=app.ca, additional_headers=headers, max_size=None) as ws:
            await ws.send(first)  # under the limit: taken
            await asyncio.sleep(0.5)
            assert ws.close_code is None
            await ws.send(big)
            try:
                await asyncio.wait_for(ws.wait_closed(), 30)
            except asyncio.TimeoutError:
                return None
            return ws.close_code

    async def run():
        codes = []
        for port in (app.port, app.direct):
            # A monitor's binary message, and an unauthenticated Twilio stream's text before its start.
            codes.append(await oversize(port, "/ws/monitor", AUTH, b"x" * (LIMIT // 2), b"x" * (LIMIT + 1)))
            connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
            codes.append(await oversize(port, "/ws/twilio", {}, connected, json.dumps({"event": "n" * LIMIT})))
        return codes

    assert asyncio.run(run()) == [1009] * 4

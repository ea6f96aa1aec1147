"""Signed webhooks end to end: a real server, calls replayed through /ws/replay, and real HTTP receivers on
loopback that verify every delivery with the standardwebhooks package.

A receiver down for a real minute misses nothing and gets everything once (after de-duplication by
webhook-id) and in order; a server killed with `kill -9` before it could deliver delivers after its
restart; deliveries that keep failing become dead letters in GET /api/webhooks and an admin can send
one again; a receiver that never answers slows neither the calls nor the other receivers.
"""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bench.drills import write_drill
from server_harness import free_port, replay_into, start_server, wait_for
from stream.server.alerts import alerts_in

WATCH, ADMIN = "w4tch", "4dmin"
OUTAGE_SECONDS = 60.0




def make_secret(seed: int) -> str:
    return "whsec_" + base64.b64encode(bytes((seed + i) % 256 for i in range(32))).decode()


class Receiver:
    """A webhook receiver on 127.0.0.1 (http.server in a thread): verifies each delivery, then answers `status`."""

    def __init__(self, secret: str, port: int | None = None):
        self.secret, self.port = secret, port or free_port()
        self.status, self.delay = 200, 0.0
        self.received: list[dict] = []  # verified deliveries in arrival order: webhook id, attempt time, payload
        self.rejected: list[str] = []  # deliveries whose signature did not verify
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/emostream"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError as exc:
                    with receiver._lock:
                        receiver.rejected.append(str(exc))
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.received.append({"id": self.headers["webhook-id"], "payload": payload,
                                              "timestamp": int(self.headers["webhook-timestamp"])})
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Down: the port refuses connections until `start` again."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def once(self) -> list[dict]:
        """What arrived, de-duplicated by webhook-id, in first-arrival order."""
        seen, out = set(), []
        with self._lock:
            for delivery in self.received:
                if delivery["id"] not in seen:
                    seen.add(delivery["id"])
                    out.append(delivery)
        return out


def key(delivery: dict) -> tuple[str, str]:
    """(type, the session's or the alert's id) of a delivery."""
    payload = delivery["payload"]
    data = payload["data"]
    return payload["type"], data["id"] if payload["type"].startswith("alert.") else data["session_id"]


def expected(server, session_id: str) -> list[tuple[str, str]]:
    """What a replayed session must have sent: its start, its alerts in the recorded order, its end."""
    lines = (server.recordings / session_id / "events.jsonl").read_text().splitlines()
    alerts = alerts_in(session_id, [json.loads(line) for line in lines])
    assert alerts, "a drill raises alerts"
    return [("session.started", session_id), *(("alert.raised", a.id) for a in alerts), ("session.ended", session_id)]


def status(server, token: str = "s3cret") -> dict:
    response = httpx.get(f"{server.http}/api/webhooks", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def webhook_args(*receivers: Receiver) -> list[str]:
    return [arg for r in receivers for arg in ("--webhook", r.url, "--webhook-secret", r.secret)]


def test_a_receiver_down_for_a_minute_gets_everything_once_and_in_order(tiny_model_dir, tmp_path):
    drills = tmp_path / "drills"
    for name, parties in (("before", ()), ("during-1", ("caller", "agent")), ("during-2", ())):
        write_drill(drills, name, parties=parties)
    a, b = Receiver(make_secret(1)).start(), Receiver(make_secret(2)).start()
    server = start_server(tiny_model_dir, tmp_path, *webhook_args(a, b), "--webhook-max-delay", "2")
    try:
        replay_into(server, [drills / "before"])
        before = expected(server, "replay-before-1")
        wait_for(lambda: len(a.once()) == len(before), what="the first call's webhooks at A")

        a.stop()
        down_at = time.monotonic()
        replay_into(server, [drills / "during-1"])
        replay_into(server, [drills / "during-2"])
        assert time.monotonic() - down_at < 20  # the calls never wait for a receiver
        wanted = before + expected(server, "replay-during-1-1") + expected(server, "replay-during-2-1")
        alert_id = wanted[len(before) + 1][1]
        acked = httpx.post(f"{server.http}/api/alerts/{alert_id.replace('#', '%23')}/ack", json={"note": "called"},
                           headers=server.headers, timeout=10)
        assert acked.status_code == 200, acked.text
        wanted.append(("alert.acknowledged", alert_id))
        # B is up: it has everything while A is down, so one receiver never holds back another.
        wait_for(lambda: [key(d) for d in b.once()] == wanted, what="everything at B during A's outage")
        during = status(server)["receivers"]
        assert [r["receiver"] for r in during] == [a.url, b.url]
        assert during[0]["pending"] == len(wanted) - len(before) and during[0]["last_error"]
        assert during[0]["state"] in ("waiting", "sending") and during[1]["pending"] == 0

        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
        assert len(a.once()) == len(before)  # nothing reached A while it was down
        a.start()
        wait_for(lambda: len(a.once()) == len(wanted), timeout=30, what="A catching up after its outage")
        time.sleep(2.5)  # (anything sent twice would have arrived by now)
        got = a.once()
        assert [key(d) for d in got] == wanted  # every one, once, in the order they were raised
        assert [d["id"] for d in got] == [d["id"] for d in b.once()]  # one webhook-id per event, every receiver
        assert not a.rejected and not b.rejected  # every delivery verified with its receiver's own secret
        raised = got[len(before) + 1]["payload"]
        alert = httpx.get(f"{server.http}/api/alerts", params={"session": "replay-during-1-1", "limit": 100},
                          headers=server.headers, timeout=10).json()["alerts"]
        catalog = next(x for x in alert if x["id"] == alert_id)
        assert {k: raised["data"][k] for k in ("id", "session_id", "seq", "kind", "party", "stream_time", "text")} \
            == {k: catalog[k] for k in ("id", "session_id", "seq", "kind", "party", "stream_time", "text")}
        assert raised["data"]["replay"] is True and raised["data"]["state"] == "open"
        ack = got[-1]["payload"]
        assert ack["data"]["state"] == "acknowledged" and ack["data"]["ack"]["note"] == "called"
        ended = next(d["payload"] for d in got if key(d) == ("session.ended", "replay-during-1-1"))
        assert ended["data"]["parties"] == ["caller", "agent"] and ended["data"]["summary"]["status"] == "complete"
        after = status(server)["receivers"]
        assert [r["pending"] for r in after] == [0, 0] and after[0]["delivered"] == len(wanted)
    finally:
        server.stop()
        a.stop()
        b.stop()


def test_kill_9_with_undelivered_webhooks_then_a_restart_delivers_them(tiny_model_dir, tmp_path):
    drills = tmp_path / "drills"
    write_drill(drills, "held", parties=("caller", "agent"))
    receiver = Receiver(make_secret(3))  # not listening yet
    args = [*webhook_args(receiver), "--webhook-max-delay", "1"]
    server = start_server(tiny_model_dir, tmp_path, *args)
    try:
        replay_into(server, [drills / "held"])
        wanted = expected(server, "replay-held-1")
        wait_for(lambda: status(server)["receivers"][0]["pending"] == len(wanted), what="the rows in the outbox")
    finally:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    receiver.start()
    again = start_server(tiny_model_dir, tmp_path, *args)
    try:
        wait_for(lambda: len(receiver.once()) == len(wanted), timeout=30, what="the deliveries after the restart")
        assert [key(d) for d in receiver.once()] == wanted and not receiver.rejected
        wait_for(lambda: status(again)["receivers"][0]["pending"] == 0, what="an empty outbox")
    finally:
        again.stop()
        receiver.stop()


def test_failing_deliveries_become_dead_letters_that_an_admin_can_send_again(tiny_model_dir, tmp_path):
    drills = tmp_path / "drills"
    write_drill(drills, "slow", alert_every=3.0)
    hanging = Receiver(make_secret(4)).start()
    hanging.delay = 3.0  # past --webhook-timeout: every attempt fails
    server = start_server(tiny_model_dir, tmp_path, *webhook_args(hanging), "--webhook-timeout", "1",
                          "--webhook-max-delay", "0.5", "--webhook-give-up-hours", "0.001",  # 3.6 s
                          "--watch-token", WATCH, "--admin-token", ADMIN)
    try:
        began = time.monotonic()
        replay_into(server, [drills / "slow"])
        assert time.monotonic() - began < 10  # a receiver that never answers does not slow the call
        wanted = expected(server, "replay-slow-1")
        dead = wait_for(lambda: len((s := status(server, WATCH))["dead_letters"]) == len(wanted) and s, timeout=60,
                        what="every delivery given up")
        receiver = dead["receivers"][0]
        assert (receiver["pending"], receiver["dead"]) == (0, len(wanted))
        letters = dead["dead_letters"]
        assert sorted(d["webhook_id"] for d in letters) == sorted({d["id"] for d in hanging.received})
        assert all(d["last_error"] == "no answer within 1 s" and d["attempts"] >= 1 for d in letters)
        assert letters[-1]["payload"]["type"] == "session.started"  # the first given up: the head of the queue
        hanging.delay = 0.0
        target = letters[0]
        url = f"{server.http}/api/webhooks/dead/{target['id']}/retry"
        watcher = httpx.post(url, headers={"Authorization": f"Bearer {WATCH}"})
        assert (watcher.status_code, watcher.json()["code"]) == (403, "forbidden")
        sent = httpx.post(url, headers={"Authorization": f"Bearer {ADMIN}"})
        assert sent.status_code == 200, sent.text
        assert (sent.json()["state"], sent.json()["webhook_id"]) == ("pending", target["webhook_id"])
        wait_for(lambda: hanging.received and hanging.received[-1]["id"] == target["webhook_id"]
                 and status(server, WATCH)["receivers"][0]["dead"] == len(wanted) - 1, what="the dead letter delivered")
        again = httpx.post(url, headers={"Authorization": f"Bearer {ADMIN}"})
        assert (again.status_code, again.json()["code"]) == (404, "not_found")  # delivered: no longer a dead letter
        unknown = httpx.post(f"{server.http}/api/webhooks/dead/999999/retry", headers={"Authorization": f"Bearer {ADMIN}"})
        assert unknown.status_code == 404
    finally:
        server.stop()
        hanging.stop()


def test_without_webhooks_the_api_lists_nothing(tiny_model_dir, tmp_path):
    server = start_server(tiny_model_dir, tmp_path)
    try:
        assert status(server) == {"receivers": [], "dead_letters": []}
        gone = httpx.post(f"{server.http}/api/webhooks/dead/1/retry", headers=server.headers)
        assert (gone.status_code, gone.json()["code"]) == (404, "not_found")
        assert not (Path(server.recordings) / ".webhooks.sqlite3").exists()
    finally:
        server.stop()

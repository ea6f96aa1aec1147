"""The webhook outbox on the server's event loop: queue durably, deliver in order, retry, give up.

`send` is a sink of the server's fan-out (stream.server.sinks): it turns a message into a payload
(`payloads.WebhookEvents`) and queues one delivery per receiver without waiting; one writer task
commits the queued rows to the outbox file (`store.OutboxStore`, in one worker thread), and only
then does a receiver's worker see them. Each receiver has one worker and one request in flight:
its deliveries arrive in the order they were raised, and a slow or absent receiver holds back only
its own queue — never the analysis, another receiver or the event loop. Delivery is at least once
(a crash between a receiver's 2xx and the row's deletion sends it again, with the same
`webhook-id`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import httpx

from ..outbox import encode
from .payloads import WebhookEvents
from .receivers import Receiver, shown_url
from .schedule import RetrySchedule, retry_after
from .signing import new_message_id, signed_headers
from .store import OUTBOX_FILE, Delivery, NewDelivery, OutboxStore

log = logging.getLogger("emostream.webhooks")
USER_AGENT = "emostream-webhooks/1"
MAX_QUEUED = 100_000  # deliveries waiting for the writer (the file is slower than this only when failing)
BATCH = 100  # pending rows read at a time per receiver
SHOWN_DEAD = 100  # dead letters listed by the API
MAX_ERROR_CHARS = 300


class ReceiverGone(Exception):
    """A dead letter's receiver is no longer configured: it cannot be sent again."""


@dataclass
class Outcome:
    """What one attempt came to."""

    ok: bool
    status: int | None = None  # the HTTP status, when an answer came
    error: str = ""
    retry_after: float | None = None  # seconds the receiver asked us to wait
    gone: bool = False  # 410 Gone: the receiver wants no more of this delivery


@dataclass
class ReceiverState:
    """What this server saw of one receiver since it started (the API's per-receiver status)."""

    delivered: int = 0
    failed_attempts: int = 0
    state: str = "idle"  # idle | sending | waiting (for a retry)
    last_success_at: float | None = None
    last_failure_at: float | None = None
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: float | None = None


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, timezone.utc).isoformat()


class WebhookOutbox:
    """Every receiver's deliveries, from the fan-out to their 2xx (or a dead letter)."""

    def __init__(self, path: Path, receivers: tuple[Receiver, ...], schedule: RetrySchedule, timeout: float):
        """Use `WebhookOutbox.open` (on the event loop)."""
        self.path = path
        self.receivers = {r.url: r for r in receivers}
        self.schedule = schedule
        self.timeout = timeout
        self.events = WebhookEvents()
        self.state = {r.url: ReceiverState() for r in receivers}
        self.dropped = 0  # deliveries the writer could not take (MAX_QUEUED)
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="webhook-outbox")
        self._store: OutboxStore | None = None
        self._queued: list[NewDelivery] = []
        self._writing = 0  # rows taken by the writer, not yet committed
        self._written = asyncio.Event()  # the writer finished a batch
        self._to_write = asyncio.Event()
        self._wake = {r.url: asyncio.Event() for r in receivers}
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        # One request in flight per receiver (its worker); the pool only bounds the total.
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, headers={"user-agent": USER_AGENT},
                                        limits=httpx.Limits(max_connections=max(1, len(receivers)) * 2))

    @classmethod
    async def open(cls, recordings: Path, receivers: tuple[Receiver, ...], schedule: RetrySchedule,
                   timeout: float) -> WebhookOutbox:
        """Open the outbox beside the recordings, make what it holds due now, start the writer and the workers."""
        outbox = cls(recordings / OUTBOX_FILE, receivers, schedule, timeout)
        outbox._store = await outbox._db(OutboxStore, outbox.path)
        await outbox._db(outbox._store.due_now, time.time())
        outbox._tasks.append(outbox._loop.create_task(outbox._write_forever(), name="webhook-writer"))
        for receiver in receivers:
            outbox._tasks.append(outbox._loop.create_task(outbox._deliver_forever(receiver),
                                                          name=f"webhook {receiver.shown}"))
        log.info("webhooks: %d receiver(s), outbox %s", len(receivers), outbox.path)
        return outbox

    async def _db(self, fn, *args):
        """Run a blocking outbox call in its worker thread."""
        return await self._loop.run_in_executor(self._pool, fn, *args)

    # ---- the fan-out's side ----------------------------------------------------------------------
    def send(self, message: dict) -> None:
        """A sink: queue the payload this message makes (if any) for every receiver; never blocks or raises."""
        try:
            payload = self.events.payload(message)
        except (KeyError, TypeError, ValueError, AttributeError):
            log.exception("webhooks: could not take a %r message", message.get("type"))
            return
        if payload is None or self._closing:
            return
        if len(self._queued) + len(self.receivers) > MAX_QUEUED:
            self.dropped += 1
            log.error("webhooks: the outbox file is not keeping up; %s dropped (%d so far)", payload["type"],
                      self.dropped)
            return
        body, message_id, now = encode(payload, compact=True), new_message_id(), time.time()
        self._queued.extend(NewDelivery(url, message_id, payload["type"], body, now) for url in self.receivers)
        self._to_write.set()

    async def _write_forever(self) -> None:
        """Commit queued deliveries in batches, in order, then wake their receivers' workers."""
        while True:
            await self._to_write.wait()
            self._to_write.clear()
            rows, self._queued = self._queued, []
            if rows:
                self._writing = len(rows)
                try:
                    await self._db(self._store.add, rows)
                except Exception:  # a full or broken disk: keep them, try again in a second
                    log.exception("webhooks: cannot write the outbox %s", self.path)
                    self._queued[:0] = rows
                    await asyncio.sleep(1.0)
                    self._to_write.set()
                    continue
                finally:
                    self._writing = 0
                for url in {r.receiver for r in rows}:
                    self._wake[url].set()
            self._written.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is in the outbox file."""
        while self._queued or self._writing:
            self._written.clear()
            self._to_write.set()
            await self._written.wait()

    # ---- one receiver's worker -------------------------------------------------------------------
    async def _deliver_forever(self, receiver: Receiver) -> None:
        wake, state = self._wake[receiver.url], self.state[receiver.url]
        while True:
            wake.clear()
            try:
                rows = await self._db(self._store.pending, receiver.url, BATCH)
            except Exception:
                log.exception("webhooks: cannot read the outbox %s", self.path)
                await asyncio.sleep(1.0)
                continue
            if not rows:
                state.state = "idle"
                await wake.wait()
                continue
            try:
                for row in rows:
                    await self._deliver(receiver, row, state)
            except Exception:  # the outbox could not record an outcome: read the queue again in a second
                log.exception("webhooks: cannot update the outbox %s", self.path)
                await asyncio.sleep(1.0)

    async def _deliver(self, receiver: Receiver, row: Delivery, state: ReceiverState) -> None:
        """Attempt one delivery until the receiver takes it or the schedule gives it up."""
        attempts, next_at = row.attempts, row.next_at
        while True:
            wait = next_at - time.time()
            if wait > 0:
                state.state, state.next_attempt_at = "waiting", next_at
                await asyncio.sleep(wait)
            state.state, state.next_attempt_at = "sending", None
            outcome = await self._attempt(receiver, row)
            now = time.time()
            attempts += 1
            if outcome.ok:
                if state.last_failure_at is not None and state.last_failure_at > (state.last_success_at or 0):
                    log.info("webhooks: %s takes deliveries again", receiver.shown)
                state.delivered += 1
                state.last_success_at = now
                await self._db(self._store.delivered, row.id)
                return
            if state.last_failure_at is None or state.last_failure_at < (state.last_success_at or 0):
                log.warning("webhooks: %s is failing (%s); its deliveries wait and are retried with back-off",
                            receiver.shown, outcome.error)
            state.failed_attempts += 1
            state.last_failure_at, state.last_status, state.last_error = now, outcome.status, outcome.error
            if outcome.gone or self.schedule.dead(now - row.since):
                log.warning("webhooks: gave up %s %s to %s after %d attempt(s): %s", row.type, row.message_id,
                            receiver.shown, attempts, outcome.error)
                await self._db(self._store.bury, row.id, attempts, outcome.status, outcome.error, now)
                return
            next_at = now + self.schedule.delay(attempts, outcome.retry_after)
            await self._db(self._store.failed, row.id, attempts, next_at, outcome.status, outcome.error, now)

    async def _attempt(self, receiver: Receiver, row: Delivery) -> Outcome:
        """POST it once, signed with this attempt's timestamp; the answer's body is never read."""
        body = row.body.encode("utf-8")
        headers = signed_headers(receiver.key, row.message_id, int(time.time()), body)
        try:  # the whole attempt, however slowly a receiver drips its answer
            status, wait = await asyncio.wait_for(self._post(receiver.url, body, headers), self.timeout)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return Outcome(False, None, f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Outcome(False, None, (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
                           [:MAX_ERROR_CHARS])
        if 200 <= status < 300:
            return Outcome(True, status)
        reason = "Gone: the receiver wants no more of it" if status == 410 else httpx.codes.get_reason_phrase(status)
        return Outcome(False, status, f"HTTP {status} {reason}".strip(), wait, gone=status == 410)

    async def _post(self, url: str, body: bytes, headers: dict) -> tuple[int, float | None]:
        """(status, Retry-After seconds) of one POST."""
        async with self.client.stream("POST", url, content=body, headers=headers) as response:
            return response.status_code, retry_after(response.headers.get("retry-after"))

    # ---- what the API asks -----------------------------------------------------------------------
    async def status(self) -> dict:
        """Per receiver: counts, state and the last outcome; the newest dead letters."""
        counts = await self._db(self._store.counts)
        dead = await self._db(self._store.dead_letters, SHOWN_DEAD)
        listed = []
        for url in [*self.receivers, *(u for u in counts if u not in self.receivers)]:
            mine, seen = counts.get(url, {}), self.state.get(url)
            entry = {"receiver": shown_url(url), "configured": url in self.receivers,
                     "pending": mine.get("pending", 0), "dead": mine.get("dead", 0),
                     "oldest_pending_at": _iso(mine.get("oldest_pending"))}
            if seen is not None:
                entry.update(state=seen.state, delivered=seen.delivered, failed_attempts=seen.failed_attempts,
                             last_success_at=_iso(seen.last_success_at), last_failure_at=_iso(seen.last_failure_at),
                             last_status=seen.last_status, last_error=seen.last_error,
                             next_attempt_at=_iso(seen.next_attempt_at))
            listed.append(entry)
        return {"receivers": listed, "dead_letters": [dead_letter(d) for d in dead]}

    async def retry(self, delivery_id: int) -> dict | None:
        """Queue a dead letter again; None: no such dead letter; ReceiverGone: its receiver is not configured."""
        now = time.time()
        revived = await self._db(self._revive_if_configured, delivery_id, now)
        if revived is None:
            return None
        self._wake[revived.receiver].set()
        return dead_letter(revived)

    def _revive_if_configured(self, delivery_id: int, now: float) -> Delivery | None:
        row = self._store.db.execute("SELECT receiver FROM deliveries WHERE id = ? AND state = 'dead'",
                                     (delivery_id,)).fetchone()
        if row is None:
            return None
        if row[0] not in self.receivers:
            raise ReceiverGone(shown_url(row[0]))
        return self._store.revive(delivery_id, now)

    async def close(self) -> None:
        """Write what is queued, stop the workers (an attempt in flight stays pending), close the file."""
        self._closing = True
        try:
            await asyncio.wait_for(self.flush(), 10)
        except asyncio.TimeoutError:
            log.error("webhooks: %d deliveries could not be written to the outbox before shutdown", len(self._queued))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()
        if self._store is not None:
            await self._db(self._store.close)
        self._pool.shutdown(wait=True)


def dead_letter(row: Delivery) -> dict:
    """A dead (or just revived) delivery as the API shows it."""
    return {"id": row.id, "receiver": shown_url(row.receiver), "webhook_id": row.message_id, "type": row.type,
            "state": row.state, "created_at": _iso(row.created_at), "attempts": row.attempts,
            "last_status": row.last_status, "last_error": row.last_error, "failed_at": _iso(row.failed_at),
            "payload": json.loads(row.body)}


__all__ = ["ReceiverGone", "WebhookOutbox", "dead_letter"]

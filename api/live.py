"""Live alerts: one LISTEN connection per API process, fanned out to SSE subscribers.

Ingest (and the API's own ack/resolve) announce alert changes with `NOTIFY
hemhub_alerts` at commit (payload `{alert_id, tenant_id, patient_id, status, rule,
event}`). `AlertHub` holds the process's single listening connection and hands every
notification to the queues of the open streams; it never filters: each stream drops
what is not its caller's (tenant, care units) before anything reaches the client.

The listener reconnects with backoff when its connection dies. Notifications sent
while it was away are lost (NOTIFY is not durable), so on reconnecting it tells every
subscriber to resynchronise (`Resync`), and the client reloads its alert list.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import psycopg

from ingest.alerts import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

#: Events a slow client may fall behind by before its stream is ended (it reconnects).
QUEUE_SIZE = 1000
#: The listener's reconnection backoff.
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0


@dataclass(frozen=True)
class AlertEvent:
    """One `hemhub_alerts` notification."""

    alert_id: uuid.UUID
    tenant_id: str
    patient_id: uuid.UUID
    status: str
    rule: str
    event: str

    @classmethod
    def parse(cls, payload: str) -> AlertEvent | None:
        try:
            doc = json.loads(payload)
            return cls(
                alert_id=uuid.UUID(str(doc["alert_id"])),
                tenant_id=str(doc["tenant_id"]),
                patient_id=uuid.UUID(str(doc["patient_id"])),
                status=str(doc["status"]),
                rule=str(doc["rule"]),
                event=str(doc["event"]),
            )
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring malformed %s payload: %.200r", NOTIFY_CHANNEL, payload)
            return None


@dataclass(frozen=True)
class Resync:
    """Notifications may have been missed (listener reconnected, or the queue overflowed)."""

    reason: str


@dataclass(frozen=True)
class Stopping:
    """The server is stopping: streams end now (clients reconnect to the next server)."""


Item = AlertEvent | Resync | Stopping


class Subscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False

    def put(self, item: Item) -> None:
        if isinstance(item, Stopping):
            self.overflowed = False  # nothing queued matters any more: end first
            while not self.queue.empty():
                self.queue.get_nowait()
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self) -> Item:
        """The next item; after an overflow, a Resync first (what was queued is dropped)."""
        if self.overflowed:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.overflowed = False
            return Resync("stream fell behind")
        return await self.queue.get()


class AlertHub:
    """The process's one LISTEN connection, started with the first subscriber."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._subscribers: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def start(self) -> None:
        """Start the listener unless it runs (idempotent)."""
        if self._closed:
            raise RuntimeError("the alert hub is closed")
        if self._task is None or self._task.done():
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(self._run(), name="hemhub-alert-listener")

    def announce_stop(self) -> None:
        """Tell every open stream to end (the server is stopping); safe from a signal
        handler or another thread. Without it a stopping server waits for the streams."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._publish, Stopping())

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        self.start()
        sub = Subscription()
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    async def wait_listening(self, within_s: float) -> bool:
        """Whether LISTEN is in effect (waiting up to `within_s` seconds)."""
        try:
            await asyncio.wait_for(self._listening.wait(), within_s)
        except TimeoutError:
            return False
        return True

    def _publish(self, item: Item) -> None:
        for sub in list(self._subscribers):
            sub.put(item)

    async def _run(self) -> None:
        backoff = BACKOFF_START_S
        first = True
        while not self._closed:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name="hemhub-api-listen"
                ) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    self._listening.set()
                    if not first:
                        self._publish(Resync("listener reconnected"))
                    first, backoff = False, BACKOFF_START_S
                    log.info("listening on %s", NOTIFY_CHANNEL)
                    async for notify in conn.notifies():
                        event = AlertEvent.parse(notify.payload)
                        if event is not None:
                            self._publish(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # psycopg.OperationalError and anything unexpected
                log.warning("alert listener lost its connection (%s); retrying", exc)
            self._listening.clear()
            if self._closed:
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

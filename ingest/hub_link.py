"""Configuration and commands to hubs, through a transactional outbox.

Whoever changes what a hub must know (its allow-list, a wipe it must carry out) writes
the message with `enqueue` in the same database transaction as the change, so a hub is
told of a change if and only if the change committed, and nothing is lost while the
broker is away. The hub link publishes unsent rows in id order, QoS 1, waiting for
each PUBACK before it stamps the row published; a NOTIFY at commit wakes it, and it
looks again every few seconds anyway. Several links (API replicas) may run: each row
is taken by one of them (SKIP LOCKED). A link that dies between the PUBACK and its
commit sends the row again: hubs ignore a configuration version they already have and
carry out a command id once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from hemhub.contract import topic_commands, topic_config
from hemhub.settings import MqttTarget

log = logging.getLogger(__name__)

OutboundKind = Literal["config", "commands"]
TOPICS: dict[str, Callable[[str], str]] = {"config": topic_config, "commands": topic_commands}
NOTIFY_CHANNEL = "hemhub_hub_outbound"

ENQUEUE_SQL = """
INSERT INTO hub_outbound (hub_id, topic_kind, payload, retain)
VALUES (%(hub)s, %(kind)s, %(payload)s, %(retain)s)
RETURNING id
"""
NOTIFY_SQL = f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')"

PENDING_SQL = """
SELECT id, hub_id, topic_kind, payload, retain FROM hub_outbound
WHERE published_at IS NULL
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""


def _params(hub_id: str, kind: OutboundKind, payload: BaseModel, retain: bool) -> dict[str, Any]:
    if kind not in TOPICS:
        raise ValueError(f"no topic kind {kind!r} goes to a hub (config or commands)")
    return {
        "hub": hub_id,
        "kind": kind,
        "payload": Jsonb(payload.model_dump(mode="json", exclude_none=True)),
        "retain": retain,
    }


async def enqueue(
    conn: psycopg.AsyncConnection[Any],
    hub_id: str,
    kind: OutboundKind,
    payload: BaseModel,
    *,
    retain: bool,
) -> int:
    """Queue `payload` for `hub_id` in the caller's transaction; sent after it commits."""
    cur = await conn.execute(ENQUEUE_SQL, _params(hub_id, kind, payload, retain))
    row = await cur.fetchone()
    await conn.execute(NOTIFY_SQL)
    assert row is not None
    return int(row[0] if not isinstance(row, dict) else row["id"])


def enqueue_sync(
    conn: psycopg.Connection[Any],
    hub_id: str,
    kind: OutboundKind,
    payload: BaseModel,
    *,
    retain: bool,
) -> int:
    """`enqueue` for a synchronous connection (the registry functions, the demo)."""
    row = conn.execute(ENQUEUE_SQL, _params(hub_id, kind, payload, retain)).fetchone()
    conn.execute(NOTIFY_SQL)
    assert row is not None
    return int(row[0] if not isinstance(row, dict) else row["id"])


class HubLink:
    """Publishes queued messages to hubs until `stop()`; `start()` runs it in a thread."""

    def __init__(
        self,
        database_url: str,
        mqtt_url: str,
        *,
        ca_file: str | None = None,
        poll_s: float = 5.0,
        batch: int = 200,
        publish_timeout_s: float = 10.0,
    ) -> None:
        self.database_url = database_url
        self.target = MqttTarget(mqtt_url)
        self.poll_s = poll_s
        self.batch = batch
        self.publish_timeout_s = publish_timeout_s
        self.published = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        client_id = f"hemhub-backend-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id[:64], protocol=mqtt.MQTTv311
        )
        if self.target.username:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            client.tls_set(ca_certs=ca_file)  # verifies the broker's certificate
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client

    # ------------------------------------------------------------------ MQTT

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if rc.is_failure:
            self.last_error = f"broker refused the hub link: {rc}"
            log.warning("hub_link.refused reason=%s", rc)
            return
        self._connected.set()
        log.info("hub_link.connected broker=%s", self.target)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        self._connected.clear()

    # ------------------------------------------------------------------ publishing

    def publish_pending(self, conn: psycopg.Connection[Any]) -> int:
        """Publish up to `batch` queued rows in one transaction; the number sent."""
        if not self._connected.is_set():
            return 0
        sent: list[int] = []
        with conn.transaction():
            rows = conn.execute(PENDING_SQL, {"limit": self.batch}).fetchall()
            for row in rows:
                topic = TOPICS[row["topic_kind"]](row["hub_id"])
                body = json.dumps(row["payload"], separators=(",", ":"))
                info = self._client.publish(topic, body, qos=1, retain=row["retain"])
                try:
                    info.wait_for_publish(timeout=self.publish_timeout_s)
                except (RuntimeError, ValueError) as exc:  # not queued: disconnected
                    self._failed(conn, row["id"], f"not published: {exc}")
                    break
                if not info.is_published():
                    self._failed(conn, row["id"], "no PUBACK in time")
                    break  # keep the order: the next rows wait for this one
                sent.append(row["id"])
            if sent:
                conn.execute(
                    "UPDATE hub_outbound SET published_at = now(), attempts = attempts + 1,"
                    " last_error = NULL WHERE id = ANY(%(ids)s)",
                    {"ids": sent},
                )
        self.published += len(sent)
        return len(sent)

    def _failed(self, conn: psycopg.Connection[Any], row_id: int, why: str) -> None:
        self.last_error = why
        log.warning("hub_link.publish_failed id=%s reason=%r", row_id, why)
        conn.execute(
            "UPDATE hub_outbound SET attempts = attempts + 1, last_error = %(why)s"
            " WHERE id = %(id)s",
            {"id": row_id, "why": why},
        )

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Publish until `stop()`: on every NOTIFY, and every `poll_s` seconds."""
        self._client.connect_async(self.target.host, self.target.port, keepalive=30)
        self._client.loop_start()
        try:
            while not self._stop.is_set():
                try:
                    self._serve()
                except psycopg.Error as exc:
                    self.last_error = f"database: {exc}"
                    log.warning("hub_link.database_error error=%r", str(exc))
                    self._stop.wait(min(self.poll_s, 2.0))
        finally:
            self._client.disconnect()
            self._client.loop_stop()

    def _serve(self) -> None:
        with (
            psycopg.connect(self.database_url, autocommit=True) as listener,
            psycopg.connect(self.database_url, row_factory=dict_row) as conn,
        ):
            listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            due = 0.0  # when to look for queued rows without a NOTIFY
            while not self._stop.is_set():
                connected = self._connected.is_set()
                if connected and time.monotonic() >= due:
                    while self.publish_pending(conn) == self.batch:
                        pass  # more are waiting
                    due = time.monotonic() + self.poll_s
                # Wake within a second for stop(), a NOTIFY or a (re)connection.
                if any(True for _ in listener.notifies(timeout=1.0, stop_after=1)):
                    due = 0.0
                if self._connected.is_set() and not connected:
                    due = 0.0

    def start(self) -> HubLink:
        self._thread = threading.Thread(target=self.run, name="hub-link", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

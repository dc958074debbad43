"""Publishes the outbox to the broker with QoS 1; an entry is removed only after PUBACK.

One paho client per hub, client id = hub id, persistent session, a retained
`online` status on connect and a retained `offline` last will. Readings are sent in
commit order, several per message, with a bounded number of unacknowledged messages
(paho keys in-flight messages by a 16-bit id, and a large window slows it down) and a
rate limit so a week of backlog does not flood the broker after an outage.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as mqtt

from gateway.credentials import BrokerCredentials
from gateway.failpoints import failpoint
from gateway.outbox import Outbox
from hemhub import __version__
from hemhub.contract import (
    SCHEMA_VERSION,
    HubStatus,
    parse_topic,
    topic_commands,
    topic_config,
    topic_readings,
    topic_status,
)
from hemhub.settings import MqttTarget

log = logging.getLogger(__name__)


class OutboxPublisher:
    def __init__(
        self,
        outbox: Outbox,
        *,
        hub_id: str,
        mqtt_url: str,
        readings_per_message: int = 50,
        max_unacked_messages: int = 20,
        max_readings_per_s: float = 2000.0,
        keepalive_s: int = 30,
        reconnect_max_s: int = 60,
        status_interval_s: float = 60.0,
        credentials: BrokerCredentials | None = None,
        status_extra: Callable[[], dict[str, object]] | None = None,
        on_backend_message: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.hub_id = hub_id
        self.target = MqttTarget(mqtt_url)
        self.readings_per_message = readings_per_message
        self.max_unacked_messages = max_unacked_messages
        self.max_readings_per_s = max_readings_per_s
        self.status_interval_s = status_interval_s
        self._status_extra = status_extra
        self._on_backend_message = on_backend_message
        self._started_at = time.monotonic()
        # Never call into paho while holding _wake: paho calls on_publish holding its
        # own message lock, and on_publish takes _wake to wake the publishing thread.
        self._wake = threading.Condition()
        self._stop_deadline: float | None = None
        self._connected = False
        # mid -> (paho's message info, outbox seqs); touched by the publishing thread only
        self._in_flight: dict[int, tuple[mqtt.MQTTMessageInfo, list[int]]] = {}
        self._thread: threading.Thread | None = None
        self.last_publish_at: datetime | None = None
        self.published_readings = 0

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=hub_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        creds = credentials or BrokerCredentials()
        username = creds.username or self.target.username
        password = creds.password() or self.target.password
        if username:
            client.username_pw_set(username, password)
        if self.target.tls:
            # Verify the broker's certificate and name; a client certificate if given.
            client.tls_set(
                ca_certs=creds.ca_file,
                certfile=creds.cert_file,
                keyfile=creds.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.max_inflight_messages_set(max_unacked_messages)
        # paho's own queue must hold everything we let in flight, never drop.
        client.max_queued_messages_set(0)
        offline = HubStatus(hub_id=hub_id, online=False, software_version=__version__)
        client.will_set(topic_status(hub_id), offline.model_dump_json(), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=1, max_delay=reconnect_max_s)
        self._client = client
        self._keepalive_s = keepalive_s

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._client.connect_async(self.target.host, self.target.port, self._keepalive_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name=f"publisher-{self.hub_id}")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Stop publishing; wait briefly for PUBACKs of what is in flight.

        Whatever is not acknowledged stays in the outbox and is sent after restart.
        """
        with self._wake:
            self._stop_deadline = time.monotonic() + drain_timeout_s
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=drain_timeout_s + 10)
        if self._connected:
            offline = HubStatus(
                hub_id=self.hub_id, online=False, at=datetime.now(UTC), software_version=__version__
            )
            info = self._client.publish(
                topic_status(self.hub_id), offline.model_dump_json(), qos=1, retain=True
            )
            info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()

    def kick(self) -> None:
        """Wake the publisher: something was committed to the outbox."""
        with self._wake:
            self._wake.notify_all()

    @property
    def connected(self) -> bool:
        return self._connected

    # -- paho callbacks (network thread) ---------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: mqtt.ReasonCode,
        properties: mqtt.Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("broker refused hub %s: %s", self.hub_id, reason_code)
            return
        log.info("hub %s connected to %r", self.hub_id, self.target)
        with self._wake:
            self._connected = True
            self._wake.notify_all()
        if self._on_backend_message is not None:
            # The configuration is retained: the broker sends the newest on subscribe.
            client.subscribe([(topic_config(self.hub_id), 1), (topic_commands(self.hub_id), 1)])
        self.publish_status()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self._on_backend_message is None:
            return
        try:
            _, kind = parse_topic(msg.topic)
            self._on_backend_message(kind, bytes(msg.payload))
        except Exception:  # a bad message from the backend must not kill the network thread
            log.exception("hub %s could not handle a message on %s", self.hub_id, msg.topic)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: mqtt.ReasonCode,
        properties: mqtt.Properties | None,
    ) -> None:
        log.warning("hub %s disconnected: %s", self.hub_id, reason_code)
        with self._wake:
            self._connected = False

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: mqtt.ReasonCode,
        properties: mqtt.Properties | None,
    ) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- publishing loop (own thread) ---------------------------------------------------

    def status(self) -> HubStatus:
        extra = self._status_extra() if self._status_extra else {}
        return HubStatus(
            hub_id=self.hub_id,
            online=True,
            at=datetime.now(UTC),
            software_version=__version__,
            uptime_s=round(time.monotonic() - self._started_at, 1),
            outbox_depth=self.outbox.depth(),
            outbox_oldest_age_s=self.outbox.oldest_age_s(),
            last_publish_at=self.last_publish_at,
            **extra,  # type: ignore[arg-type]
        )

    def publish_status(self) -> None:
        self._client.publish(
            topic_status(self.hub_id), self.status().model_dump_json(), qos=1, retain=True
        )

    def _reap_acknowledged(self) -> None:
        done = [mid for mid, (info, _) in self._in_flight.items() if info.is_published()]
        if not done:
            return
        failpoint("puback.received")
        seqs = [seq for mid in done for seq in self._in_flight.pop(mid)[1]]
        self.outbox.remove_delivered(seqs)
        self.published_readings += len(seqs)
        self.last_publish_at = datetime.now(UTC)

    def _run(self) -> None:
        topic = topic_readings(self.hub_id)
        next_status = time.monotonic() + self.status_interval_s
        # Token bucket: at most max_readings_per_s on average, bursts of one second.
        tokens = self.max_readings_per_s
        last = time.monotonic()
        while True:
            self._reap_acknowledged()
            now = time.monotonic()
            if self._stop_deadline is not None and (
                not self._in_flight or not self._connected or now >= self._stop_deadline
            ):
                return
            tokens = min(self.max_readings_per_s, tokens + (now - last) * self.max_readings_per_s)
            last = now
            if self._connected and now >= next_status:
                self.publish_status()
                next_status = now + self.status_interval_s
            entries = []
            ready = (
                self._stop_deadline is None
                and self._connected
                and len(self._in_flight) < self.max_unacked_messages
                and tokens >= 1
            )
            if ready:
                sending = {seq for _, seqs in self._in_flight.values() for seq in seqs}
                limit = min(self.readings_per_message, int(tokens))
                entries = self.outbox.pending(limit, exclude=sending)
            if not entries:
                with self._wake:
                    self._wake.wait(timeout=0.2 if tokens >= 1 else 0.05)
                continue
            body = (
                f'{{"schema_version":{SCHEMA_VERSION},"hub_id":'
                + json.dumps(self.hub_id)
                + ',"readings":['
                + ",".join(e.payload for e in entries)
                + "]}"
            )
            info = self._client.publish(topic, body, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.error("publish failed: %s", mqtt.error_string(info.rc))
                continue
            # With NO_CONN paho keeps the message and sends it on reconnect.
            self._in_flight[info.mid] = (info, [e.seq for e in entries])
            failpoint("publish.sent")
            tokens -= len(entries)

"""Publishes the outbox to the broker with QoS 1; an entry is forgotten only on its receipt.

A PUBACK marks the readings of a message sent; ingest's receipt (on the hub's own
`receipts` topic, subscribed on every connect) forgets them or sets them aside as
rejected. A sent reading without a receipt after `receipt_timeout_s` (doubling per
attempt up to `receipt_timeout_max_s`) is published again (gateway/outbox.py).

One paho client per hub, client id = hub id, persistent session, a retained
`online` status on connect and a retained `offline` last will. Readings are sent in
commit order, several per message, with a bounded number of unacknowledged messages
(paho keys in-flight messages by a 16-bit id, and a large window slows it down) and a
rate limit so a week of backlog does not flood the broker after an outage.

The publishing thread survives its own failures (a full disk makes removing delivered
entries fail): it logs and counts them and retries with backoff. A loop that has not
completed a pass for `stall_after_s`, or whose thread is gone, is wedged: `healthy()`
turns False, and the service stops pinging the systemd watchdog so systemd restarts the
gateway (the broker then publishes the hub's `offline` last will).
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
    CommandResult,
    HubStatus,
    Receipt,
    parse_topic,
    topic_commands,
    topic_config,
    topic_readings,
    topic_receipts,
    topic_results,
    topic_status,
)
from hemhub.settings import MqttTarget

log = logging.getLogger(__name__)

#: After a failed pass the publishing loop waits this long, doubling up to the max.
ERROR_BACKOFF_START_S = 0.5
ERROR_BACKOFF_MAX_S = 30.0
#: A sent reading is published again when its receipt has not come after this long,
#: doubling per attempt up to the max (ingest answers in well under a second).
RECEIPT_TIMEOUT_S = 30.0
RECEIPT_TIMEOUT_MAX_S = 600.0


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
        stall_after_s: float = 120.0,
        receipt_timeout_s: float = RECEIPT_TIMEOUT_S,
        receipt_timeout_max_s: float = RECEIPT_TIMEOUT_MAX_S,
        credentials: BrokerCredentials | None = None,
        status_extra: Callable[[], dict[str, object]] | None = None,
        on_backend_message: Callable[[str, bytes], None] | None = None,
        on_connected: Callable[[], None] | None = None,
        software_version: str = __version__,
    ) -> None:
        self.outbox = outbox
        #: The version the status reports: the running slot's (gateway/update).
        self.software_version = software_version
        self.hub_id = hub_id
        self.target = MqttTarget(mqtt_url)
        self.readings_per_message = readings_per_message
        #: Unacknowledged QoS 1 messages in all: reading batches plus one status. paho
        #: keys them by a 16-bit id, and on reconnect it resends every one it holds
        #: whatever its window, so the limit is kept here: at most one status message
        #: is outstanding, and reading batches get the rest of the window.
        self.max_unacked_messages = max_unacked_messages
        self._reading_window = max(1, max_unacked_messages - 1)
        self._status_lock = threading.Lock()
        self._status_info: mqtt.MQTTMessageInfo | None = None
        self._status_wanted = False
        self.max_readings_per_s = max_readings_per_s
        self.status_interval_s = status_interval_s
        #: No completed pass of the publishing loop for this long: wedged (`healthy()`).
        self.stall_after_s = stall_after_s
        self.receipt_timeout_s = receipt_timeout_s
        self.receipt_timeout_max_s = max(receipt_timeout_s, receipt_timeout_max_s)
        #: Receipts applied, and receipts that could not be (bad payload, another hub).
        self.receipts = 0
        self.bad_receipts = 0
        self.receipt_failures = 0
        self._status_extra = status_extra
        self._on_backend_message = on_backend_message
        self._on_connected = on_connected
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
        #: Failed passes of the publishing loop since start, and the last one's reason.
        self.errors = 0
        self.consecutive_errors = 0
        self.last_error: str | None = None
        self._last_pass = time.monotonic()
        # Token bucket: at most max_readings_per_s on average, bursts of one second (at
        # least one reading, so that rates below one per second publish too).
        self._bucket = max(1.0, max_readings_per_s)
        self._tokens = self._bucket
        self._refilled = time.monotonic()
        self._next_status = time.monotonic() + status_interval_s

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
        offline = HubStatus(hub_id=hub_id, online=False, software_version=software_version)
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
        self._last_pass = time.monotonic()
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
                hub_id=self.hub_id,
                online=False,
                at=datetime.now(UTC),
                software_version=self.software_version,
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

    def status_acknowledged(self) -> bool:
        """True once the broker acknowledged a status message of this process."""
        with self._status_lock:
            return self._status_info is not None and self._status_info.is_published()

    def healthy(self) -> bool:
        """False when the publishing loop is wedged: its thread died, or it completed no
        pass for `stall_after_s` (it keeps failing, or it hangs)."""
        thread = self._thread
        if thread is None:
            return True  # not started
        if not thread.is_alive():
            return self._stop_deadline is not None  # ended because it was told to stop
        return time.monotonic() - self._last_pass < self.stall_after_s

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
        # On every connect: a broker that lost its persistence lost the subscription too.
        client.subscribe(topic_receipts(self.hub_id), 1)
        if self._on_backend_message is not None:
            # The configuration is retained: the broker sends the newest on subscribe.
            client.subscribe([(topic_config(self.hub_id), 1), (topic_commands(self.hub_id), 1)])
        try:
            self.publish_status()
        except Exception:  # e.g. the outbox unreadable: never kill paho's network thread
            log.exception("hub %s could not publish its status on connect", self.hub_id)
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:
                log.exception("hub %s: on_connected failed", self.hub_id)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            _, kind = parse_topic(msg.topic)
            if kind == "receipts":
                try:
                    self._apply_receipt(bytes(msg.payload))
                except Exception:
                    self.receipt_failures += 1  # lost: the readings are sent again
                    raise
            elif self._on_backend_message is not None:
                self._on_backend_message(kind, bytes(msg.payload))
        except Exception:  # a bad message from the backend must not kill the network thread
            log.exception("hub %s could not handle a message on %s", self.hub_id, msg.topic)

    def _apply_receipt(self, payload: bytes) -> None:
        """Apply a receipt durably before paho acknowledges it (on return): one lost in
        between only costs a resend, which ingest then receipts as a duplicate."""
        try:
            receipt = Receipt.model_validate_json(payload)
        except ValueError as exc:
            self.bad_receipts += 1
            log.warning("hub %s ignores an invalid receipt: %s", self.hub_id, exc)
            return
        if receipt.hub_id != self.hub_id:
            self.bad_receipts += 1
            log.warning("hub %s ignores a receipt for hub %s", self.hub_id, receipt.hub_id)
            return
        failpoint("receipt.received")
        self.outbox.apply_receipt(
            [*receipt.stored, *receipt.duplicate],
            [(r.idempotency_key, r.reason) for r in receipt.rejected],
        )
        self.receipts += 1
        if receipt.rejected:
            log.warning(
                "hub %s: ingest rejected %d reading(s) (%s); kept in the outbox's rejected table",
                self.hub_id,
                len(receipt.rejected),
                ", ".join(sorted({r.reason for r in receipt.rejected})),
            )

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
            software_version=self.software_version,
            uptime_s=round(time.monotonic() - self._started_at, 1),
            outbox_depth=self.outbox.depth(),
            outbox_awaiting_receipt=self.outbox.awaiting_receipt(),
            outbox_rejected=self.outbox.rejected_count(),
            outbox_oldest_age_s=self.outbox.oldest_age_s(),
            last_publish_at=self.last_publish_at,
            publish_errors=self.errors,
            last_publish_error=self.last_error,
            **extra,  # type: ignore[arg-type]
        )

    def publish_status(self) -> None:
        """Publish the status now, or, while the previous status message is still not
        acknowledged, as soon as it is (never two outstanding: see max_unacked_messages)."""
        with self._status_lock:
            previous = self._status_info
            if previous is not None and not previous.is_published():
                self._status_wanted = True
                return
            self._status_wanted = False
            self._status_info = self._client.publish(
                topic_status(self.hub_id), self.status().model_dump_json(), qos=1, retain=True
            )

    def publish_result(self, result: CommandResult) -> mqtt.MQTTMessageInfo:
        """Publish a command's result (QoS 1, not retained). Results are rare (one per
        command), so they go outside the reading window; the caller waits for the PUBACK
        and publishes again after a reconnect until it comes."""
        return self._client.publish(
            topic_results(self.hub_id), result.model_dump_json(exclude_none=True), qos=1
        )

    def _publish_status_if_due(self) -> None:
        now = time.monotonic()
        if self._connected and now >= self._next_status:
            self._next_status = now + self.status_interval_s
            self.publish_status()
        elif self._connected and self._status_wanted:
            self.publish_status()  # one was held back behind an unacknowledged one

    def _reap_acknowledged(self) -> None:
        done = [mid for mid, (info, _) in self._in_flight.items() if info.is_published()]
        if not done:
            return
        failpoint("puback.received")
        seqs = [seq for mid in done for seq in self._in_flight[mid][1]]
        self.outbox.mark_sent(seqs, self.receipt_timeout_s, self.receipt_timeout_max_s)
        # Only now: if marking failed, the entries stay in flight and the next pass
        # retries marking them instead of publishing them again.
        for mid in done:
            del self._in_flight[mid]
        self.published_readings += len(seqs)
        self.last_publish_at = datetime.now(UTC)

    def _run(self) -> None:
        backoff = ERROR_BACKOFF_START_S
        while True:
            try:
                if self._pass():
                    return
            except Exception as exc:  # the loop must outlive any one failure (disk full)
                self.errors += 1
                self.consecutive_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:512]
                log.exception(
                    "hub %s: publishing failed (%d in a row, %d in all); retry in %.1f s",
                    self.hub_id,
                    self.consecutive_errors,
                    self.errors,
                    backoff,
                )
                try:
                    # The status tells the backend about the failures while they last.
                    self._publish_status_if_due()
                except Exception:
                    log.exception("hub %s could not publish its status", self.hub_id)
                with self._wake:
                    self._wake.wait_for(lambda: self._stop_deadline is not None, timeout=backoff)
                backoff = min(ERROR_BACKOFF_MAX_S, backoff * 2)
                deadline = self._stop_deadline
                if deadline is not None and (not self._connected or time.monotonic() >= deadline):
                    return
                continue
            self._last_pass = time.monotonic()
            if self.consecutive_errors:
                log.info(
                    "hub %s: publishing works again after %d failure(s)",
                    self.hub_id,
                    self.consecutive_errors,
                )
                self.consecutive_errors = 0
                backoff = ERROR_BACKOFF_START_S

    def _pass(self) -> bool:
        """One pass of the publishing loop; True when it is done (stopping, drained)."""
        self._reap_acknowledged()
        now = time.monotonic()
        if self._stop_deadline is not None and (
            not self._in_flight or not self._connected or now >= self._stop_deadline
        ):
            return True
        rate = self.max_readings_per_s
        self._tokens = min(self._bucket, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        self._publish_status_if_due()
        entries = []
        ready = (
            self._stop_deadline is None
            and self._connected
            and len(self._in_flight) < self._reading_window
            and self._tokens >= 1
        )
        if ready:
            sending = {seq for _, seqs in self._in_flight.values() for seq in seqs}
            limit = min(self.readings_per_message, int(self._tokens))
            entries = self.outbox.pending(limit, exclude=sending)
        if not entries:
            # Until the next token (or a kick, a PUBACK, a stop), at most 0.2 s.
            refill_s = (1 - self._tokens) / rate if self._tokens < 1 else 0.2
            with self._wake:
                self._wake.wait(timeout=min(0.2, max(0.01, refill_s)))
            return False
        body = (
            f'{{"schema_version":{SCHEMA_VERSION},"hub_id":'
            + json.dumps(self.hub_id)
            + ',"readings":['
            + ",".join(e.payload for e in entries)
            + "]}"
        )
        info = self._client.publish(topic_readings(self.hub_id), body, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.error("publish failed: %s", mqtt.error_string(info.rc))
            return False
        # With NO_CONN paho keeps the message and sends it on reconnect.
        self._in_flight[info.mid] = (info, [e.seq for e in entries])
        failpoint("publish.sent")
        self._tokens -= len(entries)
        return False

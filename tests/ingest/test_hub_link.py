"""The hub link: what the database queues for a hub reaches it over the real broker,
in order, once the transaction commits, and nothing is lost while the broker is away."""

from __future__ import annotations

import json
import queue
import time
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

from hemhub.contract import AllowedDevice, DeviceProfile, HubConfig, topic_commands, topic_config
from hemhub.settings import MqttTarget
from ingest import registry
from ingest.hub_link import HubLink, enqueue, enqueue_sync
from ingest.migrations import migrate
from tests.factories import unique_hub_id


def _subscriber(mqtt_url: str, *topics: str) -> tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]:
    target = MqttTarget(mqtt_url)
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: got.put(m)
    client.connect(target.host, target.port)
    for topic in topics:
        client.subscribe(topic, qos=1)
    client.loop_start()
    time.sleep(0.3)
    return client, got


def _clear_retained(mqtt_url: str, topic: str) -> None:
    client, _ = _subscriber(mqtt_url)
    client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def _config(hub: str, version: int) -> HubConfig:
    return HubConfig(
        hub_id=hub,
        version=version,
        issued_at=datetime.now(UTC),
        devices=[AllowedDevice(address="C0:FF:EE:00:00:01", profile=DeviceProfile.GLUCOSE)],
    )


def _hub(database_url: str) -> str:
    hub = unique_hub_id("link")
    with psycopg.connect(database_url) as conn:
        registry.ensure_tenant(conn, "region", "Region")
        registry.register_hub(conn, hub, "region")
    return hub


def test_queued_configuration_reaches_the_hub_retained_in_order(
    database_url: str, mqtt_url: str, hub_link: HubLink
) -> None:
    hub = _hub(database_url)
    client, got = _subscriber(mqtt_url, topic_config(hub))
    try:
        with psycopg.connect(database_url) as conn:
            for version in (1, 2, 3):
                enqueue_sync(conn, hub, "config", _config(hub, version), retain=True)
        versions = [json.loads(got.get(timeout=10).payload)["version"] for _ in range(3)]
        assert versions == [1, 2, 3]
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT published_at IS NOT NULL, attempts FROM hub_outbound WHERE hub_id = %s",
                (hub,),
            ).fetchall()
        assert rows == [(True, 1)] * 3
        # Retained: a hub that connects later gets the newest version at once.
        late, late_got = _subscriber(mqtt_url, topic_config(hub))
        retained = late_got.get(timeout=5)
        assert retained.retain and HubConfig.model_validate_json(retained.payload).version == 3
        late.loop_stop()
        late.disconnect()
    finally:
        client.loop_stop()
        client.disconnect()
        _clear_retained(mqtt_url, topic_config(hub))


def test_a_rolled_back_change_tells_the_hub_nothing(
    database_url: str, mqtt_url: str, hub_link: HubLink
) -> None:
    hub = _hub(database_url)
    client, got = _subscriber(mqtt_url, topic_commands(hub))
    try:
        with psycopg.connect(database_url) as conn:
            with pytest.raises(RuntimeError), conn.transaction():
                enqueue_sync(conn, hub, "commands", _config(hub, 1), retain=False)
                raise RuntimeError("the change failed")
            enqueue_sync(conn, hub, "commands", _config(hub, 2), retain=False)
        message = got.get(timeout=10)
        assert json.loads(message.payload)["version"] == 2 and not message.retain
        with pytest.raises(queue.Empty):
            got.get(timeout=1.5)
    finally:
        client.loop_stop()
        client.disconnect()


async def test_async_enqueue_and_unknown_hubs_or_kinds_are_refused(
    database_url: str, hub_link: HubLink
) -> None:
    hub = _hub(database_url)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        row_id = await enqueue(conn, hub, "config", _config(hub, 1), retain=True)
        assert row_id >= 1
        with pytest.raises(ValueError, match="no topic kind"):
            await enqueue(conn, hub, "readings", _config(hub, 1), retain=False)  # type: ignore[arg-type]
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            await enqueue(conn, "no-such-hub", "config", _config(hub, 1), retain=True)


def test_nothing_is_lost_while_the_broker_is_away(database_url: str, mqtt_url: str) -> None:
    migrate(database_url)
    hub = _hub(database_url)
    with psycopg.connect(database_url) as conn:
        enqueue_sync(conn, hub, "config", _config(hub, 1), retain=True)
    away = HubLink(database_url, "mqtt://127.0.0.1:9", poll_s=0.2).start()
    try:
        time.sleep(1.5)
        with psycopg.connect(database_url) as conn:
            pending: Any = conn.execute(
                "SELECT count(*) FROM hub_outbound WHERE published_at IS NULL"
            ).fetchone()
        assert pending == (1,)
    finally:
        away.stop()
    client, got = _subscriber(mqtt_url, topic_config(hub))
    link = HubLink(database_url, mqtt_url, poll_s=0.2).start()
    try:
        assert HubConfig.model_validate_json(got.get(timeout=10).payload).version == 1
        # Stamped published once the PUBACK came (just after the hub got it).
        deadline = time.monotonic() + 5
        while link.published < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        with psycopg.connect(database_url) as conn:
            stamped = conn.execute(
                "SELECT published_at IS NOT NULL, attempts FROM hub_outbound"
            ).fetchall()
        assert stamped == [(True, 1)]
    finally:
        link.stop()
        client.loop_stop()
        client.disconnect()
        _clear_retained(mqtt_url, topic_config(hub))

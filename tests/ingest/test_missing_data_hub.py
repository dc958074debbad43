"""Missing data names the hub (issue 11): a hub that lost power leaves only its last will,
which lists no devices; the missing-data alert still says "hub H offline since T",
from the hub that last reported the device, not "not on any hub's allow-list"."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hemhub.contract import (
    DeviceHealth,
    DeviceProfile,
    HubStatus,
    topic_readings,
    topic_status,
)
from hemhub.settings import MqttTarget
from ingest.alerts import _fmt_time
from ingest.schedule import run_scheduled_evaluation, set_schedule
from tests.factories import batch, bp_reading, unique_hub_id
from tests.ingest.factories import alerts_of, seeded_device
from tests.ingest.test_worker import Running, count, start_worker, wait_for

__all__ = ["start_worker"]  # the fixture, imported for this module's tests


def hub_client(mqtt_url: str, hub: str) -> mqtt.Client:
    """A hub's MQTT session as the gateway opens it: a retained `offline` last will."""
    t = MqttTarget(mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"{hub}-{uuid.uuid4().hex[:6]}",
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    will = HubStatus(hub_id=hub, online=False)
    client.will_set(topic_status(hub), will.model_dump_json(), qos=1, retain=True)
    client.connect(t.host, t.port, keepalive=30)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, payload: str, retain: bool = False) -> None:
    info = client.publish(topic, payload, qos=1, retain=retain)
    info.wait_for_publish(timeout=10)
    assert info.is_published()


def test_last_will_gives_hub_offline_since_in_the_missing_data_alert(
    db: psycopg.Connection[Any],
    database_url: str,
    mqtt_url: str,
    start_worker: Callable[..., Running],
) -> None:
    hub = unique_hub_id("will")
    now = datetime.now(UTC).replace(microsecond=0)
    identity, _, patient = seeded_device(
        db, serial=hub, assigned_from=now - timedelta(days=10), hub_id=hub
    )
    set_schedule(
        db,
        patient,
        "blood_pressure",
        timedelta(days=1),
        created_by="nurse",
        starts_at=now - timedelta(days=10),
    )
    start_worker(database_url, topics=[topic_readings(hub), topic_status(hub)])

    client = hub_client(mqtt_url, hub)
    # online, reporting the cuff, and one reading of it three days ago
    health = DeviceHealth(address=identity.address, profile=DeviceProfile.BLOOD_PRESSURE)
    online = HubStatus(hub_id=hub, online=True, at=now, devices=[health])
    publish(client, topic_status(hub), online.model_dump_json(), retain=True)
    old = bp_reading(125, 80, measured_at=now - timedelta(days=3), dev=identity)
    publish(client, topic_readings(hub), batch(hub, old).model_dump_json())
    wait_for(lambda: count(db, "SELECT count(*) FROM readings") == 1, what="the reading")
    wait_for(
        lambda: count(db, "SELECT count(*) FROM hubs WHERE id = %s AND online", hub) == 1,
        what="the online status",
    )

    # the hub loses power: its connection drops without a DISCONNECT, the broker
    # publishes the last will (online: false, no device list)
    client.loop_stop()
    sock = client.socket()
    assert sock is not None
    sock.close()
    wait_for(
        lambda: count(db, "SELECT count(*) FROM hubs WHERE id = %s AND NOT online", hub) == 1,
        what="the last will stored",
    )
    row = db.execute("SELECT last_status, last_status_at FROM hubs WHERE id = %s", (hub,))
    last_status, went_offline = row.fetchone() or (None, None)
    assert last_status is not None and last_status.get("devices", []) == []

    run_scheduled_evaluation(db, datetime.now(UTC))
    [alert] = [a for a in alerts_of(db, patient) if a["rule"] == "missing_blood_pressure"]
    # the worker's own scheduled pass may have opened it before the hub reported: the
    # current reason is the last one
    reason = alert["last_reason"] or alert["reason"]
    assert f"hub {hub} offline since {_fmt_time(went_offline)}" in reason
    assert "allow-list" not in reason

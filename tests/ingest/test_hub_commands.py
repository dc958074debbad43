"""Hub commands on the backend (ingest/commands.py): a wipe is asked in the caller's
transaction through the hub link's outbox, reaches the hub over the real broker, and
the hub's result is recorded once; nothing else changes a command's status."""

from __future__ import annotations

import asyncio
import json
import queue
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

from hemhub.contract import (
    CommandKind,
    CommandOutcome,
    CommandResult,
    DeviceProfile,
    HubCommand,
    topic_commands,
)
from hemhub.settings import MqttTarget
from ingest import commands, registry
from ingest.hub_link import HubLink
from ingest.migrations import migrate
from ingest.pipeline import store
from tests.factories import device, unique_hub_id


def _seed(database_url: str, address: str = "C0:FF:EE:00:00:0A") -> tuple[str, uuid.UUID]:
    migrate(database_url)
    hub = unique_hub_id("cmd")
    with psycopg.connect(database_url) as conn:
        registry.ensure_tenant(conn, "region", "Region")
        registry.register_hub(conn, hub, "region")
        device_id = registry.ensure_device(conn, device(serial="GL-1", address=address))
    return hub, device_id


def _result(hub: str, command_id: uuid.UUID, **kw: Any) -> CommandResult:
    fields: dict[str, Any] = {
        "hub_id": hub,
        "command_id": str(command_id),
        "kind": CommandKind.WIPE_DEVICE,
        "outcome": CommandOutcome.WIPED,
        "address": "C0:FF:EE:00:00:0A",
        "bond_removed": True,
        "records_before": 3,
        "finished_at": datetime.now(UTC),
    }
    fields.update(kw)
    return CommandResult(**fields)


async def test_device_wipe_is_queued_in_the_callers_transaction(database_url: str) -> None:
    hub, device_id = _seed(database_url)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        # Rolled back: neither the command nor its message survives.
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await commands.request_device_wipe(
                    conn,
                    hub_id=hub,
                    device_id=device_id,
                    requested_by="hmc@region",
                    profile=DeviceProfile.GLUCOSE,
                )
                raise RuntimeError("the caller's change failed")
        async with conn.transaction():
            command_id = await commands.request_device_wipe(
                conn,
                hub_id=hub,
                device_id=device_id,
                requested_by="hmc@region",
                profile=DeviceProfile.GLUCOSE,
            )
        cur = await conn.execute("SELECT topic_kind, payload, retain FROM hub_outbound")
        [(kind, payload, retain)] = await cur.fetchall()
        assert (kind, retain) == ("commands", False)
        sent = HubCommand.model_validate_json(json.dumps(payload))
        assert (sent.command_id, sent.kind, sent.address, sent.profile) == (
            str(command_id),
            CommandKind.WIPE_DEVICE,
            "C0:FF:EE:00:00:0A",
            DeviceProfile.GLUCOSE,
        )
        outcome = await commands.latest_wipe(conn, device_id)
        assert outcome is not None
        assert (outcome.command_id, outcome.status, outcome.requested_by) == (
            command_id,
            "pending",
            "hmc@region",
        )
        assert outcome.published_at is None and outcome.finished_at is None


async def test_the_profile_is_looked_up_or_the_request_refused(database_url: str) -> None:
    hub, device_id = _seed(database_url)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        with pytest.raises(commands.CommandError, match=r"profile .* is not known"):
            await commands.request_device_wipe(
                conn, hub_id=hub, device_id=device_id, requested_by="hmc@region"
            )
        with pytest.raises(commands.CommandError, match="unknown hub"):
            await commands.request_hub_wipe(conn, hub_id="no-such-hub", requested_by="hmc")
        with pytest.raises(commands.CommandError, match="unknown device"):
            await commands.request_device_wipe(
                conn, hub_id=hub, device_id=uuid.uuid4(), requested_by="hmc@region"
            )
        # The hub reported the device as a glucose meter in its status.
        await conn.execute(
            "INSERT INTO device_last_hub (address, hub_id, profile, reported_at)"
            " VALUES ('C0:FF:EE:00:00:0A', %s, 'glucose', now())",
            (hub,),
        )
        command_id = await commands.request_device_wipe(
            conn, hub_id=hub, device_id=device_id, requested_by="hmc@region"
        )
        got = await commands.get_command(conn, command_id)
        assert got is not None and got.profile == "glucose"
        cur = await conn.execute("SELECT count(*) FROM hub_commands")
        assert await cur.fetchone() == (1,)


async def test_a_result_is_recorded_once_and_only_for_its_hub(database_url: str) -> None:
    hub, device_id = _seed(database_url)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        wipe = await commands.request_device_wipe(
            conn,
            hub_id=hub,
            device_id=device_id,
            requested_by="hmc@region",
            profile=DeviceProfile.GLUCOSE,
        )
        hub_wipe = await commands.request_hub_wipe(conn, hub_id=hub, requested_by="hmc@region")
    with psycopg.connect(database_url, autocommit=True) as sync:
        other = unique_hub_id("other")
        result = store(
            sync,
            [],
            results=[
                _result(other, wipe),  # another hub cannot close this hub's command
                _result(hub, uuid.uuid4()),  # no such command
                _result(hub, wipe),
                _result(hub, wipe, outcome=CommandOutcome.FAILED, reason="late copy"),
                _result(
                    hub,
                    hub_wipe,
                    kind=CommandKind.WIPE_DEVICE,  # the wrong kind for the id
                ),
            ],
        )
        assert (result.results, result.duplicate_results, result.dead_letters) == (1, 1, 3)
        reasons = {r for (r,) in sync.execute("SELECT reason FROM dead_letters")}
        unknown = {r for r in reasons if r.startswith("result of unknown command ")}
        assert len(unknown) == 1
        assert reasons - unknown == {
            f"result of command {wipe} of another hub",
            f"result says 'wipe_device' for a 'wipe_hub' command {hub_wipe}",
        }
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        outcome = await commands.latest_wipe(conn, device_id)
        assert outcome is not None and outcome.status == "wiped"
        assert outcome.finished_at is not None
        assert outcome.result is not None and outcome.result["records_before"] == 3
        pending = await commands.get_command(conn, hub_wipe)
        assert pending is not None and pending.status == "pending"
        listed = await commands.hub_commands(conn, hub)
        assert {c.command_id for c in listed} == {wipe, hub_wipe}


async def test_an_unsupported_wipe_says_why_and_the_newest_wipe_counts(database_url: str) -> None:
    hub, device_id = _seed(database_url)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        first = await commands.request_device_wipe(
            conn,
            hub_id=hub,
            device_id=device_id,
            requested_by="hmc@region",
            profile=DeviceProfile.BLOOD_PRESSURE,
        )
        with psycopg.connect(database_url, autocommit=True) as sync:
            why = "the cuff offers no delete of its stored measurements"
            reply = _result(hub, first, outcome=CommandOutcome.UNSUPPORTED, reason=why)
            assert commands.record_result(sync, reply) == "recorded"
        outcome = await commands.latest_wipe(conn, device_id)
        assert outcome is not None and (outcome.status, outcome.reason) == ("unsupported", why)
        second = await commands.request_device_wipe(
            conn,
            hub_id=hub,
            device_id=device_id,
            requested_by="hmc@region",
            profile=DeviceProfile.BLOOD_PRESSURE,
        )
        outcome = await commands.latest_wipe(conn, device_id)
        assert outcome is not None and (outcome.command_id, outcome.status) == (second, "pending")


def test_the_command_reaches_the_hub_and_is_stamped_published(
    database_url: str, mqtt_url: str, hub_link: HubLink
) -> None:
    hub, device_id = _seed(database_url)
    target = MqttTarget(mqtt_url)
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: got.put(m)
    client.connect(target.host, target.port)
    client.subscribe(topic_commands(hub), qos=1)
    client.loop_start()
    try:
        time.sleep(0.3)

        async def ask() -> uuid.UUID:
            async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as c:
                return await commands.request_device_wipe(
                    c,
                    hub_id=hub,
                    device_id=device_id,
                    requested_by="hmc@region",
                    profile=DeviceProfile.DISPENSER,
                )

        command_id = asyncio.run(ask())
        msg = got.get(timeout=15)
        assert not msg.retain
        command = HubCommand.model_validate_json(msg.payload)
        assert (command.command_id, command.hub_id) == (str(command_id), hub)
        deadline = time.monotonic() + 10
        with psycopg.connect(database_url, autocommit=True) as conn:
            while True:
                row = conn.execute(
                    "SELECT published_at FROM hub_commands WHERE id = %s", (command_id,)
                ).fetchone()
                if (row is not None and row[0] is not None) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        assert row is not None and row[0] is not None
    finally:
        client.loop_stop()
        client.disconnect()

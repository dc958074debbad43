"""Commands to a hub (docs/gateway.md, "Commands"): a device wipe asked by the backend
travels over the real broker, the simulated meter's memory is really emptied and the
bond removed, and ingest stores the result; a cuff's wipe is unsupported, saying why;
a hub wipe erases the outbox, bonds, configuration and credentials; each command id
runs once, also across a restart."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.glucose_meter import SimulatedGlucoseMeter
from device_drivers.simulation.memory import DeviceMemory
from device_drivers.simulation.radio import SimulatedRadio
from gateway.commands import CommandBook, Ignore, Repeat, Run
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from hemhub.contract import (
    AllowedDevice,
    CommandKind,
    CommandOutcome,
    DeviceIdentity,
    DeviceProfile,
    HubCommand,
    HubConfig,
    topic_config,
    topic_readings,
    topic_results,
    topic_status,
)
from hemhub.embedded import free_port
from ingest import commands, registry
from ingest.hub_link import HubLink, enqueue_sync
from ingest.worker import IngestWorker
from tests.factories import unique_hub_id
from tests.gateway.test_provisioning import publish_retained
from tests.mqtt_helpers import clear_retained_status

pytestmark = pytest.mark.timeout(120)

METER = "C4:70:00:00:00:01"
CUFF = "C0:FF:EE:00:07:01"


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {check.__name__}"
        await asyncio.sleep(0.1)


def _command(hub: str, kind: CommandKind, **fields: object) -> HubCommand:
    return HubCommand(
        hub_id=hub,
        command_id=str(uuid.uuid4()),
        issued_at=datetime.now(UTC),
        kind=kind,
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def ingest_of(database_url: str, mqtt_url: str) -> Iterator[Callable[[str], IngestWorker]]:
    """Starts an ingest worker (in a thread) for a hub's readings, status and results."""
    running: list[tuple[IngestWorker, threading.Thread]] = []

    def start(hub: str) -> IngestWorker:
        worker = IngestWorker(
            database_url,
            mqtt_url,
            client_id=f"ingest-{hub}",
            topics=(topic_readings(hub), topic_status(hub), topic_results(hub)),
        )
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        assert worker.ready.wait(10), "ingest worker did not subscribe"
        running.append((worker, thread))
        return worker

    yield start
    for worker, thread in running:
        worker.stop()
        thread.join(timeout=20)


async def test_a_wipe_asked_by_the_backend_empties_the_meter_and_removes_its_bond(
    database_url: str,
    mqtt_url: str,
    hub_link: HubLink,
    ingest_of: Callable[[str], IngestWorker],
    tmp_path: Path,
) -> None:
    hub = unique_hub_id("wipe")
    with psycopg.connect(database_url) as conn:
        registry.ensure_tenant(conn, "region", "Region")
        registry.register_hub(conn, hub, "region")
        device_id = registry.ensure_device(
            conn, DeviceIdentity(address=METER, manufacturer="Sim", serial="GLM-E2E")
        )
    ingest_of(hub)
    try:
        async with SimulatedRadio() as radio:
            meter = SimulatedGlucoseMeter(
                radio, address=METER, serial="GLM-E2E", seed=1, bond_required=True
            )
            memory = DeviceMemory(tmp_path / "meter.json")
            memory.attach(meter)
            meter.on_produced = lambda record: memory.remember(record["raw_hex"])
            await meter.start()
            config = GatewayConfig(
                hub_id=hub,
                mqtt_url=mqtt_url,
                data_dir=tmp_path / "hub",
                devices=[AllowedDevice(address=METER, profile=DeviceProfile.GLUCOSE, bond=True)],
                device_wipe_wait_s=60.0,
            )
            gateway = HubGateway(config, radio.bleak_backends())
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))

            await meter.measure()

            async def read_and_bonded() -> bool:
                return gateway.devices[METER].readings == 1 and await radio.is_bonded(METER)

            await eventually(read_and_bonded)
            # The resident measures twice more, out of the hub's range: the meter keeps them.
            await meter.set_in_range(False)
            await meter.measure()
            await meter.measure()
            assert len(DeviceMemory(memory.path).raws) == 2

            # The meter is returned: the backend takes it off the allow-list (the hub
            # unbonds it) and asks for the wipe, both through the hub link.
            with psycopg.connect(database_url) as conn:
                empty = HubConfig(hub_id=hub, version=1, issued_at=datetime.now(UTC))
                enqueue_sync(conn, hub, "config", empty, retain=True)
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                async with conn.transaction():
                    command_id = await commands.request_device_wipe(
                        conn,
                        hub_id=hub,
                        device_id=device_id,
                        requested_by="hmc@region",
                        profile=DeviceProfile.GLUCOSE,
                    )

                async def hub_waits_for_the_meter() -> bool:
                    unfinished = gateway.commands.unfinished()
                    return [c.command_id for c in unfinished] == [str(command_id)] and (
                        METER not in gateway.devices and not await radio.is_bonded(METER)
                    )

                await eventually(hub_waits_for_the_meter)
                await meter.set_in_range(True)  # brought near the hub

                async def result_stored() -> bool:
                    outcome = await commands.latest_wipe(conn, device_id)
                    return outcome is not None and outcome.status != "pending"

                await eventually(result_stored, within_s=60)
                outcome = await commands.latest_wipe(conn, device_id)
            assert outcome is not None
            assert (outcome.command_id, outcome.status) == (command_id, "wiped"), outcome.reason
            assert outcome.published_at is not None and outcome.finished_at is not None
            assert outcome.result is not None
            assert (outcome.result["records_before"], outcome.result["bond_removed"]) == (2, True)
            # Proven on the device: its log and its flash are empty, and the bond is gone.
            assert meter.records == []
            saved = DeviceMemory(memory.path)
            assert saved.raws == [] and saved.device is not None and saved.device["records"] == []
            assert not await radio.is_bonded(METER)
            assert bytes.fromhex("0201") in meter.racp_requests
            stop.set()
            await task
    finally:
        publish_retained(mqtt_url, topic_config(hub), b"")
        clear_retained_status(mqtt_url, hub)


async def test_a_cuff_wipe_is_unsupported_saying_why_and_its_bond_is_removed(
    mqtt_url: str, tmp_path: Path
) -> None:
    hub = unique_hub_id("cuff")
    config = GatewayConfig(
        hub_id=hub,
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
        devices=[AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE, bond=True)],
    )
    try:
        async with SimulatedRadio() as radio:
            cuff = SimulatedCuff(radio, address=CUFF, serial="BP-CMD", seed=3)
            await cuff.start()
            gateway = HubGateway(config, radio.bleak_backends())
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            await cuff.measure()

            async def bonded() -> bool:
                return gateway.devices[CUFF].readings == 1 and await radio.is_bonded(CUFF)

            await eventually(bonded)
            command = _command(
                hub, CommandKind.WIPE_DEVICE, address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE
            )
            result = await gateway.carry_out(command)
            assert result.outcome is CommandOutcome.UNSUPPORTED
            assert result.reason is not None
            assert "Blood Pressure Service defines no way to delete" in result.reason
            assert result.bond_removed is True and not await radio.is_bonded(CUFF)
            # Reported to the broker, so not sent again on the next connect.
            assert gateway.commands.unreported() == []
            stop.set()
            await task
    finally:
        clear_retained_status(mqtt_url, hub)


async def test_a_hub_wipe_erases_outbox_bonds_configuration_and_credentials(
    tmp_path: Path,
) -> None:
    hub = unique_hub_id("hubwipe")
    password = tmp_path / "broker-password"
    password.write_text("secret\n")
    password.chmod(0o600)
    data = tmp_path / "hub"
    # No broker answers: the reading stays in the outbox, the report cannot go out.
    config = GatewayConfig(
        hub_id=hub,
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        mqtt_username=hub,
        mqtt_password_file=password,
        data_dir=data,
        devices=[AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE, bond=True)],
        hub_wipe_drain_s=0.5,
    )
    async with SimulatedRadio() as radio:
        cuff = SimulatedCuff(radio, address=CUFF, serial="BP-HUB", seed=4)
        await cuff.start()
        gateway = HubGateway(config, radio.bleak_backends())
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        record = await cuff.measure()

        async def stored_and_bonded() -> bool:
            return gateway.outbox.depth() == 1 and await radio.is_bonded(CUFF)

        await eventually(stored_and_bonded)
        gateway.provisioning.accept(
            HubConfig(
                hub_id=hub,
                version=3,
                issued_at=datetime.now(UTC),
                devices=[AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE)],
            )
            .model_dump_json()
            .encode()
        )
        assert (data / "hub-config.json").exists()

        result = await gateway.carry_out(_command(hub, CommandKind.WIPE_HUB))
        await asyncio.wait_for(task, 30)  # the wiped hub stops by itself

        assert result.outcome is CommandOutcome.WIPED, result.reason
        assert result.reason is not None
        assert "(1 undelivered reading(s) discarded), 1 bond(s) removed" in result.reason
        assert stop.is_set() and gateway.wiped
        assert not await radio.is_bonded(CUFF)
        assert await radio.bonded_addresses() == []
        assert not password.exists()
        assert not (data / "hub-config.json").exists()
        assert not (data / "commands.json").exists()
        with sqlite3.connect(data / "outbox.sqlite3") as db:
            for table in ("outbox", "delivered", "rejected", "device_sequences"):
                assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        raw = bytes.fromhex(record["raw_hex"])
        for path in data.glob("outbox.sqlite3*"):
            assert raw not in path.read_bytes(), path  # not left in free pages either


def test_a_command_runs_once_and_an_unfinished_one_again_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "commands.json"
    book = CommandBook(path, "hub-1")
    command = _command("hub-1", CommandKind.FORGET_DEVICE, address="c0:ff:ee:00:00:01")
    payload = command.model_dump_json().encode()

    assert book.receive(payload) == Run(command)
    assert book.receive(payload) == Ignore(f"command {command.command_id} is already running")
    # The hub died while running it: it runs again after the restart, once.
    again = CommandBook(path, "hub-1")
    assert again.unfinished() == [command]
    result = again.finish(command, CommandOutcome.WIPED, None, bond_removed=True)
    assert again.unreported() == [result]
    assert again.receive(payload) == Repeat(result)  # answered with the first result
    again.reported(command.command_id)
    assert CommandBook(path, "hub-1").unreported() == []
    assert CommandBook(path, "hub-1").unfinished() == []
    other = _command("hub-2", CommandKind.WIPE_HUB)
    assert book.receive(other.model_dump_json().encode()) == Ignore(
        f"command {other.command_id} is for hub 'hub-2'"
    )
    bad = json.dumps({"hub_id": "hub-1", "kind": "wipe_hub"}).encode()
    decision = book.receive(bad)
    assert isinstance(decision, Ignore) and decision.reason.startswith("invalid command:")


async def test_a_command_the_hub_died_in_runs_at_its_next_start(
    mqtt_url: str, tmp_path: Path
) -> None:
    hub = unique_hub_id("restart")
    command = _command(hub, CommandKind.FORGET_DEVICE, address=CUFF)
    # What a hub killed mid-command left: the command recorded, no result.
    assert CommandBook(tmp_path / "commands.json", hub).receive(
        command.model_dump_json().encode()
    ) == Run(command)
    config = GatewayConfig(hub_id=hub, mqtt_url=mqtt_url, data_dir=tmp_path, devices=[])
    try:
        async with SimulatedRadio() as radio:
            gateway = HubGateway(config, radio.bleak_backends())
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))

            async def reported() -> bool:
                book = CommandBook(tmp_path / "commands.json", hub)
                return book.unfinished() == [] and book.unreported() == []

            await eventually(reported)
            again = CommandBook(tmp_path / "commands.json", hub).receive(
                command.model_dump_json().encode()
            )
            assert isinstance(again, Repeat) and again.result.outcome is CommandOutcome.WIPED
            assert again.result.bond_removed is True
            stop.set()
            await task
    finally:
        clear_retained_status(mqtt_url, hub)

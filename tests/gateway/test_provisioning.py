"""The backend provisions a hub over its retained configuration topic; the hub reads only
allowed devices, unbonds removed ones, and remembers its list across a reboot offline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from bleak.exc import BleakError

from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.radio import SimulatedRadio
from gateway import hub as hub_module
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from gateway.provisioning import ConfigRejected, ProvisioningStore
from hemhub.contract import AllowedDevice, DeviceProfile, HubConfig, topic_config
from hemhub.embedded import free_port
from hemhub.settings import MqttTarget
from tests.factories import unique_hub_id
from tests.mqtt_helpers import clear_retained_status

MINE = "C0:FF:EE:00:02:01"
NEIGHBOUR = "C0:FF:EE:00:02:02"


def _allowed(address: str, *, bond: bool = False) -> AllowedDevice:
    return AllowedDevice(address=address, profile=DeviceProfile.BLOOD_PRESSURE, bond=bond)


def _config(hub: str, version: int, *devices: AllowedDevice) -> HubConfig:
    return HubConfig(
        hub_id=hub, version=version, issued_at=datetime.now(UTC), devices=list(devices)
    )


def publish_retained(mqtt_url: str, topic: str, payload: bytes) -> None:
    target = MqttTarget(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(target.host, target.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {check.__name__}"
        await asyncio.sleep(0.1)


async def test_device_outside_the_allow_list_is_never_bonded_or_read(
    tmp_path: Path, mqtt_url: str
) -> None:
    hub = unique_hub_id()
    config = GatewayConfig(
        hub_id=hub, mqtt_url=mqtt_url, data_dir=tmp_path, devices=[_allowed(MINE, bond=True)]
    )
    async with SimulatedRadio() as radio:
        mine = SimulatedCuff(radio, address=MINE, serial="MINE-1", seed=1)
        neighbour = SimulatedCuff(radio, address=NEIGHBOUR, serial="NEIGHBOUR-1", seed=2)
        connected: list[str] = []
        for cuff in (mine, neighbour):
            await cuff.start()
            cuff.device.on("connection", lambda _c, a=cuff.address: connected.append(a))
        gateway = HubGateway(config, radio.bleak_backends())
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await mine.measure()
        await neighbour.measure()

        async def mine_delivered() -> bool:
            return gateway.devices[MINE].readings == 1

        await eventually(mine_delivered)
        await asyncio.sleep(1.0)  # the neighbour keeps advertising all this time
        stop.set()
        await task
        assert connected.count(NEIGHBOUR) == 0
        assert not await radio.is_bonded(NEIGHBOUR)
        assert len(neighbour.undelivered) == 1
        assert await radio.is_bonded(MINE)
    clear_retained_status(mqtt_url, hub)


async def test_retained_configuration_is_applied_cached_and_survives_offline_reboot(
    tmp_path: Path, mqtt_url: str
) -> None:
    hub = unique_hub_id()
    base = GatewayConfig(hub_id=hub, mqtt_url=mqtt_url, data_dir=tmp_path, devices=[])
    try:
        publish_retained(
            mqtt_url,
            topic_config(hub),
            _config(hub, 1, _allowed(MINE, bond=True), _allowed(NEIGHBOUR))
            .model_dump_json()
            .encode(),
        )
        async with SimulatedRadio() as radio:
            mine = SimulatedCuff(radio, address=MINE, serial="MINE-1", seed=1)
            other = SimulatedCuff(radio, address=NEIGHBOUR, serial="OTHER-1", seed=2)
            await mine.start()
            await other.start()
            gateway = HubGateway(base, radio.bleak_backends())
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))

            async def v1_applied() -> bool:
                return gateway.provisioning.version == 1 and len(gateway.devices) == 2

            await eventually(v1_applied)
            await mine.measure()
            await other.measure()

            async def both_read() -> bool:
                return all(s.readings == 1 for s in gateway.devices.values())

            await eventually(both_read)
            assert await radio.is_bonded(MINE)

            # Version 2 takes MINE away (returned to the assistive-device center).
            publish_retained(
                mqtt_url,
                topic_config(hub),
                _config(hub, 2, _allowed(NEIGHBOUR)).model_dump_json().encode(),
            )

            async def v2_applied() -> bool:
                return gateway.provisioning.version == 2 and set(gateway.devices) == {NEIGHBOUR}

            await eventually(v2_applied)

            async def unbonded() -> bool:
                return not await radio.is_bonded(MINE)

            await eventually(unbonded)
            await mine.measure()
            await asyncio.sleep(1.0)
            assert len(mine.undelivered) == 1, "a removed device is not read any more"
            stop.set()
            await task

        # Reboot with no network: the cached version 2 is in force.
        offline = base.model_copy(update={"mqtt_url": f"mqtt://127.0.0.1:{free_port()}"})
        async with SimulatedRadio() as radio:
            rebooted = HubGateway(offline, radio.bleak_backends())
            assert rebooted.provisioning.version == 2
            assert set(rebooted.devices) == {NEIGHBOUR}
            rebooted.outbox.close()
    finally:
        publish_retained(mqtt_url, topic_config(hub), b"")
        clear_retained_status(mqtt_url, hub)


def test_store_rejects_foreign_older_and_invalid_configurations(tmp_path: Path) -> None:
    store = ProvisioningStore(tmp_path / "c.json", "hub-1", bootstrap=[_allowed(MINE)])
    assert [d.address for d in store.devices] == [MINE]
    store.accept(_config("hub-1", 3, _allowed(NEIGHBOUR)).model_dump_json().encode())
    for payload, reason in [
        (_config("hub-2", 9).model_dump_json().encode(), "not 'hub-1'"),
        (_config("hub-1", 3).model_dump_json().encode(), "not newer"),
        (b'{"hub_id": "hub-1"}', "invalid"),
    ]:
        try:
            store.accept(payload)
        except ConfigRejected as exc:
            assert reason in str(exc)
        else:
            raise AssertionError(f"accepted {payload!r}")
    again = ProvisioningStore(tmp_path / "c.json", "hub-1", bootstrap=[])
    assert again.version == 3 and [d.address for d in again.devices] == [NEIGHBOUR]
    (tmp_path / "c.json").write_text("{ damaged")
    damaged = ProvisioningStore(tmp_path / "c.json", "hub-1", bootstrap=[_allowed(MINE)])
    assert damaged.version is None and [d.address for d in damaged.devices] == [MINE]


def _flaky_unpair(
    radio: SimulatedRadio, monkeypatch: pytest.MonkeyPatch, failures: int | None
) -> list[str]:
    """Make the radio's unpair fail `failures` times (None: always), like BlueZ when the
    adapter is busy; returns the addresses of every attempt."""
    client = radio.bleak_backends().client
    assert client is not None
    real = client.unpair
    attempts: list[str] = []

    async def unpair(self: Any) -> None:
        attempts.append(self.address)
        if failures is None or len(attempts) <= failures:
            raise BleakError("org.bluez.Error.InProgress: Operation already in progress")
        await real(self)

    monkeypatch.setattr(client, "unpair", unpair)
    return attempts


async def _read_once(radio: SimulatedRadio, gateway: HubGateway, cuff: SimulatedCuff) -> None:
    await cuff.measure()

    async def read() -> bool:
        return gateway.devices[MINE].readings >= 1 and await radio.is_bonded(MINE)

    await eventually(read)


def _pending_on_disk(data_dir: Path) -> list[str]:
    path = data_dir / "pending-unbonds.json"
    return list(json.loads(path.read_text())) if path.exists() else []


async def test_failed_unbond_is_recorded_before_the_config_and_retried(
    tmp_path: Path, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "UNBOND_RETRY_START_S", 0.2)
    hub = unique_hub_id()
    config = GatewayConfig(
        hub_id=hub, mqtt_url=mqtt_url, data_dir=tmp_path, devices=[_allowed(MINE, bond=True)]
    )
    try:
        async with SimulatedRadio() as radio:
            cuff = SimulatedCuff(radio, address=MINE, serial="MINE-1", seed=1)
            await cuff.start()
            gateway = HubGateway(config, radio.bleak_backends())
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            await _read_once(radio, gateway, cuff)
            attempts = _flaky_unpair(radio, monkeypatch, failures=2)

            accepted = gateway.provisioning.accept(
                _config(hub, 1, _allowed(NEIGHBOUR)).model_dump_json().encode()
            )
            # Durable before the new list is in force (a crash now still unbonds later).
            assert _pending_on_disk(tmp_path) == [MINE]
            await gateway.apply_config(accepted)

            async def unbonded() -> bool:
                return not await radio.is_bonded(MINE)

            await eventually(unbonded)
            assert attempts == [MINE] * 3, "two failures, retried until it worked"
            assert gateway.provisioning.pending_unbonds == []
            assert _pending_on_disk(tmp_path) == []
            stop.set()
            await task
    finally:
        clear_retained_status(mqtt_url, hub)


async def test_pending_unbond_survives_a_restart_and_is_done_at_start(
    tmp_path: Path, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = unique_hub_id()
    config = GatewayConfig(
        hub_id=hub, mqtt_url=mqtt_url, data_dir=tmp_path, devices=[_allowed(MINE, bond=True)]
    )
    try:
        async with SimulatedRadio() as radio:
            cuff = SimulatedCuff(radio, address=MINE, serial="MINE-1", seed=1)
            await cuff.start()
            gateway = HubGateway(config, radio.bleak_backends())
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            await _read_once(radio, gateway, cuff)
            attempts = _flaky_unpair(radio, monkeypatch, failures=None)  # BlueZ stuck
            accepted = gateway.provisioning.accept(
                _config(hub, 1, _allowed(NEIGHBOUR)).model_dump_json().encode()
            )
            await gateway.apply_config(accepted)

            async def tried() -> bool:
                return len(attempts) >= 1

            await eventually(tried)
            stop.set()
            await task  # the hub stops (or dies) with the bond still there
            assert await radio.is_bonded(MINE)
            assert _pending_on_disk(tmp_path) == [MINE]

            monkeypatch.undo()  # the adapter works again
            restarted = HubGateway(config, radio.bleak_backends())
            assert restarted.provisioning.pending_unbonds == [MINE]
            assert set(restarted.devices) == {NEIGHBOUR}, "the saved list, not the bootstrap"
            stop = asyncio.Event()
            task = asyncio.create_task(restarted.run(stop))

            async def unbonded() -> bool:
                return not await radio.is_bonded(MINE)

            await eventually(unbonded)
            assert _pending_on_disk(tmp_path) == []
            stop.set()
            await task
    finally:
        clear_retained_status(mqtt_url, hub)


def test_device_back_on_the_list_is_no_longer_pending(tmp_path: Path) -> None:
    store = ProvisioningStore(tmp_path / "c.json", "hub-1", bootstrap=[_allowed(MINE)])
    store.accept(_config("hub-1", 1, _allowed(NEIGHBOUR)).model_dump_json().encode())
    assert store.pending_unbonds == [MINE]
    store.accept(_config("hub-1", 2).model_dump_json().encode())
    assert store.pending_unbonds == [MINE, NEIGHBOUR]
    store.accept(_config("hub-1", 3, _allowed(MINE)).model_dump_json().encode())
    assert store.pending_unbonds == [NEIGHBOUR], "MINE is back: its bond stays"
    again = ProvisioningStore(tmp_path / "c.json", "hub-1", bootstrap=[])
    assert again.pending_unbonds == [NEIGHBOUR]
    again.unbonded(NEIGHBOUR)
    assert ProvisioningStore(tmp_path / "c.json", "hub-1", bootstrap=[]).pending_unbonds == []

"""A gateway on a slot on trial, on the real broker and the simulated radio: it confirms
the slot once broker, outbox, scanner and status are all fine; without a broker its time
runs out, the slot state goes back to the previous slot and the gateway stops (systemd
then restarts it in that slot)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from gateway.update import slots
from gateway.update.slot_state import SlotState
from tests.factories import unique_hub_id
from tests.mqtt_helpers import clear_retained_status


def _on_trial(root: Path, confirm_in_s: float) -> None:
    root.mkdir()
    state = SlotState(
        active="b",
        previous="a",
        trying=True,
        boot_count=1,
        confirm_by=time.time() + confirm_in_s,
        versions={"a": "1.0", "b": "2.0"},
        outcome=("confirming", None),
    )
    (root / "state.json").write_text(json.dumps(state.to_json()))
    (root / "current").symlink_to("b")


def _config(hub: str, mqtt_url: str, tmp: Path) -> GatewayConfig:
    return GatewayConfig(
        hub_id=hub,
        mqtt_url=mqtt_url,
        data_dir=tmp / "data",
        status_interval_s=0.3,
        reconnect_max_s=1,
        min_disk_free_bytes=0,
        min_disk_free_percent=0.0,
        slots_root=tmp / "slots",
    )


@pytest.mark.timeout(60)
async def test_a_healthy_gateway_confirms_its_slot(tmp_path: Path, mqtt_url: str) -> None:
    _on_trial(tmp_path / "slots", confirm_in_s=120)
    hub = unique_hub_id()
    try:
        async with SimulatedRadio() as radio:
            gateway = HubGateway(_config(hub, mqtt_url, tmp_path), radio.bleak_backends())
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                deadline = time.monotonic() + 30
                while slots.load_state(tmp_path / "slots").trying:
                    assert time.monotonic() < deadline, gateway.slot_checks()
                    await asyncio.sleep(0.2)
                assert all(gateway.slot_checks().values())
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        clear_retained_status(mqtt_url, hub)
    state = slots.load_state(tmp_path / "slots")
    assert state.active == "b" and state.confirmed and state.outcome == ("confirmed", None)
    assert state.previous == "a"  # kept for a manual rollback


@pytest.mark.timeout(60)
async def test_without_a_broker_the_slot_reverts_and_the_gateway_stops(tmp_path: Path) -> None:
    _on_trial(tmp_path / "slots", confirm_in_s=3)
    # Nothing listens on port 9 (discard): the broker is never connected.
    config = _config(unique_hub_id(), "mqtt://127.0.0.1:9", tmp_path)
    async with SimulatedRadio() as radio:
        gateway = HubGateway(config, radio.bleak_backends())
        stop = asyncio.Event()
        await asyncio.wait_for(gateway.run(stop), 30)  # returns by itself
        assert gateway.slot_checks()["broker_connected"] is False
    state = slots.load_state(tmp_path / "slots")
    assert state.active == "a" and not state.trying
    assert state.outcome == ("reverted", "not_confirmed")
    assert (tmp_path / "slots" / "current").readlink() == Path("a")

"""One whole life of a home's devices (issue 13, "Tests that must exist", first bullet),
through the fleet API, the hub link, the real broker, ingest, PostgreSQL and the real
gateway on a simulated home, run as `hemhub gateway --simulate` runs them
(`gateway.service.serve_simulated`: a `SimulatedHome` and a `HubGateway` on one
simulated radio), in the test's process so that the resident can take the meter out of
the hub's range:

a resident is created; a cuff, a glucose meter and a hub are assigned to them; their
readings are attributed to them; the devices are returned: the simulated meter's memory
is really emptied and its bond removed (the cuff says it cannot be wiped, and goes back
to stock by a person's override); quarantine, stock; the hub is returned and wipes
itself; all three are reissued to a second resident, whose readings are attributed to
them. Nothing of the first resident is ever shown with the second, nor the other way.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.auth import Role
from device_drivers.simulation.home import SimulatedDevice, SimulatedHome, SimulationScenario
from device_drivers.simulation.memory import DeviceMemory
from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from hemhub.contract import (
    DeviceProfile,
    topic_config,
    topic_readings,
    topic_results,
    topic_status,
)
from ingest import registry
from ingest.hub_link import HubLink
from ingest.migrations import migrate
from ingest.worker import IngestWorker
from tests import simulated_records
from tests.api.helpers import api_client, bearer, make_settings
from tests.factories import unique_hub_id
from tests.gateway.test_provisioning import publish_retained
from tests.mqtt_helpers import clear_retained_status

pytestmark = pytest.mark.timeout(300)

TENANT = "kommun-a"
CUFF, METER = "C0:FF:EE:00:1F:01", "C0:FF:EE:00:1F:02"
USES = 3  # per device and resident


@pytest.fixture
def hub(database_url: str, mqtt_url: str) -> Iterator[str]:
    """A hub id of this test's own, with ingest storing its readings, status and results."""
    migrate(database_url)
    hub_id = unique_hub_id("life")
    worker = IngestWorker(
        database_url,
        mqtt_url,
        client_id=f"ingest-{hub_id}",
        topics=(topic_readings(hub_id), topic_status(hub_id), topic_results(hub_id)),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(10), "ingest worker did not subscribe"
    try:
        yield hub_id
    finally:
        worker.stop()
        thread.join(timeout=20)
        publish_retained(mqtt_url, topic_config(hub_id), b"")
        clear_retained_status(mqtt_url, hub_id)


def scenario() -> SimulationScenario:
    """The home: the test decides when the resident measures (no automatic uses)."""
    return SimulationScenario(
        devices=[
            SimulatedDevice(
                address=CUFF,
                profile=DeviceProfile.BLOOD_PRESSURE,
                serial="LIFE-BP-1",
                scenario="hypertensive",
                seed=1,
                max_uses=0,
                bond=True,
            ),
            SimulatedDevice(
                address=METER,
                profile=DeviceProfile.GLUCOSE,
                serial="LIFE-GLM-1",
                scenario="diabetic",
                seed=2,
                max_uses=0,
                bond=True,
                faults={"bond_required": True},
            ),
        ]
    )


class Gateway:
    """The hub on a simulated home, as `hemhub gateway --simulate` runs it."""

    def __init__(self, radio: SimulatedRadio, home: SimulatedHome, config: GatewayConfig) -> None:
        self.radio, self.home, self.config = radio, home, config
        self.data_dir = config.data_dir
        self.gateway: HubGateway | None = None
        self.task: asyncio.Task[None] | None = None
        self.stop_event = asyncio.Event()

    def start(self) -> None:
        """Power the hub on (again)."""
        self.stop_event = asyncio.Event()
        self.gateway = HubGateway(self.config, self.radio.bleak_backends())
        self.task = asyncio.create_task(self.gateway.run(self.stop_event))

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.stop_event.set()
            await asyncio.wait_for(self.task, 30)

    def alive(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def log(self) -> str:
        return f"hub task: {self.task}"

    def memory(self, address: str) -> DeviceMemory:
        return DeviceMemory(self.data_dir / f"device-{address.replace(':', '')}.json")

    async def resident_measures(self, times: int) -> None:
        """The resident uses each device `times` times. Device clocks count whole seconds,
        so the first use waits for the next one: a reading taken in the second the device
        was assigned could carry a time just before its assignment (not the resident's)."""
        await asyncio.sleep(1.3)
        for _ in range(times):
            await self.home.devices[CUFF].measure()  # type: ignore[attr-defined]
            await self.home.devices[METER].measure()  # type: ignore[attr-defined]
            await asyncio.sleep(1.3)


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, gateway: Gateway, within_s: float = 90
) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"not within {within_s} s: {what}\n{gateway.log}"
        await asyncio.sleep(0.5)


def stored_by_patient(database_url: str) -> dict[str | None, Counter[str]]:
    """patient id (None: no resident) -> raw bytes (hex) of the readings stored."""
    out: dict[str | None, Counter[str]] = {}
    with psycopg.connect(database_url) as conn:
        for patient, raw in conn.execute(
            "SELECT patient_id::text, encode(raw, 'hex') FROM readings"
        ):
            out.setdefault(patient, Counter())[raw] += 1
    return out


def produced_raws(gateway: Gateway) -> set[str]:
    return {raw for c in simulated_records.produced(gateway.data_dir).values() for raw in c}


async def test_one_whole_life(
    hub: str, hub_link: HubLink, database_url: str, mqtt_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url) as conn:
        registry.ensure_tenant(conn, TENANT, "Kommun A")
        first = registry.create_patient(conn, TENANT, "First Resident", programme="diabetes")
        second = registry.create_patient(conn, TENANT, "Second Resident", programme="diabetes")
    settings = make_settings(tmp_path, database_url)
    hmc = bearer(settings, Role.HMC, TENANT, "hmc@a")
    nurse = bearer(settings, Role.NURSE, TENANT, "nurse@a")

    async with SimulatedRadio() as radio, api_client(settings) as api:
        home = SimulatedHome(radio, scenario(), tmp_path / "hub")
        await home.start()
        config = GatewayConfig(
            hub_id=hub,
            mqtt_url=mqtt_url,
            data_dir=tmp_path / "hub",
            devices=home.allow_list(),
            status_interval_s=1.0,
            hub_wipe_drain_s=5.0,
            device_wipe_wait_s=120.0,
        )
        gateway = Gateway(radio, home, config)

        async def call(method: str, path: str, body: Any = None, status: int = 200) -> Any:
            r = await api.request(method, path, headers=hmc, json=body)
            assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
            return r.json()

        # The catalogue and the inventory, as the devices report themselves.
        products = {}
        for kind, model in (("blood_pressure", "BPM-SIM-1"), ("glucose", "GLM-SIM-1")):
            body = {"kind": kind, "manufacturer": "Hemhub Simulated Devices", "model": model}
            made = await call("POST", "/api/v1/products", body | {"quirks": {"bond": True}}, 201)
            products[kind] = made["id"]
        body = {"kind": "hub", "manufacturer": "hemhub", "model": "Hub 1"}
        products["hub"] = (await call("POST", "/api/v1/products", body, 201))["id"]
        devices = {}
        for address, kind, serial in (
            (CUFF, "blood_pressure", "LIFE-BP-1"),
            (METER, "glucose", "LIFE-GLM-1"),
        ):
            body = {"product_id": products[kind], "serial": serial, "address": address}
            devices[address] = (await call("POST", "/api/v1/devices", body, 201))["id"]
        await call("POST", "/api/v1/hubs", {"id": hub, "product_id": products["hub"]}, 201)

        async def give_all_to(patient: Any) -> str:
            since = datetime.now(UTC).isoformat()
            place = {"patient_id": str(patient), "from": since}
            await call("POST", f"/api/v1/hubs/{hub}/place", place)
            for device in devices.values():
                body = {"patient_id": str(patient), "hub_id": hub, "from": since}
                got = await call("POST", f"/api/v1/devices/{device}/assign", body)
                assert got["state"] == "assigned"
            return since

        async def config_in_force() -> bool:
            got = await call("GET", f"/api/v1/hubs/{hub}")
            return bool(got["config_in_force"]) and got["config_version_wanted"] >= 1

        def all_stored_for(patient: Any, raws: set[str]) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                stored = stored_by_patient(database_url)
                return len(raws) == 2 * USES and set(stored.get(str(patient), {})) == raws

            return check

        def wipe_outcomes() -> dict[str, list[Any]]:
            with psycopg.connect(database_url) as conn:
                return dict(
                    conn.execute(
                        "SELECT address, jsonb_build_array(status, result->'bond_removed',"
                        " result->'records_before') FROM hub_commands WHERE kind = 'wipe_device'"
                    ).fetchall()
                )

        try:
            # --- the first resident -------------------------------------------------------
            await give_all_to(first)
            gateway.start()
            await eventually(config_in_force, "the hub confirms its configuration", gateway)
            await gateway.resident_measures(USES)
            first_raws = produced_raws(gateway)
            await eventually(
                all_stored_for(first, first_raws), "the first resident's readings", gateway
            )
            # The resident takes the meter along, out of the hub's range, and measures
            # twice more: the meter holds these.
            meter = home.devices[METER]
            await meter.set_in_range(False)
            for _ in range(2):
                await meter.measure()  # type: ignore[attr-defined]
                await asyncio.sleep(1.3)
            held = produced_raws(gateway) - first_raws
            saved = gateway.memory(METER).device
            assert len(held) == 2 and saved is not None and len(saved["records"]) == 2

            # Returned: each leaves the allow-list, and the hub wipes what it can.
            until = datetime.now(UTC).isoformat()
            for device in devices.values():
                got = await call("POST", f"/api/v1/devices/{device}/return", {"until": until})
                assert got["state"] == "returned" and got["patient_id"] is None

            async def cuff_reported() -> bool:
                return wipe_outcomes().get(CUFF, ["pending"])[0] != "pending"

            await eventually(cuff_reported, "the hub reports the cuff's wipe", gateway)
            assert wipe_outcomes()[METER][0] == "pending"  # the hub waits for the meter
            await meter.set_in_range(True)  # brought back to the HMC, near the hub

            async def meter_reported() -> bool:
                return wipe_outcomes()[METER][0] != "pending"

            await eventually(meter_reported, "the hub reports the meter's wipe", gateway)
            outcomes = wipe_outcomes()
            assert outcomes[METER] == ["wiped", True, 2]
            assert outcomes[CUFF][:2] == ["unsupported", True]
            # Proven on the simulated meter: its log and its flash are empty.
            emptied = gateway.memory(METER)
            assert emptied.raws == [] and emptied.device is not None
            assert emptied.device["records"] == []
            assert not await radio.is_bonded(METER)

            # Quarantine, then stock: the meter on its confirmed wipe, the cuff by override.
            for device in devices.values():
                await call("POST", f"/api/v1/devices/{device}/state", {"to": "quarantine"})
            await call("POST", f"/api/v1/devices/{devices[METER]}/state", {"to": "in_stock"})
            r = await api.post(
                f"/api/v1/devices/{devices[CUFF]}/state", headers=hmc, json={"to": "in_stock"}
            )
            assert r.status_code == 409 and "latest: unsupported" in r.json()["detail"]
            override = {
                "to": "in_stock",
                "override": True,
                "reason": "memory cleared with the maker's tool, checked empty",
            }
            await call("POST", f"/api/v1/devices/{devices[CUFF]}/state", override)

            # The hub comes back too: it wipes itself and stops.
            back = {"until": datetime.now(UTC).isoformat()}
            await call("POST", f"/api/v1/hubs/{hub}/return", back)

            async def hub_stopped() -> bool:
                return not gateway.alive()

            await eventually(hub_stopped, "the wiped hub stops", gateway, within_s=60)
            assert gateway.gateway is not None and gateway.gateway.wiped
            assert not (gateway.data_dir / "hub-config.json").exists()
            await call("POST", f"/api/v1/hubs/{hub}/state", {"to": "quarantine"})
            # It reported its wipe before erasing itself: back to stock without an override.
            await call("POST", f"/api/v1/hubs/{hub}/state", {"to": "in_stock"})

            # --- the second resident ------------------------------------------------------
            second_from = await give_all_to(second)
            gateway.start()
            await eventually(config_in_force, "the hub confirms its new configuration", gateway)
            await gateway.resident_measures(USES)
            second_raws = produced_raws(gateway) - first_raws - held
            await eventually(
                all_stored_for(second, second_raws), "the second resident's readings", gateway
            )
        finally:
            await gateway.stop()
            await home.stop()

        stored = stored_by_patient(database_url)
        assert set(stored[str(first)]) == first_raws
        assert set(stored[str(second)]) == second_raws
        assert not held & {raw for c in stored.values() for raw in c}, "wiped, never stored"

        # What a nurse sees: each resident's readings and nothing of the other's.
        async def observations(patient: Any) -> list[dict[str, Any]]:
            r = await api.get(f"/api/v1/patients/{patient}/observations", headers=nurse)
            assert r.status_code == 200, r.text
            return list(r.json())

        seen_first, seen_second = await observations(first), await observations(second)
        assert {o["raw_hex"] for o in seen_first} == first_raws
        assert {o["raw_hex"] for o in seen_second} == second_raws
        assert all(o["measured_at"] < until for o in seen_first)
        assert all(o["measured_at"] >= second_from for o in seen_second)
        r = await api.get("/api/v1/alerts", headers=nurse)
        assert r.status_code == 200
        first_ids = {o["id"] for o in seen_first}
        for alert in r.json():
            if alert["patient_id"] == str(second):
                assert alert["reading_id"] not in first_ids, "an alert of the first's reading"

        # Every step of the devices' lives is on record, with who and why.
        meter_life = await call("GET", f"/api/v1/devices/{devices[METER]}/history")
        assert [(c["from_state"], c["to_state"]) for c in meter_life] == [
            (None, "in_stock"),
            ("in_stock", "assigned"),
            ("assigned", "returned"),
            ("returned", "quarantine"),
            ("quarantine", "in_stock"),
            ("in_stock", "assigned"),
        ]
        assert meter_life[4]["detail"] == {"wipe": "wiped"}
        assert {c["by_subject"] for c in meter_life} == {"hmc@a"}
        cuff_life = await call("GET", f"/api/v1/devices/{devices[CUFF]}/history")
        assert cuff_life[4]["detail"] == {"override": True, "wipe": "unsupported"}
        assert cuff_life[4]["reason"] == override["reason"]
        hub_life = await call("GET", f"/api/v1/hubs/{hub}/history")
        assert hub_life[4]["detail"] == {"wipe": "wiped"}
        assert [c["to_state"] for c in hub_life] == [
            "in_stock",
            "assigned",
            "returned",
            "quarantine",
            "in_stock",
            "assigned",
        ]

"""The walking skeleton, end to end on real components.

A simulated cuff indicates readings over the simulated radio (real GATT over bumble);
the real gateway stores them in its outbox and publishes them to the broker; the real
ingest worker stores them in PostgreSQL and raises alerts; the API shows them to a
nurse. The servers are this machine's PostgreSQL and Mosquitto when they answer, and
embedded ones otherwise (see conftest.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.app import create_app
from api.auth import Role, ensure_demo_key, issue_token
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from hemhub.contract import (
    AllowedDevice,
    DeviceIdentity,
    DeviceProfile,
)
from hemhub.embedded import free_port
from hemhub.settings import Settings
from ingest import registry
from tests.factories import unique_hub_id

CUFF_ADDRESS = "C0:FF:EE:00:01:01"
TENANT = "e2e"


@dataclass
class Home:
    hub_id: str
    serial: str
    patient_id: str
    produced: list[dict[str, Any]]


@pytest.fixture
def home(database_url: str, ingesting_hub: str) -> Home:
    """A resident of principal `e2e` with a cuff assigned since yesterday, and an ingest
    worker for the resident's hub (only: other test runs may share the broker)."""
    serial = f"E2E-{unique_hub_id('bp')}"
    with psycopg.connect(database_url) as conn:
        registry.ensure_tenant(conn, TENANT, "End-to-end municipality")
        patient = registry.create_patient(conn, TENANT, "Elsa Andersson")
        device = registry.ensure_device(
            conn,
            DeviceIdentity(
                address=CUFF_ADDRESS,
                manufacturer=SimulatedCuff.MANUFACTURER,
                model=SimulatedCuff.MODEL,
                serial=serial,
            ),
        )
        registry.assign_device(conn, device, patient, datetime.now(UTC) - timedelta(days=1))
        # the resident's hub, of the same principal, may write for the cuff
        registry.register_hub(conn, ingesting_hub, TENANT)
        registry.allow_device(conn, ingesting_hub, device, datetime.now(UTC) - timedelta(days=1))
        conn.commit()
    return Home(hub_id=ingesting_hub, serial=serial, patient_id=str(patient), produced=[])


@pytest.fixture
async def api(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    settings = Settings(
        database_url=database_url, data_dir=tmp_path / "api", jwt_allow_self_made_key=True
    )
    ensure_demo_key(settings.demo_key_file)
    token = issue_token(settings, sub="nurse.e2e", role=Role.NURSE, tenant=TENANT)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hemhub") as c,
    ):
        yield c, {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running_home(
    home: Home, mqtt_url: str, data_dir: Path, **cuff_options: Any
) -> AsyncIterator[tuple[SimulatedCuff, HubGateway]]:
    async with SimulatedRadio() as radio:
        cuff = SimulatedCuff(
            radio,
            address=CUFF_ADDRESS,
            serial=home.serial,
            scenario="hypertensive",
            seed=7,
            on_produced=home.produced.append,
            **cuff_options,
        )
        await cuff.start()
        config = GatewayConfig(
            hub_id=home.hub_id,
            mqtt_url=mqtt_url,
            data_dir=data_dir,
            devices=[AllowedDevice(address=CUFF_ADDRESS, profile=DeviceProfile.BLOOD_PRESSURE)],
        )
        gateway = HubGateway(config, radio.bleak_backends())
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        try:
            yield cuff, gateway
        finally:
            stop.set()
            await task
            await cuff.stop()


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s: {check.__name__}")
        await asyncio.sleep(0.2)


def stored_rows(database_url: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(database_url) as conn:
        return [
            (r[0], None if r[1] is None else str(r[1]))
            for r in conn.execute("SELECT encode(raw, 'hex'), patient_id FROM readings")
        ]


async def test_cuff_reading_reaches_nurse_once_and_alert_can_be_acknowledged(
    home: Home,
    api: tuple[httpx.AsyncClient, dict[str, str]],
    database_url: str,
    mqtt_url: str,
    tmp_path: Path,
) -> None:
    client, auth = api
    async with running_home(home, mqtt_url, tmp_path / "hub") as (cuff, _):
        await cuff.measure(systolic=186, diastolic=112, pulse=74)
        await cuff.measure(systolic=128, diastolic=82, pulse=66)

        async def two_observations() -> bool:
            r = await client.get(f"/api/v1/patients/{home.patient_id}/observations", headers=auth)
            return r.status_code == 200 and len(r.json()) >= 2

        await eventually(two_observations)

    response = await client.get(f"/api/v1/patients/{home.patient_id}/observations", headers=auth)
    observations = response.json()
    assert len(observations) == 2, "each reading exactly once"
    by_raw = {o["raw_hex"]: o for o in observations}
    assert set(by_raw) == {p["raw_hex"] for p in home.produced}
    for produced in home.produced:
        values = {v["name"]: v["value"] for v in by_raw[produced["raw_hex"]]["values"]}
        assert values["systolic"] == produced["systolic"]
        assert values["diastolic"] == produced["diastolic"]
        assert values["pulse"] == produced["pulse"]
        assert by_raw[produced["raw_hex"]]["hub_id"] == home.hub_id

    alerts = (await client.get("/api/v1/alerts?status=open", headers=auth)).json()
    assert len(alerts) == 1, "the hypertensive reading opens exactly one alert"
    alert = alerts[0]
    assert alert["patient_id"] == home.patient_id
    assert alert["rule"] == "blood_pressure_high"
    assert {v["name"]: v["value"] for v in alert["values"]}["systolic"] == 186

    acked = await client.post(f"/api/v1/alerts/{alert['id']}/ack", headers=auth)
    assert acked.status_code == 200
    assert acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by"] == "nurse.e2e"
    assert (await client.get("/api/v1/alerts?status=open", headers=auth)).json() == []
    remaining = (await client.get("/api/v1/alerts?status=acknowledged", headers=auth)).json()
    assert [a["id"] for a in remaining] == [alert["id"]]


async def test_gateway_restart_publishes_outbox_without_duplicates(
    home: Home,
    database_url: str,
    mqtt_url: str,
    tmp_path: Path,
) -> None:
    hub_dir = tmp_path / "hub"
    # First run: the broker is unreachable, so readings stay in the hub's outbox.
    dead_broker = f"mqtt://127.0.0.1:{free_port()}"
    async with running_home(home, dead_broker, hub_dir, replay_backlog=True) as (cuff, gw):
        await cuff.measure(systolic=190, diastolic=115, pulse=80)
        await cuff.measure(systolic=125, diastolic=80, pulse=70)

        async def both_in_outbox() -> bool:
            return gw.outbox.depth() == 2

        await eventually(both_in_outbox)
    assert stored_rows(database_url) == []

    # Second run, same data directory, real broker: the outbox drains. The cuff replays
    # its whole backlog on the new connection; nothing is stored twice.
    async with running_home(home, mqtt_url, hub_dir, replay_backlog=True) as (cuff, gw):
        await cuff.measure(systolic=130, diastolic=85, pulse=72)

        async def all_stored() -> bool:
            return len(stored_rows(database_url)) >= 3

        await eventually(all_stored)
        await asyncio.sleep(1.0)  # give any duplicate the chance to arrive

    rows = stored_rows(database_url)
    assert sorted(raw for raw, _ in rows) == sorted(p["raw_hex"] for p in home.produced)
    assert len(rows) == 3
    assert all(patient == home.patient_id for _, patient in rows)
    with psycopg.connect(database_url) as conn:
        (alerts,) = conn.execute("SELECT count(*) FROM alerts").fetchone()  # type: ignore[misc]
    assert alerts == 1

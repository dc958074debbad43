"""A device firmware campaign on the backend: the targets are the model's devices (one
hardware revision, one current version), the desired image travels in each hub's
configuration, a device whose new image did not boot (MCUboot reverted it, the hub
says so in its status) pauses the campaign with the reason, nobody else is asked, and
a rollback asks the device back to its previous image."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.auth import Role
from hemhub.contract import (
    DeviceHealth,
    DeviceIdentity,
    DeviceProfile,
    HubStatus,
    UpdateProgress,
    UpdateState,
)
from hemhub.settings import Settings
from ingest import campaigns
from ingest.migrations import MigrationReport
from ingest.pipeline import StatusUpdate, store
from tests.api.helpers import Seed, api_client, bearer, make_settings
from tests.factories import batch, bp_reading, unique_hub_id

ADDRESSES = ("C0:FF:EE:00:0F:01", "C0:FF:EE:00:0F:02", "C0:FF:EE:00:0F:03")


@pytest.fixture
def quiet_settings(tmp_path: Path, database_url: str, migration: MigrationReport) -> Settings:
    return make_settings(tmp_path, database_url, campaign_tick_s=0)


@pytest.fixture
async def api(quiet_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(quiet_settings) as c:
        yield c


def last_config(database_url: str, hub: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT payload FROM hub_configs WHERE hub_id = %s ORDER BY version DESC LIMIT 1",
            (hub,),
        ).fetchone()
    assert row is not None
    return dict(row[0])


def report(database_url: str, hub: str, address: str, firmware: str, **update: Any) -> None:
    """What the hub's status says of the device (stored as ingest stores a status)."""
    progress = UpdateProgress(at=datetime.now(UTC), **update) if update else None
    status = HubStatus(
        hub_id=hub,
        online=True,
        software_version="1.0.0",
        devices=[
            DeviceHealth(
                address=address,
                profile=DeviceProfile.BLOOD_PRESSURE,
                firmware=firmware,
                firmware_update=progress,
            )
        ],
    )
    with psycopg.connect(database_url) as conn:
        store(conn, [], statuses=[StatusUpdate(status, datetime.now(UTC))])


async def test_a_device_image_that_fails_to_boot_pauses_the_firmware_campaign(
    api: httpx.AsyncClient, quiet_settings: Settings, seed: Seed
) -> None:
    url = quiet_settings.database_url or ""
    hmc = bearer(quiet_settings, Role.HMC, "a", "hmc-1")
    product = await api.post(
        "/api/v1/products",
        json={"kind": "blood_pressure", "manufacturer": "Acme", "model": "BP-9"},
        headers=hmc,
    )
    assert product.status_code == 201, product.text
    pid = product.json()["id"]
    hubs = [unique_hub_id("fw") for _ in ADDRESSES]
    for i, (hub, address) in enumerate(zip(hubs, ADDRESSES, strict=True)):
        patient = (seed.alice, seed.arne, seed.alice)[i]
        assert (await api.post("/api/v1/hubs", json={"id": hub}, headers=hmc)).status_code == 201
        if i < 2:
            r = await api.post(
                f"/api/v1/hubs/{hub}/place", json={"patient_id": str(patient)}, headers=hmc
            )
            assert r.status_code == 200, r.text
        device = await api.post(
            "/api/v1/devices",
            json={
                "product_id": pid,
                "serial": f"BP9-{i}",
                "address": address,
                # the third: another hardware revision, not in the campaign
                "hardware_revision": "r2" if i < 2 else "r1",
                "firmware": "1.0",
            },
            headers=hmc,
        )
        assert device.status_code == 201, device.text
        r = await api.post(
            f"/api/v1/devices/{device.json()['id']}/assign",
            json={"patient_id": str(patient), "hub_id": hub},
            headers=hmc,
        )
        assert r.status_code == 200, r.text
        report(url, hub, address, "1.0")
    for version in ("1.0", "1.1"):
        art = await api.post(
            "/api/v1/ota/artifacts",
            json={
                "kind": "device_firmware",
                "version": version,
                "target": f"bp9-{version}.bin",
                "product_id": pid,
            },
            headers=hmc,
        )
        assert art.status_code == 201, art.text
    created = await api.post(
        "/api/v1/ota/campaigns",
        json={
            "name": "BP-9 1.1",
            "artifact_id": art.json()["id"],
            "waves": [50, 100],
            "hardware_revision": "r2",
            "current_version": "1.0",
            "max_parallel": 5,
        },
        headers=hmc,
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    assert created.json()["targets"] == 2  # the r1 device is not chosen
    assert (await api.post(f"/api/v1/ota/campaigns/{cid}/start", headers=hmc)).status_code == 200

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        plan = await campaigns.tick(conn, cid)
        (canary,) = plan.issue
        hub, address = canary
        assert last_config(url, hub)["firmware"] == [
            {
                "address": address,
                "version": "1.1",
                "target": "bp9-1.1.bin",
                "campaign_id": cid,
            }
        ]
        assert last_config(url, hub)["software"] is None
        # The hub uploads the image; it does not boot; MCUboot reverts the device.
        report(
            url, hub, address, "1.0", campaign_id=cid, version="1.1", state=UpdateState.DOWNLOADING
        )
        assert (await campaigns.tick(conn, cid)).issue == ()  # one in wave 0: it waits
        report(
            url,
            hub,
            address,
            "1.0",
            campaign_id=cid,
            version="1.1",
            state=UpdateState.REVERTED,
            reason="image_not_confirmed: MCUboot reverted to 1.0 after reset",
        )
        await campaigns.tick(conn, cid)
        got = await campaigns.get_campaign(conn, "a", cid)
        assert got["state"] == "paused"
        assert got["paused_reason"] == (
            f"hub {hub} device {address}: reverted: image_not_confirmed: MCUboot reverted to"
            " 1.0 after reset"
        )
        other = next(h for h in hubs[:2] if h != hub)
        assert "firmware" not in last_config(url, other) or not last_config(url, other)["firmware"]

        r = await api.post(f"/api/v1/ota/campaigns/{cid}/rollback", json={}, headers=hmc)
        assert r.json()["state"] == "rolling_back"
        assert last_config(url, hub)["firmware"][0]["version"] == "1.0"
        assert last_config(url, hub)["firmware"][0]["target"] == "bp9-1.0.bin"
        await campaigns.tick(conn, cid)  # it runs 1.0 already (MCUboot kept it)
        assert (await campaigns.get_campaign(conn, "a", cid))["state"] == "rolled_back"


async def test_error_readings_after_the_update_pause_the_campaign_at_the_gate(
    api: httpx.AsyncClient, quiet_settings: Settings, seed: Seed
) -> None:
    url = quiet_settings.database_url or ""
    hmc = bearer(quiet_settings, Role.HMC, "a", "hmc-1")
    product = await api.post(
        "/api/v1/products",
        json={"kind": "blood_pressure", "manufacturer": "Acme", "model": "BP-7"},
        headers=hmc,
    )
    pid = product.json()["id"]
    hubs = [unique_hub_id("gate") for _ in range(2)]
    for i, hub in enumerate(hubs):
        patient = (seed.alice, seed.arne)[i]
        await api.post("/api/v1/hubs", json={"id": hub}, headers=hmc)
        await api.post(f"/api/v1/hubs/{hub}/place", json={"patient_id": str(patient)}, headers=hmc)
        device = await api.post(
            "/api/v1/devices",
            json={"product_id": pid, "serial": f"BP7-{i}", "address": ADDRESSES[i]},
            headers=hmc,
        )
        await api.post(
            f"/api/v1/devices/{device.json()['id']}/assign",
            json={"patient_id": str(patient), "hub_id": hub},
            headers=hmc,
        )
        report(url, hub, ADDRESSES[i], "1.0")
    art = await api.post(
        "/api/v1/ota/artifacts",
        json={
            "kind": "device_firmware",
            "version": "1.1",
            "target": "bp7-1.1.bin",
            "product_id": pid,
        },
        headers=hmc,
    )
    created = await api.post(
        "/api/v1/ota/campaigns",
        json={"name": "BP-7 1.1", "artifact_id": art.json()["id"], "waves": [50, 100]},
        headers=hmc,
    )
    cid = created.json()["id"]
    await api.post(f"/api/v1/ota/campaigns/{cid}/start", headers=hmc)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        ((hub, address),) = (await campaigns.tick(conn, cid)).issue
        report(
            url, hub, address, "1.1", campaign_id=cid, version="1.1", state=UpdateState.CONFIRMED
        )
        # The device's readings go on, but one says the device is at fault.
        identity = DeviceIdentity(address=address, manufacturer="Acme", model="BP-7")
        reading = bp_reading(dev=identity).model_copy(update={"status": ["general_device_fault"]})
        with psycopg.connect(url) as sync:
            store(sync, [batch(hub, reading)])
        await campaigns.tick(conn, cid)
        got = await campaigns.get_campaign(conn, "a", cid)
    assert got["state"] == "paused"
    assert got["paused_reason"] == (
        f"hub {hub} device {address}: 1 error reading(s) since the update (margin 0)"
    )
    assert got["target_states"] == {"confirmed": 1, "pending": 1}

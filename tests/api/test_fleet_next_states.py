"""What a device or hub may become now (`next_states`, `retire_as`): the pages offer
exactly the transitions the one state machine (ingest.device_life) allows."""

from __future__ import annotations

import httpx

from hemhub.settings import Settings
from tests.api.helpers import Seed
from tests.api.test_fleet_devices import a_device, a_hub, cuff_product, hmc, ok


async def test_a_devices_next_states_follow_its_life(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    h = hmc(settings)
    device_id = await a_device(client, h, await cuff_product(client, h))
    await a_hub(client, h)
    await ok(
        await client.post(
            "/api/v1/hubs/hub-a1/place", headers=h, json={"patient_id": str(seed.arne)}
        )
    )

    device = await ok(await client.get(f"/api/v1/devices/{device_id}", headers=h))
    assert device["next_states"] == ["assigned", "repair", "retired"]
    assert device["retire_as"] == ["lost", "broken", "scrapped"]

    body = {"patient_id": str(seed.arne), "hub_id": "hub-a1"}
    device = await ok(
        await client.post(f"/api/v1/devices/{device_id}/assign", headers=h, json=body)
    )
    assert device["next_states"] == ["returned", "retired"]
    assert device["retire_as"] == ["lost"]  # at the resident's home: only lost

    listed = await ok(await client.get("/api/v1/devices", headers=h, params={"state": "assigned"}))
    assert [d["next_states"] for d in listed] == [["returned", "retired"]]

    device = await ok(await client.post(f"/api/v1/devices/{device_id}/return", headers=h, json={}))
    assert device["next_states"] == ["quarantine", "retired"] and device["retire_as"] == ["lost"]

    body = {"to": "retired", "retired_as": "lost", "reason": "not found at the home"}
    device = await ok(await client.post(f"/api/v1/devices/{device_id}/state", headers=h, json=body))
    assert device["next_states"] == [] and device["retire_as"] == []


async def test_a_hubs_next_states(
    client: httpx.AsyncClient, settings: Settings, seed: Seed
) -> None:
    h = hmc(settings)
    await a_hub(client, h)
    hub = await ok(await client.get("/api/v1/hubs/hub-a1", headers=h))
    assert hub["next_states"] == ["assigned", "repair", "retired"]
    body = {"patient_id": str(seed.arne)}
    hub = await ok(await client.post("/api/v1/hubs/hub-a1/place", headers=h, json=body))
    assert hub["next_states"] == ["returned", "retired"] and hub["retire_as"] == ["lost"]

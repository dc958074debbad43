"""The rollout API (HMC): artifacts, a campaign's life, its targets, its refusals, each
confined to the caller's principal and audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time
from pathlib import Path

import httpx
import psycopg
import pytest

from api.auth import Role
from hemhub.settings import Settings
from ingest import campaigns
from ingest.migrations import MigrationReport
from tests.api.helpers import Seed, api_client, audit_rows, bearer, make_settings
from tests.factories import unique_hub_id


@pytest.fixture
def quiet_settings(tmp_path: Path, database_url: str, migration: MigrationReport) -> Settings:
    """The API without its campaign runner: the test decides when the engine runs."""
    return make_settings(tmp_path, database_url, campaign_tick_s=0)


@pytest.fixture
async def api(quiet_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(quiet_settings) as c:
        yield c


async def test_a_campaign_through_the_api_from_draft_to_rollback(
    api: httpx.AsyncClient, quiet_settings: Settings, seed: Seed
) -> None:
    hmc = bearer(quiet_settings, Role.HMC, "a", "hmc-1")
    hubs = sorted(unique_hub_id("api-ota") for _ in range(2))
    for hub, patient in zip(hubs, (seed.alice, seed.arne), strict=True):
        assert (await api.post("/api/v1/hubs", json={"id": hub}, headers=hmc)).status_code == 201
        placed = await api.post(
            f"/api/v1/hubs/{hub}/place", json={"patient_id": str(patient)}, headers=hmc
        )
        assert placed.status_code == 200, placed.text
    art = await api.post(
        "/api/v1/ota/artifacts",
        json={"kind": "hub_software", "version": "2.0.0", "target": "hemhub-hub-2.0.0.tar"},
        headers=hmc,
    )
    assert art.status_code == 201, art.text
    again = await api.post(
        "/api/v1/ota/artifacts",
        json={"kind": "hub_software", "version": "2.0.0", "target": "hemhub-hub-2.0.0.tar"},
        headers=hmc,
    )
    assert again.status_code == 409 and "registered already" in again.json()["detail"]
    body = {
        "name": "hub 2.0.0",
        "artifact_id": art.json()["id"],
        "waves": [50, 100],
        "window": {"start": "22:00", "end": "05:00"},
        "time_zone": "Europe/Stockholm",
        "max_parallel": 1,
    }
    created = await api.post("/api/v1/ota/campaigns", json=body, headers=hmc)
    assert created.status_code == 201, created.text
    c = created.json()
    assert (c["state"], c["targets"], c["waves"]) == ("draft", 2, [50, 100])
    assert c["window_start"] == "22:00:00" and c["target_states"] == {"pending": 2}
    assert c["silence_window_s"] == 900  # hub software's default: hubs report every minute
    cid = c["id"]
    busy = await api.post("/api/v1/ota/campaigns", json=body, headers=hmc)
    assert busy.status_code == 409 and "another open campaign" in busy.text
    targets = (await api.get(f"/api/v1/ota/campaigns/{cid}/targets", headers=hmc)).json()
    assert sorted(t["hub_id"] for t in targets) == hubs
    assert sorted(t["wave"] for t in targets) == [0, 1]

    # Another principal sees nothing of it; a nurse may not even ask.
    other = bearer(quiet_settings, Role.HMC, "b", "hmc-b")
    assert (await api.get(f"/api/v1/ota/campaigns/{cid}", headers=other)).status_code == 404
    assert (await api.post(f"/api/v1/ota/campaigns/{cid}/start", headers=other)).status_code == 404
    nurse = bearer(quiet_settings, Role.NURSE, "a", "nurse-1")
    assert (await api.get("/api/v1/ota/campaigns", headers=nurse)).status_code == 403

    started = await api.post(f"/api/v1/ota/campaigns/{cid}/start", headers=hmc)
    assert started.json()["state"] == "running"
    twice = await api.post(f"/api/v1/ota/campaigns/{cid}/start", headers=hmc)
    assert twice.status_code == 409 and "running campaign cannot be started" in twice.text
    paused = await api.post(
        f"/api/v1/ota/campaigns/{cid}/pause", json={"reason": "calls from homes"}, headers=hmc
    )
    assert (paused.json()["state"], paused.json()["paused_reason"]) == (
        "paused",
        "calls from homes",
    )
    resumed = await api.post(f"/api/v1/ota/campaigns/{cid}/resume", headers=hmc)
    assert resumed.json()["state"] == "running"
    back = await api.post(f"/api/v1/ota/campaigns/{cid}/rollback", json={}, headers=hmc)
    assert back.json()["state"] == "rolling_back"
    assert back.json()["target_states"] == {"skipped": 2}  # nobody had been asked yet
    events = (await api.get(f"/api/v1/ota/campaigns/{cid}/events", headers=hmc)).json()
    assert [e["kind"] for e in events] == [
        "created",
        "started",
        "paused",
        "resumed",
        "rollback",
    ]
    assert {e["by_subject"] for e in events} == {"hmc-1"}
    actions = [r[3] for r in audit_rows(quiet_settings.database_url or "")]
    for action in (
        "ota.artifact.register",
        "ota.campaign.create",
        "ota.campaign.start",
        "ota.campaign.pause",
        "ota.campaign.resume",
        "ota.campaign.rollback",
    ):
        assert action in actions
    refused = [r for r in audit_rows(quiet_settings.database_url or "") if r[2] == "b"]
    assert refused and all(r[6]["outcome"] == "not_found" for r in refused)


async def test_bad_campaigns_are_refused_with_a_reason(
    api: httpx.AsyncClient, quiet_settings: Settings, seed: Seed
) -> None:
    hmc = bearer(quiet_settings, Role.HMC, "a", "hmc-1")
    art = await api.post(
        "/api/v1/ota/artifacts",
        json={"kind": "hub_software", "version": "9.9", "target": "hemhub-hub-9.9.tar"},
        headers=hmc,
    )
    aid = art.json()["id"]

    async def create(**fields: object) -> httpx.Response:
        body = {"name": "x", "artifact_id": aid, **fields}
        return await api.post("/api/v1/ota/campaigns", json=body, headers=hmc)

    r = await create(waves=[10, 50])
    assert r.status_code == 422 and "the last wave is 100" in r.text
    r = await create(waves=[50, 10, 100])
    assert r.status_code == 422 and "increasing" in r.text
    r = await create(time_zone="Mars/Olympus")
    assert r.status_code == 422 and "unknown time zone" in r.text
    r = await create()
    assert r.status_code == 409 and "no hub or device" in r.text  # no hub placed
    r = await create(artifact_id="00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404
    r = await create(window={"start": "02:00", "end": "02:00"})
    assert r.status_code == 422
    r = await create(silence_window_s=5)
    assert r.status_code == 422 and "silence_window_s" in r.text
    bad = await api.post(
        "/api/v1/ota/artifacts",
        json={"kind": "device_firmware", "version": "1.0", "target": "fw/x-1.0.bin"},
        headers=hmc,
    )
    assert bad.status_code == 422 and "names its product" in bad.text
    nested = await api.post(
        "/api/v1/ota/artifacts",
        json={"kind": "hub_software", "version": "9.8", "target": "dist/hemhub-hub-9.8.tar"},
        headers=hmc,
    )
    assert nested.status_code == 422 and "a plain file name" in nested.text
    with psycopg.connect(quiet_settings.database_url or "") as conn:
        (n,) = conn.execute("SELECT count(*) FROM ota_campaigns").fetchone() or (0,)
    assert n == 0


async def test_the_window_is_in_the_local_time_of_each_home(
    api: httpx.AsyncClient, quiet_settings: Settings, seed: Seed
) -> None:
    hmc = bearer(quiet_settings, Role.HMC, "a", "hmc-1")
    hubs = sorted(unique_hub_id("tz") for _ in range(2))
    for hub, patient in zip(hubs, (seed.alice, seed.arne), strict=True):
        await api.post("/api/v1/hubs", json={"id": hub}, headers=hmc)
        await api.post(f"/api/v1/hubs/{hub}/place", json={"patient_id": str(patient)}, headers=hmc)
    tokyo = await api.put(
        f"/api/v1/hubs/{hubs[1]}/time-zone", json={"time_zone": "Asia/Tokyo"}, headers=hmc
    )
    assert tokyo.json() == {"hub_id": hubs[1], "time_zone": "Asia/Tokyo"}
    bad = await api.put(
        f"/api/v1/hubs/{hubs[1]}/time-zone", json={"time_zone": "Mars/Olympus"}, headers=hmc
    )
    assert bad.status_code == 422 and "unknown time zone" in bad.text
    art = await api.post(
        "/api/v1/ota/artifacts",
        json={"kind": "hub_software", "version": "4.0", "target": "hemhub-hub-4.0.tar"},
        headers=hmc,
    )
    # The hour now in UTC: inside for the hub on the campaign's zone, outside in Tokyo.
    now = datetime.now(UTC)
    start, end = time(now.hour), time((now.hour + 1) % 24)
    created = await api.post(
        "/api/v1/ota/campaigns",
        json={
            "name": "tz",
            "artifact_id": art.json()["id"],
            "waves": [100],
            "window": {"start": start.isoformat(), "end": end.isoformat()},
            "time_zone": "UTC",
        },
        headers=hmc,
    )
    cid = created.json()["id"]
    await api.post(f"/api/v1/ota/campaigns/{cid}/start", headers=hmc)
    url = quiet_settings.database_url or ""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        plan = await campaigns.tick(conn, uuid.UUID(cid), now)
        assert plan.issue == ((hubs[0], ""),)
        # The API's runner: a pass over every running campaign; Tokyo still waits.
        assert await campaigns.tick_all(conn, now) == 1
        rows = await campaigns.campaign_targets(conn, "a", uuid.UUID(cid))
    assert {r["hub_id"]: r["state"] for r in rows} == {hubs[0]: "issued", hubs[1]: "pending"}

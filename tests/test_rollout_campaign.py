"""Rollout campaigns end to end over the real broker and database: simulated hubs
(tests/rollout_hubs.py: the gateway's publisher and provisioning store, the real update
reconciler, a minimal A/B installer) report their status through a real ingest worker;
the desired state reaches them through `issue_config` and the hub link; the campaign
engine (`ingest.campaigns.tick`) decides from what ingest stored."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest

from gateway.config import UpdateSettings
from gateway.update import slots
from hemhub.contract import topic_config, topic_status
from hemhub.settings import MqttTarget
from ingest import campaigns, hub_fleet, registry
from ingest.fleet_common import Actor
from ingest.hub_link import HubLink
from ingest.worker import IngestWorker
from tests.factories import unique_hub_id
from tests.ota_helpers import http_server, make_bundle, signed_repo
from tests.rollout_hubs import RealSlots, SimulatedHub, build_bundle

TENANT = "hmc-ota"
HMC = Actor(subject="hmc-operator", tenant=TENANT)


def clear_retained(mqtt_url: str, hubs: list[str]) -> None:
    target = MqttTarget(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(target.host, target.port)
    client.loop_start()
    for hub in hubs:
        for topic in (topic_status(hub), topic_config(hub)):
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


@pytest.fixture
def fleet(database_url: str, mqtt_url: str, hub_link: HubLink) -> Iterator[list[str]]:
    """20 hubs of the principal placed at residents' homes, with an ingest worker storing
    their statuses; the broker's retained messages of them are cleared afterwards."""
    hubs = sorted(unique_hub_id(f"ota{i:02d}") for i in range(20))

    async def place() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            registry.ensure_tenant(conn, TENANT, "HMC")
            patients = [registry.create_patient(conn, TENANT, f"r{i}") for i in range(20)]
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            for hub, patient in zip(hubs, patients, strict=True):
                await hub_fleet.register_hub(conn, HMC, hub)
                await hub_fleet.place_hub(
                    conn, HMC, hub, patient_id=patient, started_at=datetime.now(UTC)
                )

    asyncio.run(place())
    worker = IngestWorker(
        database_url,
        mqtt_url,
        client_id=f"ingest-{hubs[0]}",
        topics=tuple(topic_status(h) for h in hubs),
    )
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert worker.ready.wait(10), "ingest worker did not subscribe"
    try:
        yield hubs
    finally:
        worker.stop()
        thread.join(timeout=20)
        clear_retained(mqtt_url, hubs)


@pytest.fixture(scope="module")
def slots_at_1_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real slots with 1.0 installed and confirmed (a virtual environment: made once,
    copied per hub)."""
    tmp = tmp_path_factory.mktemp("rollout-slots")
    root = tmp / "opt-hemhub"
    slots.install_bundle(make_bundle(tmp, "1.0"), root)
    slots.switch(root)
    return root


def versions(database_url: str, hubs: list[str]) -> dict[str, str | None]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, software_version FROM hubs WHERE id = ANY(%s) AND online", (hubs,)
        ).fetchall()
    return {r[0]: r[1] for r in rows}


async def wait_until(check: Any, what: str, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


async def run_campaign(
    database_url: str,
    mqtt_url: str,
    hubs: list[str],
    tmp_path: Path,
    *,
    version: str,
    broken: set[str],
    until: set[str],
    then_rollback: bool = False,
    first: str = "A",
    real_slots_from: Path | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[SimulatedHub]]:
    """With `real_slots_from` (slots with `first` installed and confirmed), each hub
    gets a copy and updates with the real agent from a real TUF repository over HTTP;
    else with the minimal installer (`DirectorySlots`)."""
    repo = tmp_path / "repo"
    resources = ExitStack()
    if real_slots_from is None:
        target = build_bundle(repo, version)
        sims = [SimulatedHub(h, mqtt_url, tmp_path / h, repo, broken=broken) for h in hubs]
    else:
        signed = signed_repo(tmp_path / "release")
        target = signed.add_bundle(version)
        url = resources.enter_context(http_server(signed.repo.path))
        trusted_root = tmp_path / "update-root.json"
        trusted_root.write_bytes((signed.repo.metadata_dir / "root.json").read_bytes())
        settings = UpdateSettings(repository_url=url, trusted_root=trusted_root)
        sims = []
        for h in hubs:
            root = tmp_path / h / "opt-hemhub"
            shutil.copytree(real_slots_from, root, symlinks=True)
            real = RealSlots(root, tmp_path / h, settings, broken)
            sims.append(
                SimulatedHub(h, mqtt_url, tmp_path / h, repo, broken=broken, real_slots=real)
            )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(s.run(stop)) for s in sims]
    try:
        await wait_until(
            lambda: (
                set(versions(database_url, hubs).values()) == {first}
                and len(versions(database_url, hubs)) == len(hubs)
            ),
            f"every hub online at {first}",
        )
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            artifact = await campaigns.register_artifact(
                conn, HMC, kind="hub_software", version=version, target=target
            )
            campaign = await campaigns.create_campaign(
                conn,
                HMC,
                name=f"hub software {version}",
                artifact_id=artifact["id"],
                waves=[5, 10, 50, 100],
                max_parallel=5,
                confirm_timeout_s=60,
                margin_failed_sessions=0,
                margin_error_readings=0,
                current_version=first,
            )
            assert campaign["targets"] == len(hubs)
            cid: uuid.UUID = campaign["id"]
            await campaigns.start(conn, HMC, cid)
            deadline = time.monotonic() + 150
            while (
                state := (await campaigns.get_campaign(conn, TENANT, cid))["state"]
            ) not in until:
                assert time.monotonic() < deadline, f"campaign still {state}"
                await campaigns.tick(conn, cid)
                await asyncio.sleep(0.3)
            if then_rollback:
                await campaigns.rollback(conn, HMC, cid, "calls from homes")
                while (await campaigns.get_campaign(conn, TENANT, cid))["state"] != "rolled_back":
                    assert time.monotonic() < deadline, "rollback did not end"
                    await campaigns.tick(conn, cid)
                    await asyncio.sleep(0.3)
            final = await campaigns.get_campaign(conn, TENANT, cid)
            events = await campaigns.campaign_events(conn, TENANT, cid)
            targets = await campaigns.campaign_targets(conn, TENANT, cid)
        # What the hubs say after the campaign settled (a restart in flight ends first).
        await asyncio.sleep(1.0)
        return final, events, targets, sims
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        resources.close()


async def test_a_campaign_brings_20_hubs_from_a_to_b_through_canary_and_waves(
    database_url: str, mqtt_url: str, fleet: list[str], tmp_path: Path
) -> None:
    final, events, targets, sims = await run_campaign(
        database_url, mqtt_url, fleet, tmp_path, version="B", broken=set(), until={"completed"}
    )
    assert final["state"] == "completed" and final["wave"] == 3
    assert {t["state"] for t in targets} == {"confirmed"}
    assert {t["running"] for t in targets} == {"B"}
    assert all(t["progress"]["state"] == "confirmed" for t in targets)
    # The canary alone first; each wave asked only after the one before passed its gate.
    kinds = [e["kind"] for e in events]
    assert kinds[:3] == ["created", "started", "issued"]
    assert events[2]["detail"]["targets"] == [t["hub_id"] for t in targets if t["wave"] == 0]
    waves_of = {t["hub_id"]: t["wave"] for t in targets}
    wave = 0
    for e in events:
        if e["kind"] == "wave_advanced":
            wave = e["detail"]["wave"]
        elif e["kind"] == "issued":
            asked = e["detail"]["targets"]
            assert all(waves_of[h] <= wave for h in asked)
            assert len(asked) <= 5  # max_parallel
    assert kinds.count("wave_advanced") == 3 and kinds[-1] == "completed"
    assert [sum(1 for t in targets if t["wave"] <= w) for w in range(4)] == [1, 2, 10, 20]
    # Each hub restarted once into B, and the configuration it holds asks for B.
    assert all(s.restarts == 1 for s in sims)
    assert all(
        s.store.current and s.store.current.software and s.store.current.software.version == "B"
        for s in sims
    )


async def test_a_broken_b_reverts_the_canary_and_pauses_the_campaign_with_the_reason(
    database_url: str, mqtt_url: str, fleet: list[str], tmp_path: Path
) -> None:
    hubs = fleet[:8]
    final, events, targets, sims = await run_campaign(
        database_url, mqtt_url, hubs, tmp_path, version="B", broken={"B"}, until={"paused"}
    )
    canary = [t for t in targets if t["wave"] == 0]
    assert len(canary) == 1
    reason = final["paused_reason"]
    assert reason == (
        f"hub {canary[0]['hub_id']}: reverted: confirmation failed: B did not connect to the broker"
    )
    assert canary[0]["state"] == "failed" and canary[0]["running"] == "A"
    assert canary[0]["progress"]["state"] == "reverted"
    # Nobody else was asked: every other hub runs A and its configuration asks nothing.
    assert {t["state"] for t in targets if t["wave"] > 0} == {"pending"}
    assert set(versions(database_url, hubs).values()) == {"A"}
    for sim in sims:
        if sim.hub_id != canary[0]["hub_id"]:
            assert sim.store.current is None or sim.store.current.software is None
    assert [e["kind"] for e in events][-1] == "paused"
    # The engine does nothing more while paused.
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        plan = await campaigns.tick(conn, final["id"], datetime.now(UTC) + timedelta(hours=1))
        assert plan.issue == ()


async def test_a_rollback_brings_the_hubs_back_to_their_previous_slot(
    database_url: str, mqtt_url: str, fleet: list[str], tmp_path: Path
) -> None:
    hubs = fleet[:4]
    final, events, targets, sims = await run_campaign(
        database_url,
        mqtt_url,
        hubs,
        tmp_path,
        version="B",
        broken=set(),
        until={"completed"},
        then_rollback=True,
    )
    assert final["state"] == "rolled_back"
    assert {t["state"] for t in targets} == {"restored"}
    assert {t["running"] for t in targets} == {"A"}
    assert set(versions(database_url, hubs).values()) == {"A"}
    # Back through the previous slot: B stays there for another try; one restart each way.
    assert all(s.slots.previous_version() == "B" for s in sims)
    assert all(s.restarts == 2 for s in sims)
    assert [e["kind"] for e in events][-2:] == ["rollback", "rolled_back"]


async def test_with_the_real_agent_hubs_update_from_a_tuf_repository_and_roll_back(
    database_url: str, mqtt_url: str, fleet: list[str], tmp_path: Path, slots_at_1_0: Path
) -> None:
    hubs = fleet[:3]
    final, events, targets, sims = await run_campaign(
        database_url,
        mqtt_url,
        hubs,
        tmp_path,
        version="2.0",
        broken=set(),
        until={"completed"},
        then_rollback=True,
        first="1.0",
        real_slots_from=slots_at_1_0,
    )
    kinds = [e["kind"] for e in events]
    assert "completed" in kinds and kinds[-2:] == ["rollback", "rolled_back"]
    assert final["state"] == "rolled_back"
    assert {t["state"] for t in targets} == {"restored"}
    assert {t["running"] for t in targets} == {"1.0"}
    for sim in sims:
        state = slots.load_state(sim.data_dir / "opt-hemhub")
        # 2.0 was installed into slot b, confirmed, then left for slot a: kept for another try.
        assert (state.active, state.previous, state.trying) == ("a", "b", False)
        assert state.versions == {"a": "1.0", "b": "2.0"}
        assert sim.slots.previous_version() == "2.0" and sim.restarts == 2


async def test_with_the_real_agent_a_crash_looping_2_0_reverts_the_canary_and_pauses(
    database_url: str, mqtt_url: str, fleet: list[str], tmp_path: Path, slots_at_1_0: Path
) -> None:
    hubs = fleet[:5]
    final, _, targets, sims = await run_campaign(
        database_url,
        mqtt_url,
        hubs,
        tmp_path,
        version="2.0",
        broken={"2.0"},
        until={"paused"},
        first="1.0",
        real_slots_from=slots_at_1_0,
    )
    (canary,) = [t for t in targets if t["wave"] == 0]
    assert final["paused_reason"] == (
        f"hub {canary['hub_id']}: reverted: crash_loop: 2.0 was started 3 times without"
        " confirming (a crash loop); back to 1.0"
    )
    assert canary["state"] == "failed" and canary["running"] == "1.0"
    assert {t["state"] for t in targets if t["wave"] > 0} == {"pending"}
    assert {t["running"] for t in targets} == {"1.0"}
    for sim in sims:
        state = slots.load_state(sim.data_dir / "opt-hemhub")
        assert state.active == "a" and not state.trying
        if sim.hub_id == canary["hub_id"]:
            assert state.outcome == ("reverted", "crash_loop") and state.previous is None
        else:
            assert "b" not in state.versions

"""Simulated devices keep their memory across a kill -9 of `hemhub gateway --simulate`
(issue 11): the glucose meter's and the dispenser's record logs, their sequence numbers
and the records a hub has not fetched yet survive, as they do on real devices, and every
record they produced is stored exactly once (real gateway process, broker, ingest
worker and PostgreSQL)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from device_drivers.codecs.dispenser import DISPENSER_EVENT_UUID, decode_dispenser_event
from device_drivers.codecs.glucose import decode_glucose_measurement
from device_drivers.simulation.memory import DeviceMemory, write_durably

METER = "C0:FF:EE:00:0B:01"
ROBOT = "C0:FF:EE:00:0B:02"
#: A device on the first run's allow-list that is never there: the hub reads nothing.
ABSENT = "C0:FF:EE:00:0B:0F"
METER_USES = 8
ROBOT_USES = 3


def _sequence(address: str, raw_hex: str) -> int:
    raw = bytes.fromhex(raw_hex)
    if address == ROBOT:
        return decode_dispenser_event(raw).sequence
    return decode_glucose_measurement(raw).sequence


def _produced(data_dir: Path) -> Counter[tuple[str, int]]:
    """(address, sequence number) of every record the simulated devices produced."""
    path = data_dir / "simulated-readings.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    records = [json.loads(line) for line in lines if line]
    return Counter((r["address"], _sequence(r["address"], r["raw_hex"])) for r in records)


def _stored(database_url: str) -> Counter[tuple[str, int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT d.address, r.device_sequence, r.characteristic FROM readings r"
            " JOIN devices d ON d.id = r.device_id"
        ).fetchall()
    assert {c for _a, _s, c in rows} <= {"2A18", DISPENSER_EVENT_UUID}
    return Counter((address, sequence) for address, sequence, _c in rows)


def _memory(data_dir: Path, address: str) -> DeviceMemory:
    return DeviceMemory(data_dir / f"device-{address.replace(':', '')}.json")


def _held(data_dir: Path, address: str) -> list[int]:
    """The sequence numbers of the records the device's saved log holds."""
    device = _memory(data_dir, address).device or {}
    return [r["sequence"] for r in device.get("records", [])]


def _write_files(tmp_path: Path, hub: str, mqtt_url: str) -> tuple[Path, Path, Path, Path]:
    data_dir = tmp_path / "hub"
    settings: dict[str, Any] = {
        "hub_id": hub,
        "mqtt_url": mqtt_url,
        "data_dir": str(data_dir),
        "keepalive_s": 5,
        "reconnect_max_s": 2,
        "max_concurrent_sessions": 2,
    }
    # First run: the hub is not told about the devices yet; they keep what they produce.
    unread = tmp_path / "hub-unread.json"
    absent = {"address": ABSENT, "profile": "blood_pressure"}
    unread.write_text(json.dumps(settings | {"devices": [absent]}))
    config = tmp_path / "hub.json"  # no devices: the scenario's are the allow-list
    config.write_text(json.dumps(settings))
    scenario = tmp_path / "home.json"
    devices = [
        {"address": METER, "profile": "glucose", "serial": "MEM-GLU", "scenario": "diabetic",
         "seed": 3, "first_after_s": 0.2, "every_s": 0.6, "max_uses": METER_USES},
        {"address": ROBOT, "profile": "dispenser", "serial": "MEM-MDR",
         "scenario": "skips_doses", "seed": 4, "first_after_s": 0.3, "every_s": 1.5,
         "max_uses": ROBOT_USES},
    ]  # fmt: skip
    scenario.write_text(json.dumps({"devices": devices}))
    return unread, config, scenario, data_dir


def _start(config: Path, scenario: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hemhub.cli", "gateway", "--config", str(config),
             "--simulate", str(scenario)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _kill_9(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _wait(condition: Any, proc: subprocess.Popen[bytes], log: Path, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_device_memory_survives_kill_9_of_the_gateway(
    tmp_path: Path, ingesting_hub: str, mqtt_url: str, database_url: str
) -> None:
    unread, config, scenario, data_dir = _write_files(tmp_path, ingesting_hub, mqtt_url)
    log = tmp_path / "gateway.log"

    # 1. The devices measure; no hub reads them. Killed while they hold their records.
    proc = _start(unread, scenario, log)
    try:
        _wait(
            lambda: len(_held(data_dir, METER)) >= 3 and len(_held(data_dir, ROBOT)) >= 8,
            proc,
            log,
            60,
        )
    finally:
        _kill_9(proc)
    held = {address: _held(data_dir, address) for address in (METER, ROBOT)}
    produced = _produced(data_dir)
    for address, sequences in held.items():
        assert sequences == list(range(1, len(sequences) + 1)), "numbered from 1, in order"
        assert {s for a, s in produced if a == address} >= set(sequences)
    assert sum(_stored(database_url).values()) == 0, "nothing was read yet"

    # 2. The hub reads them now, and is killed at random moments while it does.
    rng = random.Random(20261206)
    for _ in range(4):
        proc = _start(config, scenario, log)
        try:
            time.sleep(rng.uniform(1.0, 3.0))
            assert proc.poll() is None, log.read_text()[-3000:]
        finally:
            _kill_9(proc)

    # 3. A last run without faults: every record any device produced is stored once.
    proc = _start(config, scenario, log)
    try:

        def caught_up() -> bool:
            uses = {a: _memory(data_dir, a).uses for a in (METER, ROBOT)}
            done = uses[METER] >= METER_USES and uses[ROBOT] >= ROBOT_USES
            return done and _stored(database_url) == _produced(data_dir)

        _wait(caught_up, proc, log, 120)
        time.sleep(1.5)  # a duplicate published late would show up now
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]

    produced, stored = _produced(data_dir), _stored(database_url)
    assert stored == produced
    assert set(produced.values()) == {1}, "no record produced twice, none stored twice"
    for address in (METER, ROBOT):
        sequences = sorted(s for a, s in produced if a == address)
        # The numbering went on across the kills: a log that restarted at 1 would repeat.
        assert sequences == list(range(1, len(sequences) + 1)), address
        assert set(held[address]) <= set(sequences)
    assert _held(data_dir, METER) == [] and _held(data_dir, ROBOT) == [], "fetched, deleted"


def test_device_memory_is_replaced_whole(tmp_path: Path) -> None:
    """A save replaces the file by rename: no temporary file is left, and a file that is
    not a memory is refused with its name instead of being taken as empty."""
    path = tmp_path / "device-X.json"
    memory = DeviceMemory(path)
    memory.uses = 2
    memory.state_of = lambda: {"records": [], "next_sequence": 7}
    memory.remember("0a0b")
    again = DeviceMemory(path)
    assert (again.raws, again.uses, again.device) == (["0a0b"], 2, memory.device)
    assert [p.name for p in tmp_path.iterdir()] == ["device-X.json"]
    write_durably(path, "{not json")
    with pytest.raises(ValueError, match=r"device-X\.json"):
        DeviceMemory(path)

"""A simulated home with one device of every kind, run by the real gateway process
(`hemhub gateway --simulate`) into the real broker, ingest worker and PostgreSQL: every
device completes sessions, and every reading or event each device produced is stored
exactly once, under that device (issue 3, "done when")."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from hemhub.contract import DeviceProfile
from tests import simulated_records

pytestmark = pytest.mark.timeout(180)

USES = 3
#: Seconds between uses: at least 1.25 s (0.5 x), as device clocks count whole seconds;
#: two weighings of the same weight in one second would be the same record, rightly
#: stored once.
EVERY_S = 2.5
#: One device of each kind, with the physiology each programme is about.
HOME = [
    ("C0:FF:EE:00:0A:01", DeviceProfile.BLOOD_PRESSURE, "hypertensive"),
    ("C0:FF:EE:00:0A:02", DeviceProfile.WEIGHT_SCALE, "heart_failure"),
    ("C0:FF:EE:00:0A:03", DeviceProfile.PULSE_OXIMETER, "copd"),
    ("C0:FF:EE:00:0A:04", DeviceProfile.GLUCOSE, "diabetic"),
    ("C0:FF:EE:00:0A:05", DeviceProfile.DISPENSER, "skips_doses"),
]


def test_every_kind_of_device_completes_sessions_and_is_stored_once(
    tmp_path: Path, ingesting_hub: str, mqtt_url: str, database_url: str
) -> None:
    data_dir = tmp_path / "hub"
    config = tmp_path / "hub.json"
    settings = {"hub_id": ingesting_hub, "mqtt_url": mqtt_url, "data_dir": str(data_dir)}
    config.write_text(json.dumps(settings | {"max_concurrent_sessions": 3}))
    scenario = tmp_path / "home.json"
    devices = [
        {"address": address, "profile": str(profile), "serial": f"HOME-{i}",
         "scenario": physiology, "seed": i, "first_after_s": 0.3 + 0.2 * i, "every_s": EVERY_S,
         "max_uses": USES}
        for i, (address, profile, physiology) in enumerate(HOME)
    ]  # fmt: skip
    scenario.write_text(json.dumps({"devices": devices}))
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hemhub.cli", "gateway", "--config", str(config),
             "--simulate", str(scenario)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    addresses = {address for address, _, _ in HOME}
    try:
        deadline = time.monotonic() + 120
        # A device counts a use before it measures: what is stored must match for a few
        # seconds, so that a last record produced just after the count is waited for.
        settled_since: float | None = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            produced, stored = (
                simulated_records.produced(data_dir),
                simulated_records.stored(database_url),
            )
            uses = sum(json.loads(p.read_text())["uses"] for p in data_dir.glob("device-*.json"))
            if uses >= USES * len(HOME) and set(produced) == addresses and stored == produced:
                settled_since = settled_since or time.monotonic()
                if time.monotonic() - settled_since >= 3.0:
                    break  # (a duplicate published late would have shown up by now too)
            else:
                settled_since = None
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]

    produced, stored = simulated_records.produced(data_dir), simulated_records.stored(database_url)
    assert set(produced) == addresses, "every device produced readings or events"
    for address in addresses:
        assert stored.get(address) == produced[address], (
            f"{address}: stored once each (stored {stored.get(address)},"
            f" produced {produced[address]})"
        )
    sessions = Counter((data_dir / "simulated-sessions.log").read_text().split())
    assert set(sessions) == addresses, "each device connected for a session"
    with psycopg.connect(database_url) as conn:
        kinds = {row[0] for row in conn.execute("SELECT DISTINCT measurement_type FROM readings")}
    assert kinds == {"blood_pressure", "body_weight", "pulse_oximetry", "glucose",
                     "medication_event"}  # fmt: skip

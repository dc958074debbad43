"""Chaos: a home with every kind of simulated device (`hemhub gateway --simulate`), a
private Mosquitto and `hemhub ingest --workers 2`. The gateway is killed -9 again and
again; the broker is restarted twice, once with its persistence file removed (every
queued message and session lost after their PUBACKs); an ingest worker is killed -9
while readings flow. Every reading the devices produced ends up stored exactly once:
the end-to-end receipts make the hub publish again whatever the broker dropped.

The broker is the test's own (`/usr/sbin/mosquitto` on a free loopback port): the
machine's one is never restarted.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hemhub.contract import DeviceProfile
from hemhub.embedded import free_port, reachable
from ingest.migrations import migrate
from tests import simulated_records
from tests.factories import unique_hub_id
from tests.test_simulated_home import HOME

pytestmark = pytest.mark.timeout(240)

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
#: How long the faults go on; then a last gateway run catches up.
CHAOS_S = 30.0
#: Devices whose whole log survives a kill of the simulation: all of them (the glucose
#: meter and dispenser keep theirs in the simulation's memory files, docs/devices.md).
KEEPS_ITS_LOG = set(DeviceProfile)
USES = 6
EVERY_S = 2.5  # >= 1.25 s: device clocks count whole seconds (tests/test_simulated_home.py)


class PrivateBroker:
    """A Mosquitto of this test's own, with persistence, restartable on the same port."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        (data_dir / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {data_dir}/\n"
            "max_queued_messages 0\nmax_queued_bytes 0\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.dir / "mosquitto.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", self.port, timeout=0.2):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistence file (mosquitto.db) on the way out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def restart(self, *, forget: bool = False) -> None:
        self.stop()
        if forget:
            (self.dir / "mosquitto.db").unlink(missing_ok=True)
        self.start()

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text()[-3000:] if path.exists() else ""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    if not os.access(MOSQUITTO, os.X_OK):
        pytest.skip("needs the mosquitto binary for a private, restartable broker")
    b = PrivateBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def _gateway(config: Path, scenario: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hemhub.cli", "gateway", "--config", str(config),
             "--simulate", str(scenario)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def _workers(supervisor: int) -> list[int]:
    """The worker processes `hemhub ingest --workers N` started (spawned children)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == supervisor and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def _problems(produced: dict[str, Counter[str]], stored: dict[str, Counter[str]]) -> list[str]:
    """What differs from "every reading the devices produced is stored exactly once"."""
    problems = []
    if set(produced) != {address for address, _, _ in HOME}:
        problems.append(f"devices that produced nothing: {set(produced)}")
    keeps_log = {address for address, profile, _ in HOME if profile in KEEPS_ITS_LOG}
    for address in {*produced, *stored}:
        raws, got = produced.get(address, Counter()), stored.get(address, Counter())
        if extra := got - raws:
            problems.append(f"{address} stored what it did not produce, or twice: {extra}")
        if (missing := raws - got) and address in keeps_log:
            problems.append(f"{address} produced but not stored: {missing}")
    return problems


def test_kills_and_broker_restarts_lose_and_duplicate_nothing(
    tmp_path: Path, broker: PrivateBroker, database_url: str
) -> None:
    migrate(database_url)
    hub = unique_hub_id("chaos")
    data_dir = tmp_path / "hub"
    config = tmp_path / "hub.json"
    config.write_text(
        json.dumps(
            {"hub_id": hub, "mqtt_url": broker.url, "data_dir": str(data_dir),
             "keepalive_s": 5, "reconnect_max_s": 1, "connect_timeout_s": 10,
             "max_concurrent_sessions": 3, "receipt_timeout_s": 2.0,
             "receipt_timeout_max_s": 4.0}
        )
    )  # fmt: skip
    scenario = tmp_path / "home.json"
    devices = [
        {"address": address, "profile": str(profile), "serial": f"CHAOS-{i}",
         "scenario": physiology, "seed": i, "first_after_s": 0.3 + 0.2 * i, "every_s": EVERY_S,
         "max_uses": USES}
        for i, (address, profile, physiology) in enumerate(HOME)
    ]  # fmt: skip
    scenario.write_text(json.dumps({"devices": devices}))
    gateway_log, ingest_log = tmp_path / "gateway.log", tmp_path / "ingest.log"
    env = dict(os.environ, HEMHUB_DATABASE_URL=database_url, HEMHUB_MQTT_URL=broker.url)
    with ingest_log.open("ab") as out:
        ingest = subprocess.Popen(
            [sys.executable, "-m", "hemhub.cli", "ingest", "--workers", "2"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def logs() -> str:
        return (
            f"--- gateway\n{gateway_log.read_text()[-2500:]}\n--- ingest\n"
            f"{ingest_log.read_text()[-2500:]}\n--- broker\n{broker.log()}"
        )

    rng = random.Random(20261206)
    faults = [(8.0, "broker restart"), (14.0, "worker kill"), (20.0, "broker restart, no db")]
    gateway_kills = 0
    try:
        started = time.monotonic()
        while time.monotonic() - started < CHAOS_S:
            gateway = _gateway(config, scenario, gateway_log)
            until = time.monotonic() + rng.uniform(1.5, 4.0)
            while time.monotonic() < until:
                elapsed = time.monotonic() - started
                if faults and elapsed >= faults[0][0]:
                    _, fault = faults.pop(0)
                    if fault == "worker kill":
                        workers = _workers(ingest.pid)
                        assert workers, f"no ingest worker to kill\n{logs()}"
                        os.kill(rng.choice(workers), signal.SIGKILL)
                    else:
                        broker.restart(forget=fault.endswith("no db"))
                assert ingest.poll() is None, logs()
                time.sleep(0.1)
            gateway.kill()
            gateway.wait()
            gateway_kills += 1
        assert not faults and gateway_kills >= 8

        # Last run, no faults: the hub catches up with what the devices hold.
        gateway = _gateway(config, scenario, gateway_log)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                assert gateway.poll() is None, logs()
                uses = sum(
                    json.loads(p.read_text())["uses"] for p in data_dir.glob("device-*.json")
                )
                if uses >= USES * len(HOME) and not _problems(
                    simulated_records.produced(data_dir), simulated_records.stored(database_url)
                ):
                    break
                time.sleep(0.5)
            time.sleep(1.0)  # a duplicate published late would show up now
        finally:
            gateway.send_signal(signal.SIGTERM)
            assert gateway.wait(timeout=30) == 0, logs()
    finally:
        ingest.send_signal(signal.SIGTERM)
        ingest.wait(timeout=30)

    produced, stored = simulated_records.produced(data_dir), simulated_records.stored(database_url)
    assert _problems(produced, stored) == [], logs()
    assert sum(stored.values(), Counter()).total() >= USES * len(KEEPS_ITS_LOG)

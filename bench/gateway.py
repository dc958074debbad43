"""Hub footprint and outbox replay rate (issue 4), each against a baseline of the same run.

- Replay: a 10,000-reading backlog in the hub's outbox, published to the real broker
  with QoS 1 and marked sent on PUBACK, in readings/s; baseline: the same payloads
  published by a bare paho client with no outbox (the broker's and paho's limit).
- Confirmed replay: the same backlog until every reading is forgotten on its receipt
  from a real ingest worker (stored in the bench's database): the end-to-end figure.
- Footprint: resident memory and CPU of `hemhub gateway --simulate` idle and while a
  device session runs every second; baseline: an idle Python interpreter. The figures
  include the simulated radio and peripherals running in the same process, so a hub on
  BlueZ uses less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt

from gateway.outbox import Outbox
from gateway.publisher import OutboxPublisher
from hemhub.contract import Reading, ReadingBatch, topic_readings, topic_status
from hemhub.settings import MqttTarget
from ingest.worker import IngestWorker
from tests.factories import bp_reading, device, unique_hub_id

BACKLOG = 10_000
PER_MESSAGE = 50
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _backlog() -> list[str]:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    devices = [device(serial=f"BENCH-{i}", address=f"C0:00:00:00:00:{i:02X}") for i in range(4)]
    return [
        bp_reading(
            110 + i % 80, 70 + i % 40, measured_at=start + timedelta(seconds=i), dev=devices[i % 4]
        ).model_dump_json()
        for i in range(BACKLOG)
    ]


def _client(mqtt_url: str, client_id: str) -> mqtt.Client:
    target = MqttTarget(mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.max_inflight_messages_set(20)
    client.max_queued_messages_set(0)
    client.connect(target.host, target.port)
    client.loop_start()
    return client


def raw_publish_rate(mqtt_url: str, payloads: list[str]) -> float:
    """Baseline: the same batches straight from paho, QoS 1, waiting for every PUBACK."""
    hub = unique_hub_id("bench-raw")
    client = _client(mqtt_url, hub)
    try:
        started = time.perf_counter()
        infos = []
        for i in range(0, len(payloads), PER_MESSAGE):
            joined = ",".join(payloads[i : i + PER_MESSAGE])
            body = ReadingBatch.model_validate_json(
                f'{{"schema_version":2,"hub_id":"{hub}","readings":[{joined}]}}'
            ).model_dump_json()
            infos.append(client.publish(topic_readings(hub), body, qos=1))
        for info in infos:
            info.wait_for_publish(60)
        return len(payloads) / (time.perf_counter() - started)
    finally:
        client.loop_stop()
        client.disconnect()


def _drain_rate(mqtt_url: str, hub: str, payloads: list[str], path: Path, confirmed: bool) -> float:
    """Readings/s of a backlog drained by the hub's publisher, no rate limit: until the
    outbox holds nothing unsent (PUBACK), or, `confirmed`, nothing awaiting a receipt."""
    box = Outbox(path)
    for payload in payloads:
        box.add(Reading.model_validate_json(payload))
    publisher = OutboxPublisher(
        box,
        hub_id=hub,
        mqtt_url=mqtt_url,
        readings_per_message=PER_MESSAGE,
        max_readings_per_s=1e9,
    )
    started = time.perf_counter()
    publisher.start()
    try:
        while (box.depth() or (confirmed and box.awaiting_receipt())) and (
            time.perf_counter() - started < 300
        ):
            time.sleep(0.01)
        return BACKLOG / (time.perf_counter() - started)
    finally:
        publisher.stop()
        box.close()


def outbox_replay_rate(mqtt_url: str, payloads: list[str], workdir: Path) -> float:
    """The hub's outbox drained by its publisher, no rate limit, until empty."""
    hub = unique_hub_id("bench-replay")
    try:
        return _drain_rate(mqtt_url, hub, payloads, workdir / "outbox.sqlite3", False)
    finally:
        _clear_status(mqtt_url, hub)


def confirmed_replay_rate(
    mqtt_url: str, database_url: str, payloads: list[str], workdir: Path
) -> float:
    """The outbox drained end to end: until every reading is forgotten on its receipt
    from a real ingest worker (one, subscribed to this hub only)."""
    hub = unique_hub_id("bench-confirmed")
    worker = IngestWorker(
        database_url, mqtt_url, client_id=f"ingest-{hub}", topics=(topic_readings(hub),)
    )
    thread = threading.Thread(target=worker.run, name="bench-ingest", daemon=True)
    thread.start()
    if not worker.ready.wait(30):
        raise RuntimeError("bench ingest worker did not subscribe")
    try:
        return _drain_rate(mqtt_url, hub, payloads, workdir / "confirmed.sqlite3", True)
    finally:
        worker.stop()
        thread.join(timeout=30)
        _clear_status(mqtt_url, hub)


def _clear_status(mqtt_url: str, hub: str) -> None:
    client = _client(mqtt_url, f"{hub}-cleaner")
    client.publish(topic_status(hub), b"", qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def _sample(pid: int) -> tuple[float, int]:
    """CPU seconds used so far and resident bytes now, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    return cpu, rss


def _measure(pid: int, seconds: float) -> tuple[float, int]:
    """Mean CPU share (of one core) and peak RSS over `seconds`."""
    cpu0, peak = _sample(pid)
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        time.sleep(0.2)
        peak = max(peak, _sample(pid)[1])
    cpu1, _ = _sample(pid)
    return (cpu1 - cpu0) / (time.monotonic() - t0), peak


def footprint(mqtt_url: str, workdir: Path) -> dict[str, float]:
    baseline = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(1.0)
    base_cpu, base_rss = _measure(baseline.pid, 2.0)
    baseline.kill()
    baseline.wait()

    results: dict[str, float] = {"python_idle_rss_mib": base_rss / 2**20}
    for phase, every_s, uses in (("idle", 60.0, 0), ("session", 1.0, None)):
        data_dir = workdir / phase
        config = workdir / f"{phase}.json"
        scenario = workdir / f"{phase}-home.json"
        hub = unique_hub_id(f"bench-{phase}")
        config.write_text(
            json.dumps({"hub_id": hub, "mqtt_url": mqtt_url, "data_dir": str(data_dir)})
        )
        spec = {
            "address": "C0:FF:EE:00:0B:01",
            "profile": "blood_pressure",
            "serial": "BENCH-1",
            "first_after_s": 1.0,
            "every_s": every_s,
        }
        if uses is not None:
            spec["max_uses"] = uses
        scenario.write_text(json.dumps({"devices": [spec]}))
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hemhub.cli",
                "gateway",
                "--config",
                str(config),
                "--simulate",
                str(scenario),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(4.0)  # start-up (imports, radio) is not part of the steady state
            cpu, rss = _measure(proc.pid, 10.0)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            _clear_status(mqtt_url, hub)
        results[f"gateway_{phase}_rss_mib"] = rss / 2**20
        results[f"gateway_{phase}_cpu_percent"] = 100 * cpu
        results[f"gateway_{phase}_rss_vs_python_idle"] = rss / base_rss
    results["python_idle_cpu_percent"] = 100 * base_cpu
    return results


def run(mqtt_url: str, database_url: str | None = None) -> dict[str, float]:
    payloads = _backlog()
    with tempfile.TemporaryDirectory(prefix="hemhub-bench-gw-") as tmp:
        raw = raw_publish_rate(mqtt_url, payloads)
        replay = outbox_replay_rate(mqtt_url, payloads, Path(tmp))
        results = {
            "gateway_raw_publish_readings_per_s": raw,
            "gateway_replay_10k_readings_per_s": replay,
            "gateway_replay_vs_raw_publish": replay / raw,
        }
        if database_url is not None:
            confirmed = confirmed_replay_rate(mqtt_url, database_url, payloads, Path(tmp))
            results["gateway_replay_confirmed_10k_readings_per_s"] = confirmed
            results["gateway_replay_confirmed_vs_raw_publish"] = confirmed / raw
        results.update(footprint(mqtt_url, Path(tmp)))
    return results


def table(results: dict[str, float]) -> str:
    """The hub figures, each beside its baseline from the same run."""
    r = results
    lines = [
        ("hub figure", "value", "baseline (same run)", "ratio"),
        ("outbox replay, 10k backlog", f"{r['gateway_replay_10k_readings_per_s']:,.0f} readings/s",
         f"bare paho QoS 1: {r['gateway_raw_publish_readings_per_s']:,.0f} readings/s",
         f"{r['gateway_replay_vs_raw_publish']:.2f}"),
        *([("outbox replay to receipts, 10k",
             f"{r['gateway_replay_confirmed_10k_readings_per_s']:,.0f} readings/s",
             f"bare paho QoS 1: {r['gateway_raw_publish_readings_per_s']:,.0f} readings/s",
             f"{r['gateway_replay_confirmed_vs_raw_publish']:.2f}")]
          if "gateway_replay_confirmed_10k_readings_per_s" in r else []),
        ("gateway idle RSS", f"{r['gateway_idle_rss_mib']:.1f} MiB",
         f"idle python: {r['python_idle_rss_mib']:.1f} MiB",
         f"{r['gateway_idle_rss_vs_python_idle']:.2f}"),
        ("gateway in session RSS", f"{r['gateway_session_rss_mib']:.1f} MiB",
         f"idle python: {r['python_idle_rss_mib']:.1f} MiB",
         f"{r['gateway_session_rss_vs_python_idle']:.2f}"),
        ("gateway idle CPU", f"{r['gateway_idle_cpu_percent']:.1f} % of a core",
         f"idle python: {r['python_idle_cpu_percent']:.1f} %", "-"),
        ("gateway in session CPU", f"{r['gateway_session_cpu_percent']:.1f} % of a core",
         f"idle python: {r['python_idle_cpu_percent']:.1f} %", "-"),
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(4)]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)

"""A hub killed (SIGKILL, by a failpoint) at each step of a device firmware update, as its
own process (`hemhub gateway --simulate`, the simulated cuff's flash kept in the data
directory like a real device's): started again, it finishes the update from its state
file and reports the cuff confirmed on the new image."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.update.device_firmware import FirmwareImage
from hemhub.contract import (
    AllowedDevice,
    DesiredFirmware,
    DeviceProfile,
    HubConfig,
    topic_config,
    topic_status,
)
from tests.factories import unique_hub_id
from tests.firmware_helpers import DeviceImages, device_images
from tests.gateway.test_hub_update import StatusWatcher
from tests.gateway.test_provisioning import publish_retained
from tests.ota_helpers import http_server

CUFF = "C4:21:00:00:00:41"
CAMPAIGN = "7d3e4f50-6172-4c83-9d94-ae9f8a7b6c52"
MODEL = "BPM-SIM-1"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def images(tmp_path: Path) -> DeviceImages:
    return device_images(tmp_path / "vendor")


@pytest.fixture
def repo_url(images: DeviceImages) -> Iterator[str]:
    with http_server(images.signed.repo.path) as url:
        yield url


def write_files(tmp: Path, hub: str, mqtt_url: str, url: str, images: DeviceImages) -> Path:
    """The hub's configuration and its simulated home (one cuff used every ~1.5 s)."""
    config = tmp / "hub.json"
    config.write_text(
        json.dumps(
            {
                "hub_id": hub,
                "mqtt_url": mqtt_url,
                "data_dir": str(tmp / "hub"),
                "status_interval_s": 1.0,
                "keepalive_s": 5,
                "slots_root": str(tmp / "slots"),
                "update": {
                    "repository_url": url,
                    "trusted_root": str(images.trusted_root(tmp / "image-root")),
                },
            }
        )
    )
    (tmp / "home.json").write_text(
        json.dumps(
            {
                "devices": [
                    {
                        "address": CUFF,
                        "profile": "blood_pressure",
                        "serial": "KILL-1",
                        "first_after_s": 0.5,
                        "every_s": 1.5,
                        "firmware": {"signing_key": str(images.key_file), "version": "1.0.0"},
                    }
                ]
            }
        )
    )
    return config


def start(config: Path, log: Path, failpoints: str = "") -> subprocess.Popen[bytes]:
    env = dict(os.environ, HEMHUB_FAILPOINTS=failpoints)
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hemhub.cli",
                "gateway",
                "--config",
                str(config),
                "--simulate",
                str(config.parent / "home.json"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def cuff_progress(watcher: StatusWatcher) -> tuple[str | None, str | None]:
    """The newest (firmware, firmware_update state) of the cuff the hub reported."""
    for status in reversed(watcher.seen):
        for device in status.devices:
            if device.address == CUFF and device.firmware_update is not None:
                return device.firmware, device.firmware_update.state
    return None, None


@pytest.mark.parametrize("step", ["downloading", "installing", "confirming"])
def test_a_hub_killed_at_each_step_of_a_device_update_finishes_it(
    tmp_path: Path, mqtt_url: str, images: DeviceImages, repo_url: str, step: str
) -> None:
    hub = unique_hub_id("dfk")
    target = images.publish(MODEL, "1.1.0")
    config = HubConfig(
        hub_id=hub,
        version=1,
        issued_at=datetime.now(UTC),
        devices=[AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE)],
        firmware=[
            DesiredFirmware(address=CUFF, version="1.1.0", target=target, campaign_id=CAMPAIGN)
        ],
    )
    publish_retained(mqtt_url, topic_config(hub), config.model_dump_json().encode())
    path = write_files(tmp_path, hub, mqtt_url, repo_url, images)
    log = tmp_path / "gateway.log"
    watcher = StatusWatcher(mqtt_url, hub)
    proc = start(path, log, f"device_firmware.{step}=1")
    try:
        proc.wait(timeout=90)
        assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
        saved = json.loads((tmp_path / "hub" / "device-firmware.json").read_text())
        assert saved[CUFF]["progress"]["state"] == step

        proc = start(path, log)
        deadline = time.monotonic() + 90
        while cuff_progress(watcher) != ("1.1.0", "confirmed"):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (cuff_progress(watcher), log.read_text()[-3000:])
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        # The cuff's flash: the new image in the primary slot, not on trial any more.
        flash_file = tmp_path / "hub" / f"firmware-{CUFF.replace(':', '')}.json"
        flash = json.loads(flash_file.read_text())
        assert FirmwareImage.from_bytes(bytes.fromhex(flash["primary"])).version == "1.1.0"
        assert not flash["testing"] and not flash["pending"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        watcher.close()
        publish_retained(mqtt_url, topic_config(hub), b"")
        publish_retained(mqtt_url, topic_status(hub), b"")

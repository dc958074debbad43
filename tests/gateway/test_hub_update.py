"""The real hub gateway with an update agent (the minimal A/B installer of
tests/rollout_hubs.py standing in for gateway/update/slots.py): the retained
configuration asks for B; the hub downloads, installs, restarts into B, confirms once it
is connected and scanning, reports each step in its status, and its cuff's readings go
on after the update."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from hemhub.contract import (
    AllowedDevice,
    DesiredSoftware,
    DeviceProfile,
    HubConfig,
    HubStatus,
    topic_config,
    topic_status,
)
from hemhub.settings import MqttTarget
from tests.factories import unique_hub_id
from tests.gateway.test_provisioning import eventually, publish_retained
from tests.rollout_hubs import DirectorySlots, build_bundle

CUFF = "C0:FF:EE:00:0A:01"
CAMPAIGN = "5b1c2d3e-4f50-4a61-8b72-9c8d7e6f5a40"


class StatusWatcher:
    """Every status the hub publishes, in order."""

    def __init__(self, mqtt_url: str, hub: str) -> None:
        self.seen: list[HubStatus] = []
        self._lock = threading.Lock()
        target = MqttTarget(mqtt_url)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect(target.host, target.port)
        self.client.subscribe(topic_status(hub), qos=1)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            with self._lock:
                self.seen.append(HubStatus.model_validate_json(msg.payload))

    def states(self) -> list[str]:
        with self._lock:
            return [s.software_update.state for s in self.seen if s.software_update]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_the_hub_updates_itself_to_the_desired_software_and_goes_on_reading(
    tmp_path: Path, mqtt_url: str
) -> None:
    hub = unique_hub_id("upd")
    repo = tmp_path / "repo"
    target = build_bundle(repo, "B")
    slots = DirectorySlots(tmp_path / "slots", repo, "A", set())
    config = HubConfig(
        hub_id=hub,
        version=1,
        issued_at=datetime.now(UTC),
        devices=[AllowedDevice(address=CUFF, profile=DeviceProfile.BLOOD_PRESSURE)],
        software=DesiredSoftware(version="B", target=target, campaign_id=CAMPAIGN),
    )
    publish_retained(mqtt_url, topic_config(hub), config.model_dump_json().encode())
    watcher = StatusWatcher(mqtt_url, hub)
    base = GatewayConfig(hub_id=hub, mqtt_url=mqtt_url, data_dir=tmp_path / "hub", devices=[])
    try:
        async with SimulatedRadio() as radio:
            cuff = SimulatedCuff(radio, address=CUFF, serial="UPD-1", seed=3)
            await cuff.start()
            gateways: list[HubGateway] = []
            for _boot in range(2):
                gateway = HubGateway(base, radio.bleak_backends(), update_agent=slots)
                gateways.append(gateway)
                stop = asyncio.Event()
                task = asyncio.create_task(gateway.run(stop))
                await cuff.measure()

                async def read_once(g: HubGateway = gateway) -> bool:
                    return CUFF in g.devices and g.devices[CUFF].readings == 1

                await eventually(read_once, 30)
                if _boot == 0:

                    async def restart_asked() -> bool:
                        return slots.restart_wanted.is_set()

                    await eventually(restart_asked, 30)
                    slots.restart_wanted.clear()
                else:

                    async def confirmed(g: HubGateway = gateway) -> bool:
                        p = g.updater.progress if g.updater else None
                        return p is not None and p.state == "confirmed"

                    await eventually(confirmed, 30)
                stop.set()
                await task
            assert slots.running_version() == "B" and slots.previous_version() == "A"

        async def reported() -> bool:
            return "confirmed" in watcher.states()

        await eventually(reported)
        states = watcher.states()
        # Statuses are coalesced (never two unacknowledged: the newest state wins), so a
        # quick download may be reported only by the states after it.
        assert states[0] in {"downloading", "installing", "confirming"}, states
        if "downloading" in states:
            assert states.index("downloading") < states.index("confirming")
        assert states.index("confirming") < states.index("confirmed")
        versions = [s.software_version for s in watcher.seen if s.online]
        assert versions[0] == "A" and versions[-1] == "B"
        last = [s for s in watcher.seen if s.online][-1]
        assert last.software_update is not None
        assert (last.software_update.version, last.software_update.campaign_id) == ("B", CAMPAIGN)
    finally:
        watcher.close()
        publish_retained(mqtt_url, topic_config(hub), b"")
        publish_retained(mqtt_url, topic_status(hub), b"")

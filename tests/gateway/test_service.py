"""The gateway as a systemd service: readiness, watchdog pings, clean stop."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from device_drivers.simulation.radio import SimulatedRadio
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from gateway.service import serve
from tests.factories import unique_hub_id
from tests.mqtt_helpers import clear_retained_status


async def test_notifies_ready_pings_watchdog_and_stops(
    tmp_path: Path, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    hub = unique_hub_id()
    config = GatewayConfig(hub_id=hub, mqtt_url=mqtt_url, data_dir=tmp_path / "hub")
    stop = asyncio.Event()
    messages: list[str] = []

    def drain() -> None:
        while True:
            try:
                messages.append(sock.recv(256).decode())
            except BlockingIOError:
                return

    asyncio.get_running_loop().add_reader(sock.fileno(), drain)  # as systemd reads them
    async with SimulatedRadio() as radio:
        task = asyncio.create_task(serve(HubGateway(config, radio.bleak_backends()), stop))
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(task, 30)
    await asyncio.sleep(0.1)
    asyncio.get_running_loop().remove_reader(sock.fileno())
    sock.close()
    assert messages[0] in {"READY=1", "WATCHDOG=1"}
    assert "READY=1" in messages
    assert messages.count("WATCHDOG=1") >= 5
    assert messages[-1] == "STOPPING=1"
    clear_retained_status(mqtt_url, hub)

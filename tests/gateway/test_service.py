"""The gateway as a systemd service: readiness, watchdog pings, clean stop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from device_drivers.simulation.radio import SimulatedRadio
from gateway import failpoints
from gateway.config import GatewayConfig
from gateway.hub import HubGateway
from gateway.service import serve
from tests.factories import bp_reading, unique_hub_id
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


async def test_watchdog_pings_stop_while_the_publisher_is_wedged(
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
    pings: list[float] = []

    def drain() -> None:
        while True:
            try:
                if sock.recv(256) == b"WATCHDOG=1":
                    pings.append(time.monotonic())
            except BlockingIOError:
                return

    async def until(check: Callable[[], bool], within_s: float = 15.0) -> None:
        deadline = time.monotonic() + within_s
        while not check():
            assert time.monotonic() < deadline, check
            await asyncio.sleep(0.05)

    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), drain)
    stop = asyncio.Event()
    failpoints.configure("outbox.mark_sent=raise")  # the disk is full
    try:
        async with SimulatedRadio() as radio:
            gateway = HubGateway(config, radio.bleak_backends())
            gateway.publisher.stall_after_s = 1.0
            gateway.outbox.add(bp_reading(170, 100))
            task = asyncio.create_task(serve(gateway, stop))
            await until(lambda: gateway.publisher.errors >= 1)
            await until(lambda: not gateway.healthy())
            await asyncio.sleep(0.2)
            withheld_from = time.monotonic()
            await asyncio.sleep(1.0)
            assert [p for p in pings if p >= withheld_from] == [], "no ping while wedged"
            assert pings, "pinged while healthy"
            assert not task.done(), "the gateway keeps running; systemd decides"

            failpoints.configure("")  # space again: it recovers, pings resume
            await until(lambda: gateway.outbox.depth() == 0 and gateway.healthy())
            resumed_from = time.monotonic()
            await asyncio.sleep(0.5)
            assert len([p for p in pings if p >= resumed_from]) >= 2
            stop.set()
            await asyncio.wait_for(task, 30)
    finally:
        failpoints.configure("")
        loop.remove_reader(sock.fileno())
        sock.close()
        clear_retained_status(mqtt_url, hub)

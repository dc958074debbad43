"""The simulated radio through plain bleak: scan, connect, GATT, security, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError, BleakGATTProtocolError

from device_drivers.bleak_backends import BleakBackends
from device_drivers.simulation.cuff import SimulatedCuff
from device_drivers.simulation.radio import SimulatedATTError, SimulatedRadio

CUFF = "C4:10:00:00:00:01"
BP_SERVICE = "00001810-0000-1000-8000-00805f9b34fb"
CCCD_PROTECTED = "00002a35-0000-1000-8000-00805f9b34fb"

pytestmark = pytest.mark.timeout(30)


def uuid16(value: int) -> str:
    return f"0000{value:04x}-0000-1000-8000-00805f9b34fb"


@pytest.fixture
async def radio() -> AsyncIterator[SimulatedRadio]:
    async with SimulatedRadio(address="F0:00:00:00:00:01") as r:
        yield r


async def start_cuff(radio: SimulatedRadio, **kwargs: object) -> SimulatedCuff:
    options: dict[str, object] = {"address": CUFF, "serial": "SIM-000123", "seed": 7}
    options.update(kwargs)
    cuff = SimulatedCuff(radio, **options)  # type: ignore[arg-type]
    await cuff.start()
    return cuff


async def find(backends: BleakBackends, address: str = CUFF) -> BLEDevice:
    device = await BleakScanner.find_device_by_address(
        address, timeout=2.0, **backends.scanner_options()
    )
    assert device is not None, f"{address} not found"
    return device


async def test_bleak_backends_default_is_platform() -> None:
    assert BleakBackends().is_platform
    assert BleakBackends().scanner is None and BleakBackends().client is None


async def test_scan_finds_cuff_with_name_uuid_and_rssi(radio: SimulatedRadio) -> None:
    cuff = await start_cuff(radio)
    await cuff.start_advertising()
    backends = radio.bleak_backends()
    seen: list[tuple[BLEDevice, AdvertisementData]] = []

    # bleak passes extra options to the scanner backend, detection callback included.
    options = {**backends.scanner_options(), "detection_callback": lambda d, a: seen.append((d, a))}
    device = await BleakScanner.find_device_by_address(CUFF.lower(), timeout=2.0, **options)
    assert device is not None and device.address == CUFF
    assert device.name == "BP-Cuff 0123"
    _, adv = seen[-1]
    assert adv.local_name == "BP-Cuff 0123"
    assert adv.service_uuids == [BP_SERVICE]
    assert adv.rssi == -50

    found = await BleakScanner.discover(
        timeout=0.1, return_adv=True, service_uuids=[BP_SERVICE], **backends.scanner_options()
    )
    assert list(found) == [CUFF]
    assert found[CUFF][1].local_name == "BP-Cuff 0123"
    other = await BleakScanner.discover(
        timeout=0.1, service_uuids=[uuid16(0x181D)], **backends.scanner_options()
    )
    assert other == []
    await cuff.stop()


async def test_silent_cuff_is_not_found(radio: SimulatedRadio) -> None:
    cuff = await start_cuff(radio)  # no measurement: it does not advertise
    found = await BleakScanner.find_device_by_address(
        CUFF, timeout=0.2, **radio.bleak_backends().scanner_options()
    )
    assert found is None
    await cuff.stop()


async def test_connect_discover_read_dis(radio: SimulatedRadio) -> None:
    cuff = await start_cuff(radio)
    await cuff.start_advertising()
    backends = radio.bleak_backends()
    device = await find(backends)
    async with BleakClient(device, timeout=2.0, backend=backends.client) as client:
        assert client.is_connected
        assert client.mtu_size == 517
        uuids = {s.uuid for s in client.services}
        assert {uuid16(0x180A), uuid16(0x1805), uuid16(0x180F), BP_SERVICE} <= uuids
        bpm = client.services.get_characteristic(uuid16(0x2A35))
        assert bpm is not None and bpm.properties == ["indicate"]
        assert bpm.get_descriptor(uuid16(0x2902)) is not None

        manufacturer = await client.read_gatt_char(uuid16(0x2A29))
        assert bytes(manufacturer) == b"Hemhub Simulated Devices"
        serial = bytes(await client.read_gatt_char(uuid16(0x2A25)))
        assert serial.rstrip(b"\x00") == b"SIM-000123" and serial.endswith(b"\x00")
        assert bytes(await client.read_gatt_char(uuid16(0x2A19))) == bytes([90])
    assert not client.is_connected
    await cuff.stop()


async def test_att_errors_carry_the_code(radio: SimulatedRadio) -> None:
    cuff = await start_cuff(radio, clock_writable=False)
    await cuff.start_advertising()
    backends = radio.bleak_backends()
    async with BleakClient(await find(backends), timeout=2.0, backend=backends.client) as client:
        with pytest.raises(BleakGATTProtocolError) as app_error:
            await client.write_gatt_char(uuid16(0x2A2B), bytes(10), response=True)
        assert app_error.value.code == 0x80
        assert "0x80" in str(app_error.value)
        assert isinstance(app_error.value, SimulatedATTError)

        with pytest.raises(BleakError, match="0x03") as not_writable:
            await client.write_gatt_char(uuid16(0x2A49), b"\xff\xff", response=True)
        assert isinstance(not_writable.value, BleakGATTProtocolError)
        assert not_writable.value.code == 0x03
        # The read-only value is untouched.
        assert bytes(await client.read_gatt_char(uuid16(0x2A49))) == bytes([0x07, 0x00])

        with pytest.raises(BleakGATTProtocolError) as not_readable:
            await client.read_gatt_char(uuid16(0x2A35))
        assert not_readable.value.code == 0x02
    await cuff.stop()


async def test_notifications_and_indications(radio: SimulatedRadio) -> None:
    cuff = await start_cuff(radio, idle_disconnect_s=2.0)
    await cuff.measure()
    backends = radio.bleak_backends()
    battery: list[bytes] = []
    indications: list[bytes] = []
    async with BleakClient(await find(backends), timeout=2.0, backend=backends.client) as client:
        await client.start_notify(uuid16(0x2A19), lambda _c, d: battery.append(bytes(d)))
        await cuff.set_battery_level(42)
        await client.start_notify(uuid16(0x2A35), lambda _c, d: indications.append(bytes(d)))
        for _ in range(100):
            if battery and indications and cuff.backlog[0].delivered:
                break
            await asyncio.sleep(0.01)
        assert battery == [bytes([42])]
        assert [bytes.fromhex(cuff.backlog[0].record["raw_hex"])] == indications
        assert cuff.backlog[0].delivered  # confirmed by the central

        await client.stop_notify(uuid16(0x2A19))
        await cuff.set_battery_level(41)
        await asyncio.sleep(0.05)
        assert battery == [bytes([42])]
    await cuff.stop()


async def test_disconnected_callback_when_the_cuff_hangs_up(radio: SimulatedRadio) -> None:
    cuff = await start_cuff(radio, idle_disconnect_s=0.05)
    await cuff.measure()
    backends = radio.bleak_backends()
    gone = asyncio.Event()
    client = BleakClient(
        await find(backends), lambda _c: gone.set(), timeout=2.0, backend=backends.client
    )
    await client.connect()
    await client.start_notify(uuid16(0x2A35), lambda _c, _d: None)
    await asyncio.wait_for(gone.wait(), 2.0)
    assert not client.is_connected
    await client.disconnect()  # harmless when already disconnected
    await cuff.stop()


async def test_pairing_bond_and_reencryption(radio: SimulatedRadio) -> None:
    cuff = await start_cuff(radio, bond_required=True, idle_disconnect_s=2.0)
    await cuff.start_advertising()
    backends = radio.bleak_backends()

    async with BleakClient(await find(backends), timeout=2.0, backend=backends.client) as client:
        with pytest.raises(BleakGATTProtocolError) as insufficient:
            await client.start_notify(CCCD_PROTECTED, lambda _c, _d: None)
        assert insufficient.value.code == 0x0F
        assert "0x0F" in str(insufficient.value)
        await client.pair()
        await client.start_notify(CCCD_PROTECTED, lambda _c, _d: None)
    assert await radio.bonded_addresses() == [CUFF]
    assert radio.pairing_count == 1 and cuff.pairing_count == 1

    # Reconnect: encrypted from the bond, no new pairing, cached service table.
    async with BleakClient(await find(backends), timeout=2.0, backend=backends.client) as client:
        await client.start_notify(CCCD_PROTECTED, lambda _c, _d: None)
    assert cuff.pairing_count == 1 and radio.pairing_count == 1
    assert radio.reencryption_count == 1
    assert radio.discovery_count == {CUFF: 1}

    # Unpair: the bond is gone, the cuff asks for security again.
    async with BleakClient(await find(backends), timeout=2.0, backend=backends.client) as client:
        await client.unpair()
    assert await radio.bonded_addresses() == []
    async with BleakClient(await find(backends), timeout=2.0, backend=backends.client) as client:
        with pytest.raises(BleakGATTProtocolError):
            await client.start_notify(CCCD_PROTECTED, lambda _c, _d: None)
    await cuff.stop()


async def test_bond_survives_a_restart_with_a_keystore_file(tmp_path: Path) -> None:
    keys = tmp_path / "bonds.json"
    async with SimulatedRadio(address="F0:00:00:00:00:02", keystore_path=keys) as radio:
        cuff = await start_cuff(radio, bond_required=True)
        await cuff.start_advertising()
        backends = radio.bleak_backends()
        async with BleakClient(
            await find(backends), timeout=2.0, pair=True, backend=backends.client
        ) as client:
            await client.start_notify(CCCD_PROTECTED, lambda _c, _d: None)
        assert radio.pairing_count == 1
        cuff_keystore = cuff.device.keystore
        await cuff.stop()
    assert keys.exists()

    async with SimulatedRadio(address="F0:00:00:00:00:02", keystore_path=keys) as radio:
        assert await radio.bonded_addresses() == [CUFF]
        cuff = await start_cuff(radio, bond_required=True)
        cuff.device.keystore = cuff_keystore  # the cuff keeps its bond too
        await cuff.start_advertising()
        backends = radio.bleak_backends()
        async with BleakClient(
            await find(backends), timeout=2.0, backend=backends.client
        ) as client:
            await client.start_notify(CCCD_PROTECTED, lambda _c, _d: None)
        assert radio.pairing_count == 0 and radio.reencryption_count == 1
        await cuff.stop()


async def test_powered_off_cuff_times_out_then_recovers(radio: SimulatedRadio) -> None:
    cuff = await start_cuff(radio)
    await cuff.start_advertising()
    await cuff.power_off()
    backends = radio.bleak_backends()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError, match="timed out"):
        await BleakClient(CUFF, timeout=0.2, backend=backends.client).connect()
    assert loop.time() - started < 1.0
    assert (
        await BleakScanner.find_device_by_address(CUFF, 0.2, **backends.scanner_options()) is None
    )

    await cuff.power_on()  # still wants to advertise: it was advertising before
    async with BleakClient(await find(backends), timeout=2.0, backend=backends.client) as client:
        assert client.is_connected
    await cuff.stop()


async def test_power_off_drops_the_connection(radio: SimulatedRadio) -> None:
    cuff = await start_cuff(radio)
    await cuff.start_advertising()
    backends = radio.bleak_backends()
    gone = asyncio.Event()
    client = BleakClient(
        await find(backends), lambda _c: gone.set(), timeout=2.0, backend=backends.client
    )
    await client.connect()
    await cuff.power_off()
    await asyncio.wait_for(gone.wait(), 1.0)
    with pytest.raises(BleakError):
        await client.read_gatt_char(uuid16(0x2A29))
    await cuff.stop()


async def test_two_radios_do_not_mix() -> None:
    async with SimulatedRadio() as first, SimulatedRadio() as second:
        assert first.bleak_backends() is first.bleak_backends()
        assert first.bleak_backends().client is not second.bleak_backends().client
        cuff = await start_cuff(first)
        await cuff.start_advertising()
        assert (
            await BleakScanner.find_device_by_address(
                CUFF, 0.2, **second.bleak_backends().scanner_options()
            )
            is None
        )
        assert await find(first.bleak_backends()) is not None
        await cuff.stop()


async def test_radio_not_started_is_not_available() -> None:
    radio = SimulatedRadio()
    with pytest.raises(BleakError, match="not started"):
        await BleakScanner.discover(timeout=0.01, **radio.bleak_backends().scanner_options())

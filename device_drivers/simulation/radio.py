"""A simulated Bluetooth LE radio: bleak backends over bumble's in-process `LocalLink`.

`SimulatedRadio` owns one bumble `LocalLink` (the air) and one bumble `Device` on it, the
hub's "adapter" (random static address, bond store in memory or in a JSON key store file).
`bleak_backends()` returns `BaseBleakScanner` / `BaseBleakClient` subclasses bound to this
radio, so that unchanged bleak code

    BleakScanner(..., backend=backends.scanner)
    BleakClient(device, backend=backends.client)

scans, connects, pairs (LE Secure Connections, Just Works, bonded), re-encrypts from the
bond, discovers GATT and exchanges reads, writes, notifications and indications with
simulated peripherals (see `peripheral.py`) as real ATT PDUs. Nothing is mocked above HCI.

Semantics follow BlueZ, the hub's real stack:
- a connect to a peripheral that does not advertise times out (`TimeoutError`);
- a bonded peer is re-encrypted from the bond right after connecting;
- the disconnected callback runs on every disconnection;
- ATT errors raise `SimulatedATTError`, a `BleakGATTProtocolError` whose `.code` is the ATT
  error code and whose message carries it ("ATT error 0x0F (Insufficient Encryption)").
Discovered service tables are cached per address (Home Assistant's "cached service
tables" rule); `unpair()` or `forget_services()` drops the cache.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Protocol, TypeVar

from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import (
    AdvertisementData,
    AdvertisementDataCallback,
    BaseBleakScanner,
)
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    PROTOCOL_ERROR_CODES,
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakError,
    BleakGATTProtocolError,
)
from bleak.uuids import normalize_uuid_16
from bumble import att, core, hci, pairing
from bumble.controller import Controller
from bumble.device import Advertisement, Connection, Device
from bumble.host import Host
from bumble.keys import JsonKeyStore, KeyStore, MemoryKeyStore
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from device_drivers.bleak_backends import BleakBackends

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

CCCD_UUID = normalize_uuid_16(0x2902)
DEFAULT_ATT_MTU = 23
#: BlueZ asks for the largest ATT MTU; bumble's server accepts up to 517.
REQUESTED_ATT_MTU = 517
#: An attribute value is at most 512 bytes (Core Spec Vol 3 Part F 3.2.9): a longer write
#: without response is dropped by the server, so bleak's limit for one is capped there.
MAX_ATTRIBUTE_VALUE = 512
SIMULATED_RSSI = -50  # bumble's LocalLink reports every advertisement at -50 dBm

# Advertising data types (Bluetooth Core Supplement, Part A).
_AD_INCOMPLETE_16 = 0x02
_AD_COMPLETE_16 = 0x03
_AD_INCOMPLETE_32 = 0x04
_AD_COMPLETE_32 = 0x05
_AD_INCOMPLETE_128 = 0x06
_AD_COMPLETE_128 = 0x07
_AD_SHORT_NAME = 0x08
_AD_COMPLETE_NAME = 0x09
_AD_TX_POWER = 0x0A
_AD_SERVICE_DATA_16 = 0x16
_AD_MANUFACTURER = 0xFF


class _Stoppable(Protocol):
    async def stop(self) -> None: ...


class SimulatedATTError(BleakGATTProtocolError):
    """An ATT Error Response from a simulated peripheral, with the ATT error code.

    `code` (from `BleakGATTProtocolError`) is the ATT error code, e.g. 0x0F for
    insufficient encryption, 0x03 write not permitted, 0x80 an application error.
    """

    def __init__(self, error_code: int, context: str = "") -> None:
        super().__init__(error_code)
        self.context = context

    def __str__(self) -> str:
        code = int(self.args[0])
        name = PROTOCOL_ERROR_CODES.get(code, "Unknown code")
        prefix = f"{self.context}: " if self.context else ""
        return f"{prefix}ATT error 0x{code:02X} ({name})"


class _LinkController(Controller):
    """bumble's link-layer controller with a working LE Create Connection Cancel.

    bumble 0.0.236's controller answers the cancel command but keeps the pending
    connection and never reports its end, so `Device.connect(timeout=...)` to a peer that
    does not advertise hangs forever and every later connect is refused. The spec says:
    drop the pending connection and report an LE Connection Complete with status 0x02
    (unknown connection identifier), after the Command Complete.
    """

    def on_hci_le_create_connection_cancel_command(
        self, _command: hci.HCI_LE_Create_Connection_Cancel_Command
    ) -> hci.HCI_StatusReturnParameters:
        pending = self.pending_le_connection
        if pending is None:
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
        self.pending_le_connection = None
        event = hci.HCI_LE_Connection_Complete_Event(
            status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
            connection_handle=0,
            role=hci.Role.CENTRAL,
            peer_address_type=pending.peer_address_type,
            peer_address=pending.peer_address,
            connection_interval=0,
            peripheral_latency=0,
            supervision_timeout=0,
            central_clock_accuracy=0,
        )
        # After the Command Complete that our caller sends when we return.
        asyncio.get_running_loop().call_soon(self.send_hci_packet, event)
        return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)


def parse_address(address: str) -> hci.Address:
    """A simulated device address (random static, "C4:..."), as bumble's `Address`."""
    try:
        return hci.Address(address.upper(), hci.Address.RANDOM_DEVICE_ADDRESS)
    except (ValueError, core.InvalidArgumentError) as exc:
        raise BleakError(f"invalid Bluetooth address {address!r}") from exc


def bleak_uuid(value: core.UUID) -> str:
    """A bumble UUID as bleak writes it: the full 128-bit lower-case form."""
    little_endian = value.to_bytes(force_128=True)
    return str(uuidlib.UUID(bytes=bytes(reversed(little_endian))))


def _parse_advertisement(
    advertisement: Advertisement,
) -> tuple[str | None, list[str], dict[int, bytes], dict[str, bytes], int | None]:
    """(local name, service UUIDs, manufacturer data, service data, tx power) of a report."""
    name: str | None = None
    short_name: str | None = None
    uuids: list[str] = []
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    tx_power: int | None = None
    for ad_type, data in advertisement.data.ad_structures:
        if ad_type == _AD_COMPLETE_NAME:
            name = data.decode("utf-8", errors="replace")
        elif ad_type == _AD_SHORT_NAME:
            short_name = data.decode("utf-8", errors="replace")
        elif ad_type in (_AD_INCOMPLETE_16, _AD_COMPLETE_16):
            for i in range(0, len(data) - 1, 2):
                uuids.append(normalize_uuid_16(int.from_bytes(data[i : i + 2], "little")))
        elif ad_type in (_AD_INCOMPLETE_32, _AD_COMPLETE_32):
            for i in range(0, len(data) - 3, 4):
                uuids.append(bleak_uuid(core.UUID.from_bytes(data[i : i + 4])))
        elif ad_type in (_AD_INCOMPLETE_128, _AD_COMPLETE_128):
            for i in range(0, len(data) - 15, 16):
                uuids.append(bleak_uuid(core.UUID.from_bytes(data[i : i + 16])))
        elif ad_type == _AD_MANUFACTURER and len(data) >= 2:
            manufacturer[int.from_bytes(data[:2], "little")] = bytes(data[2:])
        elif ad_type == _AD_SERVICE_DATA_16 and len(data) >= 2:
            key = normalize_uuid_16(int.from_bytes(data[:2], "little"))
            service_data[key] = bytes(data[2:])
        elif ad_type == _AD_TX_POWER and data:
            tx_power = int.from_bytes(data[:1], "little", signed=True)
    # The accumulator merges advertisement and scan response: drop repeated UUIDs.
    unique = list(dict.fromkeys(uuids))
    return name or short_name, unique, manufacturer, service_data, tx_power


class SimulatedRadio:
    """One simulated radio: a `LocalLink`, and the hub's adapter on it.

    Args:
        address: the adapter's random static address; a fresh one when None.
        keystore_path: a JSON file for the bond store (bumble's `JsonKeyStore`, namespaced
            by the adapter address), so bonds survive a restart; in memory when None.
        name: the adapter's name.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        keystore_path: str | Path | None = None,
        name: str = "hemhub-hub",
    ) -> None:
        self._address = parse_address(address) if address else hci.Address.generate_static_address()
        if not self._address.is_static:
            raise ValueError(f"{address!r} is not a random static address (top bits 11)")
        self._keystore_path = Path(keystore_path) if keystore_path is not None else None
        self._name = name
        self._link: LocalLink | None = None
        self._device: Device | None = None
        self._controllers: dict[int, _LinkController] = {}
        self._started = False
        self._scanners: list[_ScannerBase] = []
        self._scan_lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()
        self._clients: set[_ClientBase] = set()
        self._peripherals: list[_Stoppable] = []
        self._service_cache: dict[str, BleakGATTServiceCollection] = {}
        self._mtu: dict[str, int] = {}
        self._names: dict[str, str] = {}
        self._backends: BleakBackends | None = None
        #: Completed pairings initiated by this radio's clients (bonds created).
        self.pairing_count = 0
        #: Links encrypted from an existing bond (no new pairing).
        self.reencryption_count = 0
        #: GATT discoveries per address (the service cache avoids repeats).
        self.discovery_count: dict[str, int] = {}

    # --- life cycle -------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The adapter's address, "AA:BB:CC:DD:EE:FF"."""
        return self._address.to_string(False)

    @property
    def started(self) -> bool:
        return self._started

    @property
    def link(self) -> LocalLink:
        if self._link is None:
            raise RuntimeError("the simulated radio is not started")
        return self._link

    @property
    def device(self) -> Device:
        """The hub's bumble `Device` (the central)."""
        if self._device is None:
            raise RuntimeError("the simulated radio is not started")
        return self._device

    @property
    def keystore(self) -> KeyStore:
        keystore = self.device.keystore
        assert keystore is not None  # set in start()
        return keystore

    async def start(self) -> None:
        if self._started:
            return
        self._link = LocalLink()
        device = self._device = self.create_device(self._name, self._address)
        if self._keystore_path is not None:
            device.keystore = JsonKeyStore(self.address, str(self._keystore_path))
        else:
            device.keystore = MemoryKeyStore()
        # LE Secure Connections, Just Works (no I/O on the hub), bonding. Only the LTK is
        # distributed: with identity keys bumble would re-resolve the peer's address by
        # scanning before each connect, without a timeout.
        enc_only = pairing.PairingDelegate.KeyDistribution.DISTRIBUTE_ENCRYPTION_KEY
        device.pairing_config_factory = lambda _connection: pairing.PairingConfig(
            sc=True,
            mitm=False,
            bonding=True,
            delegate=pairing.PairingDelegate(
                io_capability=pairing.PairingDelegate.IoCapability.NO_OUTPUT_NO_INPUT,
                local_initiator_key_distribution=enc_only,
                local_responder_key_distribution=enc_only,
            ),
        )
        await device.power_on()
        device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for client in list(self._clients):
            await client.disconnect()
        for peripheral in reversed(self._peripherals):
            await peripheral.stop()
        self._peripherals.clear()
        device = self.device
        if device.scanning:
            await device.stop_scanning()
        self._scanners.clear()
        await device.power_off()
        device.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)

    async def __aenter__(self) -> SimulatedRadio:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- for simulated peripherals --------------------------------------------------

    def create_device(self, name: str, address: hci.Address) -> Device:
        """A bumble `Device` with its own controller on this radio's link (not powered)."""
        controller = _LinkController(name, link=self.link)
        device = Device(
            name=name, address=address, host=Host(controller, AsyncPipeSink(controller))
        )
        self._controllers[id(device)] = controller
        return device

    def register_peripheral(self, peripheral: _Stoppable) -> None:
        """A simulated peripheral on this link; `stop()` stops it too."""
        if peripheral not in self._peripherals:
            self._peripherals.append(peripheral)

    def set_in_range(self, device: Device, in_range: bool) -> None:
        """Put a device's controller on the link or take it off (out of range / off)."""
        controller = self._controllers[id(device)]
        if in_range:
            self.link.add_controller(controller)
        elif controller in self.link.controllers:
            self.link.remove_controller(controller)

    # --- bonds and caches -------------------------------------------------------------

    async def bonded_addresses(self) -> list[str]:
        return sorted(name for name, _ in await self.keystore.get_all())

    async def is_bonded(self, address: str) -> bool:
        return await self.keystore.get(address.upper()) is not None

    def forget_services(self, address: str) -> None:
        """Drop the cached service table of a device (e.g. after a firmware update)."""
        self._service_cache.pop(address.upper(), None)

    # --- bleak ----------------------------------------------------------------------

    def bleak_backends(self) -> BleakBackends:
        """Scanner and client backend classes bound to this radio (made once per radio)."""
        if self._backends is None:
            scanner = type("SimulatedBleakScanner", (_ScannerBase,), {"radio": self})
            client = type("SimulatedBleakClient", (_ClientBase,), {"radio": self})
            self._backends = BleakBackends(scanner=scanner, client=client)
        return self._backends

    def require_started(self) -> None:
        if not self._started:
            raise BleakBluetoothNotAvailableError(
                "the simulated radio is not started", BleakBluetoothNotAvailableReason.POWERED_OFF
            )

    async def _add_scanner(self, scanner: _ScannerBase, active: bool) -> None:
        self.require_started()
        async with self._scan_lock:
            if scanner in self._scanners:
                return
            self._scanners.append(scanner)
            if not self.device.scanning:
                # Like BlueZ: one discovery on the adapter, shared by every scanner.
                await self.device.start_scanning(active=active, filter_duplicates=False)

    async def _remove_scanner(self, scanner: _ScannerBase) -> None:
        async with self._scan_lock:
            if scanner in self._scanners:
                self._scanners.remove(scanner)
            if not self._scanners and self._started and self.device.scanning:
                await self.device.stop_scanning()

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        name, *_ = _parse_advertisement(advertisement)
        address = advertisement.address.to_string(False)
        if name:
            self._names[address] = name
        for scanner in list(self._scanners):
            scanner.handle_advertisement(advertisement)


class _ScannerBase(BaseBleakScanner):
    """bleak scanner backend over a `SimulatedRadio` (subclassed per radio)."""

    radio: ClassVar[SimulatedRadio]

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode != "passive"

    async def start(self) -> None:
        self.seen_devices = {}
        await self.radio._add_scanner(self, self._active)

    async def stop(self) -> None:
        await self.radio._remove_scanner(self)

    def handle_advertisement(self, advertisement: Advertisement) -> None:
        name, uuids, manufacturer, service_data, tx_power = _parse_advertisement(advertisement)
        if not self.is_allowed_uuid(uuids):
            return
        address = advertisement.address.to_string(False)
        rssi = advertisement.rssi if advertisement.rssi != Advertisement.RSSI_NOT_AVAILABLE else 0
        data = AdvertisementData(
            local_name=name,
            manufacturer_data=manufacturer,
            service_data=service_data,
            service_uuids=uuids,
            tx_power=tx_power,
            rssi=rssi,
            platform_data=(advertisement,),
        )
        device = self.create_or_update_device(
            address, address, name, {"radio": self.radio.address}, data
        )
        self.call_detection_callbacks(device, data)


class _ClientBase(BaseBleakClient):
    """bleak client backend over a `SimulatedRadio` (subclassed per radio)."""

    radio: ClassVar[SimulatedRadio]

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self.address = self.address.upper()
        self._connection: Connection | None = None
        self._subscriptions: dict[int, tuple[dict[int, set[Any]], Callable[[bytes], None]]] = {}

    # --- properties -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.radio._names.get(self.address, self.address)

    @property
    def mtu_size(self) -> int:
        connection = self._connection
        return connection.att_mtu if connection is not None else DEFAULT_ATT_MTU

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    # --- connection -------------------------------------------------------------------

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if self._connection is not None:
            return
        radio = self.radio
        radio.require_started()
        timeout = float(kwargs.get("timeout", self._timeout))
        peer = parse_address(self.address)
        if radio.device.find_connection_by_bd_addr(peer, transport=core.PhysicalTransport.LE):
            raise BleakError(f"{self.address} is already connected by another client")

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await asyncio.wait_for(radio._connect_lock.acquire(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"connect to {self.address}: adapter busy for {timeout:g} s"
            ) from None
        try:
            connection = await self._create_connection(peer, max(deadline - loop.time(), 0.01))
        finally:
            radio._connect_lock.release()

        self._connection = connection
        radio._clients.add(self)
        connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        try:
            await self._setup(connection, pair)
        except BaseException:
            await self.disconnect()
            raise

    async def _create_connection(self, peer: hci.Address, limit_s: float) -> Connection:
        device = self.radio.device
        try:
            return await device.connect(peer, transport=core.PhysicalTransport.LE, timeout=limit_s)
        except core.TimeoutError:
            raise TimeoutError(
                f"connect to {self.address} timed out after {limit_s:.3g} s "
                "(not advertising, out of range or off)"
            ) from None
        except asyncio.CancelledError:
            # The caller gave up: make sure the controller forgets the pending connect,
            # or a late advertisement would still complete it (and the next one fails).
            self.radio._controllers[id(device)].pending_le_connection = None
            raise
        except (core.BaseBumbleError, hci.HCI_Error) as exc:
            raise BleakError(f"connect to {self.address} failed: {exc}") from exc

    async def _setup(self, connection: Connection, pair: bool) -> None:
        radio = self.radio
        await self._att(connection.gatt_client.request_mtu(REQUESTED_ATT_MTU), "MTU exchange")
        radio._mtu[self.address] = connection.att_mtu
        if await radio.keystore.get(self.address) is not None:
            # Bonded: encrypt from the bond at once, as BlueZ does for a bonded device.
            try:
                await connection.encrypt()
            except (core.BaseBumbleError, hci.HCI_Error) as exc:
                # The peer lost the bond: the link stays unencrypted, secured reads fail
                # with ATT errors and the caller can unpair and pair again.
                logger.warning("re-encryption of %s failed: %s", self.address, exc)
            else:
                radio.reencryption_count += 1
        elif pair:
            await self.pair()
        if self._connection is None:
            raise BleakError(f"{self.address} disconnected during connection setup")
        self.services = await self._services(connection)

    async def _services(self, connection: Connection) -> BleakGATTServiceCollection:
        radio = self.radio
        cached = radio._service_cache.get(self.address)
        if cached is not None:
            return cached
        collection = await self._att(self._discover(connection), "service discovery")
        radio._service_cache[self.address] = collection
        radio.discovery_count[self.address] = radio.discovery_count.get(self.address, 0) + 1
        return collection

    async def _discover(self, connection: Connection) -> BleakGATTServiceCollection:
        client = connection.gatt_client
        radio, address = self.radio, self.address

        def max_write_without_response() -> int:
            return min(radio._mtu.get(address, DEFAULT_ATT_MTU) - 3, MAX_ATTRIBUTE_VALUE)

        collection = BleakGATTServiceCollection()
        for service in await client.discover_services():
            bleak_service = BleakGATTService(None, service.handle, bleak_uuid(service.uuid))
            collection.add_service(bleak_service)
            for characteristic in await client.discover_characteristics((), service):
                properties: list[CharacteristicPropertyName] = [
                    name
                    for bit, name in CHARACTERISTIC_PROPERTIES.items()
                    if int(characteristic.properties) & bit
                ]
                bleak_characteristic = BleakGATTCharacteristic(
                    None,
                    characteristic.handle,
                    bleak_uuid(characteristic.uuid),
                    properties,
                    max_write_without_response,
                    bleak_service,
                )
                collection.add_characteristic(bleak_characteristic)
                for descriptor in await client.discover_descriptors(characteristic):
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            None,
                            descriptor.handle,
                            bleak_uuid(descriptor.type),
                            bleak_characteristic,
                        )
                    )
        return collection

    def _on_disconnection(self, reason: int) -> None:
        connection, self._connection = self._connection, None
        self._subscriptions.clear()
        self.radio._clients.discard(self)
        if connection is None:
            return
        logger.debug("%s disconnected (reason 0x%02X)", self.address, reason)
        if self._disconnected_callback is not None:
            try:
                self._disconnected_callback()
            except Exception:
                logger.exception("disconnected callback of %s failed", self.address)

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            await connection.disconnect()
        except (core.BaseBumbleError, hci.HCI_Error, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                raise
            logger.debug("disconnect of %s: %s", self.address, exc)
        if self._connection is connection:  # no disconnection event came: clean up anyway
            self._on_disconnection(hci.HCI_ErrorCode.CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR)

    # --- security ---------------------------------------------------------------------

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        connection = self._require_connection()
        if connection.is_encrypted and await self.radio.keystore.get(self.address) is not None:
            return  # already paired and bonded
        try:
            await connection.pair()
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            raise BleakError(f"pairing with {self.address} failed: disconnected") from None
        except (core.BaseBumbleError, hci.HCI_Error) as exc:
            raise BleakError(f"pairing with {self.address} failed: {exc}") from exc
        self.radio.pairing_count += 1

    async def unpair(self) -> None:
        keystore = self.radio.keystore
        if await keystore.get(self.address) is not None:
            await keystore.delete(self.address)
        self.radio.forget_services(self.address)
        await self.disconnect()

    # --- GATT I/O ---------------------------------------------------------------------

    def _require_connection(self) -> Connection:
        if self._connection is None:
            raise BleakError(f"not connected to {self.address}")
        return self._connection

    async def _att(self, operation: Awaitable[_T], what: str) -> _T:
        try:
            return await operation
        except att.ATT_Error as exc:
            raise SimulatedATTError(exc.error_code, what) from exc
        except (core.TimeoutError, TimeoutError) as exc:
            raise BleakError(f"{what}: ATT timeout") from exc
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            # bumble cancels a pending ATT request when the link drops.
            raise BleakError(f"{what}: {self.address} disconnected") from None
        except core.BaseBumbleError as exc:
            raise BleakError(f"{what}: {exc}") from exc

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        client = self._require_connection().gatt_client
        if use_cached and characteristic.handle in client.cached_values:
            return bytearray(client.cached_values[characteristic.handle][1])
        value = await self._att(
            client.read_value(characteristic.handle), f"read {characteristic.uuid}"
        )
        return bytearray(value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        client = self._require_connection().gatt_client
        value = await self._att(
            client.read_value(descriptor.handle), f"read descriptor {descriptor.handle}"
        )
        return bytearray(value)

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        client = self._require_connection().gatt_client
        await self._att(
            client.write_value(characteristic.handle, bytes(data), with_response=response),
            f"write {characteristic.uuid}",
        )

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        client = self._require_connection().gatt_client
        await self._att(
            client.write_value(descriptor.handle, bytes(data), with_response=True),
            f"write descriptor {descriptor.handle}",
        )

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        client = self._require_connection().gatt_client
        cccd = characteristic.get_descriptor(CCCD_UUID)
        if cccd is None:
            raise BleakError(f"{characteristic.uuid} has no CCCD: cannot notify")
        # Notifications are preferred when both are offered (bleak's rule).
        if "notify" in characteristic.properties:
            bits, table = 0x0001, client.notification_subscribers
        elif "indicate" in characteristic.properties:
            bits, table = 0x0002, client.indication_subscribers
        else:
            raise BleakError(f"{characteristic.uuid} supports neither notify nor indicate")
        address = self.address

        def subscriber(value: bytes) -> None:
            # Runs inside bumble's PDU handler; an exception here would also swallow the
            # indication confirmation, so it is logged and contained.
            try:
                callback(bytearray(value))
            except Exception:
                logger.exception(
                    "notify callback for %s of %s failed", characteristic.uuid, address
                )

        handle = characteristic.handle
        await self._unsubscribe(handle)
        subscribers: dict[int, set[Any]] = table
        subscribers.setdefault(handle, set()).add(subscriber)
        self._subscriptions[handle] = (subscribers, subscriber)
        try:
            await self._att(
                client.write_value(cccd.handle, struct.pack("<H", bits), with_response=True),
                f"subscribe {characteristic.uuid}",
            )
        except BaseException:
            await self._unsubscribe(handle)
            raise

    async def _unsubscribe(self, handle: int) -> bool:
        entry = self._subscriptions.pop(handle, None)
        if entry is None:
            return False
        table, subscriber = entry
        subscribers = table.get(handle)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del table[handle]
        return True

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        connection = self._require_connection()
        if not await self._unsubscribe(characteristic.handle):
            return
        cccd = characteristic.get_descriptor(CCCD_UUID)
        if cccd is not None:
            await self._att(
                connection.gatt_client.write_value(cccd.handle, b"\x00\x00", with_response=True),
                f"unsubscribe {characteristic.uuid}",
            )


def _being_cancelled() -> bool:
    """Whether the current task itself is being cancelled (not just an inner future)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


__all__ = [
    "DEFAULT_ATT_MTU",
    "SIMULATED_RSSI",
    "SimulatedATTError",
    "SimulatedRadio",
    "bleak_uuid",
    "parse_address",
]

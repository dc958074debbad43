"""smpclient's BLE transport on the hub's bleak backends (the real radio or a simulated one).

smpclient 7.3 (`smpclient[ble]`) works with bleak 3 as it is, but its `SMPBLETransport`
creates `BleakScanner.find_device_by_address(...)` and `BleakClient(device, ...)` without a
`backend=` argument, so it always uses bleak's platform backend (BlueZ on the hub) and can
never reach the simulated radio (a bleak backend: `bleak_backends.py`). This subclass
replaces that one step, `_connect`, for non-platform backends; framing, notifications,
reassembly, MTU handling and every request stay smpclient's. On the platform backend it is
smpclient's own `_connect` unchanged.
"""

from __future__ import annotations

from bleak import BleakClient, BleakScanner
from smpclient.transport import SMP_CHARACTERISTIC_UUID, SMP_SERVICE_UUID
from smpclient.transport.ble import (
    SMPBLETransport,
    SMPBLETransportDeviceNotFound,
    SMPBLETransportNotSMPServer,
)

from device_drivers.bleak_backends import PLATFORM_BACKENDS, BleakBackends


class BackendSMPBLETransport(SMPBLETransport):
    """`SMPBLETransport` that scans and connects through `backends`."""

    def __init__(self, backends: BleakBackends = PLATFORM_BACKENDS) -> None:
        super().__init__()
        self._backends = backends

    @property
    def client(self) -> BleakClient:
        """The connected bleak client (for Device Information reads on the same link)."""
        return self._client

    async def _connect(self, address: str, timeout_s: float) -> None:
        if self._backends.is_platform:
            await super()._connect(address, timeout_s)
            return
        device = await BleakScanner.find_device_by_address(
            address, timeout=timeout_s, **self._backends.scanner_options()
        )
        if device is None:
            raise SMPBLETransportDeviceNotFound(f"Device '{address}' not found")
        self._client = BleakClient(
            device,
            services=(str(SMP_SERVICE_UUID),),
            timeout=timeout_s,
            disconnected_callback=self._set_disconnected_event,
            backend=self._backends.client,
        )
        await self._client.connect()
        self._disconnected_event.clear()
        characteristic = self._client.services.get_characteristic(SMP_CHARACTERISTIC_UUID)
        if characteristic is None:
            raise SMPBLETransportNotSMPServer("Missing the SMP characteristic UUID.")
        self._max_write_without_response_size = characteristic.max_write_without_response_size
        self._smp_characteristic = characteristic
        await self._await_or_disconnect(
            # smpclient types its callback with `bytes` (bleak passes a bytearray).
            self._client.start_notify(
                SMP_CHARACTERISTIC_UUID,
                self._notify_callback,  # type: ignore[arg-type]
            )
        )


__all__ = ["BackendSMPBLETransport"]

"""Which bleak backend classes the hub uses: the platform's, or a simulated radio's.

The gateway passes one `BleakBackends` around and hands its fields to
`BleakScanner(..., backend=backends.scanner)` and `BleakClient(..., backend=backends.client)`.
`None` means bleak's own platform backend (BlueZ on the hub), so the default instance runs
against the real radio and the drivers never know whether the radio is simulated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner


@dataclass(frozen=True)
class BleakBackends:
    """Backend classes for `BleakScanner` and `BleakClient`; None = bleak's platform backend."""

    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None

    @property
    def is_platform(self) -> bool:
        """True when both are bleak's platform backends (a real radio)."""
        return self.scanner is None and self.client is None

    def scanner_options(self) -> dict[str, Any]:
        """`**kwargs` for `BleakScanner.discover` / `find_device_by_*`.

        Their typing (bleak 3.1) does not accept `backend=None`; this leaves it out then.
        """
        return {} if self.scanner is None else {"backend": self.scanner}


#: bleak's platform backends (the real radio): the default of the drivers.
PLATFORM_BACKENDS = BleakBackends()

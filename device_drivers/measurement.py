"""What every decoded clinical measurement offers the hub, whatever its profile."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from hemhub.contract import Quantity


@runtime_checkable
class ClinicalMeasurement(Protocol):
    """A decoded measurement (blood pressure, weight, SpO2, glucose…) as the hub uses it."""

    #: The device's own time of the measurement (naive device-local), None if not sent.
    @property
    def timestamp(self) -> datetime | None: ...

    #: Every value is a special value (NaN, NRes…): the device reports a failed measurement.
    @property
    def is_device_error(self) -> bool: ...

    def quantities(self) -> list[Quantity]:
        """LOINC-coded values with UCUM units; a special value is None, never a number."""
        ...

    def status_names(self) -> list[str]:
        """The device's status flags that are set, as snake_case names."""
        ...

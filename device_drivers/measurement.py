"""What every decoded clinical measurement offers the hub, whatever its profile."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from hemhub.contract import Quantity


@runtime_checkable
class ClinicalMeasurement(Protocol):
    """A decoded measurement (blood pressure, weight, SpO2, glucose…) as the hub uses it."""

    #: The device's own time of the measurement (naive device-local), None if not sent.
    @property
    def timestamp(self) -> datetime | None: ...

    #: No valid value: every value is a special value (NaN, NRes…), or the device says
    #: the measurement is invalid or unavailable (a pulse oximeter's status). The
    #: quantities are then all None.
    @property
    def is_device_error(self) -> bool: ...

    def quantities(self) -> list[Quantity]:
        """LOINC-coded values with UCUM units; a special value is None, never a number.

        Every value is None, too, when the reading is not the patient's (see
        `non_patient_reason`): nothing in it may reach a chart or an alert rule.
        """
        ...

    def status_names(self) -> list[str]:
        """The device's status flags that are set, as snake_case names.

        They include the reason of a reading that is not the patient's
        (`control_solution`, `demonstration`, `testing`)."""
        ...


@runtime_checkable
class MayBeNonPatient(Protocol):
    """A measurement that can be the device's own test rather than the patient's value."""

    #: Why the values are not the patient's although the device measured: a glucose
    #: meter's `control_solution` test, an oximeter's `demonstration` or `testing` data;
    #: None for a patient measurement.
    @property
    def non_patient_reason(self) -> str | None: ...


def non_patient_reason(measurement: object) -> str | None:
    """The measurement's `non_patient_reason`; None for profiles without one."""
    if isinstance(measurement, MayBeNonPatient):
        return measurement.non_patient_reason
    return None


def is_patient_value(measurement: ClinicalMeasurement) -> bool:
    """The reading carries the patient's values: no device error and no device test."""
    return not measurement.is_device_error and non_patient_reason(measurement) is None


def clinical_view(measurement: ClinicalMeasurement) -> dict[str, Any]:
    """How the hub sends a measurement, as JSON-ready data (behind `hemhub decode`):
    device error, patient value or not (and why), status names, and the LOINC-coded
    values with their UCUM units. `values` is None for what is never sent as a reading
    (an intermediate cuff pressure), with `not_sent` saying why."""
    view: dict[str, Any] = {
        "is_device_error": measurement.is_device_error,
        "is_patient_value": is_patient_value(measurement),
        "non_patient_reason": non_patient_reason(measurement),
        "status": measurement.status_names(),
    }
    try:
        view["values"] = [q.model_dump(mode="json") for q in measurement.quantities()]
    except ValueError as exc:  # e.g. 2A36: progress, not a result
        view["is_patient_value"] = False
        view["values"] = None
        view["not_sent"] = str(exc)
    return view

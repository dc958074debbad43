"""Devices as FHIR Device, and their assignment periods as DeviceUseStatement (no I/O).

R4 records who used a device when with DeviceUseStatement (R5 renames it DeviceUsage):
one per row of device_assignments, `timingPeriod` the period readings were attributed
by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from api.fhir import codes


def device(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row`: devices (id, stable_id, address, manufacturer, model, serial, firmware)."""
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": str(row["id"]),
        "identifier": [{"system": codes.DEVICE_ID_SYSTEM, "value": str(row["stable_id"])}],
        "status": "active",
    }
    if row["manufacturer"]:
        resource["manufacturer"] = str(row["manufacturer"])
    if row["serial"]:
        resource["serialNumber"] = str(row["serial"])
    if row["model"]:
        resource["deviceName"] = [{"name": str(row["model"]), "type": "model-name"}]
        resource["modelNumber"] = str(row["model"])
    if row["firmware"]:
        resource["version"] = [{"type": {"text": "firmware"}, "value": str(row["firmware"])}]
    resource["note"] = [{"text": f"Bluetooth address {row['address']}"}]
    return resource


def device_use_statement(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row`: device_assignments (id, device_id, patient_id, started_at, ended_at)."""
    period: dict[str, str] = {"start": row["started_at"].isoformat()}
    if row["ended_at"] is not None:
        period["end"] = row["ended_at"].isoformat()
    return {
        "resourceType": "DeviceUseStatement",
        "id": str(row["id"]),
        "status": "active" if row["ended_at"] is None else "completed",
        "subject": {"reference": f"Patient/{row['patient_id']}"},
        "timingPeriod": period,
        "recordedOn": row["started_at"].isoformat(),
        "device": {"reference": f"Device/{row['device_id']}"},
    }

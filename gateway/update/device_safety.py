"""When the hub may update a device's firmware: one pure function, `safe_to_update`.

An update takes a device away from its resident for a while (upload, reboot, confirmation)
and may fail. The hub starts one only when
- no measurement is in progress on the device (a session is running or a reading waits);
- its battery is known and at or above a floor (a reboot on a dying battery can leave the
  device in the bootloader);
- for a dispenser, no dose is due within the window (nor overdue);
- the resident keeps a working device of every kind: no other device of the same kind of
  the same resident is being updated; and the only device of a kind the resident depends
  on is never updated while an update of it is still pending (started, neither confirmed
  nor reverted).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

#: The kind of the medication dispenser (the only one with doses).
DISPENSER = "dispenser"


@dataclass(frozen=True)
class DeviceSituation:
    """What the hub knows about one device when it considers updating it.

    Args:
        address: the device's Bluetooth address.
        kind: its profile ("blood_pressure", "glucose", "dispenser", ...).
        resident: who uses it (None: nobody yet).
        battery_level: percent, None when unknown.
        measuring: a session is running or a reading is waiting to be fetched.
        next_dose_at: a dispenser's next scheduled dose (aware datetime), if any.
        update_pending: an update of it started and is neither confirmed nor reverted.
    """

    address: str
    kind: str
    resident: str | None = None
    battery_level: int | None = None
    measuring: bool = False
    next_dose_at: datetime | None = None
    update_pending: bool = False


@dataclass(frozen=True)
class SafetyPolicy:
    """The thresholds of `safe_to_update`."""

    battery_floor: int = 50
    dose_window: timedelta = timedelta(hours=1)


DEFAULT_POLICY = SafetyPolicy()


def safe_to_update(
    device: DeviceSituation,
    *,
    now: datetime,
    household: Sequence[DeviceSituation] = (),
    depends_on: Collection[str] = (),
    policy: SafetyPolicy = DEFAULT_POLICY,
) -> tuple[bool, str]:
    """(True, "") when `device` may be updated now, else (False, the reason).

    Args:
        device: the device to update.
        now: the current time (aware).
        household: the resident's other devices (the device itself may be among them).
        depends_on: the kinds of device the resident depends on (their care plan).
        policy: battery floor and dose window.
    """
    if device.measuring:
        return False, "measurement in progress"
    if device.battery_level is None:
        return False, "battery level unknown"
    if device.battery_level < policy.battery_floor:
        return False, (
            f"battery {device.battery_level} % below the floor of {policy.battery_floor} %"
        )
    if device.kind == DISPENSER and device.next_dose_at is not None:
        # An overdue dose (not taken yet) counts as due.
        if device.next_dose_at <= now + policy.dose_window:
            return False, f"dose due at {device.next_dose_at.isoformat()}"
    same_kind = [
        other
        for other in household
        if other.address.upper() != device.address.upper()
        and other.kind == device.kind
        and device.resident is not None
        and other.resident == device.resident
    ]
    if any(other.update_pending for other in same_kind):
        return False, f"another {device.kind} device of the resident is being updated"
    if device.kind in depends_on and not same_kind and device.update_pending:
        return False, (
            f"the resident's only {device.kind} device, with an update of it still pending"
        )
    return True, ""


__all__ = ["DEFAULT_POLICY", "DISPENSER", "DeviceSituation", "SafetyPolicy", "safe_to_update"]

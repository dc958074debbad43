"""Failpoints: named places where a fault test may have the hub die like a power cut, or
fail like a full disk.

`HEMHUB_FAILPOINTS="outbox.committed=0.05,publish.sent=0.05"` makes the process kill
itself with SIGKILL at that point with that probability. `name=raise` (or
`name=raise:0.5`) raises `FailpointError` there instead, an `OSError` with errno ENOSPC,
as a write to a full disk does. Tests in the same process use `configure(spec)`. Unset
(always, in production) each check is one dictionary lookup on an empty dict.

Points: `outbox.committed`, `outbox.mark_sent`, `publish.sent`, `puback.received`,
`receipt.received` (before the receipt is applied), `outbox.receipt`; a device firmware
update's steps, each once recorded: `device_firmware.downloading` (mid-upload),
`device_firmware.installing`, `device_firmware.confirming`.
"""

from __future__ import annotations

import errno
import os
import random
import signal

_ENV = "HEMHUB_FAILPOINTS"


class FailpointError(OSError):
    """The fault an armed `raise` failpoint injects (like "No space left on device")."""

    def __init__(self, name: str) -> None:
        super().__init__(errno.ENOSPC, f"failpoint {name}: {os.strerror(errno.ENOSPC)}")


def _parse(spec: str) -> dict[str, tuple[str, float]]:
    points: dict[str, tuple[str, float]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        action, _, probability = value.rpartition(":") if ":" in value else ("", "", value)
        if not action and probability == "raise":
            action, probability = "raise", ""
        points[name] = (action or "kill", float(probability or "1"))
    return points


_POINTS = _parse(os.environ.get(_ENV, ""))


def configure(spec: str) -> None:
    """Arm the failpoints of `spec` (the syntax of $HEMHUB_FAILPOINTS) in this process,
    replacing any armed before; "" disarms them all."""
    global _POINTS
    _POINTS = _parse(spec)


def failpoint(name: str) -> None:
    """Die here, without any cleanup, or raise `FailpointError`, if a fault test armed it."""
    point = _POINTS.get(name)
    if point is None:
        return
    action, probability = point
    if random.random() >= probability:
        return
    if action == "raise":
        raise FailpointError(name)
    os.kill(os.getpid(), signal.SIGKILL)

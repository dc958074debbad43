"""Failpoints: named places where a fault test may have the hub die like a power cut.

`HEMHUB_FAILPOINTS="outbox.committed=0.05,publish.sent=0.05"` makes the process kill
itself with SIGKILL at that point with that probability. Unset (always, in production)
each check is one dictionary lookup on an empty dict.
"""

from __future__ import annotations

import os
import random
import signal

_ENV = "HEMHUB_FAILPOINTS"


def _parse(spec: str) -> dict[str, float]:
    points: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, probability = item.partition("=")
        points[name] = float(probability or "1")
    return points


_POINTS = _parse(os.environ.get(_ENV, ""))


def failpoint(name: str) -> None:
    """Die here, without any cleanup, if the fault test armed this point."""
    probability = _POINTS.get(name)
    if probability is not None and random.random() < probability:
        os.kill(os.getpid(), signal.SIGKILL)

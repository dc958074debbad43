"""What the hub can tell about its own machine: disk, memory, CPU temperature."""

from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path

_THERMAL = Path("/sys/class/thermal")


def disk_free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def disk_usage(path: Path) -> tuple[int, int]:
    """(size, free bytes available to this process) of the filesystem holding `path`."""
    usage = shutil.disk_usage(path)
    return usage.total, usage.free


def memory_rss_bytes() -> int:
    """Resident memory of this process now (from /proc), else its peak (getrusage)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_temperature_c() -> float | None:
    """The first thermal zone's temperature, where the kernel exposes one (Pi, most SoCs)."""
    for zone in sorted(_THERMAL.glob("thermal_zone*")):
        try:
            return int((zone / "temp").read_text()) / 1000.0
        except (OSError, ValueError):
            continue
    return None

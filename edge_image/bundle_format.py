"""The bundle's manifest: its format and the one parser of it, standard library only.

Both sides read a manifest through this module: the builder and `hemhub ota bundle show`
(edge_image/bundle.py, which also checks the archive's members against it) and the hub's
slot installer (gateway/update/slots.py, on the unpacked bundle). The slot code also
runs as the boot check with the system's python3 and no virtual environment
(slots.install_boot_helper copies it with this file), so nothing here may import a
third-party package.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

FORMAT = 1
PYTHON = "3.11"
MANIFEST = "manifest.json"
WHEELS, UNITS, CONFIG_MIGRATIONS = "wheels", "units", "config_migrations"
#: A version goes into a file name: letters, digits and . _ + - only.
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
MEMBER_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,199}$")


class BundleError(ValueError):
    """A bundle that cannot be built or read, with the reason."""


@dataclass(frozen=True)
class Manifest:
    version: str
    created_at: datetime
    wheels: tuple[str, ...]
    units: tuple[str, ...]
    config_migrations: tuple[str, ...]
    python: str = PYTHON
    format: int = FORMAT

    def to_json(self) -> dict[str, object]:
        return {
            "format": self.format,
            "version": self.version,
            "python": self.python,
            "created_at": self.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "wheels": list(self.wheels),
            "units": list(self.units),
            "config_migrations": list(self.config_migrations),
        }


def check_version(version: str) -> None:
    if not VERSION_RE.match(version):
        raise BundleError(
            f"version {version!r}: use 1 to 64 letters, digits and . _ + - (e.g. 0.2.0)"
        )


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest in `raw` (manifest.json's bytes), checked field by field."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"manifest.json is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BundleError("manifest.json is not an object")
    if doc.get("format") != FORMAT:
        raise BundleError(f"manifest.json: format {doc.get('format')!r}, expected {FORMAT}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in (WHEELS, UNITS, CONFIG_MIGRATIONS):
        value = doc.get(key)
        if not isinstance(value, list) or not all(
            isinstance(v, str) and MEMBER_RE.match(v) for v in value
        ):
            raise BundleError(f"manifest.json: {key} must be a list of plain file names")
        lists[key] = tuple(value)
    version, python, created = doc.get("version"), doc.get("python"), doc.get("created_at")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BundleError(f"manifest.json: bad version {version!r}")
    if not isinstance(python, str):
        raise BundleError("manifest.json: python must be a string")
    try:
        created_at = datetime.fromisoformat(str(created))
    except ValueError as exc:
        raise BundleError(f"manifest.json: bad created_at {created!r}") from exc
    return Manifest(
        version=version,
        created_at=created_at,
        wheels=lists[WHEELS],
        units=lists[UNITS],
        config_migrations=lists[CONFIG_MIGRATIONS],
        python=python,
    )

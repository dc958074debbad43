"""Device firmware for tests: a vendor's MCUboot signing key, signed images of a model,
and an update repository (TUF, edge_image/repository.py) publishing them, served over a
real HTTP server like the hubs' own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_drivers.simulation.firmware_images import (
    application_payload,
    generate_key,
    sign_image,
)
from tests.ota_helpers import SignedRepo, signed_repo


@dataclass
class DeviceImages:
    """A vendor key (its PEM file for simulated homes) and a repository of its images."""

    key: Any
    key_file: Path
    signed: SignedRepo
    work: Path

    def image(self, model: str, version: str, *, key: Any = None) -> bytes:
        """The signed image of `model` at `version` (`key`: another signer)."""
        return sign_image(key or self.key, version, application_payload(model, version, size=20000))

    def publish(self, model: str, version: str, *, data: bytes | None = None) -> str:
        """Publish an image (default: `model` at `version`, signed by the vendor) as a
        device-firmware target; returns its target name."""
        name = f"{model.lower()}-{version}.signed.bin"
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if data is not None else self.image(model, version))
        info = self.signed.repo.add_target(
            path,
            [self.signed.online_keys],
            custom={"kind": "device-firmware", "version": version, "model": model},
        )
        return info.path

    def trusted_root(self, hub_dir: Path) -> Path:
        """The root.json a hub's image would carry (its trust anchor)."""
        return self.signed.trusted_metadata(hub_dir) / "root.json"


def device_images(tmp: Path) -> DeviceImages:
    tmp.mkdir(parents=True, exist_ok=True)
    key_file = tmp / "vendor.pem"
    key = generate_key(key_file)
    return DeviceImages(key, key_file, signed_repo(tmp / "tuf"), tmp / "images")

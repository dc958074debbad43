"""The hub software bundle: reproducible bytes, a manifest that tells the truth."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest

from edge_image.bundle import BundleError, build_bundle, bundle_name, read_manifest
from tests.ota_helpers import CREATED_AT, make_bundle, make_wheel


def _inputs(tmp_path: Path) -> dict[str, list[Path]]:
    wheel = make_wheel(tmp_path / "wheels", version="0.2.0")
    dep = make_wheel(tmp_path / "wheels", name="a_dependency", version="3.1")
    units = tmp_path / "units"
    units.mkdir()
    (units / "hemhub-gateway.service").write_text("[Service]\nExecStart=/bin/true\n")
    (units / "hemhub-confirm.timer").write_text("[Timer]\nOnBootSec=60\n")
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "0001_slots.py").write_text("def migrate(config):\n    return config\n")
    return {
        "wheels": [wheel, dep],
        "units": sorted(units.iterdir(), reverse=True),
        "config_migrations": [migrations / "0001_slots.py"],
    }


def test_bundle_holds_what_its_manifest_lists(tmp_path: Path) -> None:
    bundle = build_bundle("0.2.0", tmp_path / "out", created_at=CREATED_AT, **_inputs(tmp_path))
    assert bundle.name == bundle_name("0.2.0") == "hemhub-hub-0.2.0.tar"
    manifest = read_manifest(bundle)
    assert manifest.to_json() == {
        "format": 1,
        "version": "0.2.0",
        "python": "3.11",
        "created_at": "2026-12-01T00:00:00Z",
        "wheels": ["a_dependency-3.1-py3-none-any.whl", "hemhub_standin-0.2.0-py3-none-any.whl"],
        "units": ["hemhub-confirm.timer", "hemhub-gateway.service"],
        "config_migrations": ["0001_slots.py"],
    }
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        assert names[:4] == ["manifest.json", "wheels", "units", "config_migrations"]
        assert names[4:] == sorted(names[4:]) and len(names) == 9
        assert {m.mtime for m in tar.getmembers()} == {int(CREATED_AT.timestamp())}
        assert {(m.uid, m.gid) for m in tar.getmembers()} == {(0, 0)}
        wheel = tar.extractfile("wheels/hemhub_standin-0.2.0-py3-none-any.whl")
        assert wheel is not None
        assert zipfile.ZipFile(io.BytesIO(wheel.read())).testzip() is None


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    first = build_bundle("0.2.0", tmp_path / "a", created_at=CREATED_AT, **inputs)
    for path in (*inputs["wheels"], *inputs["units"]):
        path.touch()  # other file times on the build machine change nothing
    second = build_bundle("0.2.0", tmp_path / "b", created_at=CREATED_AT, **inputs)
    assert first.read_bytes() == second.read_bytes()
    later = build_bundle(
        "0.2.0", tmp_path / "c", created_at=CREATED_AT + timedelta(seconds=1), **inputs
    )
    assert later.read_bytes() != first.read_bytes()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"version": "../etc"}, "version"),
        ({"wheels": []}, "at least the hemhub wheel"),
        ({"config_migrations": ["units/hemhub-gateway.service"]}, "does not end in .py"),
        ({"wheels": ["wheels/x.whl", "other/x.whl"]}, "the same name twice"),
    ],
)
def test_bad_inputs_are_refused(tmp_path: Path, change: dict[str, object], reason: str) -> None:
    inputs: dict[str, object] = dict(_inputs(tmp_path))
    for dirname in ("other",):
        (tmp_path / dirname).mkdir()
    (tmp_path / "wheels" / "x.whl").write_bytes(b"PK")
    (tmp_path / "other" / "x.whl").write_bytes(b"PK")
    version = str(change.pop("version", "0.2.0"))
    for key, value in change.items():
        inputs[key] = [tmp_path / str(v) for v in value]  # type: ignore[attr-defined]
    with pytest.raises(BundleError, match=reason):
        build_bundle(version, tmp_path / "out", **inputs)  # type: ignore[arg-type]


def _rewrite(bundle: Path, out: Path, edit: dict[str, bytes | None]) -> Path:
    """A copy of `bundle` with members replaced (bytes), removed (None) or added."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w") as dst:
        for info in src.getmembers():
            if info.name in edit:
                continue
            dst.addfile(info, src.extractfile(info) if info.isfile() else None)
        for name, data in edit.items():
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                dst.addfile(info, io.BytesIO(data))
    return out


def test_read_manifest_refuses_a_bundle_that_lies(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, "0.2.0")
    manifest = json.loads(tarfile.open(bundle).extractfile("manifest.json").read())  # type: ignore[union-attr]
    wheel = f"wheels/{manifest['wheels'][0]}"
    cases = {
        "missing": ({wheel: None}, "listed but missing"),
        "extra": ({"units/evil.service": b"[Service]\n"}, "not in the manifest"),
        "outside": ({"etc/passwd": b"root::0:0\n"}, "unexpected member"),
        "no manifest": ({"manifest.json": None}, "no manifest.json"),
        "bad manifest": ({"manifest.json": b"{"}, "not JSON"),
        "other format": (
            {"manifest.json": json.dumps({**manifest, "format": 2}).encode()},
            "format 2",
        ),
    }
    for name, (edit, reason) in cases.items():
        broken = _rewrite(bundle, tmp_path / f"{name}.tar", edit)
        with pytest.raises(BundleError, match=reason):
            read_manifest(broken)
    (tmp_path / "not.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BundleError, match="not a tar archive"):
        read_manifest(tmp_path / "not.tar")

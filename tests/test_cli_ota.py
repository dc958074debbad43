"""`hemhub ota bundle|repo`: the release path as docs/firmware.md tells it, end to end
to a hub's verified fetch over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.update.fetch import fetch_verified
from hemhub.cli import main
from tests.ota_helpers import http_server, make_wheel


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main(["ota", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_release_path_build_sign_rotate_fetch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, name="hemhub", version="0.2.0")
    make_wheel(wheels, name="a_dependency", version="1.0")
    repo, keys = tmp_path / "repo", tmp_path / "keys"

    # The key ceremony: two of three custodians' root keys sign a root.
    code, out, err = _run(
        capsys,
        "repo", "init", "--repo", repo,
        "--root-key-dir", keys / "alice", "--root-key-dir", keys / "bob",
        "--root-key-dir", keys / "carol", "--root-threshold", "2",
        "--online-key-dir", keys / "online",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["roles"]["root"]["threshold"] == 2

    code, out, err = _run(
        capsys,
        "bundle", "build", "--version", "0.2.0", "--out", tmp_path / "out",
        "--wheel-dir", wheels, "--created-at", "2026-12-01T00:00:00Z",
    )  # fmt: skip
    assert code == 0, err
    bundle = Path(out.strip())
    assert bundle.name == "hemhub-hub-0.2.0.tar"
    code, out, _ = _run(capsys, "bundle", "show", bundle)
    manifest = json.loads(out)
    assert manifest["wheels"] == [
        "a_dependency-1.0-py3-none-any.whl",
        "hemhub-0.2.0-py3-none-any.whl",
    ]
    assert "hemhub-gateway.service" in manifest["units"]  # edge_image/systemd by default

    code, out, err = _run(
        capsys, "repo", "add", "--repo", repo, "--online-key-dir", keys / "online", bundle
    )
    assert code == 0, err
    assert json.loads(out)["custom"] == {"kind": "hub-software", "version": "0.2.0"}

    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "root.json").write_bytes((repo / "metadata" / "root.json").read_bytes())
    with http_server(repo) as url:
        assert fetch_verified(url, hub, bundle.name, tmp_path / "dl").read_bytes() == (
            bundle.read_bytes()
        )
        code, out, err = _run(
            capsys,
            "repo", "rotate", "--repo", repo, "--role", "timestamp",
            "--root-key-dir", keys / "alice", "--root-key-dir", keys / "carol",
            "--new-key-dir", keys / "online-2", "--online-key-dir", keys / "online",
        )  # fmt: skip
        assert code == 0, err
        code, out, err = _run(
            capsys, "repo", "timestamp", "--repo", repo, "--online-key-dir", keys / "online-2"
        )
        assert code == 0, err
        assert fetch_verified(url, hub, bundle.name, tmp_path / "dl").is_file()
        code, out, err = _run(
            capsys,
            "repo", "renew-root", "--repo", repo,
            "--root-key-dir", keys / "alice", "--root-key-dir", keys / "bob",
        )  # fmt: skip
        assert code == 0, err
        assert fetch_verified(url, hub, bundle.name, tmp_path / "dl").is_file()
    assert json.loads((hub / "root.json").read_bytes())["signed"]["version"] == 3
    code, out, _ = _run(capsys, "repo", "show", "--repo", repo)
    shown = json.loads(out)
    assert shown["roles"]["root"]["version"] == 3
    assert shown["roles"]["timestamp"]["version"] == 4
    assert list(shown["targets"]) == [bundle.name]


def test_refusals_say_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys"
    code, _, err = _run(
        capsys,
        "repo", "init", "--repo", tmp_path / "repo", "--root-key-dir", keys / "root",
        "--online-key-dir", keys / "online", "--root-threshold", "2",
    )  # fmt: skip
    assert code == 2 and "root threshold 2" in err
    code, _, err = _run(
        capsys,
        "repo", "init", "--repo", tmp_path / "repo", "--root-key-dir", keys / "root",
        "--online-key-dir", keys / "online",
    )  # fmt: skip
    assert code == 0, err
    # Only the root keys are at hand: the timestamp cannot be signed.
    code, _, err = _run(
        capsys, "repo", "timestamp", "--repo", tmp_path / "repo", "--online-key-dir", keys / "root"
    )
    assert code == 2 and "timestamp: 0 of its keys found" in err
    fake = tmp_path / "hemhub-hub-9.0.tar"
    fake.write_bytes(b"not a bundle")
    code, _, err = _run(
        capsys,
        "repo",
        "add",
        "--repo",
        tmp_path / "repo",
        "--online-key-dir",
        keys / "online",
        fake,
    )
    assert code == 2 and "not a tar archive" in err
    code, _, err = _run(capsys, "repo", "show", "--repo", tmp_path / "nothing")
    assert code == 2 and "run init first" in err
    code, _, err = _run(
        capsys, "bundle", "build", "--version", "1/2", "--out", tmp_path, "--wheel-dir", tmp_path
    )
    assert code == 2 and "version '1/2'" in err
    code, _, err = _run(capsys, "bundle", "build", "--version", "1.0", "--out", tmp_path,
                        "--wheel-dir", tmp_path / "none")  # fmt: skip
    assert code == 2 and "not a directory" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "bundle", "build", "--version", "1.0", "--out", tmp_path,
                        "--wheel-dir", tmp_path, "--units-dir", tmp_path / "empty")  # fmt: skip
    assert code == 2 and "no systemd units" in err

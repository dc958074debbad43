"""The update repository's timestamp timer: valid systemd units, a command that exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hemhub.cli import build_parser

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "ota"
INSTALLED = "/opt/hemhub/bin/hemhub"


def _exec_start() -> list[str]:
    service = (UNITS / "hemhub-ota-timestamp.service").read_text()
    (line,) = [x for x in service.splitlines() if x.startswith("ExecStart=")]
    return line.removeprefix("ExecStart=").split()


def test_the_timer_runs_an_existing_command() -> None:
    argv = _exec_start()
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])
    assert (args.repo, args.online_key_dir) == (
        Path("/srv/hemhub-updates"),
        Path("/etc/hemhub/ota/timestamp-key"),
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # The command as installed on the server: here, this environment's hemhub.
    hemhub = Path(sys.executable).parent / "hemhub"
    for unit in UNITS.iterdir():
        text = unit.read_text().replace(INSTALLED, str(hemhub))
        (tmp_path / unit.name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

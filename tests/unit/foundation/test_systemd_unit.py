"""config/leadflow.service: crash-loop limits and directory modes that let droppers in.

Issue 12.1 asks for restart limits; issue 13.8 found that the unit's ``UMask`` made the inbox
``drwxr-x---``. The folders' modes as the daemon creates them under this umask are tested
with a real daemon process in ``tests/reliability/test_reliability_ops.py``.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[3] / "config" / "leadflow.service"


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None,
                                          comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def _seconds(value: str) -> float:
    """A systemd time span (``10``, ``10s``, ``5min``, ``1h``) in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip()):
        total += float(number) * units[unit]
    return total


def test_a_crash_loop_is_cut_off_by_start_limits() -> None:
    unit = _unit()
    service, section = unit["Service"], unit["Unit"]
    assert service["Restart"] == "on-failure"
    assert "2" in service["RestartPreventExitStatus"].split()  # a bad setting or folder
    restart_s = _seconds(service["RestartSec"])
    interval_s = _seconds(section["StartLimitIntervalSec"])
    burst = int(section["StartLimitBurst"])
    assert restart_s >= 5, "restarts back to back hammer Marketo's shared rate window"
    # The limit must be reachable: `burst` starts, RestartSec apart, fit in the interval;
    # otherwise systemd restarts forever.
    assert restart_s * (burst - 1) < interval_s
    # StartLimit* in [Service] is the pre-230 spelling; they belong in [Unit].
    assert not {"StartLimitIntervalSec", "StartLimitBurst", "StartLimitInterval"} & set(service)


def test_the_umask_and_state_directory_let_the_group_reach_the_inbox() -> None:
    service = _unit()["Service"]
    umask = int(service["UMask"], 8)
    state_mode = int(service["StateDirectoryMode"], 8)
    # /var/lib/leadflow and the folders the daemon creates below it (var/, with umask) must
    # let the leadflow group through to the inbox, which the daemon makes 2770 itself.
    assert state_mode & 0o050 == 0o050
    assert not umask & 0o050
    assert umask & 0o007 == 0o007  # nothing for others


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here")
    # verify checks that ExecStart's program exists: point it at this Python.
    text = UNIT.read_text(encoding="utf-8").replace(
        "ExecStart=/opt/leadflow/bin/leadflow", f"ExecStart={sys.executable} -m orchestrator"
    )
    assert text != UNIT.read_text(encoding="utf-8")
    unit = tmp_path / "leadflow.service"
    unit.write_text(text, encoding="utf-8")
    done = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    # Unknown or misplaced keys are only warnings: there must be none.
    assert done.stderr.strip() == "", done.stderr

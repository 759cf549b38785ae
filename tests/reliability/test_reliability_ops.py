"""Issue 13 with real processes and folders: folder modes under the unit's umask (13.8), a
path leadflow cannot create or write at start and at run time (13.5), and the exit code of
``leadflow status`` (whether a daemon runs).

Tests run as root, which ignores permission bits, so "cannot create or write" is made the
way it also happens in production without permissions: a path under a regular file (a
folder replaced by a file, a mount point that did not mount).
"""

from __future__ import annotations

import random
import re
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from reliability_checks import db_rows, events_named
from reliability_harness import (
    PYTHON,
    REPO,
    Leadflow,
    _subprocess_env,
    daemon_settings,
    require_module,
    toml_dumps,
)
from reliability_inputs import write_lead_file

#: Settings that make environment retries fast in these tests.
FAST_RETRY = {"intake": {"stable_s": 0.0, "rescan_interval_s": 0.1,
                         "environment_retry_max_s": 0.4}}


def unit_umask() -> int:
    """The ``UMask=`` of config/leadflow.service."""
    text = (REPO / "config" / "leadflow.service").read_text(encoding="utf-8")
    found = re.search(r"^UMask=([0-7]+)\s*$", text, flags=re.MULTILINE)
    assert found is not None, "the unit sets no UMask="
    return int(found.group(1), 8)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` (a real process works meanwhile) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _run(argv: list[str], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYTHON, "-m", "orchestrator", *argv], capture_output=True, text=True,
                          cwd=cwd, env=_subprocess_env(), timeout=60, check=False,
                          stdin=subprocess.DEVNULL, **kwargs)


def test_the_daemon_makes_the_inbox_and_route_folders_group_writable_under_the_units_umask(
    tmp_path: Path, simulator_factory: Any
) -> None:
    sim = simulator_factory()
    root = tmp_path / "state"  # nothing exists yet: the daemon creates every folder
    settings = daemon_settings(root, sim.url, routes=[{"name": "webinar", "list_id": 1001}])
    config = tmp_path / "leadflow.toml"
    config.write_text(toml_dumps(settings), encoding="utf-8")
    umask = unit_umask()
    done = _run(["run", "--once", "--config", str(config)], tmp_path, umask=umask)
    assert done.returncode == 0, done.stderr
    inbox = Path(settings["paths"]["inbox"])
    for folder in (inbox, inbox / "webinar"):
        mode = stat.S_IMODE(folder.stat().st_mode)
        # rwx for the owner and the group (droppers), setgid so dropped files keep the
        # daemon's group, nothing for others: whatever the umask.
        assert mode == 0o2770, (folder, oct(mode))
    # Everything else follows the unit's umask (not group-writable, nothing for others).
    results_mode = stat.S_IMODE(Path(settings["paths"]["results"]).stat().st_mode)
    assert results_mode == 0o777 & ~umask, oct(results_mode)


@pytest.mark.parametrize("key", ["results", "work", "inbox", "database"])
def test_a_path_under_a_regular_file_stops_run_with_one_line_and_exit_2(
    tmp_path: Path, key: str
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a regular file where a folder should be\n", encoding="utf-8")
    root = tmp_path / "lf"
    settings = daemon_settings(root, "http://127.0.0.1:9")
    settings["paths"][key] = str(blocker / ("leadflow.db" if key == "database" else key))
    config = tmp_path / "leadflow.toml"
    config.write_text(toml_dumps(settings), encoding="utf-8")
    for argv in (["run", "--once"], ["run"]):
        done = _run([*argv, "--config", str(config)], tmp_path)
        assert done.returncode == 2, (argv, done.stderr)
        assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert f"paths.{key}" in lines[0] and str(blocker) in lines[0], lines[0]
        assert "not a folder" in lines[0], lines[0]


def test_an_unwritable_work_or_results_folder_at_run_time_is_retried_not_blamed_on_the_file(
    simulator_factory: Any, leadflow_factory: Any
) -> None:
    require_module("orchestrator.intake")
    sim = simulator_factory(time_scale=20.0)
    lf: Leadflow = leadflow_factory(sim.url, **FAST_RETRY)
    work = Path(lf.settings["paths"]["work"])
    results = lf.results
    proc = lf.start()
    try:
        wait_for(lambda: events_named(lf, "intake_started"), "the daemon to start")
        # The work folder becomes a regular file (say, a volume that did not mount).
        shutil.rmtree(work)
        work.write_text("not a folder\n", encoding="utf-8")
        lead = write_lead_file(lf.inbox, "signups.csv", tag="env", index=1, rows=12,
                               rng=random.Random(3))
        failures = wait_for(lambda: [e for e in events_named(lf, "file_claim_failed")
                                     if len(events_named(lf, "file_claim_failed")) >= 3],
                            "three failed claims (retried)")
        assert {e["level"] for e in failures} == {"error"}, failures
        delays = [e["retry_in_s"] for e in failures]
        assert delays[1] > delays[0], delays  # backoff
        assert lead.path.exists()  # the file stays in the inbox
        files = db_rows(lf, "SELECT id, status FROM files")
        assert [row["status"] for row in files] == ["received"], [dict(r) for r in files]
        assert not lf.reports() and not events_named(lf, "file_rejected")

        # The results folder breaks too, then the work folder is repaired.
        shutil.rmtree(results)
        results.write_text("not a folder\n", encoding="utf-8")
        work.unlink()
        work.mkdir()
        postponed = wait_for(lambda: [e for e in events_named(lf, "results_write_failed")
                                      if len(events_named(lf, "results_write_failed")) >= 2],
                             "two postponed reports")
        assert {e["level"] for e in postponed} == {"error"}, postponed
        results.unlink()
        results.mkdir()
        reports = wait_for(lf.reports, "the report")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0, lf.stderr_text()
    (report,) = reports["signups.csv"]
    assert report["status"] == "complete", report
    assert report["rows"]["imported"] == len(lead.good)
    assert report["error"] is None
    emails = {lead["email"] for lead in sim.leads()}
    assert set(lead.good) <= emails
    history = db_rows(lf, "SELECT to_status FROM status_history WHERE entity = 'file'")
    assert "rejected" not in {row["to_status"] for row in history}
    assert not events_named(lf, "file_rejected") and not events_named(lf, "daemon_crashed")


def test_status_exit_code_says_whether_the_daemon_runs(
    simulator_factory: Any, leadflow_factory: Any
) -> None:
    sim = simulator_factory()
    lf: Leadflow = leadflow_factory(sim.url)
    proc = lf.start()
    try:
        wait_for(lambda: events_named(lf, "intake_started"), "the daemon to start")
        running = lf.command("status", "--json", "--exit-code")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert running.returncode == 0, running.stderr
    assert '"running": true' in running.stdout
    stopped = lf.command("status", "--exit-code")
    assert stopped.returncode == 3, (stopped.returncode, stopped.stderr)
    assert "daemon:   not running" in stopped.stdout
    # Without --exit-code, status keeps exiting 0 (scripts under `set -e` rely on it).
    assert lf.command("status").returncode == 0

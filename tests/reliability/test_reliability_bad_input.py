"""Issue 9.3: bad input. Every file of ``../shared/inputs`` and generated hostile entries end
with a report or are ignored as documented, the daemon keeps running (it is a subprocess that
must still be alive at the end and stop cleanly on SIGTERM), and no other file is affected:
good control files dropped among them are imported in full.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import pytest
from reliability_checks import (
    assert_leads_arrived,
    assert_never_crashed,
    assert_no_secrets,
    current_token,
)
from reliability_harness import Leadflow, SimulatorProcess, require_module
from reliability_inputs import Hostile, LeadFile, write_hostile_files, write_lead_file

#: What ``../shared/inputs/README.md`` says each file must end as: (status, rows imported).
SHARED_EXPECTED: dict[str, tuple[str, int | None]] = {
    "quoted-commas-quotes-newlines.csv": ("complete", 3),
    "empty-lookup-in-last-column.csv": ("partial", 2),
    "excel-unicode-text-utf16le-tabs.csv": ("complete", None),
    "windows-1252-semicolons.csv": ("complete", None),
    "tabs-in-a-dot-csv.csv": ("complete", 2),
    "header-then-blank-lines.csv": ("empty", 0),
    "over-10mb.csv": ("complete", None),
}


def _controls(inbox: Path, tag: str) -> list[LeadFile]:
    rng = random.Random(tag)
    return [write_lead_file(inbox, f"control-{tag}-{i}.csv", tag=f"control-{tag}", index=i,
                            rows=6 + i, rng=rng) for i in range(3)]


def _wait_for_reports(lf: Leadflow, proc: subprocess.Popen[bytes], names: set[str],
                      timeout: float) -> dict[str, list[dict[str, Any]]]:
    deadline = time.monotonic() + timeout
    reports: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, ("the daemon stopped", lf.stderr_text()[-3000:])
        reports = lf.reports()
        if names <= set(reports):
            # Let anything else that is coming arrive (nothing should).
            time.sleep(0.5)
            return lf.reports()
        time.sleep(0.2)
    missing = sorted(names - set(reports))
    pytest.fail(f"no report for {missing} after {timeout} s; events: "
                f"{[e for e in lf.events() if e.get('level') in ('warning', 'error')][-10:]}")


def _check_hostile(lf: Leadflow, reports: dict[str, list[dict[str, Any]]],
                   hostile: list[Hostile], outside: Path, outside_bytes: bytes) -> None:
    for entry in hostile:
        found = reports.get(entry.name, [])
        if entry.expect == "report":
            assert len(found) == 1, (entry.name, found)
            assert found[0]["status"] in entry.statuses, (entry.name, found[0])
            if found[0]["status"] in ("rejected", "empty"):
                assert found[0].get("error"), (entry.name, "a rejection must say why")
        elif entry.expect == "ignored":
            assert not found, (entry.name, found)
            assert (lf.inbox / entry.name).exists(), (entry.name, "an ignored entry was moved")
        else:
            assert len(found) <= 1, (entry.name, found)
    # Whatever happened to the symlink, its target outside the inbox is untouched.
    target = outside / "outside-secret.csv"
    assert target.is_file() and target.read_bytes() == outside_bytes


def _start(simulator_factory: Any, leadflow_factory: Any, **limits: Any) -> tuple[
        SimulatorProcess, Leadflow]:
    sim = simulator_factory({"rows_per_second": 1_000_000.0, "token_lifetime_s": 360_000},
                            time_scale=20.0)
    lf = leadflow_factory(sim.url, limits={"calls_per_20s": 100, **limits},
                          intake={"stable_s": 0.2, "rescan_interval_s": 0.1})
    return sim, lf


def _stop(lf: Leadflow, proc: subprocess.Popen[bytes]) -> None:
    assert proc.poll() is None, ("the daemon stopped", lf.stderr_text()[-3000:])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0, lf.stderr_text()[-3000:]


@pytest.mark.xdist_group("reliability-bad-small")
def test_hostile_and_shared_inputs_end_with_reports(
    tmp_path: Path, simulator_factory: Any, leadflow_factory: Any, shared_inputs: Path
) -> None:
    require_module("orchestrator.intake")
    sim, lf = _start(simulator_factory, leadflow_factory)
    outside = tmp_path / "outside"
    hostile = write_hostile_files(lf.inbox, outside, big=False)
    outside_bytes = (outside / "outside-secret.csv").read_bytes()
    for name in SHARED_EXPECTED:
        if (shared_inputs / name).exists():
            shutil.copyfile(shared_inputs / name, lf.inbox / name)
    controls = _controls(lf.inbox, "small")
    digests = {c.path.name: hashlib.sha256(c.path.read_bytes()).hexdigest() for c in controls}
    wanted = {h.name for h in hostile if h.expect == "report"}
    wanted |= {n for n in SHARED_EXPECTED if (lf.inbox / n).exists()}
    wanted |= set(digests)
    proc = lf.start()
    reports = _wait_for_reports(lf, proc, wanted, timeout=40)
    _stop(lf, proc)

    _check_hostile(lf, reports, hostile, outside, outside_bytes)
    for name, (status, imported) in SHARED_EXPECTED.items():
        if name not in wanted:
            continue
        (report,) = reports[name]
        assert report["status"] == status, (name, report)
        if imported is not None:
            assert report["rows"]["imported"] == imported, (name, report["rows"])
    # The odd names carry good rows: every one reached Marketo.
    odd_names = [LeadFile(lf.inbox / h.name, good=h.good) for h in hostile if h.good]
    assert_leads_arrived(sim, odd_names)
    # No other file was affected: the controls were imported in full and archived intact.
    for control in controls:
        (report,) = reports[control.path.name]
        assert report["status"] == "complete", report
        assert report["rows"]["imported"] == control.rows
        archive = Path(lf.settings["paths"]["archive"])
        archived = [p for p in archive.iterdir() if p.name.endswith(control.path.name)]
        assert len(archived) == 1, archived
        assert hashlib.sha256(archived[0].read_bytes()).hexdigest() == digests[
            control.path.name]
    assert_leads_arrived(sim, controls)
    assert_never_crashed(lf)
    assert_no_secrets(lf, sim, [current_token(sim)])


@pytest.mark.xdist_group("reliability-bad-big")
def test_big_hostile_files_end_with_reports(
    tmp_path: Path, simulator_factory: Any, leadflow_factory: Any, shared_inputs: Path
) -> None:
    require_module("orchestrator.intake")
    sim, lf = _start(simulator_factory, leadflow_factory)
    outside = tmp_path / "outside"
    hostile = [h for h in write_hostile_files(lf.inbox, outside, big=True)
               if h.name == "one-line-50mb.csv"]
    for path in lf.inbox.iterdir():
        if path.name not in {h.name for h in hostile}:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
    maker = shared_inputs / "make_over_10mb.py"
    if maker.exists():
        subprocess.run([sys.executable, str(maker), str(lf.inbox / "over-10mb.csv")],
                       check=True, capture_output=True, timeout=60)
    controls = _controls(lf.inbox, "big")
    proc = lf.start()
    wanted = {h.name for h in hostile} | {c.path.name for c in controls}
    if maker.exists():
        wanted.add("over-10mb.csv")
    reports = _wait_for_reports(lf, proc, wanted, timeout=50)
    _stop(lf, proc)

    for entry in hostile:
        (report,) = reports[entry.name]
        assert report["status"] in entry.statuses, (entry.name, report)
    if maker.exists():
        (report,) = reports["over-10mb.csv"]
        assert report["status"] == "complete", report
        assert len(report["uploads"]) >= 2, report["uploads"]
        assert report["rows"]["failed"] == report["rows"]["rejected"] == 0
    for control in controls:
        (report,) = reports[control.path.name]
        assert report["status"] == "complete", report
    assert_leads_arrived(sim, controls)
    assert_never_crashed(lf)


@pytest.mark.xdist_group("reliability-bad-utf8")
def test_utf8_file_with_one_bad_byte_is_not_imported_as_mojibake(
    tmp_path: Path, simulator_factory: Any, leadflow_factory: Any
) -> None:
    require_module("orchestrator.intake")
    sim, lf = _start(simulator_factory, leadflow_factory)
    outside = tmp_path / "outside"
    hostile = [h for h in write_hostile_files(lf.inbox, outside, big=True)
               if h.name == "invalid-utf8-in-the-middle.csv"]
    for path in lf.inbox.iterdir():
        if path.name not in {h.name for h in hostile}:
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
    controls = _controls(lf.inbox, "utf8")
    proc = lf.start()
    wanted = {h.name for h in hostile} | {c.path.name for c in controls}
    reports = _wait_for_reports(lf, proc, wanted, timeout=45)
    _stop(lf, proc)

    (report,) = reports["invalid-utf8-in-the-middle.csv"]
    assert report["status"] in ("complete", "partial", "rejected"), report
    if report["status"] == "rejected":
        assert report["error"], report
    else:
        # Imported despite one broken row: the good rows around it must be intact, not
        # decoded with a guessed single-byte code page (mojibake "ZoÃ«").
        store = {lead["email"]: lead for lead in sim.leads()}
        for j in (0, 29_999, 30_001, 59_999):
            lead = store.get(f"bigbad-{j:06d}@example.com")
            assert lead is not None, (j, report)
            assert (lead["firstName"], lead["lastName"]) == (f"Zoë{j}", "Müller"), (
                lead, report["encoding"])
    for control in controls:
        (control_report,) = reports[control.path.name]
        assert control_report["status"] == "complete", control_report
    assert_never_crashed(lf)


# --- files that change or cannot be read while intake reads them (in-process) --------------


class _ShrinkingFile:
    """A binary file object that truncates its file to a third after the first read."""

    def __init__(self, real: Any, path: Path) -> None:
        self._real = real
        self._path = path
        self._done = False

    def _after_read(self) -> None:
        if not self._done:
            self._done = True
            size = self._path.stat().st_size
            with self._path.open("r+b") as handle:  # Path.open is not patched
                handle.truncate(size // 3)

    def read(self, *args: Any) -> Any:
        data = self._real.read(*args)
        self._after_read()
        return data

    def readinto(self, buffer: Any) -> Any:
        count = self._real.readinto(buffer)
        self._after_read()
        return count

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        line = next(self._real)
        self._after_read()
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def test_files_deleted_truncated_or_unreadable_while_read(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_module("orchestrator.intake")
    import builtins
    import errno
    import io

    import structlog
    from aiohttp.test_utils import TestServer
    from reliability_harness import CLIENT_ID, CLIENT_SECRET

    from orchestrator.daemon import Daemon, FilesHeld
    from orchestrator.daemon.drain import ONCE_HELD_ATTEMPTS
    from orchestrator.simulator import SIMULATOR_KEY, SimulatorConfig, create_app

    app = create_app(SimulatorConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                                     seed=5), time_scale=50.0)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        settings = make_settings(
            marketo={"base_url": url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                     "retry_base_s": 0.01, "retry_max_s": 0.1},
            polling={"min_interval_s": 0.02, "max_interval_s": 0.2},
            intake={"stable_s": 0.0, "rescan_interval_s": 0.05},
            daemon={"idle_tick_s": 0.05, "results_retry_s": 0.1, "shutdown_grace_s": 0.5},
        )
        rng = random.Random(3)
        inbox = settings.paths.inbox
        controls = _controls(inbox, "race")
        vanishing = write_lead_file(inbox, "vanishing.csv", tag="vanish", index=0, rows=5,
                                    rng=rng)
        shrinking = write_lead_file(inbox, "shrinking.csv", tag="shrink", index=0,
                                    rows=40_000, rng=rng)
        assert shrinking.path.stat().st_size > 2 * (1 << 20)
        unreadable = write_lead_file(inbox, "unreadable.csv", tag="unread", index=0, rows=5,
                                     rng=rng)
        real_open = builtins.open
        hits: dict[str, int] = {"vanishing.csv": 0, "shrinking.csv": 0, "unreadable.csv": 0}

        def hostile_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            name = Path(str(file)).name if isinstance(file, str | Path) else ""
            if name in hits and "r" in mode and "+" not in mode:
                hits[name] += 1
                path = Path(str(file))
                if name == "unreadable.csv":
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
                if name == "vanishing.csv" and path.exists():
                    path.unlink()
                if name == "shrinking.csv" and hits[name] == 1 and "b" in mode:
                    return _ShrinkingFile(real_open(file, mode, *args, **kwargs), path)
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", hostile_open)
        monkeypatch.setattr(io, "open", hostile_open)
        with structlog.testing.capture_logs() as logs:
            async with Daemon(settings, handle_signals=False) as daemon:
                # A file that cannot be read while it is there is the machine's fault (issue
                # 13.5): held, tried ONCE_HELD_ATTEMPTS times, then left for the next run.
                with pytest.raises(FilesHeld, match="1 file"):
                    await asyncio.wait_for(daemon.run(once=True), 45)
        monkeypatch.setattr(builtins, "open", real_open)
        monkeypatch.setattr(io, "open", real_open)
        with structlog.testing.capture_logs() as second:
            async with Daemon(settings, handle_signals=False) as daemon:
                await asyncio.wait_for(daemon.run(once=True), 45)
    finally:
        await server.close()

    assert not [e for e in logs + second
                if e["event"] in ("daemon_crashed", "report_pass_failed")]
    assert all(hits.values()), hits
    held = [e for e in logs if e["event"] == "file_prepare_failed"]
    assert len(held) == ONCE_HELD_ATTEMPTS and {e["log_level"] for e in held} == {"error"}
    assert {e["file"] for e in held} == {"unreadable.csv"}
    results = settings.paths.results
    reports: dict[str, list[dict[str, Any]]] = {}
    for path in results.glob("*/report.json"):
        report = json.loads(path.read_text(encoding="utf-8"))
        reports.setdefault(report["file"], []).append(report)
    for name in ("vanishing.csv", "shrinking.csv", "unreadable.csv"):
        found = reports.get(name, [])
        assert len(found) == 1, (name, found)
    (report,) = reports["vanishing.csv"]
    assert report["status"] == "rejected" and report["error"], report
    (report,) = reports["unreadable.csv"]  # taken by the second run, once readable
    assert report["status"] == "complete", report
    assert report["rows"]["imported"] == len(unreadable.good)
    (report,) = reports["shrinking.csv"]
    assert report["rows"]["total"] < shrinking.rows, report["rows"]
    assert report["rows"]["total"] == (
        report["rows"]["imported"] + report["rows"]["failed"] + report["rows"]["rejected"])
    leads = {lead["email"] for lead in app[SIMULATOR_KEY].default_instance.store.export_leads()}
    for control in controls:
        (report,) = reports[control.path.name]
        assert report["status"] == "complete", report
        assert set(control.good) <= leads
    assert set(unreadable.good) <= leads
    del vanishing

"""``leadflow run`` as a subprocess against ``leadflow simulator`` in another subprocess.

- ``--once`` on an inbox of real-looking files exits 0 with one report per file;
- SIGKILL while uploads are queued, importing and being reported, three times, then a
  restart: every file ends with exactly one report and no row is lost.
"""

from __future__ import annotations

import csv
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import e2e_support
import pytest
from e2e_support import events as _events
from e2e_support import get_json as _get
from e2e_support import query as _query
from e2e_support import start_daemon as _start
from e2e_support import wait_for as _wait_for

pytestmark = pytest.mark.e2e

#: Simulated seconds per real second; with 15 rows per simulated second an upload of about
#: 60 rows imports in about 0.4 s of real time.
TIME_SCALE = 10
SIM_TOML = """
max_body_bytes = 4096
rows_per_second = 15.0
rate_limit_calls = 100000
"""


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """``leadflow simulator --time-scale N`` on a free loopback port; yields its URL."""
    with e2e_support.simulator(tmp_path, SIM_TOML, TIME_SCALE) as url:
        yield url


def _config(tmp_path: Path, url: str) -> Path:
    return e2e_support.write_config(tmp_path, url)


def _write_files(inbox: Path, count: int, rows: int) -> dict[str, dict[str, Any]]:
    """Real-looking lead files: mixed case headers, quotes, a BOM, a bad score, a blank email.

    Returns ``{name: {"emails": set of importable emails, "rows": data rows}}``.
    """
    made: dict[str, dict[str, Any]] = {}
    for n in range(count):
        emails: set[str] = set()
        lines = ["Email,First Name,Last Name,Company,Lead Score"]
        for i in range(rows):
            email = f"kim.{n}.{i}@example.org"
            score = str(i % 90)
            if i % 29 == 7:
                score = "n/a"  # not an integer: rejected or failed, never imported
            elif i % 31 == 11:
                email = ""  # no lookup value
            else:
                emails.add(email)
            lines.append(f'{email},Kim {i},"O\'Neil, Jr.",Acme {n % 3},{score}')
        text = "\r\n".join(lines) + "\r\n"
        data = ("\ufeff" + text).encode("utf-8") if n % 2 else text.encode("utf-8")
        (inbox / f"contacts-{n:02d}.csv").write_bytes(data)
        made[f"contacts-{n:02d}.csv"] = {"emails": emails, "rows": rows}
    return made


def _check_outcome(tmp_path: Path, url: str, made: dict[str, dict[str, Any]]) -> None:
    var = tmp_path / "var"
    reports = sorted((var / "results").glob("*/report.json"))
    by_file: dict[str, list[dict[str, Any]]] = {}
    for path in reports:
        report = json.loads(path.read_text())
        by_file.setdefault(report["file"], []).append(report)
    assert sorted(by_file) == sorted(made), "every file has a report"
    assert all(len(v) == 1 for v in by_file.values()), "exactly one report per file"
    assert not list((var / "results").glob("*.tmp")), "no half-written results left"
    assert not [p for p in (var / "inbox").rglob("*") if p.is_file()]
    assert len(list((var / "archive").iterdir())) == len(made)
    leads = {lead["email"] for lead in _get(f"{url}/_sim/leads")}
    for name, info in made.items():
        (report,) = by_file[name]
        rows = report["rows"]
        assert rows["total"] == info["rows"]
        assert rows["imported"] + rows["failed"] + rows["rejected"] == rows["total"]
        assert rows["imported"] == len(info["emails"]), (name, rows)
        assert info["emails"] <= leads, f"rows of {name} are missing at Marketo"
        assert all(u["status"] == "complete" for u in report["uploads"])
        # Every row that did not get in is in failures.csv once, by its source line.
        failures = var / "results" / f"{name}.{report['file_id']}" / "failures.csv"
        lines: list[dict[str, str]] = []
        if failures.exists():
            with failures.open(encoding="utf-8", newline="") as fh:
                lines = list(csv.DictReader(fh))
        numbers = [int(row["sourceRow"]) for row in lines]
        assert len(numbers) == len(set(numbers)) == rows["failed"] + rows["rejected"]
        assert all(2 <= n <= info["rows"] + 1 for n in numbers)
    states = _query(var / "leadflow.db", "SELECT status, COUNT(*) FROM uploads GROUP BY 1")
    assert dict(states) == {"complete": dict(states).get("complete", -1)}


def test_run_once_imports_an_inbox_and_exits_0(tmp_path: Path, simulator: str) -> None:
    config = _config(tmp_path, simulator)
    made = _write_files(tmp_path / "var" / "inbox", count=4, rows=90)
    log = tmp_path / "run.log"
    proc = _start(config, log, once=True)
    assert proc.wait(40) == 0, log.read_text()[-3000:]
    _check_outcome(tmp_path, simulator, made)
    events = _events(log)
    names = [e["event"] for e in events]
    assert names[0] == "daemon_started" and names[-1] == "daemon_stopped"
    assert events[-1]["reason"] == "drained"
    # One file can be followed from drop to report by its file_id.
    first = next(e["file_id"] for e in events if e["event"] == "file_received")
    trail = [e["event"] for e in events if e.get("file_id") == first]
    for step in ("file_received", "part_queued", "results_written", "file_finished"):
        assert step in trail, (step, trail)
    # A job of its own names it; a shared job names it on a part_submitted line.
    assert "import_submitted" in trail or "part_submitted" in trail, trail
    submitted = [e for e in events if e["event"] == "import_submitted"]
    assert any(first in e["file_ids"] for e in submitted)
    assert "leadflow-sim-secret" not in log.read_text()


def test_sigkill_while_queued_importing_and_reporting_loses_nothing(
    tmp_path: Path, simulator: str
) -> None:
    config = _config(tmp_path, simulator)
    db = tmp_path / "var" / "leadflow.db"
    made = _write_files(tmp_path / "var" / "inbox", count=6, rows=120)

    def at_marketo_and_queued() -> bool:
        rows = dict(_query(db, "SELECT status, COUNT(*) FROM uploads GROUP BY 1"))
        waiting = _query(db, "SELECT 1 FROM parts WHERE upload_id IS NULL LIMIT 1")
        return bool(waiting) and bool(rows.get("importing") or rows.get("submitted"))

    def reporting() -> bool:
        return bool(_query(db, "SELECT 1 FROM files WHERE status = 'reporting'"))

    def some_reported() -> bool:
        done = _query(db, "SELECT COUNT(*) FROM files WHERE reported_at IS NOT NULL")
        return bool(done and 0 < done[0][0] < len(made))

    kills = []
    logs = [tmp_path / f"run-{n}.log" for n in range(4)]  # one per process: a line cut
    for moment, log in zip((at_marketo_and_queued, reporting, some_reported), logs, strict=False):
        proc = _start(config, log)
        # Killed only once it has started (a moment may already hold from the last kill).
        _wait_for(
            lambda lg=log, p=proc: '"daemon_started"' in lg.read_text() or p.poll() is not None,
            20,
        )
        seen = _wait_for(lambda m=moment, p=proc: m() or p.poll() is not None, 20)
        assert proc.poll() is None, log.read_text()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        kills.append((moment.__name__, seen))
    assert kills[0][1], "never caught uploads queued and at Marketo at once"
    # The restart drains what is left.
    proc = _start(config, logs[3], once=True)
    assert proc.wait(40) == 0, logs[3].read_text()[-3000:]
    _check_outcome(tmp_path, simulator, made)
    events = [e for log in logs for e in _events(log)]
    assert sum(e["event"] == "daemon_started" for e in events) == 4
    submitted = {e["batch_id"] for e in events if e["event"] == "import_submitted"}
    finished = {e["batch_id"] for e in events if e["event"] == "import_finished"}
    assert finished <= submitted


def test_sigterm_stops_gracefully_and_a_restart_finishes(tmp_path: Path, simulator: str) -> None:
    config = _config(tmp_path, simulator)
    db = tmp_path / "var" / "leadflow.db"
    made = _write_files(tmp_path / "var" / "inbox", count=4, rows=120)
    log = tmp_path / "run.log"
    proc = _start(config, log)
    assert _wait_for(
        lambda: bool(_query(db, "SELECT 1 FROM uploads WHERE batch_id IS NOT NULL"))
        and bool(_query(db, "SELECT 1 FROM files WHERE reported_at IS NULL")), 20
    ), log.read_text()[-3000:]
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - started < 1.0 + 3  # shutdown_grace_s + process exit
    stopped = [e for e in _events(log) if e["event"] == "daemon_stopped"]
    assert stopped and stopped[-1]["reason"] == "SIGTERM"
    # Nothing is mid-submit after a graceful stop, and the rest is finished by a restart.
    assert not _query(db, "SELECT 1 FROM uploads WHERE status = 'submitting'")
    proc = _start(config, log, once=True)
    assert proc.wait(40) == 0, log.read_text()[-3000:]
    _check_outcome(tmp_path, simulator, made)

"""``leadflow run`` as a subprocess against ``leadflow simulator`` in another subprocess.

- ``--once`` on an inbox of real-looking files exits 0 with one report per file;
- SIGKILL while uploads are queued, importing and being reported, three times, then a
  restart: every file ends with exactly one report and no row is lost.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

#: Simulated seconds per real second; with 15 rows per simulated second an upload of about
#: 60 rows imports in about 0.4 s of real time.
TIME_SCALE = 10
SIM_TOML = """
max_body_bytes = 4096
rows_per_second = 15.0
rate_limit_calls = 100000
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LEADFLOW_")}
    env["LEADFLOW_HTTP__LISTEN"] = ""  # parallel tests must not share port 9464
    return env


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """``leadflow simulator --time-scale N`` on a free loopback port; yields its URL."""
    port = _free_port()
    config = tmp_path / "sim.toml"
    config.write_text(SIM_TOML)
    with (tmp_path / "simulator.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "simulator", "--port", str(port),
             "--time-scale", str(TIME_SCALE), "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=_env(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                _get(f"{url}/_sim/clock")
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError("the simulator exited") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _config(tmp_path: Path, url: str) -> Path:
    var = tmp_path / "var"
    path = tmp_path / "leadflow.toml"
    path.write_text(f"""
[marketo]
base_url = "{url}"
client_id = "leadflow-sim"
client_secret = "leadflow-sim-secret"
retry_base_s = 0.05
retry_max_s = 0.5
[paths]
inbox = "{var / 'inbox'}"
work = "{var / 'work'}"
archive = "{var / 'archive'}"
rejected = "{var / 'rejected'}"
results = "{var / 'results'}"
database = "{var / 'leadflow.db'}"
[limits]
max_upload_bytes = 4096
calls_per_20s = 100
[polling]
min_interval_s = 0.1
max_interval_s = 0.5
[intake]
stable_s = 0.1
rescan_interval_s = 0.2
[daemon]
idle_tick_s = 0.1
shutdown_grace_s = 1.0
results_retry_s = 0.2
queue_full_backoff_s = 0.2
[log]
format = "json"
""")
    (var / "inbox").mkdir(parents=True, exist_ok=True)
    return path


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


def _start(config: Path, log: Path, once: bool = False) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "orchestrator", "run", "--config", str(config)]
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            args + (["--once"] if once else []), stdout=out, stderr=subprocess.STDOUT,
            env=_env(),
        )


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return []
    try:
        return list(conn.execute(sql).fetchall())
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def _wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def _events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines; a line cut short by SIGKILL is skipped."""
    events = []
    for line in log.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


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
    for step in ("file_received", "upload_queued", "import_submitted", "import_finished",
                 "results_written", "file_finished"):
        assert step in trail, (step, trail)
    assert "leadflow-sim-secret" not in log.read_text()


def test_sigkill_while_queued_importing_and_reporting_loses_nothing(
    tmp_path: Path, simulator: str
) -> None:
    config = _config(tmp_path, simulator)
    db = tmp_path / "var" / "leadflow.db"
    made = _write_files(tmp_path / "var" / "inbox", count=6, rows=120)

    def at_marketo_and_queued() -> bool:
        rows = dict(_query(db, "SELECT status, COUNT(*) FROM uploads GROUP BY 1"))
        return bool(rows.get("queued")) and bool(rows.get("importing") or rows.get("submitted"))

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

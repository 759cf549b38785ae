"""Helpers of the end-to-end tests: ``leadflow simulator`` and ``leadflow run`` as subprocesses.

Imported by the tests of this folder (pytest puts it on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The environment without any LEADFLOW_* variable of the developer's shell.

    The daemon's HTTP window is off (``LEADFLOW_HTTP__LISTEN=""``): parallel tests must not
    share port 9464.
    """
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LEADFLOW_")}
    env["LEADFLOW_HTTP__LISTEN"] = ""
    return env


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def patch_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="PATCH",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


@contextlib.contextmanager
def simulator(tmp_path: Path, toml: str, time_scale: float) -> Iterator[str]:
    """``leadflow simulator --time-scale N --config sim.toml`` on a free loopback port."""
    port = free_port()
    config = tmp_path / "sim.toml"
    config.write_text(toml)
    with (tmp_path / "simulator.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "simulator", "--port", str(port),
             "--time-scale", str(time_scale), "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env(),
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                get_json(f"{url}/_sim/clock")
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


def write_config(tmp_path: Path, url: str, *, max_upload_bytes: int = 4096,
                 extra: str = "") -> Path:
    """A leadflow TOML under ``tmp_path/var`` with fast loops; ``extra`` is appended."""
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
max_upload_bytes = {max_upload_bytes}
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
{extra}
""")
    (var / "inbox").mkdir(parents=True, exist_ok=True)
    return path


#: Daemons started by ``start_daemon`` in this process; ``conftest.py`` kills those still
#: running after each test (a failed assertion must not leave a daemon behind).
STARTED: list[subprocess.Popen[bytes]] = []


def start_daemon(config: Path, log: Path, once: bool = False) -> subprocess.Popen[bytes]:
    """``leadflow run --config ...`` (``--once``), its output appended to ``log``."""
    args = [sys.executable, "-m", "orchestrator", "run", "--config", str(config)]
    with log.open("ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            args + (["--once"] if once else []), stdout=out, stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    STARTED.append(proc)
    return proc


def kill_started() -> None:
    """Kill every daemon ``start_daemon`` started that still runs (by its own process)."""
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a read-only query; [] when the database is not there (yet) or busy."""
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


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines; a line cut short by SIGKILL is skipped."""
    found = []
    for line in log.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def reports(results: Path) -> dict[str, list[dict[str, Any]]]:
    """Every report.json under ``results``, by file name (a list: there must be one each)."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(results.glob("*/report.json")):
        report = json.loads(path.read_text())
        by_file.setdefault(report["file"], []).append(report)
    return by_file

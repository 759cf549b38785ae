"""Harness of the reliability tests (imported by the tests, conftest.py and bench/soak.py): the simulator and the daemon as real subprocesses.

- `SimulatorProcess`: ``python -m orchestrator simulator --port 0`` with a TOML config written
  into ``tmp_path``; the bound URL is read from its ``simulator_started`` log line, and the
  admin API (``/_sim/...``) is called with the standard library only.
- `Leadflow`: a daemon configuration (TOML in ``tmp_path``, every path under it) plus helpers
  to start ``python -m orchestrator run`` in the background, SIGKILL it, run ``run --once`` to
  drain, and read every JSON log line it ever wrote (one log file per start).
- Optionally both can run with a shifted wall clock (``clock_offset_s``): the daemon through
  ``clock_offset_main.py`` (``time.time`` + offset before anything is imported), the simulator
  through its own admin clock (``/_sim/clock/advance``), so that both agree on the quota day.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = sys.executable
CLOCK_WRAPPER = HERE / "clock_offset_main.py"
#: Known credentials of the reliability runs: they must never show up anywhere (issue 9.5).
CLIENT_ID = "reliability-client"
CLIENT_SECRET = "rel-SECRET-5f0c2d9e1b7a"
#: How long a subprocess may take to come up, seconds.
START_TIMEOUT_S = 20.0


def toml_dumps(data: dict[str, Any]) -> str:
    """Serialise plain nested dicts (str, int, float, bool, lists) as TOML.

    Lists of dicts become arrays of tables (``[[routes]]``).
    """
    lines: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, str | Path):
            return json.dumps(str(value))
        if isinstance(value, list | tuple):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        raise TypeError(f"cannot write {value!r} as TOML")

    def table(prefix: str, body: dict[str, Any], header: str | None) -> None:
        plain = {k: v for k, v in body.items() if not isinstance(v, dict) and not _is_aot(v)}
        if header is not None:
            lines.append("")
            lines.append(header)
        for key, value in plain.items():
            lines.append(f"{key} = {scalar(value)}")
        for key, value in body.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                table(f"{name}.", value, f"[{name}]")
            elif _is_aot(value):
                for item in value:
                    table(f"{name}.", item, f"[[{name}]]")

    table("", data, None)
    return "\n".join(lines) + "\n"


def _is_aot(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(
        isinstance(v, dict) for v in value
    )


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Parse every JSON object line of ``path``; other lines (tracebacks) are kept as text."""
    events: list[dict[str, Any]] = []
    if not path.exists():
        return events
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except ValueError:
            events.append({"event": "_non_json_line", "text": line})
            continue
        if isinstance(item, dict):
            events.append(item)
        else:
            events.append({"event": "_non_json_line", "text": line})
    return events


def _subprocess_env(clock_offset_s: float | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LEADFLOW_")}
    env["LEADFLOW_HTTP__LISTEN"] = ""  # parallel tests must not share port 9464
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("RELIABILITY_CLOCK_OFFSET_S", None)
    if clock_offset_s is not None:
        env["RELIABILITY_CLOCK_OFFSET_S"] = repr(clock_offset_s)
    return env


def http_json(
    method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 10.0
) -> Any:
    """Call a JSON endpoint; return the decoded body (raises on HTTP errors)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class SimulatorProcess:
    """The simulator served by ``python -m orchestrator simulator`` on a free loopback port."""

    workdir: Path
    config: dict[str, Any]
    time_scale: float = 1.0
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "simulator.log"

    def start(self) -> SimulatorProcess:
        """Start the process and wait until its admin API answers.

        Raises:
            RuntimeError: it exited or did not announce its URL within `START_TIMEOUT_S`.
        """
        config_path = self.workdir / "simulator.toml"
        config_path.write_text(toml_dumps(self.config), encoding="utf-8")
        args = [PYTHON, "-m", "orchestrator", "simulator", "--host", "127.0.0.1", "--port", "0",
                "--config", str(config_path), "--log-format", "json",
                "--time-scale", repr(float(self.time_scale))]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                     env=_subprocess_env(), stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for event in read_json_lines(self.log_path):
                if event.get("event") == "simulator_started":
                    self.url = str(event["url"])
            if self.url:
                with contextlib.suppress(OSError, ValueError):
                    self.get("/_sim/clock")
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        text = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"simulator did not start:\n{text}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s (idempotent)."""
        _stop(self.proc)

    # --- admin API (docs/reference/marketo-api.md §8.10)
    # ---------------------------------------------------------

    def get(self, path: str) -> Any:
        """GET an admin path, e.g. ``/_sim/stats``."""
        return http_json("GET", self.url + path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """POST JSON to an admin path."""
        return http_json("POST", self.url + path, body or {})

    def patch_settings(self, patch: dict[str, Any]) -> Any:
        """``PATCH /_sim/settings``: deep-merge settings and faults at runtime."""
        return http_json("PATCH", self.url + "/_sim/settings", patch)

    def stats(self) -> dict[str, Any]:
        """Statistics of the default instance."""
        body = self.get("/_sim/stats")
        return next(iter(body["instances"].values()))  # type: ignore[no-any-return]

    def leads(self) -> list[dict[str, Any]]:
        """The lead store as flat dicts."""
        return self.get("/_sim/leads")  # type: ignore[no-any-return]

    def requests(self) -> list[dict[str, Any]]:
        """The request log (where auth came from, per request)."""
        return self.get("/_sim/requests")  # type: ignore[no-any-return]

    def advance_clock(self, seconds: float) -> Any:
        """Jump the simulated clock forward."""
        return self.post("/_sim/clock/advance", {"seconds": seconds})


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def daemon_settings(root: Path, base_url: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """Settings for a fast daemon with every path under ``root`` (sections merge over these)."""
    base: dict[str, Any] = {
        "marketo": {
            "base_url": base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "retry_base_s": 0.05,
            "retry_max_s": 0.5,
            "retry_attempts": 6,
            "token_refresh_margin_s": 2.0,
            "connect_timeout_s": 5.0,
            "request_timeout_s": 10.0,
            "upload_timeout_s": 10.0,
        },
        "paths": {
            "inbox": str(root / "inbox"),
            "work": str(root / "work"),
            "archive": str(root / "archive"),
            "rejected": str(root / "rejected"),
            "results": str(root / "results"),
            "database": str(root / "db" / "leadflow.db"),
        },
        "limits": {"calls_per_20s": 100, "max_concurrent_calls": 5},
        "polling": {"min_interval_s": 0.05, "max_interval_s": 0.3},
        "intake": {"stable_s": 0.05, "rescan_interval_s": 0.1},
        "daemon": {
            "shutdown_grace_s": 1.0,
            "queue_full_backoff_s": 0.1,
            "queue_full_backoff_max_s": 1.0,
            "results_retry_s": 0.1,
            "idle_tick_s": 0.05,
        },
        "log": {"format": "json", "level": "info"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


@dataclass
class Leadflow:
    """One daemon configuration under ``root``, started and stopped as subprocesses."""

    root: Path
    settings: dict[str, Any]
    clock_offset_s: float | None = None
    runs: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs = self.root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.config_path = self.root / "leadflow.toml"
        self.config_path.write_text(toml_dumps(self.settings), encoding="utf-8")
        for key in ("inbox", "work", "archive", "rejected", "results"):
            Path(self.settings["paths"][key]).mkdir(parents=True, exist_ok=True)

    @property
    def inbox(self) -> Path:
        return Path(self.settings["paths"]["inbox"])

    @property
    def results(self) -> Path:
        return Path(self.settings["paths"]["results"])

    @property
    def database(self) -> Path:
        return Path(self.settings["paths"]["database"])

    def _argv(self, *extra: str) -> list[str]:
        if self.clock_offset_s is not None:
            head = [PYTHON, str(CLOCK_WRAPPER)]
        else:
            head = [PYTHON, "-m", "orchestrator"]
        return [*head, *extra, "--config", str(self.config_path)]

    def start(self) -> subprocess.Popen[bytes]:
        """Start ``leadflow run`` in the background; its output goes to ``logs/run-N.*``."""
        self.runs += 1
        out = (self.logs / f"run-{self.runs:03d}.jsonl").open("ab")
        err = (self.logs / f"run-{self.runs:03d}.stderr").open("ab")
        proc = subprocess.Popen(self._argv("run"), stdout=out, stderr=err, cwd=self.root,
                                env=_subprocess_env(self.clock_offset_s),
                                stdin=subprocess.DEVNULL)
        out.close()
        err.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> int | None:
        """SIGKILL the daemon; return its exit code if it had already exited on its own."""
        code = proc.poll()
        if code is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        return code

    def run_once(self, timeout: float = 50.0, *extra: str) -> subprocess.CompletedProcess[str]:
        """Run ``leadflow run --once`` to completion; output goes to ``logs/once-N.*`` too."""
        self.runs += 1
        result = subprocess.run(self._argv("run", "--once", *extra), check=False,
                                capture_output=True,
                                text=True, cwd=self.root, env=_subprocess_env(self.clock_offset_s),
                                timeout=timeout, stdin=subprocess.DEVNULL)
        (self.logs / f"run-{self.runs:03d}.jsonl").write_text(result.stdout, encoding="utf-8")
        (self.logs / f"run-{self.runs:03d}.stderr").write_text(result.stderr, encoding="utf-8")
        return result

    def command(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run another ``leadflow`` command (``status``, ``migrate``...) with this config."""
        return subprocess.run(self._argv(*args), check=False, capture_output=True, text=True,
                              cwd=self.root,
                              env=_subprocess_env(self.clock_offset_s), timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def events(self) -> list[dict[str, Any]]:
        """Every log line of every run so far, in run order."""
        out: list[dict[str, Any]] = []
        for path in sorted(self.logs.glob("run-*.jsonl")):
            out.extend(read_json_lines(path))
        return out

    def stderr_text(self) -> str:
        """Everything the runs wrote to stderr."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.stderr")))

    def reports(self) -> dict[str, list[dict[str, Any]]]:
        """``{source file name: [report.json, ...]}`` from ``paths.results``."""
        found: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(self.results.glob("*/report.json")):
            report = json.loads(path.read_text(encoding="utf-8"))
            found.setdefault(str(report["file"]), []).append(report)
        return found

    def stop_all(self) -> None:
        """Kill every daemon still running (teardown)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def require_module(name: str, attribute: str = "Intake") -> None:
    """Skip the test while a module another engineer is building has not landed.

    ``orchestrator.intake`` counts as landed once it exports ``Intake``.
    """
    import importlib

    try:
        module = importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} has not landed yet")
    if name == "orchestrator.intake" and not hasattr(module, attribute):
        pytest.skip(f"{name}.{attribute} has not landed yet")

"""Shared fixtures: a scrubbed environment and a settings factory rooted in tmp_path."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from postgres_support import (
    REQUIRED,
    PgServer,
    session_server,
    tier_line,
    unavailable_reason,
)

from orchestrator.places import make_folders
from orchestrator.settings import Settings, load_settings

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: The real-world problem files; ``../shared/inputs`` when the checkout sits beside it.
SHARED_INPUTS = SHARED / "inputs"
#: A copy kept in the repository, so a clone anywhere runs every input test.
VENDORED_INPUTS = Path(__file__).resolve().parent / "fixtures" / "inputs"
INPUTS = SHARED_INPUTS if SHARED_INPUTS.is_dir() else VENDORED_INPUTS


@pytest.fixture(autouse=True)
def _scrub_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No LEADFLOW_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.upper().startswith("LEADFLOW_"):
            monkeypatch.delenv(key)
    # No listener on the default port 9464 (tests run in parallel, maybe beside a daemon);
    # the window's own tests listen on port 0.
    monkeypatch.setenv("LEADFLOW_HTTP__LISTEN", "")
    # Nor does a systemd of the developer's session hear from a test daemon.
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(key, raising=False)
    yield
    structlog.reset_defaults()


@pytest.fixture
def shared_inputs() -> Path:
    """The folder of real-world problem files (``../shared/inputs``, or the vendored copy)."""
    return INPUTS


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build Settings with every path under ``tmp_path`` and fast intervals.

    Call with nested overrides, e.g. ``make_settings(limits={"import_slots": 3})``; with
    ``instances=[...]`` the ``[marketo]`` credentials are left out.
    """

    def factory(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "paths": {
                "inbox": str(tmp_path / "inbox"),
                "work": str(tmp_path / "work"),
                "archive": str(tmp_path / "archive"),
                "rejected": str(tmp_path / "rejected"),
                "results": str(tmp_path / "results"),
                "database": str(tmp_path / "leadflow.db"),
            },
            "marketo": {"client_id": "leadflow-sim", "client_secret": "leadflow-sim-secret"},
            "polling": {"min_interval_s": 0.05, "max_interval_s": 0.2},
            "intake": {"stable_s": 0.0, "rescan_interval_s": 0.1},
            "log": {"format": "json"},
            "http": {"listen": ""},
        }
        if "instances" in overrides:  # [[instances]] replace [marketo]'s credentials
            del base["marketo"]
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        settings = load_settings(None, base)
        # The folders of paths.*; the route folders are left for the daemon to make.
        make_folders(settings.model_copy(update={"routes": ()}))
        return settings

    return factory


# --- the PostgreSQL tier ------------------------------------------------------------------

#: Backends every store operation is tested on (see ``store_target``).
BACKENDS = ("sqlite", "postgresql")


def pytest_report_header() -> str:
    """Say where the PostgreSQL tier runs, or that it was skipped."""
    return tier_line()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat it in one line at the end when the tier was skipped (so nobody misses it)."""
    if unavailable_reason() is not None:
        terminalreporter.write_line(tier_line())


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """This session's PostgreSQL server (one per xdist worker); skips when there is none."""
    reason = unavailable_reason()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"PostgreSQL tier required (LEADFLOW_TEST_REQUIRE_POSTGRES=1): {reason}")
        pytest.skip(f"PostgreSQL tier skipped: {reason}")
    with session_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test; dropped afterwards."""
    url = pg_server.new_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(params=BACKENDS)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """What ``Store.open`` opens, once per backend: a SQLite file, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "q.db"
    url: str = request.getfixturevalue("pg_url")
    return url

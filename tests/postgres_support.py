"""A real PostgreSQL for the tests: ``LEADFLOW_TEST_POSTGRES_URL``, or a throw-away cluster.

Without the variable, each test session (each xdist worker) starts its own cluster from
Debian's ``postgresql`` binaries (``/usr/lib/postgresql/<version>/bin``) in a temporary folder,
listening on a unix socket only (no TCP), run as the ``postgres`` system user when the tests
run as root (PostgreSQL refuses root), and removes it afterwards. Each test gets a database of
its own, copied from a migrated template.

``tests/`` is on ``sys.path``; import as ``from postgres_support import ...``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

#: Read once at import: the autouse fixture scrubs LEADFLOW_* from each test's environment.
EXTERNAL_URL = os.environ.get("LEADFLOW_TEST_POSTGRES_URL") or None
#: Set by .ci/run: a missing PostgreSQL fails the tier instead of skipping it.
REQUIRED = os.environ.get("LEADFLOW_TEST_REQUIRE_POSTGRES") == "1"
#: Where Debian puts the server binaries.
DEBIAN_BIN = Path("/usr/lib/postgresql")


def server_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl, or None."""
    if not DEBIAN_BIN.is_dir():
        return None
    found = [
        p / "bin" for p in DEBIAN_BIN.iterdir()
        if (p / "bin" / "initdb").exists() and (p / "bin" / "pg_ctl").exists()
    ]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def unavailable_reason() -> str | None:
    """Why the PostgreSQL tier cannot run here, or None when it can."""
    if EXTERNAL_URL:
        return None
    if server_bin() is None:
        return (
            "no PostgreSQL found (install Debian's postgresql package or set "
            "LEADFLOW_TEST_POSTGRES_URL)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres system user to run the server as"
    return None


def tier_line() -> str:
    """One line for the test report: where the PostgreSQL tier runs, or that it is skipped."""
    reason = unavailable_reason()
    if reason is not None:
        return f"PostgreSQL tier skipped: {reason}"
    if EXTERNAL_URL:
        return "PostgreSQL tier: on LEADFLOW_TEST_POSTGRES_URL"
    return f"PostgreSQL tier: throw-away cluster from {server_bin()}"


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@dataclass
class PgServer:
    """One PostgreSQL server for a test session; ``new_database`` hands out fresh ones."""

    admin_url: str
    socket_dir: Path | None = None
    data_dir: Path | None = None
    bin_dir: Path | None = None
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _created: list[str] = field(default_factory=list)
    _template: str | None = None

    def url(self, dbname: str) -> str:
        """A URL of ``dbname`` on this server."""
        return urlunsplit(urlsplit(self.admin_url)._replace(path=f"/{dbname}"))

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self, *, migrated: bool = True) -> str:
        """Create a database for one test and return its URL (conninfo string).

        ``migrated``: a copy of a template the store's migrations already ran on.
        """
        if migrated and self._template is None:
            self._template = f"lf_tpl_{os.getpid()}"
            self._admin(f'DROP DATABASE IF EXISTS "{self._template}"')
            self._admin(f'CREATE DATABASE "{self._template}"')
            self._created.append(self._template)
            _migrate(self.url(self._template))
        name = f"lf_t_{os.getpid()}_{next(self._counter)}"
        template = f' TEMPLATE "{self._template}"' if migrated else ""
        self._admin(f'CREATE DATABASE "{name}"{template}')
        self._created.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by ``new_database`` (closing its connections)."""
        name = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self._created:
            self._created.remove(name)

    def stop(self) -> None:
        """Drop every database made here; stop and remove a throw-away cluster."""
        if self.data_dir is None:
            for name in list(reversed(self._created)):
                with contextlib.suppress(psycopg.Error):
                    self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        assert self.bin_dir is not None and self.socket_dir is not None
        subprocess.run(
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m",
                          "immediate", "-w", "stop"]),
            capture_output=True, check=False, timeout=60,
        )
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop the throw-away server (fast) and start it again (tests of reconnecting)."""
        assert self.bin_dir is not None and self.data_dir is not None
        assert self.socket_dir is not None
        # -l: the new postmaster must not inherit (and hold open) a pipe of ours.
        subprocess.run(
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                          "-l", str(self.socket_dir / "server.log"), "-w", "restart"]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=True, timeout=60,
        )


def _migrate(url: str) -> None:
    import asyncio  # only here: the template is migrated once per session

    from orchestrator.store import Store

    async def run() -> None:
        async with Store.open(url):
            pass

    asyncio.run(run())


def start_server() -> PgServer:
    """Start the session's server (or use ``LEADFLOW_TEST_POSTGRES_URL``).

    Raises:
        RuntimeError: initdb or pg_ctl failed (their output is in the message).
    """
    if EXTERNAL_URL:
        return PgServer(admin_url=EXTERNAL_URL)
    bin_dir = server_bin()
    assert bin_dir is not None
    # A short path: a unix socket path must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="lfpg", dir="/tmp"))
    data = root / "data"
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    root.chmod(0o700)
    steps = [
        [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
         "-E", "UTF8", "--locale=C", "--no-sync"],
        [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
         "-t", "60", "-o",
         (f"-k {root} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
          " -c synchronous_commit=off -c max_connections=300 -c shared_buffers=32MB"),
         "start"],
    ]
    for cmd in steps:
        done = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=120,
                              check=False)
        if done.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {done.stdout}{done.stderr}")
    return PgServer(
        admin_url=f"postgresql://postgres@/postgres?host={root}",
        socket_dir=root, data_dir=data, bin_dir=bin_dir,
    )


@contextlib.contextmanager
def session_server() -> Iterator[PgServer]:
    """``start_server`` ... ``stop`` as a context manager."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()

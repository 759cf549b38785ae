"""Benchmark of issue 17: several nodes on one PostgreSQL.

Both parts run on one throw-away PostgreSQL (``tests/postgres_support.py``: Debian's server
binaries run as the ``postgres`` user on a unix socket, or ``LEADFLOW_TEST_POSTGRES_URL``);
without one the benchmark is reported ``skipped`` with the reason.

1. **Takeover after SIGKILL.** Three real ``leadflow run`` processes (nodes ``n1`` to ``n3``)
   share one store and one folder; the simulator (own process, real-time clock) plays the
   Marketo instance. Files are dropped into the shared inbox; once every file is prepared and
   batches are at Marketo, the node holding the instance's lease is killed with SIGKILL.
   Measured from the kill: when another node holds the lease (``leases.acquired_at``) and
   when it has made its first status or create call (the first ``api_call`` line of endpoint
   ``import_status`` or ``import_create`` in its log). Target: ``<= daemon.lease_s + 2 s``.
   Then every file must end with exactly one report, ``complete``.
2. **The slots workloads through PostgreSQL.** ``bench_slots``' two workloads (same uploads,
   same simulator settings, same fast clocks, ``bench.harness``), imported once by one daemon
   on SQLite and once by three daemons on PostgreSQL (``n1`` to ``n3`` in this process, each
   with its own client, connection pool and lease keeper; the lease holder does the work).
   Targets: busy fraction of the 2 slots ``>= 0.98`` and makespan at most 2 % above the single
   node's (ratio ``<= 1.02``).

Quick mode: a 2-second lease, 6 files, and only the slots' small workload.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from bench.bench_slots import IMPORT_S, QUICK_SCALE, SCALE
from bench.common import Skipped, figure
from bench.harness import run_scenario
from bench.simhost import SimHost
from bench.workload import Upload, big_uploads, small_uploads

ROOT = Path(__file__).resolve().parents[1]
#: Nodes of the cluster runs.
NODES = ("n1", "n2", "n3")
#: ``daemon.lease_s`` of the takeover run (the default is 15 s; the takeover scales with it).
LEASE_S = {"full": 5.0, "quick": 2.0}
#: Seconds over ``lease_s`` the takeover may take (issue 17).
TAKEOVER_MARGIN_S = 2.0
#: Files dropped in the takeover run, rows each, and the simulator's import rate: each
#: import lasts ``ROWS / RATE`` = 2 real seconds, so batches are at Marketo at the kill.
TAKEOVER_FILES = {"full": 12, "quick": 6}
ROWS = 10
RATE = 5.0
#: Endpoints (``api_call`` lines) that show the new holder polling or submitting.
WORK_ENDPOINTS = ("import_status", "import_create")


def postgres_support() -> ModuleType:
    """``tests/postgres_support.py`` (the tests' throw-away PostgreSQL), imported from here.

    Raises:
        Skipped: no PostgreSQL can be started here (the module says why).
    """
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    module = importlib.import_module("postgres_support")
    reason = module.unavailable_reason()
    if reason is not None:
        raise Skipped(reason)
    return module


# --- 1. takeover after SIGKILL ---------------------------------------------------------------


def node_config(root: Path, url: str, pg_url: str, node: str, lease_s: float) -> Path:
    """A ``leadflow run`` TOML for ``node``: shared folders under ``root``, fast loops."""
    var = root / "var"
    path = root / f"{node}.toml"
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
database = "{var / 'unused.db'}"
[polling]
min_interval_s = 0.1
max_interval_s = 0.5
[intake]
stable_s = 0.1
rescan_interval_s = 0.2
[daemon]
node_id = "{node}"
lease_s = {lease_s}
idle_tick_s = 0.1
shutdown_grace_s = 1.0
results_retry_s = 0.2
queue_full_backoff_s = 0.2
[import]
pack = false
[store]
url = "{pg_url}"
[log]
format = "json"
[http]
listen = ""
""")
    (var / "inbox").mkdir(parents=True, exist_ok=True)
    return path


def _pg(pg_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        return list(conn.execute(sql, params).fetchall())


def _events(log: Path) -> list[dict[str, Any]]:
    """JSON log lines of a node (a line cut short by SIGKILL is skipped)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


def _epoch(event: dict[str, Any]) -> float:
    """A log line's ISO timestamp as epoch seconds."""
    return datetime.fromisoformat(str(event["timestamp"])).timestamp()


def _reports(results: Path) -> dict[str, list[str]]:
    """Report statuses by file name (a list: there must be exactly one each)."""
    found: dict[str, list[str]] = {}
    for path in results.glob("*/report.json"):
        with contextlib.suppress(OSError, ValueError):
            report = json.loads(path.read_text())
            found.setdefault(report["file"], []).append(report["status"])
    return found


async def _until(check: Any, timeout_s: float, what: str) -> Any:
    """Call ``check()`` every 20 ms until it returns something truthy; return that.

    Raises:
        TimeoutError: nothing after ``timeout_s`` seconds (``what`` says what was awaited).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout_s:.0f} s")
        await asyncio.sleep(0.02)


def _drop_files(inbox: Path, count: int, staging: Path) -> set[str]:
    staging.mkdir(parents=True, exist_ok=True)
    names = set()
    for i in range(count):
        name = f"cluster-{i:02d}.csv"
        rows = "".join(f"t{i}-{r}@example.com,N{r}\r\n" for r in range(ROWS))
        (staging / name).write_text("email,firstName\r\n" + rows)
        os.replace(staging / name, inbox / name)
        names.add(name)
    return names


async def takeover(pg_url: str, root: Path, quick: bool) -> tuple[list[dict[str, Any]],
                                                                   dict[str, Any]]:
    """Run part 1; return its figures and details.

    Raises:
        TimeoutError: a step did not happen in time (the message ends with the tail of each
            node's log).
        RuntimeError: a node exited on its own.
    """
    root.mkdir(parents=True, exist_ok=True)
    mode = "quick" if quick else "full"
    lease_s, files = LEASE_S[mode], TAKEOVER_FILES[mode]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LEADFLOW_")}
    env["LEADFLOW_HTTP__LISTEN"] = ""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {n: root / f"{n}.log" for n in NODES}
    details: dict[str, Any] = {"lease_s": lease_s, "files": files, "rows_per_file": ROWS,
                               "import_s_each": ROWS / RATE}
    phases: dict[str, float] = {}
    t0 = time.monotonic()

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - t0, 2)

    details["phases_s"] = phases
    async with SimHost({"rows_per_second": RATE, "store_leads": False, "seed": 17}, 1.0) as sim:
        try:
            for n in NODES:
                config = node_config(root, sim.url, pg_url, n, lease_s)
                with logs[n].open("ab") as out:
                    procs[n] = subprocess.Popen(
                        [sys.executable, "-m", "orchestrator", "run", "--config", str(config)],
                        stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)

            def alive() -> None:
                for n, proc in procs.items():
                    if proc.poll() is not None and n != details.get("killed"):
                        raise RuntimeError(f"node {n} exited {proc.returncode}: "
                                           f"{logs[n].read_text()[-2000:]}")

            def check(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
                alive()
                return _pg(pg_url, sql, params)

            await _until(lambda: check("SELECT COUNT(*) FROM nodes") == [(len(NODES),)]
                         and check("SELECT holder FROM leases WHERE holder IS NOT NULL"),
                         60, "three nodes beating and a lease holder")
            phase("nodes_up")
            names = _drop_files(root / "var" / "inbox", files, root / "staging")
            # Every file prepared (files a killed node leaves ``received`` are adopted by
            # another node after 3 x lease_s: that is not the takeover measured here) and
            # batches at Marketo.
            await _until(lambda: check(
                "SELECT COUNT(*) FILTER (WHERE status <> 'received'), COUNT(*) FROM files")
                == [(files, files)], 60, "files prepared")
            phase("files_prepared")
            await _until(lambda: check(
                "SELECT 1 FROM uploads WHERE status IN ('submitted', 'importing')"),
                60, "batches at Marketo")
            phase("killed")
            [(holder, epoch, expires_at)] = _pg(
                pg_url, "SELECT holder, epoch, expires_at FROM leases")
            details["killed"] = holder
            killed_at = time.time()
            procs[holder].send_signal(signal.SIGKILL)
            procs[holder].wait(10)
            details["lease_left_at_kill_s"] = round(float(expires_at) - killed_at, 3)
            details["uploads_at_kill"] = dict(_pg(
                pg_url, "SELECT status, COUNT(*) FROM uploads GROUP BY status"))

            [(new, acquired_at)] = await _until(lambda: check(
                "SELECT holder, acquired_at FROM leases WHERE epoch > %s"
                " AND holder IS NOT NULL AND holder <> %s", (epoch, holder)),
                lease_s + 30, "lease taken over")

            def first_work() -> float | None:
                alive()
                times = [_epoch(e) for e in _events(logs[new])
                         if e.get("event") == "api_call" and e.get("endpoint") in WORK_ENDPOINTS]
                later = [t for t in times if t >= killed_at]
                return min(later) if later else None

            first_call = await _until(first_work, lease_s + 30, "poll or submit by the new holder")
            lease_taken_s = float(acquired_at) - killed_at
            work_s = first_call - killed_at
            details.update(new_holder=new, lease_taken_s=round(lease_taken_s, 3),
                           first_call_s=round(work_s, 3))
            print(f"takeover after SIGKILL of the lease holder: lease taken {lease_taken_s:.2f} s,"
                  f" first poll/submit {work_s:.2f} s (lease_s {lease_s})", file=sys.stderr)
            results = root / "var" / "results"
            await _until(lambda: alive() or len(_reports(results)) >= files, 120,
                         "report of every file")
            phase("all_reported")
        except TimeoutError as exc:
            tails = "".join(f"\n--- {n}.log\n{log.read_text(errors='replace')[-1500:]}"
                            for n, log in logs.items() if log.exists())
            raise TimeoutError(f"{exc}{tails}") from exc
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
    phase("nodes_stopped")
    found = _reports(results)  # the nodes are gone: a second report of a file would be here
    once = sum(1 for n in names if found.get(n) == ["complete"])
    details["reports"] = {n: found.get(n, []) for n in sorted(names)}
    takeovers = {n: [e for e in _events(logs[n]) if e.get("event") == "lease_takeover"]
                 for n in NODES}
    details["lease_takeovers"] = {n: len(v) for n, v in takeovers.items()}
    limit = f"<= {lease_s + TAKEOVER_MARGIN_S:g}"
    figures = [
        figure("takeover: another node holds the lease", lease_taken_s, "s",
               baseline=lease_s, baseline_name="daemon.lease_s", target=limit,
               note=f"from SIGKILL of the holder to leases.acquired_at of the next; "
                    f"{details['lease_left_at_kill_s']:.2f} s of the lease were left at the kill"),
        figure("takeover: first poll or submit by the new holder", work_s, "s",
               baseline=lease_s, baseline_name="daemon.lease_s", target=limit,
               note="from SIGKILL to the new holder's first import_status/import_create call "
                    "(its api_call log line); target: lease_s + 2 s"),
        figure("takeover: files with exactly one complete report", once, "files",
               target=f">= {files}", note=f"{files} files of {ROWS} rows, 3 nodes, one killed"),
    ]
    return figures, details


# --- 2. the slots workloads through PostgreSQL --------------------------------------------------


async def slots(urls: dict[str, str], root: Path, quick: bool) -> tuple[list[dict[str, Any]],
                                                                       dict[str, Any]]:
    """Run part 2 (``urls``: an empty migrated database per workload); figures, details."""
    figures: list[dict[str, Any]] = []
    details: dict[str, Any] = {"time_scale": QUICK_SCALE if quick else SCALE,
                               "import_s": IMPORT_S}
    workloads: dict[str, list[Upload]] = {
        "small": small_uploads(root / "small", 12 if quick else 100, rows=600)}
    if not quick:
        workloads["big"] = big_uploads(root / "big", 5, 50_000_000)
    for label, uploads in workloads.items():
        rate = max(u.rows for u in uploads) / IMPORT_S[label]
        scale = (QUICK_SCALE if quick else SCALE)[label]
        config = {"rows_per_second": rate, "store_leads": False, "seed": 8}
        single = await run_scenario("leadflow", uploads, config, scale, root / label / "sqlite")
        cluster = await run_scenario("leadflow", uploads, config, scale, root / label / "pg",
                                     store_url=urls[label], nodes=len(NODES))
        details[label] = {"sqlite_1_node": single, "postgresql_3_nodes": cluster}
        name = f"{label} ({len(uploads)} uploads)"
        figures += [
            figure(f"{name}: busy fraction, 3 nodes on PostgreSQL", cluster["busy_fraction"], "",
                   baseline=single["busy_fraction"], baseline_name="1 node on SQLite",
                   target=">= 0.98",
                   note="slot-time importing / slot-time our backlog could use (as slots)"),
            figure(f"{name}: makespan, 3 nodes on PostgreSQL", cluster["makespan_ratio"],
                   "x ideal", baseline=single["makespan_ratio"],
                   baseline_name="1 node on SQLite", target="<= 1.02", target_on="ratio",
                   note=f"ideal {cluster['ideal_s']:.0f} simulated s; ratio = makespan of 3 "
                        "nodes on PostgreSQL / of 1 node on SQLite"),
            figure(f"{name}: total calls per upload, 3 nodes on PostgreSQL",
                   cluster["calls_per_upload"], "calls/upload",
                   baseline=single["calls_per_upload"], baseline_name="1 node on SQLite",
                   note="every API call the simulator received (identity excluded)"),
        ]
    return figures, details


def run(quick: bool) -> dict[str, Any]:
    """Run both parts on one throw-away PostgreSQL.

    Raises:
        Skipped: no PostgreSQL here.
    """
    support = postgres_support()
    with support.session_server() as server, \
            tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        root = Path(tmp)
        # Databases first: the template is migrated with asyncio.run, outside our loop.
        takeover_url = server.new_database()
        labels = ["small"] if quick else ["small", "big"]
        urls = {label: server.new_database() for label in labels}
        t = time.perf_counter()
        figures, details = asyncio.run(takeover(takeover_url, root / "takeover", quick))
        details = {"takeover": details, "takeover_real_s": round(time.perf_counter() - t, 2)}
        t = time.perf_counter()
        more, slot_details = asyncio.run(slots(urls, root / "slots", quick))
        details |= {"slots": slot_details, "slots_real_s": round(time.perf_counter() - t, 2)}
    return {"figures": figures + more, "details": details}

"""Run leadflow (or the naive baseline) against the simulator on a fast clock, and analyse it.

Simulated time: the simulator runs ``time_scale`` times faster than real time; the daemon
reads the wall clock, so every interval of its settings is divided by ``time_scale``
(`scaled_settings`) and its client gets a rate window of ``20 / time_scale`` real seconds.
Marketo's timing (when a job started, when it ended, how long each slot was busy) comes from
the simulator's own statistics, which are exact in simulated time whatever the event loops do;
only the daemon's reaction times carry scheduling noise (about 1 ms real = 0.1 simulated s
at 100x).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import psycopg

from bench.naive_poller import run_naive
from bench.scaling import scale_client_constants
from bench.simhost import SimHost
from bench.workload import HEADER, Upload
from orchestrator.daemon import Daemon
from orchestrator.intake.uploads import pack_key
from orchestrator.logging import configure
from orchestrator.marketo import MarketoClient
from orchestrator.models import NewPart
from orchestrator.places import make_folders
from orchestrator.settings import Settings, load_settings
from orchestrator.store import Store, store_target
from orchestrator.store.core import is_postgres_url

#: Marketo's importing slots (docs/reference/marketo-api.md §2.4).
IMPORTING_SLOTS = 2
#: Upload options of every benchmark upload.
OPTIONS = {"format": "csv", "lookupField": "email"}
_OPEN = ("queued", "submitting", "submitted", "importing")


def scaled_settings(root: Path, url: str, scale: float, *, store_url: str | None = None,
                    node_id: str | None = None) -> Settings:
    """Default settings with every duration divided by ``scale`` and paths under ``root``.

    Args:
        root: the folder of every ``paths`` entry (shared by the nodes of a cluster run).
        url: the simulator's base URL.
        scale: simulated seconds per real second.
        store_url: ``[store] url`` (PostgreSQL: several nodes, leases); None: SQLite at
            ``root/leadflow.db``.
        node_id: ``daemon.node_id`` (a cluster run names its nodes).
    """
    s = 1.0 / scale
    overrides: dict[str, Any] = {
        "paths": {name: str(root / name) for name in
                  ("inbox", "work", "archive", "rejected", "results")}
        | {"database": str(root / "leadflow.db")},
        "marketo": {
            "base_url": url, "client_id": "leadflow-sim", "client_secret": "leadflow-sim-secret",
            "retry_base_s": 1.0 * s, "retry_max_s": 60.0 * s, "token_refresh_margin_s": 60.0 * s,
        },
        "polling": {"min_interval_s": 5.0 * s, "max_interval_s": 30.0 * s},
        "intake": {"stable_s": 0.0, "rescan_interval_s": 10.0 * s},
        "daemon": {
            "queue_full_backoff_s": 5.0 * s, "queue_full_backoff_max_s": 120.0 * s,
            "results_retry_s": 30.0 * s, "idle_tick_s": 1.0 * s, "shutdown_grace_s": 1.0,
            # The lease (PostgreSQL) stays in real seconds: it is about processes dying,
            # which the fast clock does not speed up.
            **({"node_id": node_id} if node_id else {}),
        },
        "log": {"format": "json", "level": "error"},
        # No listener: benchmarks measure the import, and run beside tests and daemons.
        "http": {"listen": ""},
    }
    if store_url is not None:
        overrides["store"] = {"url": store_url}
    settings = load_settings(None, overrides)
    make_folders(settings)
    return settings


class _NoIntake:
    """Stands in for intake: the uploads are already in the store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.observer: Any = None

    async def recover(self) -> None:
        return None

    async def scan_once(self) -> list[Any]:
        return []

    async def run(self, stop: asyncio.Event, on_enqueued: Any) -> None:
        await stop.wait()

    def held(self) -> dict[int, int]:
        return {}


class _NoReporter:
    """Stands in for the reporter: results files are not what these benchmarks measure."""

    async def report_ready(self) -> int:
        return 0

    async def remove_finished_work_dirs(self) -> int:
        return 0

    async def remove_finished_packs(self) -> int:
        return 0


async def enqueue(settings: Settings, uploads: list[Upload]) -> None:
    """Put the prepared uploads in the FIFO as parts, one file per source group.

    They carry the pack key intake would give them (same options, same columns), so the
    scheduler packs them exactly as it packs prepared files.
    """
    key = pack_key("leads", OPTIONS, HEADER.split(","))
    header_bytes = len(HEADER) + 2
    groups: dict[int, list[Upload]] = {}
    for up in uploads:
        groups.setdefault(up.group, []).append(up)
    async with Store.open(store_target(settings)) as store:
        for group, members in groups.items():
            rec = await store.add_file(name=f"source-{group}.csv",
                                       inbox_path=f"/bench/inbox/{group}",
                                       work_path=str(settings.paths.work / str(group)),
                                       route=None, size_bytes=sum(u.size_bytes for u in members))
            batch = [NewPart(path=str(u.path), size_bytes=u.size_bytes,
                             source_rows=list(range(2, u.rows + 2)), options=OPTIONS,
                             header_bytes=header_bytes, pack_key=key)
                     for u in members]
            await store.enqueue_parts(rec.id, batch, sha256=f"{group:064x}")


async def run_leadflow(sim: SimHost, settings: Settings, uploads: list[Upload],
                       scale: float, timeout_s: float,
                       peers: Sequence[Settings] = ()) -> dict[str, Any]:
    """Run the daemon until every upload is terminal; return its start in simulated time.

    Args:
        sim: the simulator.
        settings: the (first) node's settings.
        uploads: what to import (enqueued here, before the daemons start).
        scale: simulated seconds per real second.
        timeout_s: real seconds before the run is abandoned.
        peers: more nodes on the same ``store.url`` (PostgreSQL), each a ``Daemon`` with its
            own client, store pool and lease keeper, run beside the first in this process;
            only the node holding the instance's lease talks to Marketo.

    Returns:
        ``t0`` (simulated start), ``wall_s``, ``uploads`` (counts by status),
        ``queue_full_answers``, ``parts_per_batch``; with peers also ``lease_takeovers``
        (times any node took the lease: 1 when the first holder kept it) and ``holders``.

    Raises:
        TimeoutError: not finished within ``timeout_s`` real seconds.
    """
    configure("json", "error")
    scale_client_constants(scale)
    await enqueue(settings, uploads)
    async with AsyncExitStack() as stack:
        daemons: list[Daemon] = []
        for node in (settings, *peers):
            client = await stack.enter_async_context(
                MarketoClient(node, store=None, window_s=20.0 / scale))
            daemons.append(await stack.enter_async_context(Daemon(
                node, client=client,
                intake_factory=lambda store, client, node=node: _NoIntake(node),
                reporter_factory=lambda store, client: _NoReporter(),
                handle_signals=False)))
        watch = daemons[0].store
        t0_mono = time.monotonic()
        tasks = [asyncio.create_task(d.run()) for d in daemons]
        deadline = t0_mono + timeout_s
        try:
            while True:
                for task in tasks:
                    if task.done():
                        task.result()
                        raise RuntimeError("a daemon stopped before the uploads were done")
                counts = (await watch.counts_by_status())["uploads"]
                waiting = (await watch.waiting_summary())["parts"]
                if not waiting and not any(counts[s] for s in _OPEN):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"leadflow not done after {timeout_s} s: {counts}")
                await asyncio.sleep(0.05)
            wall = time.monotonic() - t0_mono
        finally:
            for daemon in daemons:
                daemon.stop("benchmark done")
            ended = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in ended:  # a daemon that failed while stopping fails the run
            if isinstance(outcome, BaseException):
                raise outcome
        counts = (await watch.counts_by_status())["uploads"]
        queue_full = sum(d.scheduler.queue_full_answers for d in daemons)
        cluster: dict[str, Any] = {}
        if peers:
            cluster = {"lease_takeovers": sum(d.lease.takeovers for d in daemons if d.lease),
                       "holders": [d.node_id for d in daemons if d.lease and d.lease.takeovers]}
    return {"t0": sim.sim_time(t0_mono), "wall_s": wall, "uploads": counts,
            "queue_full_answers": queue_full, **cluster,
            "parts_per_batch": parts_per_batch(store_target(settings))}


#: Parts (prepared uploads) per batchId; the same SQL on both engines.
_PARTS_PER_BATCH = (
    "SELECT u.batch_id, COUNT(p.id) FROM uploads u JOIN parts p ON p.upload_id = u.id"
    " WHERE u.batch_id IS NOT NULL GROUP BY u.batch_id")


def parts_per_batch(target: Path | str) -> dict[int, int]:
    """Map each batchId of the run to the number of parts (prepared uploads) it carried.

    ``target``: the SQLite file, or a PostgreSQL URL (``store_target``).
    """
    if is_postgres_url(target):
        with psycopg.connect(str(target), autocommit=True) as pg:
            rows = pg.execute(_PARTS_PER_BATCH).fetchall()
    else:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            rows = conn.execute(_PARTS_PER_BATCH).fetchall()
        finally:
            conn.close()
    return {int(batch): int(n) for batch, n in rows}


async def run_scenario(kind: str, uploads: list[Upload], sim_config: dict[str, Any],
                       scale: float, root: Path, *, share: float = 1.0,
                       timeout_s: float = 240.0, store_url: str | None = None,
                       nodes: int = 1) -> dict[str, Any]:
    """Import ``uploads`` with ``kind`` (``leadflow`` or ``naive``) against a fresh simulator.

    Args:
        kind: ``leadflow`` (the daemon) or ``naive`` (`bench.naive_poller`).
        uploads: prepared uploads, in FIFO order.
        sim_config: ``SimulatorConfig`` fields; ``rows_per_second`` is required.
        scale: simulated seconds per real second.
        root: a fresh folder for the run's settings paths.
        share: passed to `analyse`.
        timeout_s: real seconds before the run is abandoned.
        store_url: a PostgreSQL URL (an empty, migrated database) instead of SQLite.
        nodes: leadflow daemons on ``store_url`` (named ``n1``, ``n2``, ...); 1 without it.

    Returns:
        `analyse`'s figures plus ``run`` (what the runner reported) and ``real_s``.
    """
    if nodes > 1 and store_url is None:
        raise ValueError("several nodes need a PostgreSQL store_url")
    async with SimHost(sim_config, scale) as sim:
        names = [f"n{i}" for i in range(1, nodes + 1)] if store_url else [None]
        every = [scaled_settings(root / kind, sim.url, scale, store_url=store_url, node_id=n)
                 for n in names]
        settings = every[0]
        t_wall = time.perf_counter()
        if kind == "leadflow":
            run = await run_leadflow(sim, settings, uploads, scale, timeout_s=timeout_s,
                                     peers=every[1:])
            t0 = run["t0"]
        else:
            run = await run_naive(settings, uploads, scale=scale, timeout_s=timeout_s)
            t0 = sim.sim_time(run.pop("t0_mono"))
        stats = await sim.stats()
    result = analyse(stats, t0, uploads, float(sim_config["rows_per_second"]), share,
                     run.get("parts_per_batch"))
    result["run"] = run
    result["real_s"] = round(time.perf_counter() - t_wall, 2)
    return result


def analyse(stats: dict[str, Any], t0: float, uploads: list[Upload], rate: float,
            share: float = 1.0, parts: dict[int, int] | None = None) -> dict[str, Any]:
    """Figures of one run from the simulator's statistics.

    Args:
        stats: ``/_sim/stats`` of the instance after the run.
        t0: simulated time the run started (our backlog existed from then on).
        uploads: what was imported (prepared uploads: the parts the daemon packs).
        rate: the simulator's rows per simulated second (a fixed import rate).
        share: the fraction of Marketo's import capacity available to us (1 without
            other integrations).
        parts: prepared uploads carried by each batchId (leadflow packs them); 1 when absent
            (the naive poller sends each alone).

    Returns:
        ``makespan_s``, ``ideal_s`` (total import work / 2 slots / share), ``makespan_ratio``,
        ``busy_fraction`` (slot-seconds our jobs imported divided by the slot-seconds our
        backlog could have used, ``min(2, our unfinished uploads)`` integrated from the
        arrival of our first upload at Marketo to the end; a batch finishing finishes every
        upload it carried), ``complete``: prepared uploads in complete batches,
        ``slot_busy_s`` (the simulator's per-slot busy time), calls and error counts.
    """
    ours = [b for b in stats["batches"] if b["kind"] != "foreign"]
    carried = parts or {}
    done = sum(carried.get(b["batchId"], 1) for b in ours if b["status"] == "Complete")
    end = max((b["finished_at"] for b in ours if b["finished_at"] is not None), default=t0)
    work = sum(u.rows for u in uploads) / rate
    ideal = work / IMPORTING_SLOTS / share
    # Integrate importing(t) and min(2, unfinished(t)) over [t0, end].
    events: list[tuple[float, int, int]] = []  # (time, d_importing, d_unfinished)
    for b in ours:
        if b["importing_at"] is not None:
            events.append((max(b["importing_at"], t0), 1, 0))
            if b["finished_at"] is not None:
                events.append((b["finished_at"], -1, -carried.get(b["batchId"], 1)
                               if b["status"] == "Complete" else 0))
    events.sort()
    importing, unfinished = 0, len(uploads)
    busy = demand = 0.0
    # Marketo cannot import before it holds one of our jobs: the backlog window opens when
    # the first upload has arrived (its transfer is in the makespan, not here).
    first = min((b["created_at"] for b in ours), default=t0)
    last = max(t0, first)
    for at, d_imp, d_unf in events:
        span = max(at - last, 0.0)
        busy += span * importing
        demand += span * min(IMPORTING_SLOTS, unfinished)
        importing += d_imp
        unfinished += d_unf
        last = max(last, at)
    calls = dict(stats["calls_by_endpoint"])
    identity = calls.pop("identity", 0)
    status_calls = sum(v for k, v in calls.items() if k.endswith("_status"))
    api_calls = sum(calls.values())
    n = len(uploads)
    return {
        "uploads": n,
        "batches": len(ours),
        "complete": done,
        "makespan_s": end - t0,
        "ideal_s": ideal,
        "makespan_ratio": (end - t0) / ideal if ideal else None,
        "busy_fraction": busy / demand if demand else None,
        "slot_busy_s": stats["slot_busy_s"],
        "status_calls": status_calls,
        "api_calls": api_calls,
        "identity_calls": identity,
        "status_calls_per_upload": status_calls / n,
        "calls_per_upload": api_calls / n,
        "errors": stats["errors"],
        "peak_calls_per_window": stats["peak_calls_per_window"],
        "peak_concurrent_calls": stats["peak_concurrent_calls"],
        "peak_queued_or_importing": stats["peak_queued_or_importing"],
    }

"""``leadflow demo``: a fresh demo folder, the simulator, realistic files, the daemon, a summary.

Steps: recreate the demo folder; write the lead files into its inbox; serve the simulator
in-process on a free loopback port with a sped-up clock; run the daemon in drain mode
(``--once``) against it while a live view reads progress from the database; then read every
``report.json`` and the simulator's statistics and lead store, check them against what each
file must reach, write ``summary.json`` and print the summary. Log lines go to
``<demo>/leadflow.log`` (JSON lines) so the console stays readable. With ``--keep-running`` the
daemon then keeps watching the inbox until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Mapping
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import structlog
from aiohttp import web
from rich.console import Console

from orchestrator.daemon import Daemon
from orchestrator.demo import small_files
from orchestrator.demo.files import (
    DEMO_SEED,
    ROUTE_FOLDER,
    ROUTE_LIST_ID,
    DemoFile,
    write_demo_files,
)
from orchestrator.demo.progress import ProgressView, read_progress
from orchestrator.demo.summary import (
    build_summary,
    read_reports,
    render_next_steps,
    render_summary,
)
from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.logging import configure
from orchestrator.places import make_folders
from orchestrator.settings import Settings, deep_merge, load_settings, parse_set_flags
from orchestrator.simulator import DEFAULT_MUNCHKIN_ID, SimulatorConfig, create_app
from orchestrator.store import Store

log = structlog.get_logger(__name__)

#: Simulated seconds per real second: Marketo's minutes of importing pass in seconds, and the
#: demo's polling every 0.1 to 0.5 s is Marketo's recommended 6 to 30 s.
DEFAULT_TIME_SCALE = 60.0
#: With ``--small`` (tests) the clock runs faster still.
SMALL_TIME_SCALE = 120.0
#: With ``--small``, uploads are capped at this many bytes so the big file still splits.
SMALL_MAX_UPLOAD_BYTES = 100_000
#: A file in the demo folder that marks it as ours (the folder is deleted on each run).
MARKER = ".leadflow-demo"
#: Seconds between two progress snapshots.
PROGRESS_EVERY_S = 0.25
#: Used when ``config/demo.toml`` cannot be found (an installed wheel): the same values.
DEMO_DEFAULTS: dict[str, Any] = {
    "marketo": {"retry_base_s": 0.05, "retry_max_s": 1.0},
    "limits": {"import_slots": 10, "calls_per_20s": 100, "max_concurrent_calls": 5},
    "polling": {"min_interval_s": 0.1, "max_interval_s": 0.5},
    "intake": {"stable_s": 0.2, "rescan_interval_s": 0.5},
    "daemon": {
        "shutdown_grace_s": 2.0, "queue_full_backoff_s": 0.2, "queue_full_backoff_max_s": 2.0,
        "results_retry_s": 0.5, "idle_tick_s": 0.1,
    },
    "log": {"format": "json", "level": "info"},
    "routes": [{"name": ROUTE_FOLDER, "list_id": ROUTE_LIST_ID}],
}


def find_demo_config() -> Path | None:
    """Return ``config/demo.toml`` from the source checkout, else the working directory."""
    here = Path(__file__).resolve().parents[2] / "config" / "demo.toml"
    for candidate in (here, Path.cwd() / "config" / "demo.toml"):
        if candidate.is_file():
            return candidate
    return None


def prepare_dir(demo_dir: Path) -> None:
    """Empty and recreate the demo folder.

    Raises:
        ConfigError: the folder exists, is not empty and is not a demo folder (no marker),
            so it is left alone.
    """
    if demo_dir.exists():
        if not demo_dir.is_dir():
            raise ConfigError("--dir", f"{demo_dir} exists and is not a folder")
        if any(demo_dir.iterdir()) and not (demo_dir / MARKER).exists():
            raise ConfigError(
                "--dir", f"{demo_dir} is not empty and is not a leadflow demo folder; "
                "choose another --dir"
            )
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True)
    (demo_dir / MARKER).write_text("created by `leadflow demo`; deleted on its next run\n")


def demo_settings(
    demo_dir: Path,
    base_url: str,
    *,
    small: bool,
    config: Path | None,
    user: Mapping[str, Any],
) -> Settings:
    """Build the demo's settings.

    Sources, later wins: ``config`` (``--config``, else ``config/demo.toml``, else
    `DEMO_DEFAULTS`), the ``LEADFLOW_*`` environment, ``user`` (``--set`` and log flags), then
    what the demo must control: the simulator's URL and credentials and every path inside
    ``demo_dir`` (and, with ``small``, a small upload limit unless ``user`` sets one).

    Raises:
        ConfigError: a bad setting.
    """
    path = config or find_demo_config()
    overrides: dict[str, Any] = {} if path is not None else dict(DEMO_DEFAULTS)
    if small and "max_upload_bytes" not in user.get("limits", {}):
        overrides = deep_merge(overrides, {"limits": {"max_upload_bytes": SMALL_MAX_UPLOAD_BYTES}})
    overrides = deep_merge(overrides, user)
    forced = {
        "marketo": {
            "base_url": base_url, "identity_url": None, "client_id": "leadflow-sim",
            "client_secret": "leadflow-sim-secret", "client_secret_file": None,
        },
        "paths": {
            "inbox": str(demo_dir / "inbox"), "work": str(demo_dir / "work"),
            "archive": str(demo_dir / "archive"), "rejected": str(demo_dir / "rejected"),
            "results": str(demo_dir / "results"), "database": str(demo_dir / "leadflow.db"),
        },
    }
    # environ={}: a LEADFLOW_CONFIG meant for production must not leak into the demo.
    return load_settings(path, deep_merge(overrides, forced), environ={})


async def start_simulator(
    stack: AsyncExitStack, time_scale: float
) -> tuple[str, web.Application]:
    """Serve the simulator on a free loopback port until ``stack`` closes; return its URL."""
    # Tokens live an hour of *real* time, so the demo's figures show no 602 refreshes.
    config = SimulatorConfig(seed=DEMO_SEED, token_lifetime_s=int(3600 * time_scale))
    app = create_app(config, time_scale=time_scale)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    log.info("demo_simulator_started", url=url, munchkin_id=DEFAULT_MUNCHKIN_ID,
             time_scale=time_scale)
    return url, app


async def simulator_view(
    base_url: str, files: list[DemoFile], *, whole_store: bool = False
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the simulator's statistics and the spot-check leads through its admin API.

    Args:
        base_url: the simulator.
        files: the demo files (their spot-check emails are looked up).
        whole_store: also read every lead (small runs only) to count static list members
            into ``stats["list_members"]`` (``{list id: leads}``).

    Returns:
        (the default instance's ``/_sim/stats`` entry, ``{email: lead or None}``).
    """
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url, timeout=timeout) as session:
        async with session.get("/_sim/stats") as resp:
            resp.raise_for_status()
            body = await resp.json()
        stats = next(iter(body["instances"].values()))
        leads: dict[str, Any] = {}
        for f in files:
            if f.spot:
                async with session.get("/_sim/leads", params={"email": f.spot["email"]}) as r:
                    r.raise_for_status()
                    found = await r.json()
                leads[f.spot["email"]] = found[0] if found else None
        if whole_store:
            async with session.get("/_sim/leads") as resp:
                resp.raise_for_status()
                members: Counter[int] = Counter()
                for lead in await resp.json():
                    members.update(lead.get("listIds") or [])
            stats["list_members"] = dict(members)
    return stats, leads


async def _watch(settings: Settings, view: ProgressView, stop: asyncio.Event) -> None:
    """Refresh ``view`` from the database until ``stop`` is set (a read-only connection)."""
    async with Store.open(settings.paths.database, migrate_schema=False) as store:
        while not stop.is_set():
            view.update(await read_progress(store))
            try:
                await asyncio.wait_for(stop.wait(), PROGRESS_EVERY_S)
            except TimeoutError:
                pass
        view.update(await read_progress(store), final=True)


async def drain(settings: Settings, console: Console, expected: int) -> str | None:
    """Run the daemon with ``--once`` while showing progress, until it has drained.

    Returns:
        None when it drained; otherwise why it stopped early (a signal, or a crash with its
        cause, which is also in the log).
    """
    stop = asyncio.Event()
    with ProgressView(console, expected) as view:
        try:
            async with Daemon(settings) as daemon:
                watcher = asyncio.create_task(_watch(settings, view, stop))
                try:
                    await daemon.run(once=True)
                finally:
                    stop.set()
                    await watcher
        except OrchestratorError as exc:
            cause = f" ({type(exc.__cause__).__name__}: {exc.__cause__})" if exc.__cause__ else ""
            return f"the daemon stopped: {exc}{cause}"
    if daemon.stop_reason != "drained":
        return f"the daemon stopped before every file was done ({daemon.stop_reason})"
    return None


async def keep_running(settings: Settings, console: Console) -> None:
    """Run the daemon on the demo inbox until SIGINT/SIGTERM, printing each finished file."""
    async with Daemon(settings) as daemon:
        seen = {r["file_id"] for r in read_reports(settings.paths.results).values()}
        task = asyncio.create_task(daemon.run(once=False))
        while not task.done():
            await asyncio.wait({task}, timeout=1.0)
            for name, report in read_reports(settings.paths.results).items():
                if report.get("file_id") in seen:
                    continue
                seen.add(report.get("file_id"))
                rows = report.get("rows") or {}
                console.print(
                    f"{name}: {report.get('status')}, {rows.get('imported', 0):,} imported, "
                    f"{rows.get('failed', 0):,} failed, {rows.get('warned', 0):,} warned, "
                    f"{rows.get('rejected', 0):,} rejected -> {report['_path']}",
                    highlight=False,
                )
        await task


def _console() -> Console:
    """A console for people; on a pipe or file, wide enough that table rows do not wrap."""
    probe = Console()
    wide = not probe.is_terminal and "COLUMNS" not in os.environ
    return Console(highlight=False, width=160 if wide else None)


def leadflow_command() -> str:
    """How the user can type ``leadflow`` again: ``.venv/bin/leadflow`` when it is not on PATH."""
    argv0 = Path(sys.argv[0])
    if argv0.name != "leadflow":
        return "leadflow"
    found = shutil.which("leadflow")
    if found and Path(found).resolve() == argv0.resolve():
        return "leadflow"
    try:
        return str(argv0.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(argv0.absolute())


def _absolute(path: Path | str) -> Path:
    return Path(path).expanduser().absolute()


#: Settings file the demo writes into its folder for other commands (``leadflow status``).
COMMANDS_CONFIG = "leadflow.toml"


def write_commands_config(demo_dir: Path, settings: Settings) -> Path:
    """Write the demo's folders as a settings file, for ``leadflow status --config FILE``.

    Without it, ``status`` shows results folders under the working directory's default
    ``var/`` instead of the demo's. Returns the file's path.
    """
    lines = [
        "# The demo's folders, for other leadflow commands:",
        f"#   leadflow status --config {demo_dir / COMMANDS_CONFIG}",
        "# Written by `leadflow demo`; deleted on its next run.",
        "[paths]",
    ]
    for key in ("inbox", "work", "archive", "rejected", "results", "database"):
        lines.append(f"{key} = {json.dumps(str(getattr(settings.paths, key)))}")
    path = demo_dir / COMMANDS_CONFIG
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _user_overrides(args: argparse.Namespace) -> dict[str, Any]:
    user = parse_set_flags(list(getattr(args, "overrides", None) or []))
    if getattr(args, "log_level", None):
        user.setdefault("log", {})["level"] = args.log_level
    return user


async def run_demo(args: argparse.Namespace) -> int:
    """Run ``leadflow demo`` with the parsed arguments of the ``demo`` command.

    Args:
        args: ``dir`` (Path), ``keep_running``, ``small``, ``time_scale`` (None: 60, or 120
            with ``small``),
            ``config`` (Path or None), ``overrides`` (``--set`` values), ``log_format``,
            ``log_level``.

    Returns:
        0 when every file reached its expected result (and, with ``--keep-running``, after
        a clean stop), 1 otherwise.

    Raises:
        ConfigError: a bad setting, or a ``--dir`` that is not a demo folder.
    """
    started = time.monotonic()
    console = _console()
    demo_dir = _absolute(args.dir)
    time_scale = float(args.time_scale or (SMALL_TIME_SCALE if args.small else DEFAULT_TIME_SCALE))
    if time_scale <= 0:
        raise ConfigError("--time-scale", "must be positive")
    user = _user_overrides(args)
    prepare_dir(demo_dir)
    log_path = demo_dir / "leadflow.log"
    with open(log_path, "a", encoding="utf-8") as log_file:  # noqa: ASYNC230 - once, tiny
        configure(args.log_format or "json", args.log_level or "info", stream=log_file)
        if getattr(args, "small_files", None):
            return await _run_small_files(args, console, demo_dir, time_scale, user, log_file)
        return await _run(args, console, demo_dir, time_scale, user, log_file, started)


async def _all_emails(base_url: str) -> set[str]:
    """Every email in the simulator's lead store."""
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(base_url, timeout=timeout) as session, session.get(
        "/_sim/leads"
    ) as resp:
        resp.raise_for_status()
        return {str(lead.get("email")) for lead in await resp.json()}


async def _run_small_files(
    args: argparse.Namespace,
    console: Console,
    demo_dir: Path,
    time_scale: float,
    user: dict[str, Any],
    log_file: TextIO,
) -> int:
    """``--small-files N``: N three-row files at once; what they cost with packing."""
    count = int(args.small_files)
    if count < 1:
        raise ConfigError("--small-files", "must be at least 1")
    async with AsyncExitStack() as stack:
        base_url, _app = await start_simulator(stack, time_scale)
        settings = demo_settings(demo_dir, base_url, small=False, config=args.config,
                                 user=user)
        make_folders(settings)
        commands_config = write_commands_config(demo_dir, settings)
        console.print(f"leadflow demo in {demo_dir}", style="bold")
        console.print(f"  simulator (Marketo, clock x{time_scale:g}) at {base_url}; "
                      f"log lines in {log_file.name}")
        made = await asyncio.to_thread(
            small_files.write_small_files, settings.paths.inbox, count
        )
        console.print(f"  dropped {count:,} files of {small_files.ROWS_PER_FILE} leads into "
                      f"{settings.paths.inbox} at once")
        stopped = await drain(settings, console, count)
        stats, _ = await simulator_view(base_url, [])
        summary = small_files.summarize(
            made, read_reports(settings.paths.results), stats, await _all_emails(base_url)
        )
    if stopped:
        summary["ok"] = False
        summary["problems"].insert(0, stopped)
    summary["time_scale"] = time_scale
    summary["where"] = {"results": str(settings.paths.results), "log": log_file.name,
                        "database": str(settings.paths.database),
                        "config": str(commands_config)}
    _write_json(demo_dir / "summary.json", summary)
    log.info("demo_finished", ok=summary["ok"], problems=len(summary["problems"]),
             jobs=summary["jobs"], api_calls=summary["api_calls"])
    console.print()
    console.print(small_files.render(summary))
    for problem in summary["problems"]:
        console.print(f"  problem: {problem}", style="red")
    console.print()
    console.print(
        f"Each file has its own report in {settings.paths.results}; the jobs they shared are "
        f"named in each report.json (uploads[].batchId) and in the log "
        f"({log_file.name}: import_submitted lists the file_ids of each job). "
        f"`{leadflow_command()} status --config {commands_config}` lists these files; while "
        "a daemon runs it also shows the files waiting for a pack."
    )
    return 0 if summary["ok"] else 1


async def _run(
    args: argparse.Namespace,
    console: Console,
    demo_dir: Path,
    time_scale: float,
    user: dict[str, Any],
    log_file: TextIO,
    started: float,
) -> int:
    async with AsyncExitStack() as stack:
        base_url, _app = await start_simulator(stack, time_scale)
        settings = demo_settings(demo_dir, base_url, small=args.small, config=args.config,
                                 user=user)
        make_folders(settings)
        commands_config = write_commands_config(demo_dir, settings)
        console.print(f"leadflow demo in {demo_dir}", style="bold")
        console.print(f"  simulator (Marketo, clock x{time_scale:g}) at {base_url}; "
                      f"log lines in {log_file.name}")
        files = await asyncio.to_thread(write_demo_files, settings.paths.inbox, small=args.small)
        total = sum(f.size_bytes for f in files)
        console.print(f"  wrote {len(files)} lead files ({total / 1e6:.1f} MB) into "
                      f"{settings.paths.inbox}")
        stopped = await drain(settings, console, len(files))
        stats, leads = await simulator_view(base_url, files, whole_store=args.small)
        summary = build_summary(
            files, read_reports(settings.paths.results), stats, leads,
            elapsed_s=time.monotonic() - started,
            where={
                "demo_dir": str(demo_dir), "inbox": str(settings.paths.inbox),
                "results": str(settings.paths.results), "archive": str(settings.paths.archive),
                "rejected": str(settings.paths.rejected), "log": log_file.name,
                "database": str(settings.paths.database),
                "config": str(commands_config),
                "summary": str(demo_dir / "summary.json"), "simulator": base_url,
                "leadflow": leadflow_command(),
            },
        )
        if stopped:
            summary["ok"] = False
            summary["problems"].insert(0, stopped)
        summary["time_scale"] = time_scale
        summary["small"] = bool(args.small)
        summary["keep_running"] = bool(args.keep_running)
        _write_json(demo_dir / "summary.json", summary)
        log.info("demo_finished", ok=summary["ok"], problems=len(summary["problems"]),
                 elapsed_s=summary["elapsed_s"])
        console.print()
        console.print(render_summary(summary))
        console.print()
        console.print(render_next_steps(summary))
        if not args.keep_running:
            return 0 if summary["ok"] else 1
        console.print()
        console.print(f"The daemon keeps watching {settings.paths.inbox} (and "
                      f"{settings.paths.inbox / ROUTE_FOLDER} for list {ROUTE_LIST_ID}). "
                      "Drop lead files there; press Ctrl+C to stop.", style="bold")
        await keep_running(settings, console)
        console.print("stopped.")
        return 0 if summary["ok"] else 1

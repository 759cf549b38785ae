"""The ``leadflow`` command: run, status, submit, retry, simulator, demo, migrate.

``main()`` is only ``asyncio.run(cli(sys.argv[1:]))`` so that ``cli(args)`` can be tested
directly. Exit codes: 0 success, 1 runtime error (the cause chain is printed), 2 a bad
setting, a folder of ``paths`` that cannot be created or written, or bad usage (one line
naming the key); ``status --exit-code`` 3 when no daemon runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import ConfigError, OrchestratorError
from orchestrator.logging import configure, redact_text
from orchestrator.settings import Settings, load_settings, parse_set_flags

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2


def _version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    try:
        return version("leadflow")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (every command has ``--help``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        help="TOML settings file (or env LEADFLOW_CONFIG); env LEADFLOW_<SECTION>__<KEY> "
        "and --set override it",
    )
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set limits.import_slots=5 (repeatable)",
    )
    common.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="log line format"
    )
    common.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="minimum log level"
    )

    parser = argparse.ArgumentParser(
        prog="leadflow",
        description="Get lead files of any size into Marketo through its Bulk Lead Import API.",
    )
    parser.add_argument("--version", action="version", version=f"leadflow {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", parents=[common], help="run the daemon: watch the inbox, import, report"
    )
    run.add_argument(
        "--once",
        action="store_true",
        help="drain: take what is in the inbox, wait until every file has a report, exit 0",
    )

    status = sub.add_parser(
        "status", parents=[common], help="show files, batches, slots and calls from the database"
    )
    fmt = status.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument(
        "--prometheus",
        action="store_true",
        help="print Prometheus metrics (e.g. for node_exporter's textfile collector)",
    )
    status.add_argument(
        "--exit-code",
        action="store_true",
        help="for scripts: exit 0 when a daemon runs on this database, 3 when none does",
    )

    submit = sub.add_parser(
        "submit", parents=[common], help="copy a file into the inbox (optionally a route's folder)"
    )
    submit.add_argument("file", type=Path, help="the lead file")
    submit.add_argument("--route", help="route name from the settings")
    submit.add_argument(
        "--force",
        action="store_true",
        help="import it even if the same file was imported before with the same options "
        "(the copy is named NAME.force.EXT; its report names the file it repeats)",
    )

    retry = sub.add_parser(
        "retry",
        parents=[common],
        help="re-queue a file's failed uploads, or a rejected file after it was fixed",
    )
    retry.add_argument("file_id", type=int, help="the file id (see `leadflow status`)")
    retry.add_argument(
        "--route",
        help="route to send it to (default: the route it came through, or the route of the "
        "inbox folder it was dropped in)",
    )

    sim = sub.add_parser(
        "simulator", parents=[common], help="serve the Marketo simulator (loopback by default)"
    )
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sim.add_argument("--port", type=int, default=8780, help="TCP port")
    sim.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="simulated seconds per real second (default 1: real time)",
    )

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="run the simulator and the daemon on generated sample files",
    )
    demo.add_argument(
        "--dir", type=Path, default=Path("demo"), help="demo folder (recreated each run)"
    )
    demo.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the daemon watching the demo inbox after the summary",
    )
    demo.add_argument(
        "--small", action="store_true", help="small files and a faster clock (used by tests)"
    )
    demo.add_argument(
        "--time-scale", type=float, default=None, help="simulator clock speed-up"
    )
    demo.add_argument(
        "--small-files",
        type=int,
        default=None,
        metavar="N",
        help="drop N files of 3 leads at once instead, and show the Marketo jobs and API "
        "calls they cost with packing",
    )

    migrate = sub.add_parser(
        "migrate", parents=[common], help="create or upgrade the database"
    )
    migrate.add_argument(
        "--copy-from",
        type=Path,
        metavar="PATH",
        help="copy the SQLite database at PATH (the old paths.database; no daemon may run on "
        "it) into the empty PostgreSQL database of store.url, after migrating both",
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Build the frozen settings from ``--config``, the environment and flags.

    Raises:
        ConfigError: an invalid or missing setting.
    """
    overrides = parse_set_flags(args.overrides)
    if args.log_format:
        overrides.setdefault("log", {})["format"] = args.log_format
    if args.log_level:
        overrides.setdefault("log", {})["level"] = args.log_level
    return load_settings(args.config, overrides)


async def _dispatch(args: argparse.Namespace) -> int:
    # Each command's modules are imported only when it is chosen (start-up time: ``status``,
    # ``submit`` and ``--help`` do not load the daemon, the simulator or the demo).
    if args.command == "simulator":
        from orchestrator.simulator import SimulatorConfig, serve

        configure(args.log_format or "auto", args.log_level or "info")
        if args.config is not None:
            _check_simulator_config(args.config, SimulatorConfig)
        try:
            await serve(
                host=args.host, port=args.port, config_path=args.config, time_scale=args.time_scale
            )
        except OSError as exc:
            raise OrchestratorError(
                f"the simulator cannot listen on {args.host}:{args.port}: "
                f"{exc.strerror or exc} (another process uses it? try --port)"
            ) from exc
        return EXIT_OK
    if args.command == "demo":
        from orchestrator.demo import run_demo

        return await run_demo(args)

    settings = settings_from_args(args)
    configure(settings.log.format, settings.log.level)
    if args.command == "migrate" and args.copy_from is not None:
        from orchestrator.commands.copy_from import copy_from_command

        return await copy_from_command(settings, args.copy_from)
    if args.command == "migrate":
        from orchestrator.commands.status import migrate_command

        return await migrate_command(settings)
    if args.command == "status":
        from orchestrator.commands.status import status_command

        return await status_command(settings, as_json=args.json, prometheus=args.prometheus,
                                    exit_code=args.exit_code)
    if args.command == "run":
        from orchestrator.daemon import run_daemon

        return await run_daemon(
            settings, once=args.once, reload_settings=lambda: settings_from_args(args)
        )
    if args.command == "submit":
        from orchestrator.commands.submit import submit_command

        return await submit_command(settings, args.file, args.route, force=args.force)
    if args.command == "retry":
        from orchestrator.commands.retry import retry_command

        return await retry_command(settings, args.file_id, args.route)
    raise AssertionError(args.command)  # pragma: no cover - argparse enforces the choices


def _check_simulator_config(path: Path, config_cls: Any) -> None:
    """Load the simulator's TOML file once so a bad one is one clear line, not a traceback.

    Raises:
        ConfigError: the file is missing, not TOML, or holds an invalid value.
    """
    try:
        config_cls.from_toml(path)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "simulator"
        raise ConfigError(f"simulator.{key}", first["msg"]) from None


def _causes(exc: BaseException) -> list[str]:
    chain: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 5:
        chain.append(f"{type(current).__name__}: {current}")
        current = current.__cause__
    return chain


async def cli(argv: list[str]) -> int:
    """Run the command in ``argv`` (without the program name) and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return await _dispatch(args)
    except ConfigError as exc:
        print(f"leadflow: {exc.line()}", file=sys.stderr)
        return EXIT_CONFIG
    except OrchestratorError as exc:
        print(f"leadflow: {redact_text(str(exc))}", file=sys.stderr)
        for cause in _causes(exc)[1:]:
            print(f"  caused by {redact_text(cause)}", file=sys.stderr)
        return EXIT_ERROR


def main() -> None:
    """Console entry point: ``leadflow``."""
    try:
        code = asyncio.run(cli(sys.argv[1:]))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)

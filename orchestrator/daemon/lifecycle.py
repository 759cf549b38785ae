"""The daemon: one lifecycle owner for the store, the client, intake, scheduler, poller, reporter.

``leadflow run`` is ``run_daemon(settings, once=...)``:

    async with Daemon(settings) as daemon:
        await daemon.run(once=False)

``__aenter__`` makes the folders (``places.make_folders``: an unusable one stops here with
``UnusablePath``), takes, through one ``AsyncExitStack``, the single-daemon lock (``lock``), the
store and the Marketo client, and builds intake, the scheduler, the poller and the reporter.
``run`` first recovers, once, from whatever the previous process left (``recovery``: uploads
caught mid-submit are sent again, uploads with a batchId resume polling; files left in work are
resumed, half-written results are rewritten, work folders of reported files removed; then a
``retention`` sweep), then runs the loops in one ``asyncio.TaskGroup`` (the retention loop among
them). A crash in any loop cancels the others and is logged ``daemon_crashed``. SIGTERM and
SIGINT set the stop event: no new upload is claimed, calls in flight get
``daemon.shutdown_grace_s`` and are then cancelled; every state change is already committed, so
nothing else needs saving. The loops wait on "new work, tick or stop" (asyncio events), never on
fixed sleeps.

``--once`` drains (``drain``): it takes what is in the inbox, waits until every upload is
terminal and every file has its report (``reported_at`` set), then returns; files intake holds
back after environment failures get ``drain.ONCE_HELD_ATTEMPTS`` tries, then ``run`` raises
``FilesHeld`` (exit 1) and leaves them for the next run. It first gets a token
(``credentials.check_credentials``): refused credentials or an unreachable identity endpoint end
it with exit 1 and one line. Without ``--once`` a refusal pauses work instead
(``credentials.AuthGate``) until identity grants a token again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import structlog

from orchestrator.daemon import drain, retention
from orchestrator.daemon.credentials import (
    AUTH_RETRY_FACTOR,
    AuthGate,
    CredentialsRefused,
    HasTokens,
    MarketoUnreachable,
    refused_message,
)
from orchestrator.daemon.lock import SingleDaemonLock
from orchestrator.daemon.recovery import recover_uploads
from orchestrator.errors import AuthError, OrchestratorError
from orchestrator.intake import Intake
from orchestrator.marketo import MarketoClient
from orchestrator.places import make_folders
from orchestrator.results import Reporter
from orchestrator.results.reporter import ResultsClient
from orchestrator.scheduling.poller import Poller, StatusSource
from orchestrator.scheduling.scheduler import Scheduler, Submitter
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import Clock, wait_any

log = structlog.get_logger(__name__)



class DaemonCrashed(OrchestratorError):
    """A daemon loop failed; the cause is on ``__cause__`` (the CLI prints it and exits 1)."""


class FilesHeld(OrchestratorError):
    """``--once`` ended with files held back by environment failures (the CLI exits 1).

    They stay ``received`` where they are (inbox or work); the next run tries them again.
    """


class DaemonClient(Submitter, StatusSource, ResultsClient, HasTokens, Protocol):
    """What the daemon's loops need from Marketo: ``MarketoClient``, or a test's fake."""

    async def describe_leads(self) -> Any:
        """Return the instance's lead fields (intake's field catalogue)."""
        ...


class IntakeLike(Protocol):
    """The part of ``orchestrator.intake.Intake`` the daemon uses (a test may bring a fake)."""

    async def recover(self) -> Any:
        """Resume files left ``received`` in ``paths.work``."""

    async def scan_once(self) -> Any:
        """Claim and prepare every stable file in the inbox once; returns what was taken."""

    async def run(self, stop: asyncio.Event, on_enqueued: Callable[..., Any]) -> Any:
        """Watch the inbox until ``stop`` is set."""

    def held(self) -> dict[int, int]:
        """Return ``{file id: failures}`` of files held back after environment failures."""
        ...


class ReporterLike(Protocol):
    """The part of ``orchestrator.results.Reporter`` the daemon uses (a test may bring a fake)."""

    async def report_ready(self) -> int:
        """One pass: move finished files to ``reporting`` and write their results."""
        ...

    async def remove_finished_work_dirs(self) -> int:
        """Once at start: remove work folders a crash left behind of reported files."""
        ...


class Daemon:
    """Owns every long-lived resource of ``leadflow run`` and the loops that use them.

    Args:
        settings: every setting.
        clock: epoch seconds (the store, client and loops all use it).
        client: a ready ``MarketoClient`` (tests); by default one is opened and closed here.
        intake_factory: builds the intake from ``(store, client)`` (tests); by default
            ``Intake(settings, store, describe=client.describe_leads, clock=clock)``.
        reporter_factory: builds the reporter from ``(store, client)`` (tests); by default
            ``Reporter(settings, store, client, clock)``.
        handle_signals: install SIGTERM/SIGINT handlers while ``run`` runs.
        auth_retry_s: seconds between identity calls while the credentials are refused
            (default ``polling.max_interval_s * 10``).

    Raises:
        DatabaseLocked: from ``__aenter__`` when another daemon uses the database.
    """

    def __init__(
        self,
        settings: Settings,
        clock: Clock = time.time,
        client: DaemonClient | None = None,
        *,
        intake_factory: Callable[[Store, DaemonClient], IntakeLike] | None = None,
        reporter_factory: Callable[[Store, DaemonClient], ReporterLike] | None = None,
        handle_signals: bool = True,
        auth_retry_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._given_client = client
        self.client: DaemonClient
        self.intake: IntakeLike
        self.reporter: ReporterLike
        self._intake_factory = intake_factory
        self._reporter_factory = reporter_factory
        self.handle_signals = handle_signals
        self.stop_event = asyncio.Event()
        self.report_wake = asyncio.Event()
        self.inbox_taken = asyncio.Event()
        self._force = asyncio.Event()
        self.stop_reason = "running"
        self.once = False
        self.auth_retry_s = (
            auth_retry_s if auth_retry_s is not None
            else settings.polling.max_interval_s * AUTH_RETRY_FACTOR
        )
        self.gate: AuthGate
        self._narrow: list[Path] = []
        self._stack = AsyncExitStack()
        self.store: Store
        self.scheduler: Scheduler
        self.poller: Poller

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            self._narrow = make_folders(self.settings)
            stack.enter_context(SingleDaemonLock(self.settings.paths.database))
            self.store = await stack.enter_async_context(
                Store.open(self.settings.paths.database, clock=self.clock)
            )
            if self._given_client is not None:
                self.client = self._given_client
            else:
                self.client = await stack.enter_async_context(
                    MarketoClient(self.settings, store=self.store, clock=self.clock)
                )
            self.gate = AuthGate(
                self.client, self.store, retry_s=self.auth_retry_s,
                database=self.settings.paths.database, on_refused=self._refused,
            )
            stack.callback(self.gate.close)
            if self._intake_factory is not None:
                self.intake = self._intake_factory(self.store, self.client)
            else:
                self.intake = Intake(
                    self.settings, self.store, describe=self._describe, clock=self.clock,
                )
            if self._reporter_factory is not None:
                self.reporter = self._reporter_factory(self.store, self.client)
            else:
                self.reporter = Reporter(self.settings, self.store, self.client, self.clock)
            self.scheduler = Scheduler(self.settings, self.store, self.client, clock=self.clock)
            self.poller = Poller(
                self.settings,
                self.store,
                self.client,
                clock=self.clock,
                slot_freed=self.scheduler.slot_freed,
                requeued=self.scheduler.work,
                finished=self.report_wake,
            )
            self.scheduler.submitted = self.poller.poke
            self.scheduler.finished = self.report_wake
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    def stop(self, reason: str = "requested") -> None:
        """Ask the loops to stop (what SIGTERM/SIGINT do).

        A second call (a second Ctrl-C) cancels calls in flight at once instead of waiting
        for ``daemon.shutdown_grace_s``.
        """
        if not self.stop_event.is_set():
            self.stop_reason = reason
            log.info("daemon_stopping", reason=reason,
                     grace_s=self.settings.daemon.shutdown_grace_s)
            self.stop_event.set()
        elif not self._force.is_set():
            log.warning("daemon_stopping_now", reason=reason)
            self._force.set()

    def _refused(self) -> None:
        """The gate closed: ``--once`` stops (exit 1); the daemon pauses and retries."""
        if self.once:
            self.stop("auth_failed")

    async def _describe(self) -> Any:
        """``client.describe_leads`` for intake, waiting while the credentials are refused."""
        return await self.gate.call_when_open(self.stop_event, self.client.describe_leads)

    def on_enqueued(self, *args: Any, **kwargs: Any) -> None:
        """Callback for intake: new uploads or a finished file are in the store."""
        self.scheduler.work.set()
        self.report_wake.set()

    async def run(self, once: bool = False) -> None:
        """Recover, then run every loop until stopped (or, with ``once``, until drained).

        Raises:
            DaemonCrashed: a loop failed; the others were cancelled.
        """
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, self.stop, sig.name)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError) as exc:  # pragma: no cover
                    # Not the main thread (an embedding program owns signals): say so, go on.
                    log.warning("signal_handler_unavailable", signal=sig.name, error=str(exc))
        started = self.clock()
        self.once = once
        log.info("daemon_started", pid=os.getpid(), once=once, **_summary(self.settings))
        for folder in self._narrow:
            log.warning(
                "drop_folder_not_group_writable", path=str(folder),
                mode=oct(folder.stat().st_mode & 0o7777),
                fix=f"chmod 2770 {folder} (droppers in its group cannot write there)",
            )
        gate_task = asyncio.create_task(self.gate.run(self.stop_event), name="leadflow-auth")
        try:
            await self.gate.check_at_start(fatal=once)
            try:
                await self.recover()
            except (OrchestratorError, OSError, sqlite3.Error) as exc:
                log.exception("daemon_crashed", loop="recovery",
                              error=f"{type(exc).__name__}: {exc}")
                raise DaemonCrashed(f"recovery failed: {type(exc).__name__}: {exc}") from exc
            await self._run_loops(once)
            if once and self.gate.refusal is not None:
                self.stop_reason = "auth_failed"
                raise CredentialsRefused(refused_message(self.gate.refusal, self.gate.url))
            held = self._held()
            if once and held and self.stop_reason == "drained":
                self.stop_reason = "files_held"
                log.error("files_held", file_ids=sorted(held), count=len(held))
                raise FilesHeld(
                    f"{len(held)} file(s) could not be taken because of their folders, not "
                    f"their content (file ids {sorted(held)}; see file_claim_failed / "
                    "file_prepare_failed in the log): they stay where they are and the next "
                    "run tries them again"
                )
        except BaseException as exc:
            if self.stop_reason == "running" and isinstance(exc, (CredentialsRefused,
                                                                   MarketoUnreachable)):
                self.stop_reason = "auth_failed"
            if self.stop_reason == "running":
                self.stop_reason = "crashed" if isinstance(exc, Exception) else "cancelled"
            raise
        finally:
            gate_task.cancel()
            for sig in installed:
                loop.remove_signal_handler(sig)
            counts = await _safe_counts(self.store)
            # A crash or refused credentials need a person; a requested stop does not.
            stopped_bad = self.stop_reason in ("crashed", "auth_failed", "files_held")
            (log.error if stopped_bad else log.info)(
                "daemon_stopped",
                reason=self.stop_reason,
                uptime_s=round(self.clock() - started, 3),
                queue_full_answers=self.scheduler.queue_full_answers,
                **counts,
            )

    async def recover(self) -> None:
        """Resolve, once, everything the previous process left in flight (before any loop).

        Uploads (``recovery.recover_uploads``), then intake's files left in work, then
        a report pass for half-written results, the work folders a crash left behind of files
        already reported, then a retention sweep (so ``--once`` sweeps too). The first polls
        of uploads at Marketo are spread over time (``rate_window_s / calls_per_20s`` apart).
        """
        limits = self.settings.limits
        await recover_uploads(self.store, self.clock(),
                              spacing_s=limits.rate_window_s / limits.calls_per_20s)
        await self.intake.recover()
        await self._report_pass()
        await self.reporter.remove_finished_work_dirs()
        await self._retention_pass()
        self.scheduler.work.set()

    async def _run_loops(self, once: bool) -> None:
        grace = self.settings.daemon.shutdown_grace_s
        stop = self.stop_event
        makers: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
            "scheduler": lambda: self.scheduler.run(stop),
            "poller": lambda: self.poller.run(stop),
            "reporter": self._report_loop,
            "intake": self._drain_inbox if once else lambda: self.intake.run(
                stop, on_enqueued=self.on_enqueued
            ),
        }
        loops = {name: self.gate.supervise(stop, make) for name, make in makers.items()}
        # Retention needs no Marketo: it goes on while the credentials are refused.
        loops["retention"] = self._retention_loop()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(_guarded(name, coro), name=f"leadflow-{name}")
                    for name, coro in loops.items()
                ]
                if once:
                    group.create_task(self._until_drained(), name="leadflow-drain")
                group.create_task(self._shutdown_after_stop(tasks, grace))
        except* Exception as group_error:  # noqa: BLE001 - re-raised as DaemonCrashed
            first = group_error.exceptions[0]
            raise DaemonCrashed(f"daemon crashed: {type(first).__name__}: {first}") from first

    async def _shutdown_after_stop(self, tasks: list[asyncio.Task[Any]], grace: float) -> None:
        """After stop: give the loops ``grace`` seconds to finish their call, then cancel."""
        await self.stop_event.wait()
        clock = asyncio.get_running_loop().time
        began = clock()
        deadline = began + grace
        force = asyncio.ensure_future(self._force.wait())
        try:
            while True:
                left = [t for t in tasks if not t.done()]
                remaining = deadline - clock()
                if not left or force.done() or remaining <= 0:
                    break
                await asyncio.wait([*left, force], timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            force.cancel()
        pending = [t for t in tasks if not t.done()]
        used = round(min(clock() - began, grace), 3)
        for task in pending:
            log.warning("loop_cancelled_after_grace", loop=task.get_name(), grace_s=used,
                        configured_grace_s=grace, cut_short=self._force.is_set())
            task.cancel()

    async def _report_loop(self) -> None:
        tick = self.settings.daemon.idle_tick_s
        while await self.gate.wait_open(self.stop_event):
            ok = await self._report_pass()
            timeout = tick if ok else self.settings.daemon.results_retry_s
            await wait_any((self.stop_event, self.report_wake), timeout)
            self.report_wake.clear()

    async def _retention_loop(self) -> None:
        """Sweep every ``retention.sweep_interval_s`` (the first sweep ran in ``recover``)."""
        interval = self.settings.retention.sweep_interval_s
        while True:
            await wait_any((self.stop_event,), interval)
            if self.stop_event.is_set():
                return
            await self._retention_pass()

    async def _retention_pass(self) -> None:
        """One retention sweep; a failure is logged and the next sweep tries again."""
        try:
            await retention.sweep(self.settings, self.store, self.clock())
        except (OrchestratorError, OSError, sqlite3.Error) as exc:
            log.error("retention_failed", error=f"{type(exc).__name__}: {exc}")

    async def _report_pass(self) -> bool:
        try:
            await self.reporter.report_ready()
        except AuthError as exc:
            await self.gate.refused(exc)
            return False
        except (asyncio.CancelledError, OrchestratorError):
            raise
        except Exception as exc:
            # Bad input or a full disk must not stop the daemon; the pass is retried.
            log.exception("report_pass_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    async def _drain_inbox(self) -> None:
        """``--once``: take every file in the inbox (``drain.drain_inbox``)."""
        await drain.drain_inbox(self.settings, self.intake, self.clock, self.stop_event,
                                       self.on_enqueued)
        self.inbox_taken.set()

    async def _until_drained(self) -> None:
        """``--once``: stop when the inbox was taken and no file or upload has work left."""
        tick = self.settings.daemon.idle_tick_s
        while not self.stop_event.is_set():
            if self.inbox_taken.is_set() and await self.drained():
                self.stop("drained")
                return
            await wait_any((self.stop_event, self.report_wake), min(tick, 0.25))

    async def drained(self) -> bool:
        """Return whether every upload is terminal and every file has its report.

        Files intake holds back after environment failures (given up for this ``--once``
        run by ``drain.drain_inbox``) do not count.
        """
        return await drain.drained(self.store, self._held())

    def _held(self) -> dict[int, int]:
        return dict(self.intake.held())


async def _guarded(name: str, coro: Awaitable[Any]) -> None:
    """Run one loop; log ``daemon_crashed`` (naming it) if it fails."""
    try:
        await coro
    except Exception as exc:
        log.exception("daemon_crashed", loop=name, error=f"{type(exc).__name__}: {exc}")
        raise


async def _safe_counts(store: Store) -> dict[str, Any]:
    try:
        counts = await store.counts_by_status()
    except Exception:  # noqa: BLE001 - the database may be gone; the log line still goes
        return {}
    return {
        "files": {k: v for k, v in counts["files"].items() if v},
        "uploads": {k: v for k, v in counts["uploads"].items() if v},
    }


def _summary(settings: Settings) -> dict[str, Any]:
    """Settings worth a line in ``daemon_started``: no secret, no token."""
    return {
        "base_url": settings.marketo.base_url,
        "client_id": settings.marketo.client_id,
        "inbox": str(settings.paths.inbox),
        "results": str(settings.paths.results),
        "database": str(settings.paths.database),
        "import_slots": settings.limits.import_slots,
        "max_upload_bytes": settings.limits.max_upload_bytes,
        "calls_per_20s": settings.limits.calls_per_20s,
        "rate_window_s": settings.limits.rate_window_s,
        "daily_call_budget": settings.limits.daily_call_budget,
        "polling_s": [settings.polling.min_interval_s, settings.polling.max_interval_s],
        "routes": [route.name for route in settings.routes],
    }


async def run_daemon(settings: Settings, *, once: bool) -> int:
    """Run ``leadflow run`` until a signal (or, with ``once``, until drained).

    Returns:
        0 after a clean stop or a drain.

    Raises:
        DatabaseLocked: another daemon uses the database.
        DaemonCrashed: a loop failed (the CLI prints the cause chain and exits 1).
    """
    async with Daemon(settings) as daemon:
        await daemon.run(once=once)
    return 0

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

The operator's window (``orchestrator/window``) listens on ``http.listen`` while the daemon
runs. systemd's notify protocol (``orchestrator/notify.py``) gets ``READY=1`` once recovery
is done and the loops run, ``WATCHDOG=1`` and ``STATUS=`` from a task of the event loop that
runs them (only while every loop is alive and the store answers), and ``STOPPING=1`` on
shutdown. SIGHUP re-reads the settings file (``Daemon.reload``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import structlog

from orchestrator.daemon import drain
from orchestrator.daemon.credentials import (
    AUTH_RETRY_FACTOR,
    AuthGate,
    CredentialsRefused,
    HasTokens,
    MarketoUnreachable,
)
from orchestrator.daemon.instance import InstanceRunner
from orchestrator.daemon.lease import LeaseKeeper, default_node_id
from orchestrator.errors import (
    ConfigError,
    DatabaseLocked,
    OrchestratorError,
    StoreUnavailable,
    UnusablePath,
)
from orchestrator.intake import Intake
from orchestrator.logging import register_secret, set_level
from orchestrator.marketo.tokens import refused_message
from orchestrator.notify import Notifier
from orchestrator.places import make_folders, moved_marker
from orchestrator.results import retention
from orchestrator.results.reporter import ResultsClient
from orchestrator.scheduling.poller import Poller, StatusSource
from orchestrator.scheduling.scheduler import Scheduler, Submitter
from orchestrator.settings import LimitSettings, Settings, reload_plan
from orchestrator.store import Store, store_target
from orchestrator.store.core import describe_target
from orchestrator.store.lock import SingleDaemonLock
from orchestrator.timing import Clock, wait_any
from orchestrator.window import DaemonMetrics, HttpWindow, check_listen
from orchestrator.window.api import STORE_TIMEOUT_S, live_of
from orchestrator.window.page import summary_line
from orchestrator.window.status import collect_status

log = structlog.get_logger(__name__)


#: Seconds between two ``STATUS=`` updates to systemd when no watchdog asks for more often.
STATUS_EVERY_S = 10.0
#: Seconds a loop waits before it starts again after the database could not be reached.
STORE_RETRY_S = 1.0


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

    async def describe_custom_object(self, api_name: str) -> Any:
        """Return a custom object's describe (its dedupe fields), for custom-object routes."""
        ...

    def set_limits(self, limits: LimitSettings) -> None:
        """Use reloaded ``limits`` from the next call on (the limits governor)."""
        ...


class IntakeLike(Protocol):
    """The part of ``orchestrator.intake.Intake`` the daemon uses (a test may bring a fake).

    Attributes:
        settings: the settings it works with (a reload replaces them).
        observer: told how long files took (the daemon's metrics), or None.
    """

    settings: Settings
    observer: Any

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

    async def remove_finished_packs(self) -> int:
        """Once at start: remove pack files a crash left behind of reported batches."""
        ...


class Daemon:
    """Owns every long-lived resource of ``leadflow run`` and the loops that use them.

    Args:
        settings: every setting.
        clock: epoch seconds (the store, client and loops all use it).
        client: a ready ``MarketoClient`` (tests); by default one is opened and closed here.
        intake_factory: builds the intake from ``(store, client)`` (tests); by default
            ``Intake(settings, store, describe=client.describe_leads, clock=clock,
            describe_object=client.describe_custom_object)``.
        reporter_factory: builds the reporter from ``(store, client)`` (tests); by default
            ``Reporter(settings, store, client, clock)``.
        handle_signals: install SIGTERM/SIGINT handlers while ``run`` runs.
        auth_retry_s: seconds between identity calls while the credentials are refused
            (default ``polling.max_interval_s * 10``).
        notifier: systemd's notify socket (default: from ``NOTIFY_SOCKET``, if set).
        reload_settings: reads the settings again for a reload (SIGHUP); None: a reload
            keeps the running settings and logs ``reload_failed``.

    Raises:
        ConfigError: from ``__aenter__``: ``http.listen`` is not loopback and no
            ``http.token`` is set.
        DatabaseLocked: from ``__aenter__`` when another daemon uses the database.
        OrchestratorError: from ``__aenter__``: ``http.listen`` cannot be listened on.
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
        notifier: Notifier | None = None,
        reload_settings: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._given_client = client
        self.intake: IntakeLike
        self._intake_factory = intake_factory
        self._reporter_factory = reporter_factory
        self.handle_signals = handle_signals
        self.stop_event = asyncio.Event()
        self.inbox_taken = asyncio.Event()
        self._force = asyncio.Event()
        self.stop_reason = "running"
        self.once = False
        self.auth_retry_s = (
            auth_retry_s if auth_retry_s is not None
            else settings.polling.max_interval_s * AUTH_RETRY_FACTOR
        )
        self._auth_retry_given = auth_retry_s is not None
        #: Counters and histograms for ``/metrics`` (fed by the client and intake).
        self.metrics = DaemonMetrics()
        self.notifier = notifier if notifier is not None else Notifier.from_env()
        #: ``starting`` (recovery), ``running`` (loops run) or ``stopping``.
        self.phase = "starting"
        #: The HTTP listener (``http.listen``), once entered.
        self.http: HttpWindow | None = None
        self._reload_settings = reload_settings
        self._reload_lock = asyncio.Lock()
        self._loop_tasks: list[asyncio.Task[Any]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._narrow: list[Path] = []
        self._stack = AsyncExitStack()
        #: Several nodes share one PostgreSQL: the Marketo loops run only under the lease.
        self.cluster = settings.store.url is not None
        #: The Marketo side of each instance, in the settings' order (the first is the one
        #: of a simple setup, and the one the plain inbox goes to).
        self.instances: list[InstanceRunner] = []
        #: This node's name among the nodes of a deployment (``daemon.node_id``).
        self.node_id = settings.daemon.node_id or default_node_id()
        #: The store seen for the first instance (global queries see every instance).
        self.store: Store

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            check_listen(self.settings.http)
            register_secret(self.settings.http.bearer)
            self._narrow = make_folders(self.settings)
            if not self.cluster:
                # Several nodes on one PostgreSQL coordinate by leases instead.
                stack.enter_context(SingleDaemonLock(self.settings.paths.database))
                moved = moved_marker(self.settings.paths.database)
                if moved.exists():
                    raise DatabaseLocked(
                        f"{self.settings.paths.database} was moved to PostgreSQL "
                        f"({moved.read_text(encoding='utf-8').strip()}): run the nodes with "
                        f"that store.url; delete {moved} only to use this file again"
                    )
            opened = await stack.enter_async_context(
                Store.open(store_target(self.settings), clock=self.clock)
            )
            names = self.settings.instance_names()
            self.store = opened.for_instance(names[0])
            if self.cluster:
                await check_node_id(opened, self.node_id, self.settings.daemon.lease_s,
                                     self.clock())
                # Beat before intake stamps files with this node (others adopt the files of
                # nodes that do not beat).
                await opened.heartbeat(self.node_id, socket.gethostname(), os.getpid())
            await publish_routes(self.store, self.settings)
            for index, name in enumerate(names):
                runner = InstanceRunner(
                    name, self.settings.for_instance(name), opened.for_instance(name),
                    self.clock,
                    client=self._given_client if index == 0 else None,
                    lease=(LeaseKeeper(opened, name, self.node_id, self.settings.daemon.lease_s)
                           if self.cluster else None),
                    stop=self.stop_event, auth_retry_s=self.auth_retry_s,
                    database=self.settings.paths.database if index == 0 else None,
                    on_refused=self._refused, reporter_factory=self._reporter_factory,
                    observer=self.metrics,
                )
                await runner.open(stack)
                self.instances.append(runner)
            first = self.instances[0]
            if self._intake_factory is not None:
                self.intake = self._intake_factory(self.store, first.client)
            else:
                self.intake = Intake(
                    self.settings, self.store, describe=first.describe, clock=self.clock,
                    describe_object=first.describe_object,
                    describes={r.name: (r.describe, r.describe_object) for r in self.instances},
                )
                if self.cluster:
                    self.intake.node_id = self.node_id
            self.intake.observer = self.metrics
            self.http = await stack.enter_async_context(HttpWindow(self, self.settings.http))
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
            self.phase = "stopping"
            log.info("daemon_stopping", reason=reason,
                     grace_s=self.settings.daemon.shutdown_grace_s)
            self.notifier.stopping(f"stopping: {reason}")
            self.stop_event.set()
        elif not self._force.is_set():
            log.warning("daemon_stopping_now", reason=reason)
            self._force.set()

    def _refused(self) -> None:
        """The gate closed: ``--once`` stops (exit 1); the daemon pauses and retries."""
        if self.once:
            self.stop("auth_failed")

    @property
    def client(self) -> DaemonClient:
        """The first instance's Marketo client."""
        client: DaemonClient = self.instances[0].client
        return client

    @property
    def gate(self) -> AuthGate:
        """The first instance's credentials gate."""
        return self.instances[0].gate

    @property
    def scheduler(self) -> Scheduler:
        """The first instance's scheduler."""
        return self.instances[0].scheduler

    @property
    def poller(self) -> Poller:
        """The first instance's poller."""
        return self.instances[0].poller

    @property
    def reporter(self) -> ReporterLike:
        """The first instance's reporter."""
        reporter: ReporterLike = self.instances[0].reporter
        return reporter

    @property
    def report_wake(self) -> asyncio.Event:
        """Set to make the first instance's reporter look now."""
        return self.instances[0].report_wake

    @property
    def lease(self) -> LeaseKeeper | None:
        """The first instance's lease keeper (PostgreSQL), or None."""
        return self.instances[0].lease

    async def record_routes(self, settings: Settings | None = None) -> None:
        """Record the routes the daemon now works with (``publish_routes``).

        Called at start (``daemon_started`` lists the routes); a reload calls it with the new
        settings once the loops use them (logged ``daemon_routes_recorded``).
        """
        settings = settings or self.settings
        await publish_routes(self.store, settings)
        log.info("daemon_routes_recorded", routes=[route.name for route in settings.routes])

    def on_enqueued(self, *args: Any, **kwargs: Any) -> None:
        """Callback for intake: new uploads or a finished file are in the store."""
        for runner in self.instances:
            runner.wake()

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
            try:
                loop.add_signal_handler(signal.SIGHUP, self._on_hup)
                installed.append(signal.SIGHUP)
            except (NotImplementedError, RuntimeError, ValueError) as exc:  # pragma: no cover
                log.warning("signal_handler_unavailable", signal="SIGHUP", error=str(exc))
        started = self.clock()
        self.once = once
        log.info("daemon_started", pid=os.getpid(), once=once, **_summary(self.settings))
        if self.http is not None and self.http.url is not None:
            log.info("http_listening", url=self.http.url, token_required=self.http.token_required)
        for folder in self._narrow:
            log.warning(
                "drop_folder_not_group_writable", path=str(folder),
                mode=oct(folder.stat().st_mode & 0o7777),
                fix=f"chmod 2770 {folder} (droppers in its group cannot write there)",
            )
        side_tasks = [
            asyncio.create_task(r.gate.run(self.stop_event), name=f"leadflow-auth-{r.name}")
            for r in self.instances
        ]
        lease_tasks = [
            asyncio.create_task(r.lease.run(self.stop_event), name=f"leadflow-lease-{r.name}")
            for r in self.instances if r.lease is not None
        ]
        try:
            for runner in self.instances:
                if runner.lease is None:
                    with structlog.contextvars.bound_contextvars(**self._tag(runner)):
                        await runner.gate.check_at_start(fatal=once)
            try:
                await self.recover()
            except (OrchestratorError, OSError, sqlite3.Error) as exc:
                log.exception("daemon_crashed", loop="recovery",
                              error=f"{type(exc).__name__}: {exc}")
                raise DaemonCrashed(f"recovery failed: {type(exc).__name__}: {exc}") from exc
            await self._run_loops(once)
            refused = [r.gate for r in self.instances if r.gate.refusal is not None]
            if once and refused:
                self.stop_reason = "auth_failed"
                assert refused[0].refusal is not None
                raise CredentialsRefused(refused_message(refused[0].refusal, refused[0].url))
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
            if self.stop_reason == "running" and isinstance(exc, CredentialsRefused):
                self.stop_reason = "auth_failed"
            if self.stop_reason == "running" and isinstance(exc, MarketoUnreachable):
                self.stop_reason = "marketo_unreachable"
            if self.stop_reason == "running":
                self.stop_reason = "crashed" if isinstance(exc, Exception) else "cancelled"
            raise
        finally:
            for task in side_tasks:
                task.cancel()
            if lease_tasks:
                self.stop_event.set()
                await asyncio.gather(*lease_tasks, return_exceptions=True)
            for sig in installed:
                loop.remove_signal_handler(sig)
            if self.phase != "stopping":
                self.phase = "stopping"
                self.notifier.stopping(f"stopping: {self.stop_reason}")
            counts = await _safe_counts(self.store)
            # A crash or refused credentials need a person; a requested stop does not.
            stopped_bad = self.stop_reason in ("crashed", "auth_failed", "marketo_unreachable",
                                               "files_held")
            (log.error if stopped_bad else log.info)(
                "daemon_stopped",
                reason=self.stop_reason,
                uptime_s=round(self.clock() - started, 3),
                queue_full_answers=sum(r.scheduler.queue_full_answers for r in self.instances),
                **counts,
            )

    async def recover(self) -> None:
        """Resolve, once, everything the previous process left in flight (before any loop).

        Uploads (``recovery.recover_uploads``), then intake's files left in work, then
        a report pass for half-written results, the work folders a crash left behind of files
        already reported, then a retention sweep (so ``--once`` sweeps too). The first polls
        of uploads at Marketo are spread over time (``rate_window_s / calls_per_20s`` apart).
        """
        for runner in self.instances:
            if runner.lease is None:  # under a lease: each time it is taken (run_as_leader)
                await runner.recover()
        await self.intake.recover()
        for runner in self.instances:
            if runner.lease is None:
                await runner.report_pass()
        await self.reporter.remove_finished_work_dirs()
        for runner in self.instances:
            reporter: ReporterLike = runner.reporter
            await reporter.remove_finished_packs()
        await self._retention_pass()
        for runner in self.instances:
            runner.wake()

    @staticmethod
    def _tag(runner: InstanceRunner) -> dict[str, str]:
        """What the log lines of an instance's loops carry: ``instance=<name>``."""
        return {"instance": runner.name}

    async def _through_outages(
        self, name: str, make: Callable[[], Coroutine[Any, Any, Any]],
        runner: InstanceRunner | None = None,
    ) -> None:
        """Run a loop; when the database cannot be reached, wait and start it again.

        Only ``StoreUnavailable`` (PostgreSQL down, restarting, or the connection lost) is
        waited out (logged ``store_unavailable``): what was committed is in the store, and
        each loop starts again from it. Before a scheduler starts again, the uploads it left
        ``submitting`` are reaped (``InstanceRunner.recover_after_outage``: its own
        instance's only, and under a lease only while the lease is trusted).

        Args:
            name: the loop's name in log lines (``scheduler``, ``scheduler-<instance>``...).
            make: starts the loop.
            runner: the instance whose loop it is (None: intake).
        """
        reap = False
        while True:
            try:
                if reap:
                    if runner is not None and name.startswith("scheduler"):
                        await runner.recover_after_outage()
                    reap = False
                await make()
                return
            except (StoreUnavailable, BaseExceptionGroup) as exc:
                outage = _only_outage(exc)
                if outage is None:
                    raise
                reap = True
                log.warning("store_unavailable", loop=name, error=str(outage),
                            retry_in_s=STORE_RETRY_S)
                await wait_any((self.stop_event,), STORE_RETRY_S)
                if self.stop_event.is_set():
                    return

    async def _run_loops(self, once: bool) -> None:
        grace = self.settings.daemon.shutdown_grace_s
        stop = self.stop_event
        several = len(self.instances) > 1
        loops: dict[str, Coroutine[Any, Any, Any]] = {}
        for runner in self.instances:
            for name, make in runner.loops().items():
                label = f"{name}-{runner.name}" if several else name
                supervised = functools.partial(runner.gate.supervise, stop, make)
                loops[label] = _tagged(
                    self._tag(runner), self._through_outages(label, supervised, runner)
                )
        intake: Callable[[], Coroutine[Any, Any, Any]] = (
            self._drain_inbox if once
            else lambda: self.intake.run(stop, on_enqueued=self.on_enqueued)
        )
        if not several:
            # One instance: intake waits while its credentials are refused. With several,
            # intake goes on for the others; a file of a paused instance waits ``received``
            # (its describe is refused: ``InstanceRunner.describe``) and is tried again.
            intake = functools.partial(self.gate.supervise, stop, intake)
        loops["intake"] = self._through_outages("intake", intake)
        # Retention needs no Marketo: it goes on while the credentials are refused.
        loops["retention"] = self._retention_loop()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(_guarded(name, coro), name=f"leadflow-{name}")
                    for name, coro in loops.items()
                ]
                self._loop_tasks = tasks
                if once:
                    group.create_task(self._until_drained(), name="leadflow-drain")
                group.create_task(self._shutdown_after_stop(tasks, grace))
                group.create_task(self._heartbeat(), name="leadflow-heartbeat")
        except* Exception as group_error:  # noqa: BLE001 - re-raised as DaemonCrashed
            first = group_error.exceptions[0]
            raise DaemonCrashed(f"daemon crashed: {type(first).__name__}: {first}") from first

    def dead_loops(self) -> list[str]:
        """Names of loops that ended while the daemon runs (``/livez``, the watchdog).

        ``--once``'s inbox drain returning is its normal end, not a dead loop.
        """
        if self.phase != "running":
            return []
        return [
            t.get_name() for t in self._loop_tasks
            if t.done() and (t.cancelled() or t.exception() is not None or not self.once)
        ]

    async def _summary(self) -> str | None:
        """Return the one-line ``STATUS=`` for systemd; None when the store does not answer."""
        try:
            data = await asyncio.wait_for(
                collect_status(self.store, self.settings, self.clock()), STORE_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - no summary (and no WATCHDOG=1) this time
            log.warning("store_not_answering", error=f"{type(exc).__name__}: {exc}")
            return None
        return summary_line(data, live_of(self))

    async def _heartbeat(self) -> None:
        """``READY=1`` once the loops run; then ``WATCHDOG=1``/``STATUS=`` until stop.

        Runs in the event loop next to the loops it vouches for: ``WATCHDOG=1`` goes only
        while every loop is alive and the store answers, at half ``WATCHDOG_USEC``; without
        a watchdog ``STATUS=`` is refreshed every `STATUS_EVERY_S` (nothing at all without
        ``NOTIFY_SOCKET``).
        """
        if self.phase == "starting":
            self.phase = "running"
        log.info("daemon_ready", http=self.http.url if self.http is not None else None,
                 notify=self.notifier.enabled, watchdog_s=self.notifier.watchdog_s)
        if not self.notifier.enabled:
            await self.stop_event.wait()
            return
        line = await self._summary()
        self.notifier.ready(line or "running")
        every = self.notifier.watchdog_s / 2 if self.notifier.watchdog_s else STATUS_EVERY_S
        while not self.stop_event.is_set():
            await wait_any((self.stop_event,), every)
            if self.stop_event.is_set():
                return
            new = await self._summary()
            if self.notifier.watchdog_s and new is not None and not self.dead_loops():
                self.notifier.watchdog()
            if new is not None and new != line:
                line = new
                self.notifier.status(line)

    def _on_hup(self) -> None:
        """SIGHUP: reload the settings in a task (the signal handler must not wait)."""
        log.info("reload_requested", signal="SIGHUP")
        task = asyncio.ensure_future(self.reload())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self) -> bool:
        """Read the settings again and apply what can change live (SIGHUP, systemctl reload).

        Routes, ``import``, ``limits``, ``polling`` and ``log.level`` change at once (a file
        already queued keeps the options it was queued with: they are stored with its
        parts); other changed settings are named in ``reload_needs_restart`` and keep their
        running values. A settings file that cannot be read or is invalid keeps every running
        setting and logs ``reload_failed`` (error) once.

        Returns:
            True if the new settings were applied.
        """
        async with self._reload_lock:
            self.notifier.reloading()
            try:
                if self._reload_settings is None:
                    raise ConfigError("config", "this daemon has no settings source to re-read")
                new = await asyncio.to_thread(self._reload_settings)
            except (ConfigError, OSError, ValueError) as exc:
                key = exc.key if isinstance(exc, ConfigError) else "config"
                reason = exc.reason if isinstance(exc, ConfigError) else str(exc)
                log.error("reload_failed", key=key, reason=reason,
                          kept="the running settings")
                self.metrics.reloads.labels(result="failed").inc()
                self.notifier.ready(await self._summary() or "running")
                return False
            effective, changed, restart = reload_plan(self.settings, new)
            if restart:
                log.warning("reload_needs_restart", settings=restart)
            self.apply_settings(effective)
            await self.record_routes(effective)
            log.info("settings_reloaded", changed=changed,
                     routes=[route.name for route in effective.routes])
            self.metrics.reloads.labels(result="applied").inc()
            self.notifier.ready(await self._summary() or "running")
            return True

    def apply_settings(self, settings: Settings) -> None:
        """Hand reloaded settings to every part (`reload` decides which settings change).

        New route folders are created in the inbox; intake, the scheduler, the poller and
        the client's limits governor use the new values from their next step on.
        """
        self.settings = settings
        if self.intake is not None:
            self.intake.settings = settings
        for runner in self.instances:
            runner.apply_settings(settings.for_instance(runner.name))
        if not self._auth_retry_given:
            self.auth_retry_s = settings.polling.max_interval_s * AUTH_RETRY_FACTOR
            for runner in self.instances:
                runner.gate.retry_s = self.auth_retry_s
        set_level(settings.log.level)
        try:  # new route folders get the drop folders' mode (2770), as at start
            make_folders(settings)
        except UnusablePath as exc:
            log.error("route_folder_not_created", key=exc.key, error=str(exc))

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
        return await drain.drained([r.store for r in self.instances], self._held())

    def _held(self) -> dict[int, int]:
        return dict(self.intake.held())


async def publish_routes(store: Store, settings: Settings) -> None:
    """Record in the store the routes (names and options) this daemon works with.

    ``leadflow submit`` and ``leadflow retry`` read them while this daemon holds the
    database lock, and refuse a route it does not know (the settings file may have changed
    since it started). Call it at start and after every reload, once the new settings are in
    force. Each route is stored as the settings that were written for it
    (``model_dump(exclude_unset=True)``), so readers rebuild the same ``Route``.
    """
    routes = [route.model_dump(mode="json", exclude_unset=True) for route in settings.routes]
    await store.record_daemon_routes(routes, os.getpid())


async def _guarded(name: str, coro: Awaitable[Any]) -> None:
    """Run one loop; log ``daemon_crashed`` (naming it) if it fails."""
    try:
        await coro
    except Exception as exc:
        log.exception("daemon_crashed", loop=name, error=f"{type(exc).__name__}: {exc}")
        raise


async def check_node_id(store: Store, node_id: str, lease_s: float, now: float) -> None:
    """Refuse to start as a node whose name a live node already uses.

    Two nodes with one ``daemon.node_id`` would both hold a lease. The name is taken when
    the node row beat within 3 x ``lease_s`` from another host, or from a process of this
    host that is still alive (a predecessor killed here left its row: that is no conflict).

    Raises:
        ConfigError: ``daemon.node_id`` is in use (exit 2).
    """
    for node in await store.nodes():
        if node["node_id"] != node_id or now - node["heartbeat_at"] > 3 * lease_s:
            continue
        here = node["host"] == socket.gethostname()
        if here and (node["pid"] == os.getpid() or not _pid_alive(int(node["pid"]))):
            continue
        raise ConfigError(
            "daemon.node_id",
            f"node {node_id!r} already runs (host {node['host']}, pid {node['pid']}, last "
            f"heartbeat {now - node['heartbeat_at']:.1f}s ago): give each node its own "
            "daemon.node_id (e.g. LEADFLOW_DAEMON__NODE_ID=%H in the systemd unit)",
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


async def _tagged(tags: dict[str, str], coro: Coroutine[Any, Any, Any]) -> None:
    """Run ``coro`` with ``tags`` on every log line it (and the tasks it starts) writes."""
    with structlog.contextvars.bound_contextvars(**tags):
        await coro


def _only_outage(exc: BaseException) -> StoreUnavailable | None:
    """``exc`` if it is a ``StoreUnavailable``, or the first one of a group made only of them."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        found = [_only_outage(inner) for inner in exc.exceptions]
        if found and all(f is not None for f in found):
            return found[0]
    return None


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
    first = settings.for_instance(settings.instance_names()[0])
    return {
        "instances": [
            {"name": i.name, "base_url": i.base_url, "client_id": i.client_id,
             "calls_per_20s": i.limits.calls_per_20s}
            for i in settings.instances_in_force()
        ],
        "store": describe_target(store_target(settings)),
        "base_url": first.marketo.base_url,
        "client_id": first.marketo.client_id,
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


async def run_daemon(
    settings: Settings, *, once: bool, reload_settings: Callable[[], Settings] | None = None
) -> int:
    """Run ``leadflow run`` until a signal (or, with ``once``, until drained).

    Args:
        settings: every setting.
        once: drain and exit.
        reload_settings: reads the settings again on SIGHUP (the CLI's sources).

    Returns:
        0 after a clean stop or a drain.

    Raises:
        ConfigError: ``http.listen`` is not loopback and no ``http.token`` is set (exit 2).
        DatabaseLocked: another daemon uses the database.
        DaemonCrashed: a loop failed (the CLI prints the cause chain and exits 1).
    """
    if once and "listen" not in settings.http.model_fields_set:
        # A drain is over in minutes and nothing scrapes it: no listener unless asked for.
        settings = settings.model_copy(
            update={"http": settings.http.model_copy(update={"listen": ""})}
        )
    async with Daemon(settings, reload_settings=reload_settings) as daemon:
        await daemon.run(once=once)
    return 0

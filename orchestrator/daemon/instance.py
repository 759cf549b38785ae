"""The Marketo side of one instance: its client, credentials gate, scheduler, poller, reporter.

A daemon works for one Marketo instance per ``[[instances]]`` table (or the one ``[marketo]``
of a simple setup). Each instance has its own ``InstanceRunner``: a ``MarketoClient`` with that
instance's endpoints, credentials and ``limits`` (its own 20-s window, concurrency and daily
budget, counted in the store per instance), an ``AuthGate``, and the scheduler, poller and
reporter that work on that instance's uploads and files only (``Store.for_instance``). One
instance's credentials are never given to another's client. Log lines of its loops carry
``instance=<name>``.

On PostgreSQL (several nodes) each instance has a ``LeaseKeeper``: the runner's loops run only
while this node holds the instance's lease (``run_as_leader``), are cancelled at once when it is
lost, and resume what the previous holder left (``recovery.recover_uploads``) every time the
lease is taken. Right before each create call the submitter checks that the lease is still
trusted (``FencedSubmitter``): a node whose lease may have expired never sends one. The lease
holder publishes Marketo's describe in the store; the other nodes' intake reads it from there
and never calls Marketo (``describe``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import structlog

from orchestrator.daemon.credentials import AuthGate
from orchestrator.daemon.lease import LeaseKeeper
from orchestrator.daemon.recovery import recover_uploads
from orchestrator.errors import ApiError, AuthError, OrchestratorError, StoreError
from orchestrator.marketo import LeadField, MarketoClient, ObjectDescription
from orchestrator.places import packs_dir
from orchestrator.results import Reporter
from orchestrator.scheduling.poller import Poller
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import Clock, wait_any

log = structlog.get_logger(__name__)


class FencedSubmitter:
    """The client's ``create_import``, sent only while this node's lease is trusted.

    When the lease is no longer trusted (``LeaseKeeper.valid``), the lease is dropped (which
    cancels the Marketo loops, ``run_as_leader``) and the call never leaves: the upload stays
    ``submitting`` and the next holder's recovery sends it again.
    """

    def __init__(self, client: Any, lease: LeaseKeeper) -> None:
        self._client = client
        self._lease = lease

    async def create_import(self, path: Path, *, kind: str, options: dict[str, Any]) -> Any:
        """``MarketoClient.create_import`` behind the fence (never returns without the lease)."""
        if not self._lease.valid():
            log.warning("submit_fenced", instance=self._lease.instance, path=str(path))
            self._lease.drop("renewal not confirmed before a create call")
            await asyncio.Event().wait()  # cancelled by run_as_leader
        return await self._client.create_import(path, kind=kind, options=options)


class InstanceRunner:
    """Everything that talks to one Marketo instance, for the daemon.

    Args:
        name: the instance's name (``[[instances]] name``, ``[marketo] name``).
        settings: the daemon's settings for this instance (``Settings.for_instance``).
        store: the store seen for this instance (``Store.for_instance``).
        clock: epoch seconds.
        client: a ready client (tests); None: one is opened in ``open``.
        lease: this node's keeper of the instance's lease (PostgreSQL), or None (SQLite:
            one daemon, no lease).
        stop: the daemon's stop event.
        auth_retry_s: seconds between identity calls while the credentials are refused.
        database: the SQLite file whose pause file ``leadflow status`` reads (first instance
            only), or None.
        on_refused: told when the gate closes (``--once`` stops).
        reporter_factory: builds the reporter from ``(store, client)`` (tests).
        observer: the daemon's metrics (``MarketoClient(observer=...)``).
    """

    def __init__(
        self,
        name: str,
        settings: Settings,
        store: Store,
        clock: Clock = time.time,
        *,
        client: Any = None,
        lease: LeaseKeeper | None = None,
        stop: asyncio.Event,
        auth_retry_s: float,
        database: Path | None = None,
        on_refused: Callable[[], None] | None = None,
        reporter_factory: Callable[[Store, Any], Any] | None = None,
        observer: Any = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.store = store
        self.clock = clock
        self.client: Any = client
        self.lease = lease
        self.stop_event = stop
        self.report_wake = asyncio.Event()
        self._auth_retry_s = auth_retry_s
        self._database = database
        self._on_refused = on_refused
        self._reporter_factory = reporter_factory
        self._observer = observer
        self._recovered_round: int | None = None
        self._recovery_lock = asyncio.Lock()
        self.gate: AuthGate
        self.scheduler: Scheduler
        self.poller: Poller
        self.reporter: Any

    async def open(self, stack: AsyncExitStack) -> None:
        """Open the client (unless given) and build the gate and the loops' parts."""
        if self.client is None:
            self.client = await stack.enter_async_context(
                MarketoClient(self.settings, store=self.store, clock=self.clock,
                              observer=self._observer)
            )
        self.gate = AuthGate(
            self.client, self.store, retry_s=self._auth_retry_s,
            database=self._database, on_refused=self._on_refused, instance=self.name,
        )
        stack.callback(self.gate.close)
        if self._reporter_factory is not None:
            self.reporter = self._reporter_factory(self.store, self.client)
        else:
            self.reporter = Reporter(self.settings, self.store, self.client, self.clock)
        submitter = self.client if self.lease is None else FencedSubmitter(self.client, self.lease)
        self.scheduler = Scheduler(self.settings, self.store, submitter, clock=self.clock)
        self.poller = Poller(
            self.settings, self.store, self.client, clock=self.clock,
            slot_freed=self.scheduler.slot_freed, requeued=self.scheduler.work,
            finished=self.report_wake,
        )
        self.scheduler.submitted = self.poller.poke
        self.scheduler.finished = self.report_wake

    # --- describe, for intake -------------------------------------------------------------

    async def describe(self) -> list[LeadField]:
        """The instance's lead fields for intake.

        Never waits while this instance's credentials are refused: it raises, and intake
        keeps the file ``received`` and tries it again at a later scan, so files of the
        other instances go on. With a lease, only the holder calls Marketo and publishes the
        fields in the store; another node reads them from there.

        Raises:
            AuthError: this instance's credentials are refused (its gate is closed, or closes
                now).
            StoreError: a follower found nothing published yet (the file waits and is tried
                again).
        """
        if self.lease is None:
            with structlog.contextvars.bound_contextvars(instance=self.name):
                fields: list[LeadField] = await self.gate.call_if_open(
                    self.client.describe_leads
                )
            return fields
        if self.lease.valid():
            return await self._publish_fields()
        found = await self.store.catalogue(self.name)
        if found is None:
            raise StoreError(f"instance {self.name}: the node holding its lease has not "
                             "published the field catalogue yet")
        return [LeadField(**field) for field in found[0]]

    async def describe_object(self, api_name: str) -> ObjectDescription:
        """A custom object's describe for intake (published by the lease holder, as above).

        Raises:
            AuthError: this instance's credentials are refused (as ``describe``).
            StoreError: a follower found nothing published yet for this object.
        """
        if self.lease is None or self.lease.valid():
            with structlog.contextvars.bound_contextvars(instance=self.name):
                described: ObjectDescription = await self.gate.call_if_open(
                    lambda: self.client.describe_custom_object(api_name)
                )
            if self.lease is not None:
                await self.store.save_catalogue(self.name, dataclasses.asdict(described),
                                                name=api_name)
            return described
        found = await self.store.catalogue(self.name, api_name)
        if found is None:
            raise StoreError(f"instance {self.name}: the node holding its lease has not "
                             f"published the describe of {api_name} yet")
        data = found[0]
        return ObjectDescription(
            name=data["name"], display_name=data["display_name"],
            dedupe_fields=tuple(data["dedupe_fields"]),
            fields=tuple(LeadField(**f) for f in data["fields"]),
        )

    async def _publish_fields(self) -> list[LeadField]:
        """Describe the lead fields and publish them for the other nodes.

        Raises:
            AuthError: this instance's credentials are refused (nothing is published).
        """
        with structlog.contextvars.bound_contextvars(instance=self.name):
            fields: list[LeadField] = await self.gate.call_if_open(self.client.describe_leads)
        await self.store.save_catalogue(self.name, [dataclasses.asdict(f) for f in fields])
        return fields

    # --- loops -----------------------------------------------------------------------------

    async def recover(self) -> None:
        """Resume the uploads the previous process left (no lease: once, at start).

        The first polls of uploads at Marketo are spread ``rate_window_s / calls_per_20s``
        apart (``recovery.recover_uploads``).
        """
        limits = self.settings.limits
        await recover_uploads(self.store, self.clock(),
                              spacing_s=limits.rate_window_s / limits.calls_per_20s,
                              packs=packs_dir(self.settings.paths, self.name))

    async def recover_after_outage(self) -> None:
        """Reap what this instance's scheduler left in flight when the database went away.

        Called before the scheduler starts again after ``StoreUnavailable``: an upload whose
        create call was sent while its result could not be recorded stays ``submitting``;
        it goes back to the FIFO, marked uncertain, and is sent again
        (``recovery.recover_uploads``). Orphan pack files are left alone here (another
        instance's scheduler may be forming one right now); the next start removes them.
        Under a lease only while the lease is trusted: a node that lost it leaves the
        uploads to the next holder, which recovers them when it takes over.
        """
        if self.lease is not None and not self.lease.valid():
            return
        limits = self.settings.limits
        await recover_uploads(self.store, self.clock(),
                              spacing_s=limits.rate_window_s / limits.calls_per_20s)

    def loops(self) -> dict[str, Callable[[], Coroutine[Any, Any, Any]]]:
        """The instance's loops by name: ``scheduler``, ``poller``, ``reporter``.

        With a lease each runs only while the lease is held (``run_as_leader``).
        """
        stop = self.stop_event
        makers: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
            "scheduler": lambda: self.scheduler.run(stop),
            "poller": lambda: self.poller.run(stop),
            "reporter": self.report_loop,
        }
        if self.lease is None:
            return makers
        return {name: _bind(self.run_as_leader, make) for name, make in makers.items()}

    async def run_as_leader(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run a Marketo loop only while this node holds the lease; cancel it at once when lost.

        The first loop to see the lease taken (again) resumes what the previous holder left
        in flight (``recovery.recover_uploads``: uploads caught mid-submit are sent again,
        marked uncertain; batches at Marketo are polled on) and publishes the describe.
        """
        lease = self.lease
        assert lease is not None
        while not self.stop_event.is_set():
            await wait_any((lease.held, self.stop_event), None)
            if self.stop_event.is_set():
                return
            async with self._recovery_lock:
                if self._recovered_round != lease.takeovers:
                    self._recovered_round = lease.takeovers
                    log.info("lease_takeover", instance=self.name, node=lease.node_id,
                             epoch=lease.epoch)
                    governor = getattr(self.client, "governor", None)
                    if governor is not None:
                        # Another node may have called this instance meanwhile.
                        await governor.resync()
                    await self.recover()
                    self.scheduler.work.set()
                    self.report_wake.set()
                    try:
                        await self._publish_fields()
                    except (ApiError, StoreError) as exc:
                        log.warning("catalogue_not_published", instance=self.name,
                                    error=str(exc))
            if not lease.valid():
                continue
            loop_task = asyncio.ensure_future(make())
            watch = asyncio.ensure_future(wait_any((lease.lost, self.stop_event), None))
            try:
                await asyncio.wait({loop_task, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watch.cancel()
            if loop_task.done():
                loop_task.result()
                return
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
            if not self.stop_event.is_set():
                log.warning("marketo_loop_stopped_lease_lost", instance=self.name)

    async def report_loop(self) -> None:
        """Write reports while the gate is open: every ``idle_tick_s`` or when woken."""
        tick = self.settings.daemon.idle_tick_s
        while await self.gate.wait_open(self.stop_event):
            ok = await self.report_pass()
            timeout = tick if ok else self.settings.daemon.results_retry_s
            await wait_any((self.stop_event, self.report_wake), timeout)
            self.report_wake.clear()

    async def report_pass(self) -> bool:
        """One reporter pass; False (logged) when it failed and must be tried again later."""
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

    def apply_settings(self, settings: Settings) -> None:
        """Use reloaded settings (already ``for_instance``) from the loops' next step on."""
        self.settings = settings
        self.scheduler.use_settings(settings)
        self.poller.use_settings(settings)
        self.client.set_limits(settings.limits)

    def wake(self) -> None:
        """New uploads or finished files are in the store: the scheduler and reporter look."""
        self.scheduler.work.set()
        self.report_wake.set()


def _bind(
    runner: Callable[[Callable[[], Coroutine[Any, Any, Any]]], Coroutine[Any, Any, Any]],
    make: Callable[[], Coroutine[Any, Any, Any]],
) -> Callable[[], Coroutine[Any, Any, Any]]:
    return lambda: runner(make)

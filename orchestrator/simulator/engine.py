"""The simulator's in-memory rules, free of HTTP.

See docs/reference/marketo-api.md §8.1-§8.6, §8.9, §8.10.

`Simulator` owns the instances, the clock, the configuration and the seeded random
generators; the call gate (tokens, limits, faults) comes from `CallGate`. Nothing runs in the
background: the queue is brought up to date (`Simulator.advance`) whenever it is observed, so a
job that ends at ``t`` frees its slot at exactly ``t`` and the next queued job starts then.
"""

from __future__ import annotations

import random
from typing import Any

from orchestrator.simulator import errors
from orchestrator.simulator.clock import Clock, ScaledClock
from orchestrator.simulator.config import SimulatorConfig
from orchestrator.simulator.errors import ApiError
from orchestrator.simulator.gate import CallGate
from orchestrator.simulator.instance import Instance, next_chicago_midnight
from orchestrator.simulator.jobs import ImportTarget, Job, JobKind
from orchestrator.simulator.uploads import PreparedRows, check_params, prepare_rows

__all__ = ["Instance", "Simulator", "next_chicago_midnight"]


class Simulator(CallGate):
    """Marketo's rules over in-memory instances, driven by one clock.

    Args:
        config: Defaults to `SimulatorConfig()`.
        clock: Defaults to a `ScaledClock` at ``time_scale``.
        time_scale: Speed of the default clock (1 = real time); ignored when ``clock`` is given.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        clock: Clock | None = None,
        time_scale: float | None = None,
    ) -> None:
        self.initial_config = config or SimulatorConfig()
        self.config = self.initial_config
        self.clock: Clock = clock or ScaledClock(1.0 if time_scale is None else time_scale)
        self.rng = random.Random(self.config.seed)
        #: Ids and tokens draw from their own generator so fault rolls stay reproducible.
        #: Not re-seeded by `reset`, so tokens from before a reset stay unknown after it.
        self.id_rng = random.Random(None if self.config.seed is None else f"ids-{self.config.seed}")
        self.instances = {m: Instance(m, self.config) for m in self.config.instances}

    # ----- instances and settings -------------------------------------------------------

    @property
    def default_instance(self) -> Instance:
        """The instance served at the URL root (the first configured munchkin id)."""
        return self.instances[self.config.instances[0]]

    def instance(self, munchkin_id: str | None) -> Instance | None:
        """The instance for a URL prefix (None for the root), or None if unknown."""
        if munchkin_id is None:
            return self.default_instance
        return self.instances.get(munchkin_id)

    def update_settings(self, patch: dict[str, Any]) -> SimulatorConfig:
        """Deep-merge ``patch`` into the settings at runtime.

        See docs/reference/marketo-api.md §8.9, §8.10.

        New munchkin ids get fresh instances; removed ones are dropped. Setting
        ``faults.fail_next_jobs`` or ``faults.drop_next_upload_responses`` re-arms those
        counters on every instance.

        Raises:
            pydantic.ValidationError: The result is not a valid configuration.
        """
        new = self.config.merged(patch)
        self.config = new
        for munchkin in new.instances:
            if munchkin not in self.instances:
                self.instances[munchkin] = Instance(munchkin, new)
        for munchkin in list(self.instances):
            if munchkin not in new.instances:
                del self.instances[munchkin]
        faults = patch.get("faults") or {}
        for inst in self.instances.values():
            if "fail_next_jobs" in faults:
                inst.fail_next = new.faults.fail_next_jobs
            if "drop_next_upload_responses" in faults:
                inst.drop_next = new.faults.drop_next_upload_responses
            if len(inst.slot_busy) < new.max_importing:
                inst.slot_busy.extend([0.0] * (new.max_importing - len(inst.slot_busy)))
        if "seed" in patch:
            self.rng.seed(new.seed)
        return new

    def reset(self, restore_settings: bool = False) -> None:
        """Reset every instance's state; optionally restore the start-up settings too."""
        if restore_settings:
            self.config = self.initial_config
            self.instances = {m: Instance(m, self.config) for m in self.config.instances}
        for inst in self.instances.values():
            inst.reset(self.config)
        self.rng.seed(self.config.seed)

    # ----- the import queue (§2.4, §8.3, §8.5) ---------------------------------------------

    def advance(self, inst: Instance) -> None:
        """Bring the queue up to the clock.

        Finishes jobs at their exact end time, starts the next queued ones FIFO at that same
        time, applies the rows processed so far and drops expired batches.
        """
        now = self.now()
        store = inst.store if self.config.store_leads else None
        while inst.importing:
            job = min(inst.importing, key=lambda j: (j.end_at, j.batch_id))
            end = job.end_at
            if end > now:
                break
            job.finish(store)
            inst.importing.remove(job)
            assert job.slot is not None and job.importing_at is not None
            inst.slot_busy[job.slot] += end - job.importing_at
            self._top_up_foreign(inst, end)
            self._start_queued(inst, end)
        self._top_up_foreign(inst, now)
        self._start_queued(inst, now)
        for job in inst.importing:
            job.catch_up(now, store)
        self._expire(inst, now)

    def _start_queued(self, inst: Instance, at: float) -> None:
        while inst.queue and len(inst.importing) < self.config.max_importing:
            used = {j.slot for j in inst.importing}
            slot = next(i for i in range(len(inst.slot_busy)) if i not in used)
            job = inst.queue.popleft()
            # never before the job existed (its upload may have been parsed while time ran)
            job.start(max(at, job.created_at), slot, self.config.rows_per_second)
            inst.importing.append(job)

    def _enqueue(self, inst: Instance, job: Job) -> None:
        inst.jobs[job.batch_id] = job
        inst.queue.append(job)
        inst.peak_queued = max(inst.peak_queued, inst.load)

    def _new_batch_id(self, inst: Instance) -> int:
        batch_id = inst.next_batch_id
        inst.next_batch_id += 1
        return batch_id

    def _top_up_foreign(self, inst: Instance, at: float) -> None:
        f = self.config.faults
        if not f.foreign_standing_jobs:
            return
        foreign = sum(1 for j in (*inst.queue, *inst.importing) if j.kind is JobKind.FOREIGN)
        while foreign < f.foreign_standing_jobs and inst.load < self.config.max_queued:
            self._add_foreign_job(inst, at, f.foreign_job_duration_s)
            foreign += 1

    def _add_foreign_job(self, inst: Instance, at: float, duration_s: float) -> Job:
        job = Job(self._new_batch_id(inst), JobKind.FOREIGN, at, 0, duration_s=duration_s)
        self._enqueue(inst, job)
        return job

    def _expire(self, inst: Instance, now: float) -> None:
        horizon = now - self.config.batch_retention_s
        expired = []
        for batch_id, job in inst.jobs.items():  # in creation order: stop at the first young one
            if job.created_at > horizon:
                break
            if job.terminal:
                expired.append(batch_id)
        for batch_id in expired:
            del inst.jobs[batch_id]
        inst.expired_batches += len(expired)

    def add_foreign_jobs(self, inst: Instance, count: int, duration_s: float) -> list[int]:
        """Queue up to ``count`` foreign jobs of ``duration_s`` simulated seconds each.

        Foreign jobs obey the same 10-job limit; the ones that do not fit are not added.

        Returns:
            The batch ids added.
        """
        self.advance(inst)
        now = self.now()
        added: list[int] = []
        for _ in range(count):
            if inst.load >= self.config.max_queued:
                break
            added.append(self._add_foreign_job(inst, now, duration_s).batch_id)
        self._start_queued(inst, now)
        return added

    def check_upload(
        self,
        inst: Instance,
        kind: JobKind,
        params: dict[str, str],
        *,
        program_id: str | None = None,
        object_api_name: str | None = None,
    ) -> tuple[ImportTarget, str]:
        """Validate an upload's parameters and check the queue has room (§8.4, §8.3).

        Returns:
            The import target and the delimiter, for `prepare_rows` and `enqueue_import`.

        Raises:
            ApiError: a parameter error of 8.4, or 1016 when 10 jobs are queued or importing.
        """
        target, delimiter = check_params(
            self.config, kind, params, program_id=program_id, object_api_name=object_api_name
        )
        self._check_room(inst)
        return target, delimiter

    def _check_room(self, inst: Instance) -> None:
        self.advance(inst)
        if inst.load >= self.config.max_queued:
            raise ApiError.of(errors.TOO_MANY_IMPORTS)

    def enqueue_import(
        self, inst: Instance, kind: JobKind, target: ImportTarget, delimiter: str,
        prepared: PreparedRows,
    ) -> Job:
        """Queue a validated, parsed upload as a new job, FIFO.

        The room in the queue is checked again: other uploads may have been queued while this
        one was parsed.

        Raises:
            ApiError: 1016 when 10 jobs are queued or importing.
        """
        cfg = self.config
        self._check_room(inst)
        now = self.now()
        job = Job(
            self._new_batch_id(inst),
            kind,
            now,
            len(prepared.outcomes),
            delimiter=delimiter,
            header=prepared.header,
            text=prepared.text,
            rules=prepared.rules,
            target=target,
            outcomes=prepared.outcomes,
            reported=prepared.reported,
        )
        fail = inst.fail_next > 0
        if fail:
            inst.fail_next -= 1
        elif cfg.faults.job_failure_probability:
            fail = self.rng.random() < cfg.faults.job_failure_probability
        if fail:
            job.fail_after_rows = job.total_rows // 2
            job.fail_reason = cfg.faults.job_failure_reason
        self._enqueue(inst, job)
        self._start_queued(inst, now)
        return job

    def create_import(
        self,
        inst: Instance,
        kind: JobKind,
        params: dict[str, str],
        data: bytes,
        *,
        program_id: str | None = None,
        object_api_name: str | None = None,
    ) -> Job:
        """Validate, parse and queue an upload in one step.

        The same as `check_upload`, `prepare_rows` and `enqueue_import` in a row.

        Args:
            inst: The instance.
            kind: Lead, program member or custom object import.
            params: Query parameters merged with multipart form fields.
            data: The ``file`` part's bytes.
            program_id: From the path, for program member imports.
            object_api_name: From the path, for custom object imports.

        Raises:
            ApiError: a validation error of 8.4, or 1016 when 10 jobs are queued or importing.
        """
        target, delimiter = self.check_upload(
            inst, kind, params, program_id=program_id, object_api_name=object_api_name
        )
        prepared = prepare_rows(self.config, kind, target, delimiter, data)
        return self.enqueue_import(inst, kind, target, delimiter, prepared)

    def job(self, inst: Instance, batch_id: str, kinds: tuple[JobKind, ...]) -> Job:
        """Find a visible batch of one of ``kinds``, brought up to date.

        Raises:
            ApiError: 1013 ``Object not found`` for an unknown, expired, foreign or
                other-kind batch (docs/reference/marketo-api.md §8.6).
        """
        self.advance(inst)
        try:
            job = inst.jobs[int(batch_id)]
        except (ValueError, KeyError):
            raise ApiError.of(errors.OBJECT_NOT_FOUND) from None
        if job.kind not in kinds:
            raise ApiError.of(errors.OBJECT_NOT_FOUND)
        return job

    # ----- statistics (§8.10) ------------------------------------------------------------

    def stats(self, inst: Instance) -> dict[str, Any]:
        """The admin statistics of one instance, brought up to date.

        See docs/reference/marketo-api.md §8.10.

        Returns:
            ``munchkinId``, ``now``; queue: ``queued``, ``importing``, ``queued_or_importing``,
            ``peak_queued_or_importing``, ``slot_busy_s`` (list, one per import slot, running
            jobs counted up to now); calls: ``rate_window_s``, ``calls_in_window``,
            ``peak_calls_per_window`` (refused calls included), ``inflight``,
            ``peak_concurrent_calls``, ``calls_total`` and ``calls_by_endpoint`` (identity
            included), ``errors`` (count per code: ``"606"``, ``"1016"``, ``"413"``,
            ``"500"``, ``"401"``, ``"dropped"``...); ``quota_used_today``,
            ``quota_resets_at``; ``tokens_minted``, ``token_expires_at``;
            ``fail_next_jobs_remaining``, ``drop_next_upload_responses_remaining``; ``leads``
            (count), ``expired_batches``; ``batches``: every live batch (foreign ones too) as
            `Job.timeline` — ``batchId``, ``kind``, ``status``, ``created_at``,
            ``importing_at``, ``finished_at``, ``slot``, ``rows``, ``processed``,
            ``imported``, ``failed``, ``warned``, ``message``, ``objectApiName``,
            ``programId``.
        """
        self.advance(inst)
        now = self.now()
        busy = list(inst.slot_busy)
        for job in inst.importing:
            assert job.slot is not None and job.importing_at is not None
            busy[job.slot] += now - job.importing_at
        cfg = self.config
        return {
            "munchkinId": inst.munchkin_id,
            "now": now,
            "queued": len(inst.queue),
            "importing": len(inst.importing),
            "queued_or_importing": inst.load,
            "peak_queued_or_importing": inst.peak_queued,
            "slot_busy_s": busy,
            "rate_window_s": cfg.rate_window_s,
            "calls_in_window": sum(1 for t in inst.rate_calls if t > now - cfg.rate_window_s),
            "peak_calls_per_window": inst.peak_rate,
            "inflight": inst.inflight,
            "peak_concurrent_calls": inst.peak_concurrent,
            "calls_total": sum(inst.calls.values()),
            "calls_by_endpoint": dict(inst.calls),
            "errors": dict(inst.errors),
            "quota_used_today": inst.quota_used if now < inst.quota_resets_at else 0,
            "quota_resets_at": inst.quota_resets_at,
            "tokens_minted": inst.tokens_minted,
            "token_expires_at": inst.token_expires_at if inst.token else None,
            "fail_next_jobs_remaining": inst.fail_next,
            "drop_next_upload_responses_remaining": inst.drop_next,
            "leads": len(inst.store.leads),
            "expired_batches": inst.expired_batches,
            "batches": [job.timeline() for job in inst.jobs.values()],
        }

"""An import job and its clock-driven progress (docs/reference/marketo-api.md §2.3, §3.1, §8.5).

A job's progress is never driven by a background task: a job that started ``Importing`` at
``t0`` with rate ``r`` has processed ``min(rows, floor((now - t0) * r))`` rows; the engine
calls `Job.catch_up` whenever state is observed, which applies exactly those rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orchestrator.simulator.csvparse import iter_records
from orchestrator.simulator.leadstore import LeadStore
from orchestrator.simulator.rows import FAIL, LEAD_NOT_FOUND, OK, WARN, RowRules


class JobKind(StrEnum):
    """What a job imports; every kind shares one queue.

    See docs/reference/marketo-api.md §4.3, §8.8.
    """

    #: ``POST /bulk/v1/leads.json``.
    LEAD = "lead"
    #: ``POST /bulk/v1/program/{programId}/members/import.json``.
    PROGRAM_MEMBER = "program_member"
    #: ``POST /bulk/v1/customobjects/{apiName}/import.json``.
    CUSTOM_OBJECT = "custom_object"
    #: Another integration's job: holds a queue slot, invisible to the API.
    FOREIGN = "foreign"


class JobStatus(StrEnum):
    """Import status strings, spelled exactly as Marketo does.

    See docs/reference/marketo-api.md §2.3.
    """

    #: Waiting for one of the importing slots.
    QUEUED = "Queued"
    #: Rows are being processed.
    IMPORTING = "Importing"
    #: All rows processed (some may have failed).
    COMPLETE = "Complete"
    #: Stopped part-way (fault injection).
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class ImportTarget:
    """Where a job's rows go: lookup field, partition, list, program, object type."""

    lookup_field: str = "email"
    partition: str = "Default"
    list_id: int | None = None
    program_id: int | None = None
    member_status: str | None = None
    object_api_name: str | None = None


@dataclass
class Job:
    """One import batch: its rows' precomputed outcomes, timeline and counters."""

    batch_id: int
    kind: JobKind
    created_at: float
    total_rows: int
    delimiter: str = ","
    header: list[str] = field(default_factory=list)
    text: str | None = None
    rules: RowRules | None = None
    target: ImportTarget = ImportTarget()
    outcomes: bytearray = field(default_factory=bytearray)
    #: Rows with a failure or warning found at upload: index -> (fields, reason).
    reported: dict[int, tuple[list[str], str]] = field(default_factory=dict)
    #: Foreign jobs only: import duration in simulated seconds.
    duration_s: float = 0.0
    #: Fault injection: the job fails after this many rows.
    fail_after_rows: int | None = None
    fail_reason: str = ""
    status: JobStatus = JobStatus.QUEUED
    importing_at: float | None = None
    finished_at: float | None = None
    slot: int | None = None
    rate: float = 500.0
    applied: int = 0
    imported: int = 0
    failed: int = 0
    warned: int = 0
    failures: list[tuple[list[str], str]] = field(default_factory=list)
    warnings: list[tuple[list[str], str]] = field(default_factory=list)
    _reader: Iterator[list[str]] | None = None

    @property
    def stop_rows(self) -> int:
        """Rows processed by the time the job ends (fewer than all when it fails)."""
        if self.fail_after_rows is not None:
            return self.fail_after_rows
        return self.total_rows

    @property
    def end_at(self) -> float:
        """Simulated time the job ends; only meaningful once it is importing."""
        assert self.importing_at is not None
        if self.kind is JobKind.FOREIGN:
            return self.importing_at + self.duration_s
        return self.importing_at + self.stop_rows / self.rate

    @property
    def terminal(self) -> bool:
        """Whether the job is ``Complete`` or ``Failed``."""
        return self.status in (JobStatus.COMPLETE, JobStatus.FAILED)

    def start(self, now: float, slot: int, rate: float) -> None:
        """Move from ``Queued`` to ``Importing`` at ``now`` in import slot ``slot``."""
        self.status = JobStatus.IMPORTING
        self.importing_at = now
        self.slot = slot
        self.rate = rate

    def catch_up(self, now: float, store: LeadStore | None) -> None:
        """Apply the rows processed by ``now`` while ``Importing`` (never past `stop_rows`)."""
        if self.status is not JobStatus.IMPORTING or self.kind is JobKind.FOREIGN:
            return
        assert self.importing_at is not None
        due = math.floor((now - self.importing_at) * self.rate + 1e-9)
        self._apply(min(self.stop_rows, max(due, 0)), store)

    def finish(self, store: LeadStore | None) -> None:
        """End the job at `end_at`: apply the remaining rows and set the final status."""
        self._apply(self.stop_rows, store)
        self.finished_at = self.end_at
        self.status = JobStatus.COMPLETE if self.fail_after_rows is None else JobStatus.FAILED
        self.text = None
        self._reader = None
        self.reported = {}

    def _apply(self, upto: int, store: LeadStore | None) -> None:
        if upto <= self.applied:
            return
        if self._reader is None:
            assert self.text is not None
            self._reader = iter_records(self.text, self.delimiter)
            next(self._reader)  # the header
            for _ in range(self.applied):
                next(self._reader)
        reader = self._reader
        outcomes = self.outcomes
        for i in range(self.applied, upto):
            row = next(reader)
            outcome = outcomes[i]
            if outcome == FAIL:
                self.failed += 1
                self.failures.append(self.reported[i])
                continue
            if store is not None and not self._write(row, store):
                self.failed += 1
                self.failures.append((row, LEAD_NOT_FOUND))
                continue
            self.imported += 1
            if outcome == WARN:
                self.warned += 1
                self.warnings.append(self.reported[i])
        self.applied = upto

    def _write(self, row: list[str], store: LeadStore) -> bool:
        rules = self.rules
        assert rules is not None
        target = self.target
        records = rules.records(row)
        if self.kind is JobKind.CUSTOM_OBJECT:
            assert target.object_api_name is not None
            store.upsert_object(target.object_api_name, rules.key(row), records.get("object", {}))
            return True
        lead_values = records.get("lead", {})
        lookup_value = rules.key(row)[0]
        lead_values.pop("id", None)
        lead_id = store.upsert(target.lookup_field, lookup_value, lead_values, target.partition)
        if lead_id is None:
            return False
        if target.list_id is not None:
            store.add_to_list(target.list_id, lead_id)
        if self.kind is JobKind.PROGRAM_MEMBER:
            assert target.program_id is not None and target.member_status is not None
            store.set_member(
                target.program_id, lead_id, target.member_status, records.get("member", {})
            )
        return True

    def message(self) -> str | None:
        """The status ``message``; None while the job is not terminal.

        The exact forms are in docs/reference/marketo-api.md §8.5.
        """
        if self.status is JobStatus.FAILED:
            return f"Import failed: {self.fail_reason}"
        if self.status is not JobStatus.COMPLETE:
            return None
        n = self.imported
        if self.failed:
            text = f"Import completed with errors, {n} records imported ({n} members), "
            text += f"{self.failed} failed"
        else:
            text = f"Import succeeded, {n} records imported ({n} members)"
        if self.warned:
            text += f", {self.warned} warning{'s' if self.warned != 1 else ''}."
        return text

    def timeline(self) -> dict[str, Any]:
        """The admin view of this job, timeline and counters.

        See docs/reference/marketo-api.md §8.10.
        """
        return {
            "batchId": self.batch_id,
            "kind": self.kind.value,
            "status": self.status.value,
            "created_at": self.created_at,
            "importing_at": self.importing_at,
            "finished_at": self.finished_at,
            "slot": self.slot,
            "rows": self.total_rows,
            "processed": self.applied,
            "imported": self.imported,
            "failed": self.failed,
            "warned": self.warned,
            "message": self.message(),
            "objectApiName": self.target.object_api_name,
            "programId": self.target.program_id,
        }


__all__ = ["FAIL", "OK", "WARN", "ImportTarget", "Job", "JobKind", "JobStatus"]

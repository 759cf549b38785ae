"""Repeated lookup values inside one file, counted in bounded memory.

The first ``exact_limit`` distinct values are kept exactly in a dict. When that fills up, the
counter spills: every value seen from then on, and every value of the dict, goes to disk as
a 64-bit hash with its row number, partitioned by hash so that each partition fits in
memory when it is checked at the end. Values of repeats found there come from the dict when
their first occurrence is in it, else from the written uploads (``resolve``). Two different
values sharing a 64-bit hash would count as a repeat; below 10^9 rows the odds are < 10^-1.
"""

from __future__ import annotations

import heapq
import os
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Distinct values kept exactly in memory before spilling hashes to disk.
EXACT_LIMIT = 200_000
#: Groups listed in the report (``info["duplicates"]``).
MAX_LISTED = 1000
#: Row numbers listed per group.
MAX_ROWS_LISTED = 100
#: Hashes buffered in memory before they are appended to the partition files.
FLUSH_ENTRIES = 262_144


#: Rows expected per partition when it is checked at the end (bounds that step's memory).
ROWS_PER_PARTITION = 150_000


def partitions_for(size_bytes: int, row_bytes: int = 40) -> int:
    """Return how many partitions (a power of two, 64 to 4096) a file of ``size_bytes`` needs.

    Each partition then holds about ``ROWS_PER_PARTITION`` rows, rows being assumed at least
    ``row_bytes`` long, so checking one at the end takes bounded memory.
    """
    wanted = size_bytes // row_bytes // ROWS_PER_PARTITION
    parts = 64
    while parts < wanted and parts < 4096:
        parts *= 2
    return parts


@dataclass(slots=True)
class Group:
    """One repeated value: its rows (first ``MAX_ROWS_LISTED``) and how often it occurs."""

    first_row: int
    rows: list[int]
    count: int
    value: str | None = None

    def as_dict(self) -> dict[str, object]:
        """Return ``{"value", "rows", "count"}`` for ``info["duplicates"]``."""
        return {"value": self.value, "rows": self.rows, "count": self.count}


class DuplicateCounter:
    """Counts rows whose lookup value occurred earlier in the file.

    Args:
        spill_dir: a folder for partition files (created when first needed).
        partitions: partition files used after spilling (a power of two).
        exact_limit: distinct values kept exactly in memory (default ``EXACT_LIMIT``).
    """

    def __init__(
        self, spill_dir: Path, partitions: int = 64, exact_limit: int | None = None
    ) -> None:
        self.spill_dir = spill_dir
        self.partitions = partitions
        self.exact_limit = EXACT_LIMIT if exact_limit is None else exact_limit
        self.first: dict[str, int] = {}
        self.groups: dict[str, Group] = {}
        self.repeats = 0
        self.spilled = False
        self._mask = partitions - 1
        self._hashes: list[array[int]] = []
        self._rows: list[array[int]] = []
        self._put_hash: list[Callable[[int], None]] = []
        self._put_row: list[Callable[[int], None]] = []
        self._buffered = 0

    def add(self, key: str, row: int) -> None:
        """Count one row's (normalised) lookup value."""
        if self.spilled:
            self._to_disk([key], [row])
        elif key in self.first:
            self.repeats += 1
            group = self.groups.get(key)
            if group is None:
                first = self.first[key]
                self.groups[key] = Group(first, [first, row], 2, key)
            else:
                group.count += 1
                if len(group.rows) < MAX_ROWS_LISTED:
                    group.rows.append(row)
        else:
            self.first[key] = row

    def add_batch(self, keys: list[str], rows: Sequence[int]) -> bool:
        """Count a batch of values, at C speed while no value repeats.

        Returns:
            False, with nothing counted, when a value might repeat: the caller then counts
            the batch value by value with ``add``.
        """
        if self.spilled:
            self._to_disk(keys, rows)
            return True
        first = self.first
        if not first.keys().isdisjoint(keys):
            return False
        before = len(first)
        first.update(zip(keys, rows, strict=True))
        if len(first) - before == len(keys):
            return True
        for key in keys:  # a value repeats inside the batch: undo, count one by one
            first.pop(key, None)
        return False

    def _to_disk(self, keys: Collection[str], rows: Iterable[int]) -> None:
        mask, put_hash, put_row = self._mask, self._put_hash, self._put_row
        for h, row in zip(map(hash, keys), rows, strict=True):
            part = h & mask
            put_hash[part](h)
            put_row[part](row)
        self._buffered += len(keys)

    def checkpoint(self) -> None:
        """Spill or flush when memory limits are reached (call every few hundred rows)."""
        if not self.spilled and len(self.first) >= self.exact_limit:
            self.spilled = True
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            self._hashes = [array("q") for _ in range(self.partitions)]
            self._rows = [array("I") for _ in range(self.partitions)]
            self._put_hash = [a.append for a in self._hashes]
            self._put_row = [a.append for a in self._rows]
            self._to_disk(self.first.keys(), self.first.values())
            self._flush()
        elif self._buffered >= FLUSH_ENTRIES:
            self._flush()

    def _flush(self) -> None:
        for part in range(self.partitions):
            if self._hashes[part]:
                with open(self.spill_dir / f"{part:04d}.h", "ab") as out:
                    self._hashes[part].tofile(out)
                with open(self.spill_dir / f"{part:04d}.r", "ab") as out:
                    self._rows[part].tofile(out)
                del self._hashes[part][:]  # emptied in place: _put_* stay bound to them
                del self._rows[part][:]
        self._buffered = 0

    def _spilled_groups(self) -> Iterator[Group]:
        for part in range(self.partitions):
            hashes: array[int] = array("q")
            rows: array[int] = array("I")
            path = self.spill_dir / f"{part:04d}.h"
            if not path.exists():
                continue
            with open(path, "rb") as source:
                hashes.frombytes(source.read())
            if len(set(hashes)) == len(hashes):
                continue
            with open(self.spill_dir / f"{part:04d}.r", "rb") as source:
                rows.frombytes(source.read())
            repeated = {h for h, n in Counter(hashes).items() if n > 1}
            found: dict[int, Group] = {}
            for h, row in zip(hashes, rows, strict=True):
                if h in repeated:
                    group = found.get(h)
                    if group is None:
                        found[h] = Group(row, [row], 1)
                    else:
                        group.count += 1
                        if len(group.rows) < MAX_ROWS_LISTED:
                            group.rows.append(row)
            yield from found.values()

    def finish(
        self, resolve: Callable[[set[int]], Iterable[tuple[int, str]]] | None = None
    ) -> tuple[int, list[dict[str, object]]]:
        """Return ``(rows that repeat an earlier value, first MAX_LISTED groups)``.

        Args:
            resolve: given row numbers, yields ``(row, value)`` for them (reads the written
                uploads); needed only for groups whose first occurrence came after the spill.

        Groups are ordered by their first row; each is ``{"value", "rows", "count"}``.
        """
        unnamed = self._finish_spilled(resolve) if self.spilled else []
        listed = heapq.nsmallest(
            MAX_LISTED, [*self.groups.values(), *unnamed], key=lambda g: g.first_row
        )
        return self.repeats, [g.as_dict() for g in listed]

    def _finish_spilled(
        self, resolve: Callable[[set[int]], Iterable[tuple[int, str]]] | None
    ) -> list[Group]:
        """Count the spilled repeats; merge named ones into ``groups``; return the others."""
        if self._buffered:
            self._flush()
        by_row: dict[int, str] | None = None  # built only if a spilled repeat needs it
        unnamed: list[tuple[int, int, Group]] = []  # max-heap on first_row, bounded
        for group in self._spilled_groups():
            self.repeats += group.count - 1
            if by_row is None:
                by_row = {row: key for key, row in self.first.items()}
            key = by_row.get(group.first_row)
            if key is None:
                item = (-group.first_row, id(group), group)
                if len(unnamed) < MAX_LISTED:
                    heapq.heappush(unnamed, item)
                elif item > unnamed[0]:
                    heapq.heapreplace(unnamed, item)
                continue
            known = self.groups.get(key)
            if known is None:  # first seen before the spill, repeated only after it
                group.value = key
                self.groups[key] = group
            else:  # repeated before and after the spill: the first row is in both
                known.count += group.count - 1
                known.rows = sorted({*known.rows, *group.rows})[:MAX_ROWS_LISTED]
        need = {item[2].first_row: item[2] for item in unnamed}
        if need and resolve is not None:
            for row, value in resolve(set(need)):
                need[row].value = value
        for name in os.listdir(self.spill_dir):
            os.unlink(self.spill_dir / name)
        os.rmdir(self.spill_dir)
        return list(need.values())

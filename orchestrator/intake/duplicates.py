"""Repeated lookup values inside one file, counted in bounded memory.

The first ``exact_limit`` distinct values are kept exactly in a dict. Past that, each further
value goes to disk as a 64-bit hash and its row number, partitioned by hash so that each
partition fits in memory when it is checked at the end; values of repeats found there are
read back from the written uploads (``resolve``). Two different values sharing a 64-bit hash
would count as a repeat; with fewer than 10^9 rows the odds are below 10^-1.
"""

from __future__ import annotations

import heapq
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
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
        exact_limit: distinct values kept exactly in memory.
    """

    def __init__(
        self, spill_dir: Path, partitions: int = 64, exact_limit: int = EXACT_LIMIT
    ) -> None:
        self.spill_dir = spill_dir
        self.partitions = partitions
        self.exact_limit = exact_limit
        self.first: dict[str, int] = {}
        self.groups: dict[str, Group] = {}
        self.repeats = 0
        self.spilled = False
        self._mask = partitions - 1
        self._hashes: list[array[int]] = []
        self._rows: list[array[int]] = []
        self._buffered = 0

    def add(self, key: str, row: int) -> None:
        """Count one row's (normalised) lookup value.

        ``prepare`` inlines the common case (a new value while not spilled) and calls
        ``repeat`` / ``add_spilled`` itself; the three together are this method.
        """
        if key in self.first:
            self.repeat(key, row)
        elif not self.spilled:
            self.first[key] = row
        else:
            self.add_spilled(key, row)

    def add_batch(self, keys: list[str], rows: Sequence[int]) -> bool:
        """Count a batch of values at C speed if none repeats.

        Returns:
            False, with nothing counted, when a value might repeat: the caller then counts
            the batch value by value with ``add``.
        """
        first = self.first
        if not self.spilled:
            if not first.keys().isdisjoint(keys):
                return False
            before = len(first)
            first.update(zip(keys, rows, strict=True))
            if len(first) - before == len(keys):
                return True
            for key in keys:  # a value repeats inside the batch: undo, count one by one
                first.pop(key, None)
            return False
        if not first.keys().isdisjoint(keys):
            return False
        mask, hashes, lines = self._mask, self._hashes, self._rows
        for h, row in zip(map(hash, keys), rows, strict=True):
            part = h & mask
            hashes[part].append(h)
            lines[part].append(row)
        self._buffered += len(keys)
        return True

    def repeat(self, key: str, row: int) -> None:
        """Count a row whose value is in the exact tier already."""
        self.repeats += 1
        group = self.groups.get(key)
        if group is None:
            first = self.first[key]
            self.groups[key] = Group(first, [first, row], 2, key)
        else:
            group.count += 1
            if len(group.rows) < MAX_ROWS_LISTED:
                group.rows.append(row)

    def add_spilled(self, key: str, row: int) -> None:
        """Buffer a value not in the exact tier, after spilling, as its hash and row."""
        h = hash(key)
        part = h & self._mask
        self._hashes[part].append(h)
        self._rows[part].append(row)
        self._buffered += 1

    def checkpoint(self) -> None:
        """Spill or flush when memory limits are reached (call every few hundred rows)."""
        if not self.spilled and len(self.first) >= self.exact_limit:
            self.spilled = True
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            self._hashes = [array("q") for _ in range(self.partitions)]
            self._rows = [array("I") for _ in range(self.partitions)]
        elif self._buffered >= FLUSH_ENTRIES:
            self._flush()

    def _flush(self) -> None:
        for part in range(self.partitions):
            if self._hashes[part]:
                with open(self.spill_dir / f"{part:04d}.h", "ab") as out:
                    self._hashes[part].tofile(out)
                with open(self.spill_dir / f"{part:04d}.r", "ab") as out:
                    self._rows[part].tofile(out)
                self._hashes[part] = array("q")
                self._rows[part] = array("I")
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
                uploads); needed only for groups found among spilled hashes.

        Groups are ordered by their first row; each is ``{"value", "rows", "count"}``.
        """
        listed = heapq.nsmallest(MAX_LISTED, self.groups.values(), key=lambda g: g.first_row)
        if self.spilled:
            if self._buffered:
                self._flush()
            best: list[tuple[int, int, Group]] = []  # max-heap on first_row, bounded
            for group in self._spilled_groups():
                self.repeats += group.count - 1
                item = (-group.first_row, id(group), group)
                if len(best) < MAX_LISTED:
                    heapq.heappush(best, item)
                elif item > best[0]:
                    heapq.heapreplace(best, item)
            spilled = [item[2] for item in best]
            need = {g.first_row: g for g in spilled}
            if need and resolve is not None:
                for row, value in resolve(set(need)):
                    need[row].value = value
            listed = heapq.nsmallest(MAX_LISTED, [*listed, *spilled], key=lambda g: g.first_row)
            for name in os.listdir(self.spill_dir):
                os.unlink(self.spill_dir / name)
            os.rmdir(self.spill_dir)
        return self.repeats, [g.as_dict() for g in listed]

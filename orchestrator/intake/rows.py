"""Row rules over batches of records, with a C-speed fast path for clean batches.

Rules, in Marketo's order (contract 8.5): a record whose field count differs from the
header's; an empty lookup value (empty, or one of ``intake.null_tokens`` after trimming and
ignoring case); a
value that is not of its field's type. Records whose every field is empty or spaces (the
``,,,`` rows spreadsheets leave) are skipped like blank lines and counted nowhere.

A batch where every record has the right width, a lookup value, well-typed values and no
repeated lookup value is checked with ``map``/``set`` operations that run in C; any other
batch goes through the same rules record by record. Both paths give the same result.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from operator import itemgetter

from orchestrator.intake.duplicates import DuplicateCounter
from orchestrator.intake.reasons import WRONG_FIELD_COUNT, Unimportable, lookup_not_found
from orchestrator.intake.validate import Typed

Reject = Callable[[int, list[str], str], None]


def read_batch(
    reader: Iterator[list[str]], start: int, offset: int, size: int
) -> tuple[list[list[str]], list[int], int]:
    """Read up to ``size`` records with the 1-based line on which each starts.

    Args:
        reader: a ``csv.reader`` (its ``line_num`` counts the lines it has read).
        start: the line on which the next record starts.
        offset: added to ``reader.line_num`` to get a file line number, plus one.
        size: records per batch.

    Returns:
        ``(records, start lines, line on which the record after them starts)``.

    Raises:
        Unimportable: the parser failed (a field over ``csv.field_size_limit``).
    """
    batch: list[list[str]] = []
    starts: list[int] = []
    keep, mark = batch.append, starts.append
    try:
        for row in islice(reader, size):
            keep(row)
            mark(start)
            start = reader.line_num + offset  # type: ignore[attr-defined]
    except csv.Error as exc:
        raise Unimportable(
            f"The file is not well-formed CSV in the record starting on line {start}: {exc} "
            "(a quoted value that never closes?)."
        ) from exc
    return batch, starts, start


class RowRules:
    """Classifies records batch by batch; counts data records in ``total``.

    Args:
        width: header columns.
        lookup: index of the lookup column.
        lookup_field: its REST name (for the rejection reason).
        null_tokens: lookup values that count as empty after trimming, ignoring case.
        typed: typed columns (``validate.typed_columns``).
        fold: compare lookup values case-insensitively (email; ``str.lower``).
        dups: the duplicate counter.
        reject: called with ``(line, record, reason)`` for each rejected record.
    """

    def __init__(
        self,
        *,
        width: int,
        lookup: int,
        lookup_field: str,
        null_tokens: Sequence[str],
        typed: list[Typed],
        fold: bool,
        dups: DuplicateCounter,
        reject: Reject,
    ) -> None:
        self.width = width
        self.lookup = lookup
        #: The null tokens trimmed and lower-cased, and the empty string.
        self.nulls = frozenset(token.strip().lower() for token in null_tokens) | {""}
        self.no_lookup = lookup_not_found(lookup_field)
        self.typed = typed
        self.fold = fold
        self.dups = dups
        self.reject = reject
        self.total = 0
        self._key = itemgetter(lookup)

    def batch(
        self, batch: list[list[str]], starts: Sequence[int]
    ) -> tuple[list[list[str]], Sequence[int]]:
        """Classify one batch; return the accepted records and their start lines."""
        keys = self._fast_keys(batch)
        if keys is not None and self.dups.add_batch(keys, starts):
            self.total += len(batch)
            return batch, starts
        return self._slow(batch, starts)

    def _fast_keys(self, batch: list[list[str]]) -> list[str] | None:
        """Return the normalised lookup values if every record passes every rule, else None."""
        if set(map(len, batch)) != {self.width}:
            return None
        keys = list(map(str.strip, map(self._key, batch)))
        if self.fold:  # lower-cased first: a key that is a null token is one lower-cased too
            keys = list(map(str.lower, keys))
            if not self.nulls.isdisjoint(keys):
                return None
        elif not self.nulls.isdisjoint(map(str.lower, keys)):
            return None
        for index, fast, _check, _reason in self.typed:
            if not all(map(fast, map(itemgetter(index), batch))):
                return None
        return keys

    def _slow(
        self, batch: list[list[str]], starts: Sequence[int]
    ) -> tuple[list[list[str]], list[int]]:
        width, lookup, nulls, typed = self.width, self.lookup, self.nulls, self.typed
        reject, dups = self.reject, self.dups
        good: list[list[str]] = []
        lines: list[int] = []
        for row, start in zip(batch, starts, strict=True):
            if len(row) != width:
                if not row or not any(f.strip() for f in row):
                    continue
                self.total += 1
                reject(start, row, WRONG_FIELD_COUNT)
                continue
            key = row[lookup].strip()
            if key.lower() in nulls:
                if not any(f.strip() for f in row):
                    continue
                self.total += 1
                reject(start, row, self.no_lookup)
                continue
            self.total += 1
            bad = None
            for index, fast, check, why in typed:
                value = row[index]
                if value and not fast(value) and not value.isspace() and not check(value):
                    bad = why
                    break
            if bad is not None:
                reject(start, row, bad)
                continue
            dups.add(key.lower() if self.fold else key, start)
            good.append(row)
            lines.append(start)
        return good, lines

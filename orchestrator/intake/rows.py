"""Row rules over batches of records, with a C-speed fast path for clean batches.

Rules, in Marketo's order (docs/reference/marketo-api.md §8.5): a record whose field count differs
from the header's; an empty lookup value (empty, or one of ``intake.null_tokens`` after trimming
and ignoring case); a
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
#: Joins the parts of a compound key (custom objects with several dedupe fields).
KEY_SEPARATOR = " | "


def compound_key(row: Sequence[str], indexes: Sequence[int]) -> str:
    """The key of a row over several columns: each value trimmed, joined by ``KEY_SEPARATOR``."""
    return KEY_SEPARATOR.join(row[i].strip() for i in indexes)


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
        also: indexes of further key columns (a custom object's compound dedupe key): a
            record needs a value in each, and duplicates compare them all.
        no_key_reason: the rejection reason of a record without a key value (default
            Marketo's ``Value for lookup field 'NAME' not found``).
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
        also: Sequence[int] = (),
        no_key_reason: str | None = None,
    ) -> None:
        self.width = width
        self.lookup = lookup
        #: The null tokens trimmed and lower-cased, and the empty string.
        self.nulls = frozenset(token.strip().lower() for token in null_tokens) | {""}
        self.no_lookup = no_key_reason or lookup_not_found(lookup_field)
        self.keys = (lookup, *also)
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
        if len(self.keys) > 1:
            return self._compound_keys(batch)
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

    def _compound_keys(self, batch: list[list[str]]) -> list[str] | None:
        """``_fast_keys`` for a compound key (plain Python: custom objects only)."""
        keys: list[str] = []
        for row in batch:
            key = self._key_of(row)
            if key is None:
                return None
            keys.append(key)
        for index, fast, _check, _reason in self.typed:
            if not all(map(fast, map(itemgetter(index), batch))):
                return None
        return keys

    def _key_of(self, row: list[str]) -> str | None:
        """The normalised key of a record of the right width, or None when a part is empty."""
        nulls = self.nulls
        for index in self.keys:
            if row[index].strip().lower() in nulls:
                return None
        key = compound_key(row, self.keys) if len(self.keys) > 1 else row[self.lookup].strip()
        return key.lower() if self.fold else key

    def _slow(
        self, batch: list[list[str]], starts: Sequence[int]
    ) -> tuple[list[list[str]], list[int]]:
        width, typed = self.width, self.typed
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
            key = self._key_of(row)
            if key is None:
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
            dups.add(key, start)
            good.append(row)
            lines.append(start)
        return good, lines

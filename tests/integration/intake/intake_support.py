"""Helpers of intake's integration tests (imported by the tests and their conftest)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.intake import Field
from orchestrator.models import FileRecord
from orchestrator.store import Store

#: The fields the shared inputs use, plus a few typed ones.
FIELDS = [
    Field("email", "Email Address", "email"),
    Field("firstName", "First Name"),
    Field("lastName", "Last Name"),
    Field("company", "Company Name"),
    Field("address", "Address", "text"),
    Field("city", "City"),
    Field("phone", "Phone Number", "phone"),
    Field("leadScore", "Lead Score", "integer"),
    Field("unsubscribed", "Unsubscribed", "boolean"),
]


@dataclass
class FakeDescribe:
    """A describe callable that counts calls and can fail."""

    fields: list[Field] = field(default_factory=lambda: list(FIELDS))
    calls: int = 0
    fail: bool = False

    async def __call__(self) -> list[Field]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("describe unreachable")
        return self.fields


class Clock:
    """A settable clock (epoch seconds)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def uploads_of(store: Store, record: FileRecord) -> list[tuple[bytes, list[int]]]:
    """``(prepared bytes, source rows)`` of each part of a file, by seq."""
    out = []
    for part in await store.parts_of_file(record.id):
        rows = await store.part_source_rows(part.id)
        out.append((Path(part.path).read_bytes(), rows))
    return out


def parse(data: bytes) -> list[list[str]]:
    """RFC 4180 parse of UTF-8 bytes (line breaks in values kept as they are)."""
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))

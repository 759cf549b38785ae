"""Input generators of the reliability tests: good lead files and hostile files.

Good files carry rows whose every value is known, so a test can look each row up in the
simulator's lead store afterwards. Hostile files are the ones issue 9 lists; each generator
writes into a folder and returns what it made, with the expected outcome.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

HEADER = ("email", "firstName", "lastName", "company", "leadScore")
_FIRST = ("Zoë", "Ana María", "Jean-Luc", "O'Brien", "Łukasz", "山田", "Chloé", "Søren")
_LAST = ("Müller", "Nguyễn", "Smith, Jr.", 'The "Boss"', "García", "Dubois", "Øster")
_COMPANY = ("Acme, Inc.", "Globex", "Initech EMEA", "Umbrella; Ltd", "Stark Industries")


@dataclass
class LeadFile:
    """A lead file written by `write_lead_file` and the rows it should produce.

    Attributes:
        path: where it was written.
        good: the rows that must reach Marketo, as ``{field: value}`` keyed by email.
        bad: rows that must be reported (failed or rejected), by source line number.
        rows: data rows in the file.
    """

    path: Path
    good: dict[str, dict[str, str]] = field(default_factory=dict)
    bad: list[int] = field(default_factory=list)
    rows: int = 0


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def lead_row(tag: str, i: int, j: int, rng: random.Random) -> dict[str, str]:
    """One valid lead whose email is unique for ``(tag, i, j)``."""
    return {
        "email": f"{tag}-{i:03d}-{j:05d}@example.com",
        "firstName": rng.choice(_FIRST),
        "lastName": rng.choice(_LAST),
        "company": rng.choice(_COMPANY),
        "leadScore": str(rng.randint(0, 100)),
    }


def write_lead_file(
    folder: Path,
    name: str,
    *,
    tag: str,
    index: int,
    rows: int,
    rng: random.Random,
    bad_every: int = 0,
) -> LeadFile:
    """Write a CSV (CRLF, RFC 4180) of ``rows`` data rows; some rows bad on purpose.

    Args:
        folder: destination folder (created).
        name: file name.
        tag: email prefix that keeps runs apart.
        index: file number, part of every email.
        rows: data rows.
        rng: seeded randomness for the values.
        bad_every: when > 0, every ``bad_every``-th row is bad: alternately an empty email
            (lookup value missing) and a leadScore that is not an integer.

    Returns:
        The `LeadFile`, with source line numbers of the bad rows (header = line 1; values
        with a line break take two lines).
    """
    folder.mkdir(parents=True, exist_ok=True)
    out = LeadFile(folder / name, rows=rows)
    lines = [",".join(HEADER)]
    line_no = 2
    bad_kind = 0
    for j in range(rows):
        row = lead_row(tag, index, j, rng)
        if bad_every and j % bad_every == bad_every - 1:
            if bad_kind % 2 == 0:
                row["email"] = ""
            else:
                row["leadScore"] = "not-a-number"
            bad_kind += 1
            out.bad.append(line_no)
        else:
            out.good[row["email"]] = row
        text = ",".join(_csv_field(row[h]) for h in HEADER)
        lines.append(text)
        line_no += 1 + text.count("\n")
    out.path.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return out


@dataclass
class Hostile:
    """One hostile input placed in the inbox.

    Attributes:
        name: the entry's name in the inbox.
        expect: ``report`` (it must end with exactly one report), ``ignored`` (it must not
            get a report and must be left alone), or ``either`` (documented either way).
        good: rows that must reach Marketo if the file is accepted (names with odd
            characters carry valid rows).
        statuses: acceptable report statuses when a report is expected.
    """

    name: str
    expect: str
    good: dict[str, dict[str, str]] = field(default_factory=dict)
    statuses: frozenset[str] = frozenset(
        {"complete", "partial", "rejected", "empty", "duplicate"}
    )


REJECTED_LIKE = frozenset({"rejected", "empty", "partial"})


def write_hostile_files(inbox: Path, outside: Path, *, big: bool = True) -> list[Hostile]:
    """Write every hostile entry of issue 9 into ``inbox``; ``outside`` is a folder beyond it.

    Args:
        inbox: the daemon's inbox.
        outside: a folder outside the inbox (the symlink target lives there).
        big: include the 50 MB single line and the big file with invalid UTF-8 in its middle.

    Returns:
        One `Hostile` per entry.
    """
    rng = random.Random(20261130)
    inbox.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    made: list[Hostile] = []

    (inbox / "binary.csv").write_bytes(
        b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(64 * 1024))
    )
    made.append(Hostile("binary.csv", "report", statuses=frozenset({"rejected"})))

    (inbox / "zero-bytes.csv").write_bytes(b"")
    made.append(Hostile("zero-bytes.csv", "report", statuses=frozenset({"empty"})))

    if big:
        with (inbox / "one-line-50mb.csv").open("wb") as fh:
            chunk = b"email" + b"x" * (1024 * 1024 - 5)
            for _ in range(50):
                fh.write(chunk)
        made.append(Hostile("one-line-50mb.csv", "report", statuses=REJECTED_LIKE))

    header = ["email"] + [f"column{c:05d}" for c in range(1, 10_000)]
    row = ["wide@example.com"] + ["v"] * 9_999
    (inbox / "ten-thousand-columns.csv").write_text(
        ",".join(header) + "\r\n" + ",".join(row) + "\r\n", encoding="utf-8"
    )
    made.append(Hostile("ten-thousand-columns.csv", "report", statuses=frozenset({"rejected"})))

    (inbox / "nul-bytes.csv").write_bytes(
        b"email,firstName\r\nnul1@example.com,Al\x00ice\r\nnul2@example.com,B\x00\x00b\r\n"
    )
    made.append(Hostile("nul-bytes.csv", "report", statuses=frozenset({"rejected"})))

    if big:
        lines = ["email,firstName,lastName"]
        for j in range(60_000):
            lines.append(f"bigbad-{j:06d}@example.com,Zoë{j},Müller")
        data = ("\r\n".join(lines) + "\r\n").encode("utf-8")
        middle = data.index(b"\r\n", len(data) // 2) + 2
        data = data[:middle] + b"broken\xff\xfe@example.com,\xc3(,x\r\n" + data[middle:]
        (inbox / "invalid-utf8-in-the-middle.csv").write_bytes(data)
        made.append(Hostile("invalid-utf8-in-the-middle.csv", "report"))

    for index, name in enumerate(
        (
            "name with spaces.csv",
            "ünïcødé-名前-😀.csv",
            "-leading-dash.csv",
            "--.csv",
            "..two-dots.csv",
            "a..b.csv",
        )
    ):
        lead = write_lead_file(
            inbox, name, tag="hostile-name", index=index, rows=2, rng=rng
        )
        if name.startswith("."):
            # Documented (intake/watcher.py): names starting with "." are hidden, ignored.
            made.append(Hostile(name, "ignored"))
        else:
            made.append(Hostile(name, "report", good=lead.good,
                                statuses=frozenset({"complete"})))

    target = outside / "outside-secret.csv"
    target.write_text("email,firstName\r\noutside@example.com,Eve\r\n", encoding="utf-8")
    os.symlink(target, inbox / "symlink-outside.csv")
    # Documented (intake/watcher.py): symlinks are not followed, they are left alone.
    made.append(Hostile("symlink-outside.csv", "ignored"))

    folder = inbox / "a-directory.csv"
    folder.mkdir()
    made.append(Hostile("a-directory.csv", "ignored"))
    return made

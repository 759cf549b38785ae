"""The demo's lead files: what users really send, generated with Faker from a fixed seed.

Every file is built from pools of Faker values (names, companies, places) combined by a seeded
``random.Random``, so 25 MB is written in about a second and two runs write the same bytes.
Emails are unique across all files (a running number), so the simulator's lead count after
the demo equals the rows imported. Each file carries the outcome it must reach
(`Expected`): the demo and its tests compare the reports against it.
"""

from __future__ import annotations

import csv
import io
import random
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from faker import Faker

#: Seed of Faker and of the row generator: the same files on every run.
DEMO_SEED = 20260302
#: Size of the big CSV (bytes) in a full run: over two of Marketo's 10 MB uploads.
BIG_FILE_BYTES = 25_000_000
#: Size of the big CSV (bytes) with ``--small``.
SMALL_BIG_FILE_BYTES = 300_000
#: The inbox subfolder of the demo route and the static list its leads join.
ROUTE_FOLDER = "webinar"
ROUTE_LIST_ID = 1001

_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "nl_NL", "it_IT")
_INDUSTRIES = (
    "Software", "Manufacturing", "Healthcare", "Financial Services", "Retail", "Education",
    "Logistics", "Energy", "Telecommunications", "Media", "Hospitality", "Construction",
)
_SOURCES = (
    "Website", "Trade Show", "Webinar", "Partner Referral", "Paid Search", "Content Syndication",
    "Cold Outreach", "Customer Referral",
)
BIG_HEADER = (
    "email", "firstName", "lastName", "title", "company", "phone", "address", "city", "state",
    "postalCode", "country", "website", "industry", "numberOfEmployees", "annualRevenue",
    "leadScore", "leadSource", "unsubscribed", "dateOfBirth",
)


@dataclass(frozen=True, slots=True)
class Expected:
    """The outcome a demo file must reach: the report's ``status`` and ``rows`` figures."""

    #: ``complete``, ``partial``, ``empty``, ...
    status: str
    #: Data rows in the file (``rows.total``).
    total: int
    #: Rows rejected locally by intake (wrong type, empty email, wrong field count).
    rejected: int = 0
    #: Rows Marketo imports with a warning (invalid email, truncated value).
    warned: int = 0
    #: Rows Marketo refuses (none of the demo's rows get that far).
    failed: int = 0
    #: Fewest uploads the file must be split into.
    min_uploads: int = 0

    @property
    def imported(self) -> int:
        """Rows that must reach Marketo's lead store (warned rows included)."""
        return self.total - self.rejected - self.failed


@dataclass(frozen=True, slots=True)
class DemoFile:
    """One generated file and what it shows.

    Attributes:
        name: path relative to the inbox (``webinar/...`` for the route).
        shows: one sentence: what the file demonstrates.
        expected: the outcome it must reach.
        size_bytes: its size on disk.
        spot: one lead that must arrive intact: ``{"email": ..., "firstName": ...,
            "lastName": ...}`` (empty for the header-only file).
    """

    name: str
    shows: str
    expected: Expected
    size_bytes: int
    spot: dict[str, str] = field(default_factory=dict)


def ascii_slug(text: str) -> str:
    """Return ``text`` as lowercase ASCII letters and digits only (``Müller`` -> ``muller``)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed.lower() if ch.isascii() and ch.isalnum())


class LeadPool:
    """Pools of Faker values and a seeded generator that combines them into leads.

    Args:
        seed: seeds Faker and the generator.
        pool_size: how many values of each kind Faker makes.
    """

    def __init__(self, seed: int = DEMO_SEED, pool_size: int = 1500) -> None:
        Faker.seed(seed)
        self.rng = random.Random(seed)
        fake = Faker(list(_LOCALES))
        fake.seed_instance(seed)
        us = Faker("en_US")
        us.seed_instance(seed)
        self.first = [fake.first_name() for _ in range(pool_size)]
        self.last = [fake.last_name() for _ in range(pool_size)]
        self.companies = [fake.company() for _ in range(pool_size)]
        self.titles = [us.job() for _ in range(pool_size // 2)]
        self.phones = [us.phone_number() for _ in range(pool_size)]
        self.streets = [us.street_address() for _ in range(pool_size)]
        self.suites = [us.secondary_address() for _ in range(100)]
        self.places = [(us.city(), us.state_abbr(), us.postcode()) for _ in range(pool_size)]
        self.domains = [us.domain_name() for _ in range(pool_size // 3)]
        self.birthdays = [us.date_of_birth(minimum_age=22, maximum_age=70).isoformat()
                          for _ in range(400)]
        self._faker = {"de_DE": Faker("de_DE"), "fr_FR": Faker("fr_FR"), "ja_JP": Faker("ja_JP")}
        for extra in self._faker.values():
            extra.seed_instance(seed)
        self.counter = 0

    def email(self, first: str, last: str) -> str:
        """A unique, plausible email for a person (a running number keeps it unique)."""
        self.counter += 1
        local = f"{ascii_slug(first)[:20]}.{ascii_slug(last)[:20]}".strip(".") or "lead"
        return f"{local}{self.counter}@{self.rng.choice(self.domains)}"

    def person(self, locale: str | None = None) -> tuple[str, str]:
        """A first and last name, from the mixed pools or from one locale's Faker."""
        if locale is None:
            return self.rng.choice(self.first), self.rng.choice(self.last)
        fake = self._faker[locale]
        return fake.first_name(), fake.last_name()

    def big_row(self) -> list[str]:
        """One row of `BIG_HEADER`: a full CRM record; about 1 in 150 has a two-line address."""
        rng = self.rng
        first, last = self.person()
        city, state, postcode = rng.choice(self.places)
        address = rng.choice(self.streets)
        if rng.random() < 1 / 150:
            address = f"{address}\n{rng.choice(self.suites)}"
        company = rng.choice(self.companies)
        return [
            self.email(first, last), first, last, rng.choice(self.titles), company,
            rng.choice(self.phones), address, city, state, postcode, "United States",
            f"https://www.{rng.choice(self.domains)}", rng.choice(_INDUSTRIES),
            str(rng.choice((5, 12, 40, 85, 150, 420, 1200, 5000, 25000))),
            f"{rng.randrange(100, 500_000) * 1000:.2f}", str(rng.randrange(0, 100)),
            rng.choice(_SOURCES), rng.choice(("false", "false", "false", "true")),
            rng.choice(self.birthdays) if rng.random() < 0.3 else "",
        ]


def _csv_text(rows: list[list[str]], delimiter: str = ",", newline: str = "\r\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator=newline).writerows(rows)
    return buf.getvalue()


def write_big_csv(path: Path, pool: LeadPool, target_bytes: int) -> tuple[int, dict[str, str]]:
    """Write a comma CSV of `BIG_HEADER` rows until it holds at least ``target_bytes``.

    Returns:
        (data rows written, the first lead as a spot check).
    """
    rows = 0
    first: dict[str, str] = {}
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(_csv_text([list(BIG_HEADER)]))
        written = out.tell()
        while written < target_bytes:
            batch = [pool.big_row() for _ in range(500)]
            if not first:
                first = {"email": batch[0][0], "firstName": batch[0][1], "lastName": batch[0][2]}
            text = _csv_text(batch)
            out.write(text)
            written += len(text.encode("utf-8"))
            rows += len(batch)
    return rows, first


def _people(pool: LeadPool, count: int, locale: str | None = None,
            keep: Callable[[str], bool] = lambda _: True) -> Iterator[tuple[str, str, str]]:
    made = 0
    while made < count:
        first, last = pool.person(locale)
        if keep(first + last):
            made += 1
            yield pool.email(first, last), first, last


def _cp1252_ok(text: str) -> bool:
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


def _spot(row: list[str]) -> dict[str, str]:
    return {"email": row[0], "firstName": row[1], "lastName": row[2]}


def write_demo_files(inbox: Path, *, small: bool, seed: int = DEMO_SEED) -> list[DemoFile]:
    """Write the demo's lead files into ``inbox`` (and its route subfolder).

    Args:
        inbox: the daemon's inbox; ``webinar/`` is created inside it.
        small: a few hundred KB in all (tests) instead of about 26 MB.
        seed: seeds every value.

    Returns:
        The files written, in the order the demo lists them.
    """
    pool = LeadPool(seed)
    rng = pool.rng
    n = 40 if small else 2000
    files: list[DemoFile] = []

    def add(name: str, data: bytes, shows: str, expected: Expected,
            spot: dict[str, str] | None = None) -> None:
        path = inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append(DemoFile(name, shows, expected, len(data), spot or {}))

    # 1. The big export: split into several uploads under Marketo's 10 MB body limit.
    big = inbox / "crm-export-2026-q1.csv"
    rows, first = write_big_csv(big, pool, SMALL_BIG_FILE_BYTES if small else BIG_FILE_BYTES)
    files.append(DemoFile(
        big.name,
        "a 25 MB CRM export (quoted multi-line addresses): split into uploads under 10 MB",
        Expected("complete", rows, min_uploads=3), big.stat().st_size, first))

    # 2. A TSV from a CRM: column names differ from Marketo's only in case.
    header = ["Email", "FirstName", "LastName", "Title", "Company", "Phone", "LeadSource"]
    body = [[e, f, la, rng.choice(pool.titles), rng.choice(pool.companies),
             rng.choice(pool.phones), "CRM Sync"] for e, f, la in _people(pool, n)]
    add("salesforce-contacts.tsv", _csv_text([header, *body], "\t", "\n").encode(),
        "tab-separated CRM export; headers matched to REST names case-insensitively",
        Expected("complete", len(body)), _spot(body[0]))

    # 3. European Excel: semicolons, Windows-1252, accents and a euro sign.
    header = ["email", "firstName", "lastName", "company", "city", "country", "leadSource"]
    body = [[e, f, la, pool._faker["de_DE"].company(), pool._faker["de_DE"].city(),
             "Deutschland", "Messe München 2026 – Stand 4 (Eintritt 25 €)"]
            for e, f, la in _people(pool, n, "de_DE", _cp1252_ok)]
    body = [r for r in body if _cp1252_ok("".join(r))]
    add("messe-muenchen-leads.csv", _csv_text([header, *body], ";").encode("cp1252"),
        "European Excel: ';'-separated Windows-1252 with umlauts and €, decoded to UTF-8",
        Expected("complete", len(body)), _spot(body[0]))

    # 4. Excel "Unicode text": UTF-16LE with BOM, tabs, CRLF, Japanese and German names.
    header = ["email", "firstName", "lastName", "company", "city", "country"]
    body = []
    for i, (e, f, la) in enumerate(_people(pool, n, "ja_JP")):
        if i % 3 == 2:
            f, la = pool.person("de_DE")
            body.append([e, f, la, pool._faker["de_DE"].company(), "Köln", "Deutschland"])
        else:
            body.append([e, f, la, pool._faker["ja_JP"].company(), pool._faker["ja_JP"].city(),
                         "Japan"])
    text = _csv_text([header, *body], "\t")
    add("excel-unicode-text.txt", b"\xff\xfe" + text.encode("utf-16-le"),
        "Excel 'Unicode text': UTF-16 with BOM, tab-separated, Japanese and German names",
        Expected("complete", len(body)), _spot(body[0]))

    # 5. Display names in the header, Excel "CSV UTF-8" (with a BOM).
    header = ["Email Address", "First Name", "Last Name", "Company Name", "Job Title",
              "Phone Number", "Country", "Lead Source"]
    body = [[e, f, la, rng.choice(pool.companies), rng.choice(pool.titles),
             rng.choice(pool.phones), "United States", "Trade Show"]
            for e, f, la in _people(pool, n)]
    add("trade-show-badge-scans.csv", b"\xef\xbb\xbf" + _csv_text([header, *body]).encode(),
        "display names ('First Name', 'Email Address') mapped to REST names; UTF-8 BOM stripped",
        Expected("complete", len(body)), _spot(body[0]))

    # 6. Bad rows: some rejected locally, some imported by Marketo with a warning.
    files.append(_write_bad_rows(inbox, pool, n))

    # 7. A header and nothing else.
    add("empty-export.csv", b"email,firstName,lastName,company\r\n",
        "a header with no rows: reported 'empty', nothing sent", Expected("empty", 0))

    # 8. A route: files in inbox/webinar/ are added to static list 1001.
    header = ["email", "firstName", "lastName", "company", "title", "country"]
    body = [[e, f, la, rng.choice(pool.companies), rng.choice(pool.titles), "United States"]
            for e, f, la in _people(pool, n)]
    add(f"{ROUTE_FOLDER}/webinar-attendees-2026-03.csv", _csv_text([header, *body]).encode(),
        f"a route: files in inbox/{ROUTE_FOLDER}/ go to static list {ROUTE_LIST_ID} (listId)",
        Expected("complete", len(body)), _spot(body[0]))
    return files


#: How each bad row is spoiled, in rotation: (kind, column, value); kind ``reject`` means
#: intake refuses the row, ``warn`` means Marketo imports it with a warning. ``{i}`` keeps
#: invalid emails unique (they are still lookup values).
_SPOILERS: tuple[tuple[str, str, str], ...] = (
    ("reject", "numberOfEmployees", "abc"),
    ("warn", "email", "mary.jones{i}(at)example.com"),
    ("reject", "email", ""),
    ("reject", "leadScore", "high"),
    ("warn", "email", "tom.baker{i}@"),
    ("reject", "email", "NULL"),
    ("reject", "unsubscribed", "maybe"),
    ("warn", "title", "Head of " + "Global Strategic Partnerships and Alliances, " * 7),
    ("reject", "fields", "extra"),
    ("warn", "email", "sales{i}@@example.com"),
)


def _write_bad_rows(inbox: Path, pool: LeadPool, n: int) -> DemoFile:
    """Write ``newsletter-signups.csv``: every fourth row spoiled by one of `_SPOILERS`."""
    rng = pool.rng
    header = ["email", "firstName", "lastName", "company", "title", "numberOfEmployees",
              "leadScore", "unsubscribed"]
    rows: list[list[str]] = []
    rejected = warned = 0
    for i, (email, first, last) in enumerate(_people(pool, n)):
        row = [email, first, last, rng.choice(pool.companies), rng.choice(pool.titles),
               str(rng.choice((10, 50, 250, 1000))), str(rng.randrange(0, 100)), "false"]
        if i % 4 == 3:
            kind, column, value = _SPOILERS[(i // 4) % len(_SPOILERS)]
            if column == "fields":
                row.append(value)
            else:
                row[header.index(column)] = value.format(i=i)
            rejected += kind == "reject"
            warned += kind == "warn"
        rows.append(row)
    data = _csv_text([header, *rows]).encode()
    (inbox / "newsletter-signups.csv").write_bytes(data)
    return DemoFile(
        "newsletter-signups.csv",
        "bad rows: wrong types and empty emails rejected locally with their row numbers; "
        "invalid emails and over-long titles imported with a warning",
        Expected("partial", len(rows), rejected=rejected, warned=warned),
        len(data), _spot(rows[0]))

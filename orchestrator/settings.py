"""One frozen settings object, built once in the CLI and passed down.

Sources, later wins: defaults, a TOML file (``--config PATH`` or ``LEADFLOW_CONFIG``),
environment variables ``LEADFLOW_<SECTION>__<KEY>``, then CLI flags (passed as overrides).
Every duration is in seconds and accepts fractions, so tests and the demo can run fast.
"""

from __future__ import annotations

import codecs
import contextvars
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from orchestrator.errors import ConfigError

#: The default Marketo endpoint: the simulator that ``leadflow simulator`` serves.
DEFAULT_BASE_URL = "http://127.0.0.1:8780"
#: Marketo's bulk body limit is 10 MB; we keep the whole multipart body under this (bytes).
DEFAULT_MAX_UPLOAD_BYTES = 9_500_000
#: docs/reference/marketo-api.md §9.2: a share of Marketo's 100 calls / 20 s.
DEFAULT_CALLS_PER_20S = 50
#: Marketo's rate window, seconds (docs/reference/marketo-api.md §6).
DEFAULT_RATE_WINDOW_S = 20.0
#: Lookup values that mean "no value" (compared trimmed and case-insensitively), by who
#: writes them: spreadsheets (Excel, Google Sheets, LibreOffice: ``#N/A``, ``#NULL!``, ``-``,
#: an empty quoted string), pandas' ``read_csv`` default ``na_values`` (pandas 2.x
#: ``STR_NA_VALUES``) plus numpy/pandas ``NaT``, JavaScript (``undefined``), R (``NA``), SQL
#: dumps (``NULL``; ``\\N`` from MySQL ``SELECT ... INTO OUTFILE`` and PostgreSQL ``COPY``),
#: Ruby/Lua (``nil``).
DEFAULT_NULL_TOKENS: tuple[str, ...] = (
    # spreadsheets
    "#N/A", "N/A", "NA", "#NULL!", "NULL", "None", "nil", "-", "--", '""', "''",
    # pandas read_csv defaults (the empty string is empty anyway)
    "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN", "<NA>", "NaN", "-NaN",
    # numpy / pandas datetimes, JavaScript, SQL dumps
    "NaT", "undefined", "\\N",
)
#: Bytes of ``limits.max_upload_bytes`` kept for the multipart framing around an upload file
#: (boundaries, part headers, form fields: several times the ~300 bytes the client sends).
MULTIPART_OVERHEAD = 1024
#: Default of ``import.pack_wait_s``: the longest a queued file waits for others to share its
#: Marketo job while our jobs hold Marketo's importing slots and the next place in line.
DEFAULT_PACK_WAIT_S = 60.0
ENV_PREFIX = "LEADFLOW_"
CONFIG_ENV = "LEADFLOW_CONFIG"
#: The name of the one Marketo instance of a simple setup (``[marketo]`` without ``name``).
DEFAULT_INSTANCE_NAME = "default"
#: What an instance's name may be: 1 to 40 lower-case letters, digits, ``_`` and ``-``.
INSTANCE_NAME_PATTERN = re.compile(r"[a-z0-9_-]{1,40}")

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "leadflow_config_file", default=None
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MarketoSettings(_Section):
    """How to reach one Marketo instance (docs/reference/marketo-api.md §1 and §6).

    ``[marketo]`` is the one instance of a simple setup; each ``[[instances]]`` table is an
    ``InstanceSettings``, a subclass with the same keys plus its own limits.
    """

    #: The instance's name: 1 to 40 of ``a-z``, ``0-9``, ``_``, ``-``. Routes name their
    #: instance with it (``routes[].instance``); reports and logs show it.
    name: str = DEFAULT_INSTANCE_NAME
    #: REST endpoint, e.g. ``https://123-ABC-456.mktorest.com``; a trailing ``/rest`` or ``/``
    #: is stripped.
    base_url: str = DEFAULT_BASE_URL
    #: Identity endpoint; defaults to ``<base_url>/identity``.
    identity_url: str | None = None
    #: Client id of the LaunchPoint custom service.
    client_id: str = ""
    #: Client secret; or put it in ``client_secret_file``.
    client_secret: SecretStr | None = None
    #: A file whose first line is the client secret (e.g. a systemd credential).
    client_secret_file: Path | None = None
    #: Seconds to open a connection.
    connect_timeout_s: PositiveFloat = 10.0
    #: Seconds for a whole non-upload call.
    request_timeout_s: PositiveFloat = 60.0
    #: Seconds for a whole upload call (up to 10 MB of body).
    upload_timeout_s: PositiveFloat = 300.0
    #: Attempts for a call that fails transiently (5xx, 604, 608, 611, timeouts, ...).
    retry_attempts: PositiveInt = 6
    #: First backoff after a transient error, seconds (doubles, with jitter).
    retry_base_s: NonNegativeFloat = 1.0
    #: Longest backoff between two attempts, seconds.
    retry_max_s: NonNegativeFloat = 60.0
    #: Refresh the token when fewer than this many seconds of its lifetime remain.
    token_refresh_margin_s: NonNegativeFloat = 60.0

    @field_validator("base_url", "identity_url")
    @classmethod
    def _strip_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        value = re.sub(r"/rest$", "", value).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not INSTANCE_NAME_PATTERN.fullmatch(value):
            raise ValueError(
                f"instance name {value!r} must be 1 to 40 characters of lower-case a-z, "
                "0-9, '_' and '-'"
            )
        return value

    @property
    def identity(self) -> str:
        """The identity endpoint URL, without a trailing slash."""
        return self.identity_url or f"{self.base_url}/identity"

    def _setting_key(self, key: str) -> str:
        """The dotted name of one of these settings in messages, e.g. ``marketo.client_id``."""
        return f"marketo.{key}"

    def _missing_hint(self, key: str) -> str:
        """How to set a missing credential, for messages (``client_id`` or ``client_secret``)."""
        if key == "client_id":
            return f"set {ENV_PREFIX}MARKETO__CLIENT_ID or marketo.client_id"
        return f"set {ENV_PREFIX}MARKETO__CLIENT_SECRET or marketo.client_secret_file"

    def secret(self) -> str:
        """Return the client secret from ``client_secret`` or ``client_secret_file``.

        Raises:
            ConfigError: no ``client_id``; neither secret setting is set; or the file cannot
                be read or is empty. Its key is ``marketo.<key>`` (``instances.<name>.<key>``
                for an ``[[instances]]`` table).
        """
        if not self.client_id.strip():
            raise ConfigError(
                self._setting_key("client_id"), f"missing: {self._missing_hint('client_id')}"
            )
        if self.client_secret is not None and self.client_secret.get_secret_value():
            return self.client_secret.get_secret_value()
        if self.client_secret_file is not None:
            try:
                text = self.client_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    self._setting_key("client_secret_file"),
                    f"cannot read {self.client_secret_file}: {exc.strerror}",
                ) from exc
            if text:
                return text.splitlines()[0].strip()
            raise ConfigError(
                self._setting_key("client_secret_file"), f"{self.client_secret_file} is empty"
            )
        raise ConfigError(
            self._setting_key("client_secret"), f"missing: {self._missing_hint('client_secret')}"
        )


class PathSettings(_Section):
    """Folders and the database; relative paths are resolved against the working directory."""

    #: Operators drop files here; subfolders are routes.
    inbox: Path = Path("var/inbox")
    #: Files being processed and their prepared uploads.
    work: Path = Path("var/work")
    #: Source files whose import finished.
    archive: Path = Path("var/archive")
    #: Source files that could not be imported at all.
    rejected: Path = Path("var/rejected")
    #: One folder per file: report.json, failures.csv, warnings.csv.
    results: Path = Path("var/results")
    #: The SQLite database (the FIFO of uploads and all state).
    database: Path = Path("var/leadflow.db")

    @model_validator(mode="after")
    def _absolute(self) -> PathSettings:
        for name in ("inbox", "work", "archive", "rejected", "results", "database"):
            value: Path = getattr(self, name)
            object.__setattr__(self, name, value.expanduser().absolute())
        return self


class StoreSettings(_Section):
    """Where the state lives: SQLite (the default) or a PostgreSQL shared by several nodes."""

    #: ``postgresql://user[:password]@host[:port]/dbname[?sslmode=...]``, or unset for SQLite
    #: at ``paths.database``. Env: ``LEADFLOW_STORE__URL``.
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "store.url must start with postgresql:// (leave it unset for SQLite at "
                "paths.database)"
            )
        return value.strip()


class LimitSettings(_Section):
    """Our share of the instance's limits (docs/reference/marketo-api.md §2.4, §6 and §9)."""

    #: Most of our import jobs queued-or-importing at Marketo at once (Marketo's queue: 10).
    import_slots: int = Field(default=10, ge=1, le=10)
    #: Whole multipart body of one upload must stay under this many bytes (1024 of them are
    #: kept for the multipart framing, so at least 1500).
    max_upload_bytes: int = Field(default=DEFAULT_MAX_UPLOAD_BYTES, ge=1500, le=10_485_760)
    #: Calls in any sliding 20-second window (Marketo allows 100 for all integrations).
    calls_per_20s: int = Field(default=DEFAULT_CALLS_PER_20S, ge=1, le=100)
    #: Length of that sliding window, seconds. Marketo's is 20; change it only for a test
    #: double or a gateway with a window of its own (``calls_per_20s`` then applies to it).
    rate_window_s: PositiveFloat = DEFAULT_RATE_WINDOW_S
    #: Calls in flight at once (Marketo allows 10 for all integrations).
    max_concurrent_calls: int = Field(default=5, ge=1, le=10)
    #: Calls per day (America/Chicago day) we allow ourselves.
    daily_call_budget: PositiveInt = 10_000

    @property
    def max_file_bytes(self) -> int:
        """The largest upload file (bytes) whose multipart body stays under the limit."""
        return self.max_upload_bytes - MULTIPART_OVERHEAD


class InstanceSettings(MarketoSettings):
    """One ``[[instances]]`` table: a Marketo instance with its own credentials and limits.

    The keys of ``[marketo]`` (``name`` required here) plus ``limits``, the ``[limits]`` keys
    for this instance alone: Marketo's limits (calls per 20 s, calls in flight, the daily
    quota, the import queue) are per instance, so each instance gets its own share. A
    subclass of ``MarketoSettings``: it goes wherever one is expected
    (``Settings.for_instance`` puts it in ``marketo``).
    """

    #: The instance's name (required): routes name it in ``routes[].instance``.
    name: str
    #: This instance's limits, as ``[limits]`` (defaults: the ``[limits]`` defaults, not the
    #: values of the top-level ``[limits]`` table).
    limits: LimitSettings = LimitSettings()

    def _setting_key(self, key: str) -> str:
        """The dotted name of one of these settings in messages: ``instances.<name>.<key>``."""
        return f"instances.{self.name}.{key}"

    def _missing_hint(self, key: str) -> str:
        """How to set a missing credential, for messages (``client_id`` or ``client_secret``)."""
        if key == "client_id":
            return f"set client_id in the [[instances]] table named {self.name!r}"
        return (
            f"set client_secret_file (or client_secret) in the [[instances]] table named "
            f"{self.name!r}"
        )


class PollingSettings(_Section):
    """How often to ask for a batch's status, seconds.

    See docs/reference/marketo-api.md §2.4: 5 to 30 s.
    """

    #: Shortest interval between two status calls for one batch, seconds.
    min_interval_s: PositiveFloat = 5.0
    #: Longest interval between two status calls for a batch whose status can change
    #: (importing, or among our first 2 queued), seconds; one further back in Marketo's FIFO
    #: waits up to 10 times this (see ``orchestrator/scheduling/pacing.py``).
    max_interval_s: PositiveFloat = 30.0

    @model_validator(mode="after")
    def _ordered(self) -> PollingSettings:
        if self.max_interval_s < self.min_interval_s:
            raise ValueError("max_interval_s must be >= min_interval_s")
        return self


class IntakeSettings(_Section):
    """The watched folder and file preparation."""

    #: Files claimed, prepared and enqueued together (one worker-thread call, one transaction).
    batch_files: int = Field(default=256, ge=1, le=10_000)
    #: A file is taken once its size and mtime have not changed for this many seconds.
    stable_s: NonNegativeFloat = 5.0
    #: Full rescan of the inbox every this many seconds (network shares send no events).
    rescan_interval_s: PositiveFloat = 10.0
    #: A file whose claim or preparation failed because of its folders (not its content:
    #: the work folder cannot be written, the disk is full, ...) stays where it is and is
    #: tried again after ``rescan_interval_s``, doubling up to this many seconds.
    environment_retry_max_s: PositiveFloat = 300.0
    #: Detect the encoding of a file that is neither BOM-marked nor UTF-8; if false, reject it.
    allow_encoding_guess: bool = True
    #: Encoding of files that are neither BOM-marked nor valid UTF-8 (a Python codec name such
    #: as ``cp1252`` or ``cp1250``); None detects it (Windows-1252 preferred among Latin pages).
    encoding: str | None = None
    #: Values that count as empty in the lookup column: compared after trimming, ignoring
    #: case (``DEFAULT_NULL_TOKENS``: what spreadsheets, pandas, JavaScript, R and SQL dumps
    #: write for a missing value).
    null_tokens: tuple[str, ...] = DEFAULT_NULL_TOKENS
    #: Seconds the lead describe (field catalogue) is cached before it is fetched again.
    describe_refresh_s: PositiveFloat = 86_400.0

    @field_validator("null_tokens")
    @classmethod
    def _trimmed_tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(token.strip() for token in value))

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return codecs.lookup(value.strip()).name
        except LookupError:
            raise ValueError(f"not a known encoding: {value!r}") from None


class ImportKind(StrEnum):
    """Which bulk import endpoint an upload goes to (docs/reference/marketo-api.md §2 and §4)."""

    #: ``POST /bulk/v1/leads.json``.
    LEADS = "leads"
    #: ``POST /bulk/v1/program/{programId}/members/import.json``.
    PROGRAM_MEMBERS = "program_members"
    #: ``POST /bulk/v1/customobjects/{apiName}/import.json``.
    CUSTOM_OBJECTS = "custom_objects"


class ImportOptions(_Section):
    """Import options of a route or of the inbox root (docs/reference/marketo-api.md §2.1)."""


    #: Marketo ``lookupField``: the dedupe field of the upsert.
    lookup_field: str = "email"
    #: Marketo ``listId``: a static list the imported leads are added to.
    list_id: int | None = None
    #: Marketo ``partitionName``: the lead partition to import into.
    partition_name: str | None = None
    #: Files may share Marketo jobs with other files of the same options and columns
    #: (packing); false: every chunk of a file is a job of its own.
    pack: bool = True


class ImportSettings(ImportOptions):
    """Import options for files at the inbox root, and packing for every route."""

    #: The longest a queued file waits for others to share its Marketo job while our jobs
    #: hold Marketo's 2 importing slots and the next place in line, seconds; 0: never held.
    pack_wait_s: NonNegativeFloat = DEFAULT_PACK_WAIT_S


class Route(ImportOptions):
    """Import options for files dropped in one subfolder of the inbox.

    ``lookup_field`` of a ``custom_objects`` route: when left out, the object's dedupe fields
    from Marketo's describe of it (``dedupeFields``) are the key columns (a custom object
    import has no ``lookupField``; the lead default ``email`` does not apply).
    """

    #: The route's name, shown in reports.
    name: str
    #: Subfolder of the inbox (relative); defaults to ``name``.
    folder: str | None = None
    #: Which import endpoint.
    kind: ImportKind = ImportKind.LEADS
    #: ``programId`` for program member imports.
    program_id: int | None = None
    #: ``programMemberStatus`` for program member imports, e.g. ``On List``.
    program_member_status: str | None = None
    #: ``apiName`` of the custom object for custom object imports.
    object_api_name: str | None = None
    #: The Marketo instance this route imports into (an ``[[instances]]`` name, or
    #: ``marketo.name``); may be left out while one instance is configured, required with two
    #: or more.
    instance: str | None = None

    @property
    def subfolder(self) -> str:
        """The inbox subfolder this route watches."""
        return (self.folder or self.name).strip("/")

    @model_validator(mode="after")
    def _kind_options(self) -> Route:
        if self.kind is ImportKind.PROGRAM_MEMBERS and (
            self.program_id is None or not self.program_member_status
        ):
            raise ValueError("program_members routes need program_id and program_member_status")
        if self.kind is ImportKind.CUSTOM_OBJECTS and not self.object_api_name:
            raise ValueError("custom_objects routes need object_api_name")
        return self


class DaemonSettings(_Section):
    """Scheduling, retries and shutdown of ``leadflow run``."""

    #: Seconds in-flight calls get to finish after SIGTERM/SIGINT before they are cancelled.
    shutdown_grace_s: NonNegativeFloat = 10.0
    #: Several nodes on one PostgreSQL (``store.url``): seconds a node's lease on a Marketo
    #: instance lasts without renewal; another node takes over within about this long after
    #: the holder dies. Renewed every third of it. Ignored on SQLite (one node).
    lease_s: PositiveFloat = 15.0
    #: This node's name in ``leadflow status`` (default ``<host>:<pid>``).
    node_id: str | None = None
    #: Uploads of one batch that ended ``Failed`` before the file is ``partial``.
    max_batch_attempts: PositiveInt = 3
    #: First wait after a ``1016`` Too many imports, seconds (doubles, jittered, capped).
    queue_full_backoff_s: PositiveFloat = 5.0
    #: Longest wait after ``1016``, seconds.
    queue_full_backoff_max_s: PositiveFloat = 120.0
    #: Seconds before writing a report again after the results folder could not be written.
    results_retry_s: PositiveFloat = 30.0
    #: Seconds between idle loop ticks when nothing wakes the loops.
    idle_tick_s: PositiveFloat = 1.0


class RetentionSettings(_Section):
    """How long finished files' leftovers are kept, in days from their report.

    Fractions are allowed; 0 keeps them forever. Applied by the daemon
    (``orchestrator/results/retention.py``); nothing of a file whose report is not written is ever
    deleted.
    """

    #: Days the source of a complete or partial file stays in ``paths.archive``.
    archive_days: NonNegativeFloat = 0.0
    #: Days the source of a rejected, empty or duplicate file stays in ``paths.rejected``.
    rejected_days: NonNegativeFloat = 0.0
    #: Days a file's results folder (report.json, failures.csv, warnings.csv) stays.
    results_days: NonNegativeFloat = 0.0
    #: Days a finished file's work folder stays (kept only when an upload failed or was
    #: refused at Marketo; ``leadflow retry`` needs it).
    work_days: NonNegativeFloat = 0.0
    #: Seconds between two sweeps of the daemon (it also sweeps at start).
    sweep_interval_s: PositiveFloat = 3600.0


class LogSettings(_Section):
    """Log output."""

    #: ``auto``: JSON when stdout is not a TTY, console lines when it is.
    format: Literal["auto", "json", "console"] = "auto"
    #: Minimum level.
    level: Literal["debug", "info", "warning", "error"] = "info"


#: The operator's window (``leadflow run``): loopback, Prometheus' port range for exporters.
DEFAULT_HTTP_LISTEN = "127.0.0.1:9464"


def parse_listen(value: str) -> tuple[str, int] | None:
    """Split an ``http.listen`` value into ``(host, port)``; ``""`` (off) gives None.

    Accepts ``HOST:PORT``, ``[IPv6]:PORT`` and ``:PORT`` (every address); port 0 asks the
    system for a free port (tests).

    Raises:
        ValueError: no port, a port out of 0..65535, or an empty host in brackets.
    """
    text = value.strip()
    if not text:
        return None
    found = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z]+)\]:(\d{1,5})|([^:\[\]\s]*):(\d{1,5})", text)
    if found is None:
        raise ValueError(f"expected HOST:PORT (or [IPv6]:PORT, or \"\" for off), got {value!r}")
    host = found.group(1) if found.group(1) is not None else found.group(3)
    port = int(found.group(2) or found.group(4))
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


def is_loopback(host: str) -> bool:
    """Return whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or "" (every address): treated as reachable from outside


class HttpSettings(_Section):
    """The daemon's HTTP listener: health, metrics, the status page (``orchestrator/window``)."""

    #: ``HOST:PORT`` to listen on; ``""`` turns the listener off. Restart to change it.
    listen: str = DEFAULT_HTTP_LISTEN
    #: Bearer token every request must carry (``Authorization: Bearer <token>``); required
    #: when ``listen`` is not a loopback address. Never logged or served.
    token: SecretStr | None = None

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value.strip()

    @property
    def address(self) -> tuple[str, int] | None:
        """``(host, port)`` to listen on, or None when the listener is off."""
        return parse_listen(self.listen)

    @property
    def bearer(self) -> str | None:
        """The token's value, or None when no (or an empty) token is set."""
        if self.token is None or not self.token.get_secret_value().strip():
            return None
        return self.token.get_secret_value().strip()


class Settings(BaseSettings):
    """Every setting of leadflow; one frozen object built once by the CLI."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        case_sensitive=False,
    )

    marketo: MarketoSettings = MarketoSettings()
    paths: PathSettings = Field(default_factory=PathSettings)
    store: StoreSettings = StoreSettings()
    limits: LimitSettings = LimitSettings()
    polling: PollingSettings = PollingSettings()
    intake: IntakeSettings = IntakeSettings()
    import_: ImportSettings = Field(default=ImportSettings(), alias="import")
    routes: tuple[Route, ...] = ()
    #: ``[[instances]]``: several Marketo instances, each with its own credentials and limits
    #: (env ``LEADFLOW_INSTANCES`` as a JSON list). Empty: ``[marketo]`` is the one instance.
    instances: tuple[InstanceSettings, ...] = ()
    daemon: DaemonSettings = DaemonSettings()
    retention: RetentionSettings = RetentionSettings()
    log: LogSettings = LogSettings()
    http: HttpSettings = HttpSettings()

    @model_validator(mode="after")
    def _unique_routes(self) -> Settings:
        seen: set[str] = set()
        for route in self.routes:
            if route.subfolder in seen or not route.subfolder or ".." in route.subfolder:
                raise ValueError(f"route folder {route.subfolder!r} is empty, repeated or escapes")
            seen.add(route.subfolder)
        return self

    @model_validator(mode="after")
    def _consistent_instances(self) -> Settings:
        """Instances have unique names, ``[marketo]`` is not also set, routes name known ones.

        Raises:
            ConfigError: directly (not as a pydantic error), so that ``load_settings`` and the
                CLI pass on its key and reason as they are (one line, exit 2).
        """
        seen: set[str] = set()
        for index, instance in enumerate(self.instances):
            if instance.name in seen:
                raise ConfigError(
                    f"instances.{index}.name",
                    f"two [[instances]] tables are named {instance.name!r}: names must be unique",
                )
            seen.add(instance.name)
        if self.instances and self.marketo.model_fields_set:
            raise _marketo_beside_instances(self.marketo)
        problem = _routes_problem(self.routes, self.instance_names())
        if problem is not None:
            raise problem
        return self

    def route_for_folder(self, subfolder: str) -> Route | None:
        """Return the route whose folder is ``subfolder`` (relative to the inbox), if any."""
        for route in self.routes:
            if route.subfolder == subfolder.strip("/"):
                return route
        return None

    def instances_in_force(self) -> tuple[InstanceSettings, ...]:
        """Return the Marketo instances leadflow imports into, in the order configured.

        Returns:
            The ``[[instances]]`` tables when there are any; otherwise one instance built
            from ``[marketo]`` (named ``marketo.name``, ``"default"`` unless set) with the
            top-level ``[limits]`` as its limits. Never empty. The first one is where files
            at the inbox root go (``instance_of_route(None)``).
        """
        if self.instances:
            return self.instances
        given = {
            key: getattr(self.marketo, key)
            for key in self.marketo.model_fields_set
            if key in MarketoSettings.model_fields
        }
        return (
            InstanceSettings.model_validate(
                {**given, "name": self.marketo.name, "limits": self.limits}
            ),
        )

    def instance_names(self) -> tuple[str, ...]:
        """Return the names of the instances in force, in order (``instances_in_force``)."""
        if self.instances:
            return tuple(instance.name for instance in self.instances)
        return (self.marketo.name,)

    def instance_of_route(self, route: str | None) -> str:
        """Return the name of the instance that files of ``route`` are imported into.

        Args:
            route: a route's ``name``; None for the plain inbox (files at the inbox root,
                outside every route folder), which always goes to the FIRST instance in
                force: the first ``[[instances]]`` table, or ``[marketo]``.

        Returns:
            The route's ``instance``; for a route that names none (allowed only while one
            instance is configured), that one instance.

        Raises:
            ConfigError: no route is called ``route`` (key ``routes``); e.g. one a reload
                removed. The caller decides what a file of such a route becomes: it is not
                sent to the first instance by default, which may be the wrong one.

        Ask the full settings, not a ``for_instance`` copy: in a copy the first (only)
        instance is the copy's own.
        """
        names = self.instance_names()
        if route is None:
            return names[0]
        found = next((r for r in self.routes if r.name == route), None)
        if found is None:
            known = ", ".join(r.name for r in self.routes) or "none configured"
            raise ConfigError("routes", f"no route named {route!r}; known routes: {known}")
        return found.instance if found.instance is not None else names[0]

    def for_instance(self, name: str) -> Settings:
        """Return these settings as seen by the parts that work with one instance.

        The daemon gives each instance's scheduler, poller and client such a copy, so that
        they use that instance's credentials and limits without knowing about instances.

        Args:
            name: an instance name from ``instance_names()``.

        Returns:
            A copy (``model_copy``, not validated again) whose ``marketo`` is that instance (an
            ``InstanceSettings``, so ``marketo.name`` and ``marketo.limits`` are there too)
            and whose ``limits`` is the instance's ``limits``. With ``[[instances]]``,
            ``instances`` holds this one instance only: the copy carries no other instance's
            endpoint or credentials. Everything else (paths, routes, polling, ...) is
            unchanged.

        Raises:
            ConfigError: no instance is called ``name`` (key ``instances``; the reason lists
                the known names).
        """
        instance = next((i for i in self.instances_in_force() if i.name == name), None)
        if instance is None:
            known = ", ".join(self.instance_names())
            raise ConfigError("instances", f"no instance named {name!r}; known instances: {known}")
        update: dict[str, Any] = {"marketo": instance, "limits": instance.limits}
        if self.instances:
            update["instances"] = (instance,)
        return self.model_copy(update=update)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init) beat the environment, which beats the TOML file, which beats defaults."""
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            env_settings,
            _AliasEnvSource(settings_cls),
        ]
        path = _config_file.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _marketo_beside_instances(marketo: MarketoSettings) -> ConfigError:
    """The error for ``[marketo]`` keys set while ``[[instances]]`` are configured.

    With ``[[instances]]`` the ``[marketo]`` table is not used at all: every key set there
    (credentials, endpoint, timeouts) would be silently ignored, so all of them are refused.
    """
    given = [key for key in MarketoSettings.model_fields if key in marketo.model_fields_set]
    from_env = [
        f"{ENV_PREFIX}MARKETO__{key.upper()}"
        for key in given
        if any(var.upper() == f"{ENV_PREFIX}MARKETO__{key.upper()}" for var in os.environ)
    ]
    note = f" ({', '.join(from_env)} set in the environment)" if from_env else ""
    return ConfigError(
        "marketo",
        f"[marketo] sets {', '.join(given)}{note} while [[instances]] are configured: use one "
        "or the other ([marketo] for one instance, or an [[instances]] table per instance "
        "with its own endpoint, credentials and timeouts)",
    )


def _routes_problem(routes: tuple[Route, ...], names: tuple[str, ...]) -> ConfigError | None:
    """The first route that names an unknown instance, or none while several are configured.

    Args:
        routes: the routes to check.
        names: the instance names in force (``Settings.instance_names``), never empty.

    Returns:
        The error to raise (key ``routes.<index>.instance``), or None when every route is fine.
    """
    known = ", ".join(names)
    for index, route in enumerate(routes):
        if route.instance is None and len(names) > 1:
            return ConfigError(
                f"routes.{index}.instance",
                f"route {route.name!r} names no instance: with {len(names)} instances "
                f"({known}) every route must name the one it imports into",
            )
        if route.instance is not None and route.instance not in names:
            return ConfigError(
                f"routes.{index}.instance",
                f"route {route.name!r} names instance {route.instance!r}, which is not "
                f"configured; known instances: {known}",
            )
    return None


class _AliasEnvSource(PydanticBaseSettingsSource):
    """Reads ``LEADFLOW_IMPORT__<KEY>`` for the ``import`` section.

    ``import`` is an alias (a Python keyword), which pydantic-settings would otherwise look up
    without the prefix.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        """Unused: values come from ``__call__``."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Return ``{"import": {key: value}}`` from the environment."""
        prefix = f"{ENV_PREFIX}IMPORT__"
        found = {
            key[len(prefix) :].lower(): value
            for key, value in os.environ.items()
            if key.upper().startswith(prefix)
        }
        return {"import": found} if found else {}


def parse_set_flags(values: list[str]) -> dict[str, Any]:
    """Turn ``--set section.key=value`` flags into a nested dict of overrides.

    Raises:
        ConfigError: a flag without ``=`` or without a key.
    """
    overrides: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, "expected --set section.key=value")
        node = overrides
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return overrides


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``base`` with ``extra`` merged in, nested mappings key by key (extra wins)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


#: Settings that are lists of tables: in the environment, one variable holding JSON.
_JSON_LIST_FIELDS = ("routes", "instances")


def _describe_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "settings"
    if loc and loc[0] in _JSON_LIST_FIELDS:
        env = f"{ENV_PREFIX}{loc[0].upper()}, a JSON list"  # one variable, not one per key
    else:
        env = ENV_PREFIX + "__".join(part.upper() for part in loc) if loc else ""
    where = f" (env {env})" if env else ""
    message = first["msg"]
    if first.get("type") == "extra_forbidden":
        message = "unknown setting"
    return ConfigError(key, f"{message}{where}")


def load_settings(
    config_path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults, TOML file, environment and overrides.

    Args:
        config_path: a TOML file; if None, ``LEADFLOW_CONFIG`` from the environment, if set.
        overrides: nested dict of values from CLI flags, e.g. ``{"log": {"format": "json"}}``.
        environ: only for reading ``LEADFLOW_CONFIG`` (tests); variables come from os.environ.

    Returns:
        The frozen ``Settings``.

    Raises:
        ConfigError: naming the first invalid key, or a config file that is missing or not TOML.
    """
    env = os.environ if environ is None else environ
    if config_path is None and env.get(CONFIG_ENV):
        config_path = env[CONFIG_ENV]
    path = Path(config_path).expanduser() if config_path is not None else None
    if path is not None:
        if not path.is_file():
            raise ConfigError("config", f"file {path} not found")
        try:
            tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("config", f"{path} is not valid TOML: {exc}") from exc
    token = _config_file.set(path)
    try:
        return Settings(**deep_merge({}, overrides or {}))
    except ValidationError as exc:
        raise _describe_error(exc) from None
    finally:
        _config_file.reset(token)


#: Sections a reload (SIGHUP) applies to the running daemon; ``log.level`` too. Every other
#: setting keeps its running value until a restart, and a reload that changes one says so.
LIVE_SECTIONS = ("routes", "import_", "limits", "polling")


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    """``{dotted.key: value}`` of a dumped section (secrets stay masked by pydantic)."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flat(inner, f"{prefix}.{key}"))
        return flat
    return {prefix: value}


def reload_plan(running: Settings, new: Settings) -> tuple[Settings, list[str], list[str]]:
    """Decide what a reload applies: live sections from ``new``, the rest kept as running.

    Args:
        running: the settings in force.
        new: the settings just read again.

    Returns:
        ``(effective, changed, needs_restart)``: the settings to run with from now on; the
        dotted names of live settings that changed (``routes``, ``limits.import_slots``,
        ``log.level``); the dotted names of settings that changed but only take effect after
        a restart (``paths.inbox``, ``http.listen``, ``marketo.base_url``, ``marketo.name``,
        ``instances.<name>.<key>``, ...).

    Instances (``[[instances]]``, ``marketo.name``) only change at a restart. New routes
    that name an instance the running settings do not have (one added or renamed in the
    same edit) are not applied either: the running routes stay, and ``routes`` is named
    among the settings that need a restart.
    """
    changed: list[str] = []
    restart: list[str] = []
    for name, field in Settings.model_fields.items():
        label = field.alias or name
        old_value, new_value = getattr(running, name), getattr(new, name)
        if old_value == new_value:
            continue
        if name == "routes":
            changed.append("routes")
            continue
        if name == "instances":
            restart += _instance_changes(old_value, new_value)
            continue
        old_flat = _flat(old_value.model_dump(mode="json"), label)
        new_flat = _flat(new_value.model_dump(mode="json"), label)
        keys = sorted(k for k in old_flat.keys() | new_flat.keys()
                      if old_flat.get(k) != new_flat.get(k))
        if name == "marketo":
            # A changed secret dumps the same mask: name the key that differs.
            keys = keys or [f"{label}.client_secret"]
        if name in LIVE_SECTIONS:
            changed += keys
        elif name == "log":
            changed += [k for k in keys if k == "log.level"]
            restart += [k for k in keys if k != "log.level"]
        else:
            restart += keys
    routes = new.routes
    if "routes" in changed and _routes_problem(new.routes, running.instance_names()):
        # The new routes name instances that only a restart brings (added, renamed): keep
        # the running routes, which fit the running instances.
        routes = running.routes
        changed.remove("routes")
        restart.append("routes")
    effective = running.model_copy(update={
        "routes": routes,
        "import_": new.import_,
        "limits": new.limits,
        "polling": new.polling,
        "log": running.log.model_copy(update={"level": new.log.level}),
    })
    return effective, changed, restart


def _instance_changes(
    old: tuple[InstanceSettings, ...], new: tuple[InstanceSettings, ...]
) -> list[str]:
    """Dotted names of what differs between two ``[[instances]]`` lists, instance by name.

    Returns:
        ``instances.<name>`` for an instance added or removed, ``instances.<name>.<key>``
        (``instances.<name>.limits.<key>``) for a changed key, and ``instances`` alone when
        only their order changed (the first one takes the plain inbox's files).
    """
    old_by_name = {instance.name: instance for instance in old}
    new_by_name = {instance.name: instance for instance in new}
    keys: list[str] = []
    for name in sorted(old_by_name.keys() | new_by_name.keys()):
        before, after = old_by_name.get(name), new_by_name.get(name)
        if before is None or after is None:
            keys.append(f"instances.{name}")
            continue
        if before == after:
            continue
        old_flat = _flat(before.model_dump(mode="json"), f"instances.{name}")
        new_flat = _flat(after.model_dump(mode="json"), f"instances.{name}")
        differ = sorted(k for k in old_flat.keys() | new_flat.keys()
                        if old_flat.get(k) != new_flat.get(k))
        # A changed secret dumps the same mask: name the key that differs.
        keys += differ or [f"instances.{name}.client_secret"]
    if not keys and list(old_by_name) != list(new_by_name):
        keys.append("instances")
    return keys

"""The simulator's configuration: instances, credentials, limits, catalogue and faults.

Every limit of docs/reference/marketo-api.md §8 is a field here so tests can shrink it (a 2 KB body
limit, a 3-call rate window). The whole object is frozen; the admin API replaces it with a validated
copy (`SimulatorConfig.merged`) when settings change at runtime (docs/reference/marketo-api.md §8.9,
§8.10).
"""

from __future__ import annotations

import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The munchkin id of the default instance (served at the root and under its own prefix).
DEFAULT_MUNCHKIN_ID = "123-ABC-456"
#: Client id of the instance's custom service (docs/reference/marketo-api.md §8.2).
DEFAULT_CLIENT_ID = "leadflow-sim"
#: Client secret of the instance's custom service (docs/reference/marketo-api.md §8.2).
DEFAULT_CLIENT_SECRET = "leadflow-sim-secret"
#: Whole-request body limit for bulk uploads, in bytes (docs/reference/marketo-api.md §8.3).
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
#: Munchkin ids look like ``123-ABC-456``; URL prefixes must match this.
MUNCHKIN_PATTERN = r"\d{3}-[A-Za-z]{3}-\d{3}"


class FieldType(StrEnum):
    """Data types of lead and custom-object fields (docs/reference/marketo-api.md §8.5, §8.7)."""

    #: Free text limited to the field's ``length``.
    STRING = "string"
    #: An email address; implausible values import with a warning.
    EMAIL = "email"
    #: A phone number (free text).
    PHONE = "phone"
    #: A URL (free text).
    URL = "url"
    #: Long text (free text).
    TEXT = "text"
    #: A signed whole number.
    INTEGER = "integer"
    #: A decimal number.
    FLOAT = "float"
    #: ``true``/``false``/``1``/``0``/``yes``/``no``, case-insensitive.
    BOOLEAN = "boolean"
    #: ``YYYY-MM-DD``.
    DATE = "date"
    #: ISO 8601 date-time.
    DATETIME = "datetime"


#: Types whose values are free text and subject to the length limit.
STRING_TYPES = frozenset(
    {FieldType.STRING, FieldType.EMAIL, FieldType.PHONE, FieldType.URL, FieldType.TEXT}
)


class FieldSpec(BaseModel):
    """One field of the catalogue, as returned by Describe (docs/reference/marketo-api.md §8.7)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: REST API name, matched exactly (case-sensitive) against upload headers.
    name: str
    #: Display name used in reason strings (``Invalid data type in field Lead Score``).
    display_name: str
    #: Data type used for validation.
    data_type: FieldType = FieldType.STRING
    #: Maximum length of string values; longer values are truncated with a warning.
    length: int = 255
    #: Read-only fields (``id``) cannot be written by an import.
    read_only: bool = False
    #: Custom fields may serve as ``lookupField`` when they are string, email or integer.
    custom: bool = False


def _f(
    name: str, display: str, data_type: FieldType = FieldType.STRING, **kw: Any
) -> FieldSpec:
    return FieldSpec(name=name, display_name=display, data_type=data_type, **kw)


#: The standard lead fields of docs/reference/marketo-api.md §8.7 plus a few custom ones.
DEFAULT_LEAD_FIELDS: tuple[FieldSpec, ...] = (
    _f("id", "Id", FieldType.INTEGER, read_only=True),
    _f("email", "Email Address", FieldType.EMAIL),
    _f("firstName", "First Name"),
    _f("lastName", "Last Name"),
    _f("company", "Company Name"),
    _f("title", "Job Title"),
    _f("phone", "Phone Number", FieldType.PHONE),
    _f("mobilePhone", "Mobile Phone Number", FieldType.PHONE),
    _f("address", "Address", FieldType.TEXT, length=2000),
    _f("city", "City"),
    _f("state", "State"),
    _f("postalCode", "Postal Code"),
    _f("country", "Country"),
    _f("website", "Website", FieldType.URL),
    _f("industry", "Industry"),
    _f("numberOfEmployees", "Num Employees", FieldType.INTEGER),
    _f("annualRevenue", "Annual Revenue", FieldType.FLOAT),
    _f("leadScore", "Lead Score", FieldType.INTEGER),
    _f("leadSource", "Lead Source"),
    _f("unsubscribed", "Unsubscribed", FieldType.BOOLEAN),
    _f("dateOfBirth", "Date of Birth", FieldType.DATE),
    _f("customerTier", "Customer Tier", custom=True),
    _f("accountScore", "Account Score", FieldType.INTEGER, custom=True),
    _f("lastPurchaseAt", "Last Purchase At", FieldType.DATETIME, custom=True),
)

#: Standard fields that Marketo accepts as ``lookupField`` (docs/reference/marketo-api.md §2.1).
STANDARD_LOOKUP_FIELDS = frozenset(
    {
        "id",
        "cookies",
        "email",
        "twitterId",
        "facebookId",
        "linkedInId",
        "sfdcAccountId",
        "sfdcContactId",
        "sfdcLeadId",
        "sfdcLeadOwnerId",
        "sfdcOpptyId",
    }
)


class CustomObjectSpec(BaseModel):
    """A custom object type that accepts bulk imports (docs/reference/marketo-api.md §4.2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Fields of the object; unknown header columns are ignored, as in ADOC-co.
    fields: tuple[FieldSpec, ...]
    #: Fields whose values identify a record; a row without them fails ``missing.dedupe.fields``.
    #: Describe lists them as ``dedupeFields`` (several members: a compound key).
    dedupe_fields: tuple[str, ...]
    #: The object's display name in describe (default: its API name).
    display_name: str | None = None


def _default_custom_objects() -> dict[str, CustomObjectSpec]:
    return {
        "car_c": CustomObjectSpec(
            fields=(
                _f("vin", "VIN"),
                _f("make", "Make"),
                _f("model", "Model"),
                _f("year", "Year", FieldType.INTEGER),
                _f("color", "Color"),
                _f("email", "Email Address", FieldType.EMAIL),
            ),
            dedupe_fields=("vin",),
            display_name="Car",
        )
    }


class FaultConfig(BaseModel):
    """Injected faults, all off by default; probabilities are in [0, 1].

    See docs/reference/marketo-api.md §8.9.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Probability of an HTTP 500 with an HTML body on an API call (not identity).
    http_500_probability: float = Field(0.0, ge=0, le=1)
    #: Probability of an HTTP 502 with an HTML body.
    http_502_probability: float = Field(0.0, ge=0, le=1)
    #: Probability of an HTTP 503 with an HTML body.
    http_503_probability: float = Field(0.0, ge=0, le=1)
    #: Probability of error ``604`` "Request time-out" (not counted against limits).
    error_604_probability: float = Field(0.0, ge=0, le=1)
    #: Probability of error ``608`` "API Temporarily Unavailable" (not counted).
    error_608_probability: float = Field(0.0, ge=0, le=1)
    #: Probability of error ``611`` "System error" (not counted).
    error_611_probability: float = Field(0.0, ge=0, le=1)
    #: Probability of error ``713`` "Transient Error" (counted).
    error_713_probability: float = Field(0.0, ge=0, le=1)
    #: Fixed latency added to every API call, in real (wall-clock) seconds.
    latency_s: float = Field(0.0, ge=0)
    #: Extra uniformly random latency in ``[0, latency_jitter_s]`` real seconds.
    latency_jitter_s: float = Field(0.0, ge=0)
    #: Probability that an accepted upload's response is dropped (connection closed).
    drop_upload_response_probability: float = Field(0.0, ge=0, le=1)
    #: The next N accepted uploads (per instance) have their response dropped.
    drop_next_upload_responses: int = Field(0, ge=0)
    #: Probability that a job ends ``Failed`` part-way through.
    job_failure_probability: float = Field(0.0, ge=0, le=1)
    #: The next N jobs (per instance) end ``Failed`` part-way through.
    fail_next_jobs: int = Field(0, ge=0)
    #: Reason in the ``Import failed: REASON`` message of failed jobs.
    job_failure_reason: str = "Internal server error"
    #: Foreign jobs kept queued-or-importing at all times (another integration's load).
    foreign_standing_jobs: int = Field(0, ge=0)
    #: Import duration of each standing foreign job, in simulated seconds.
    foreign_job_duration_s: float = Field(60.0, gt=0)
    #: Tokens really expire this many seconds before their ``expires_in`` says.
    token_early_expiry_s: float = Field(0.0, ge=0)
    #: Probability of an HTTP 502 with an HTML body on an identity call (a gateway or proxy
    #: in front of identity failing); the API faults above never touch identity.
    identity_502_probability: float = Field(0.0, ge=0, le=1)


class SimulatorConfig(BaseModel):
    """Everything the simulator can be told; defaults are Marketo's.

    See docs/reference/marketo-api.md §8.

    Durations are simulated seconds unless a field says otherwise; sizes are bytes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Munchkin ids served; the first is the default instance at the URL root (§8.1).
    instances: tuple[str, ...] = (DEFAULT_MUNCHKIN_ID,)
    #: Client id of the custom service of every instance (§8.2).
    client_id: str = DEFAULT_CLIENT_ID
    #: Client secret of the custom service of every instance (§8.2).
    client_secret: str = DEFAULT_CLIENT_SECRET
    #: The ``scope`` returned by identity (the API-only user).
    scope: str = "leadflow-sim@example.com"
    #: Lifetime of a freshly minted token, seconds (§1.1); fractions allowed. ``expires_in`` is
    #: sent as whole seconds, rounded down, as Marketo does.
    token_lifetime_s: float = Field(3600.0, gt=0)
    #: Calls allowed per rate window (§6, §8.3).
    rate_limit_calls: int = Field(100, gt=0)
    #: Length of the sliding rate window, seconds.
    rate_window_s: float = Field(20.0, gt=0)
    #: Calls allowed in flight at once (615).
    max_concurrent_calls: int = Field(10, gt=0)
    #: Calls allowed per America/Chicago day (607).
    daily_quota: int = Field(50_000, gt=0)
    #: Import jobs allowed to run at once (§2.4).
    max_importing: int = Field(2, gt=0)
    #: Import jobs allowed queued-or-importing (1016 beyond).
    max_queued: int = Field(10, gt=0)
    #: Whole multipart body limit for uploads, bytes (413 beyond).
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0)
    #: Rows processed per simulated second while ``Importing`` (§8.5).
    rows_per_second: float = Field(500.0, gt=0)
    #: Batches disappear this many simulated seconds after creation (seven days).
    batch_retention_s: float = Field(7 * 86400.0, gt=0)
    #: The lead field catalogue (§8.7).
    fields: tuple[FieldSpec, ...] = DEFAULT_LEAD_FIELDS
    #: More lead fields appended to ``fields``.
    extra_fields: tuple[FieldSpec, ...] = ()
    #: Program member custom fields accepted in program member imports (§4.1).
    program_member_fields: tuple[FieldSpec, ...] = (
        _f("membershipNote", "Membership Note", custom=True),
    )
    #: Static lists that exist (``listId``).
    lists: tuple[int, ...] = (1001, 1002)
    #: Lead partitions that exist (``partitionName``).
    partitions: tuple[str, ...] = ("Default",)
    #: Programs that accept member imports (§4.1).
    programs: tuple[int, ...] = (2001, 2002)
    #: Valid ``programMemberStatus`` values.
    program_member_statuses: tuple[str, ...] = (
        "Not in Program",
        "On List",
        "Member",
        "Influenced",
        "Attended",
    )
    #: Custom object types by API name (§4.2).
    custom_objects: dict[str, CustomObjectSpec] = Field(default_factory=_default_custom_objects)
    #: Keep imported leads in memory (turn off for very large benchmarks).
    store_leads: bool = True
    #: Seed of the random generator used by faults and ids; None means random.
    seed: int | None = None
    #: Injected faults.
    faults: FaultConfig = FaultConfig()

    @field_validator("instances")
    @classmethod
    def _check_instances(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one instance is required")
        for munchkin in value:
            if not re.fullmatch(MUNCHKIN_PATTERN, munchkin):
                raise ValueError(f"munchkin id {munchkin!r} must look like 123-ABC-456")
        if len(set(value)) != len(value):
            raise ValueError("munchkin ids must be unique")
        return value

    @model_validator(mode="after")
    def _check_fields(self) -> SimulatorConfig:
        names = [f.name for f in self.lead_fields]
        if len(set(names)) != len(names):
            raise ValueError("lead field names must be unique")
        if "email" not in names:
            raise ValueError("the catalogue needs an 'email' field")
        return self

    @property
    def lead_fields(self) -> tuple[FieldSpec, ...]:
        """The full lead catalogue: ``fields`` then ``extra_fields``."""
        return self.fields + self.extra_fields

    @classmethod
    def from_toml(cls, path: Path) -> SimulatorConfig:
        """Load a configuration from a TOML file whose keys are this model's fields.

        When the file has a ``[simulator]`` table (a file shared with the daemon's settings),
        only that table is read.

        Args:
            path: A TOML file, e.g. ``instances = ["123-ABC-456"]`` and a ``[faults]`` table.

        Raises:
            OSError: The file cannot be read.
            tomllib.TOMLDecodeError: The file is not TOML.
            pydantic.ValidationError: A value is invalid.
        """
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
        section = data.get("simulator")
        return cls.model_validate(section if isinstance(section, dict) else data)

    def merged(self, patch: dict[str, Any]) -> SimulatorConfig:
        """Return a validated copy with ``patch`` deep-merged into this configuration.

        Nested mappings (``faults``) are merged key by key; other values replace.

        Raises:
            pydantic.ValidationError: The merged configuration is invalid.
        """
        base = self.model_dump(mode="python")
        return type(self).model_validate(_deep_merge(base, patch))


def _deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out

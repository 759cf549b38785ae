"""One error hierarchy: a base, configuration and store errors, transient and permanent API errors.

Policy code branches on these types only, never on aiohttp's; library exceptions are wrapped
with ``raise ... from exc`` so the cause stays on ``__cause__``.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base of every error leadflow raises on purpose."""


class ConfigError(OrchestratorError):
    """A setting is invalid or missing; the CLI prints one line and exits 2.

    Attributes:
        key: the dotted setting name, e.g. ``limits.import_slots``.
        reason: what is wrong with it.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason

    def line(self) -> str:
        """The one line the CLI prints (after ``leadflow: ``)."""
        return f"invalid setting {self.key}: {self.reason}"


class UnusablePath(ConfigError):
    """A folder of ``paths`` (or the database's folder) cannot be created or written.

    The setting may be right and the machine wrong (a volume that did not mount, a file where
    a folder should be, no permission); either way a person must act, so ``leadflow run``
    stops at start with one line and exit 2 (which the systemd unit does not restart).

    Attributes:
        key: the setting, e.g. ``paths.results``.
        path: the folder that cannot be used.
        reason: why, in words.
    """

    def __init__(self, key: str, path: str, reason: str) -> None:
        super().__init__(key, reason)
        self.path = path

    def line(self) -> str:
        """The one line the CLI prints (after ``leadflow: ``)."""
        return f"cannot use {self.key} ({self.path}): {self.reason}"


class StoreError(OrchestratorError):
    """The database refused or cannot be used."""


class InvalidTransition(StoreError):
    """A guarded status update matched no row: the row was not in the expected status.

    Attributes:
        table: ``files`` or ``uploads``.
        row_id: the id that was updated.
        expected: the statuses the caller expected.
        actual: the status found, or None if the row does not exist.
    """

    def __init__(
        self, table: str, row_id: int, expected: tuple[str, ...], actual: str | None
    ) -> None:
        super().__init__(
            f"{table} {row_id}: expected status in {list(expected)}, found {actual!r}"
        )
        self.table = table
        self.row_id = row_id
        self.expected = expected
        self.actual = actual


class SchemaTooNew(StoreError):
    """The database was written by a newer leadflow than this one."""


class DuplicateContent(StoreError):
    """A file with the same bytes (``sha256``) is already imported or being imported.

    Raised by the store when the unique index on imported files' ``sha256`` refuses a write
    (callers check ``imported_file_with_sha`` first; the index is the last guard).
    """


class StoreUnavailable(StoreError):
    """The database cannot be reached (wrong ``store.url``, server down, connection lost)."""


class DatabaseLocked(StoreError):
    """Another leadflow daemon already uses this database."""


class CopyRefused(StoreError):
    """``leadflow migrate --copy-from`` refused before writing anything (one line says why).

    Attributes:
        usage: True when the command line or the settings must change (exit 2: the source is
            missing or not a leadflow database; open files of an instance the settings do not
            name); False when the databases' state must (exit 1: a daemon runs on the source,
            the target is not empty or in use).
    """

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


class ApiError(OrchestratorError):
    """A Marketo call did not succeed.

    Attributes:
        code: Marketo's error code as a string (``"1016"``) or the HTTP status (``"413"``).
        message: Marketo's message or a short description.
    """

    def __init__(self, code: str | None, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message


class ApiTransientError(ApiError):
    """Worth retrying later: 5xx, 604, 608, 611, 713, timeouts, connection errors.

    Attributes:
        retry_after: seconds to wait before the next attempt, if known.
    """

    def __init__(self, code: str | None, message: str, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class ApiPermanentError(ApiError):
    """Retrying unchanged cannot help: 603, 1003, 1006, 1011, 1013, 413, ...

    Attributes:
        status: the HTTP status of the answer.
        body_excerpt: the first bytes of the answer, with secrets redacted.
    """

    def __init__(
        self, code: str | None, message: str, status: int = 200, body_excerpt: str = ""
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.body_excerpt = body_excerpt


class QueueFull(ApiError):
    """Marketo answered ``1016`` Too many imports: back-pressure, never a spent attempt."""


class AuthError(ApiError):
    """The identity endpoint refused our credentials (HTTP 401): a configuration error."""


class QuotaExhausted(ApiError):
    """The daily call quota is used up (``607`` or our own budget) until ``resume_at``.

    Attributes:
        resume_at: epoch seconds when calls may start again.
    """

    def __init__(self, code: str | None, message: str, resume_at: float) -> None:
        super().__init__(code, message)
        self.resume_at = resume_at


class UncertainSubmit(ApiError):
    """An upload was sent but its answer was lost: a job may or may not exist at Marketo."""

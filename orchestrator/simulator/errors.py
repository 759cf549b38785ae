"""Marketo's response-level errors: codes and exact messages.

See docs/reference/marketo-api.md §1.3, §5, §8.3, §8.4 and §8.6.

An `ApiError` becomes an HTTP 200 body ``{"success": false, "errors": [{"code", "message"}]}``.
"""

from __future__ import annotations

#: 600: no ``Authorization: Bearer`` header (§8.2).
TOKEN_EMPTY = ("600", "Access token empty")
#: 601: token not known (§8.2).
TOKEN_INVALID = ("601", "Access token invalid")
#: 602: token expired (§8.2).
TOKEN_EXPIRED = ("602", "Access token expired")
#: 604: injected fault.
REQUEST_TIMEOUT = ("604", "Request time-out")
#: 605: HTTP method not supported on a known path.
METHOD_NOT_SUPPORTED = ("605", "HTTP method not supported")
#: 607: daily quota spent until midnight America/Chicago (§8.3).
DAILY_QUOTA = ("607", "Daily quota reached")
#: 608: injected fault.
TEMPORARILY_UNAVAILABLE = ("608", "API Temporarily Unavailable")
#: 610: unknown path under ``/rest`` or ``/bulk``.
NOT_FOUND = ("610", "Requested resource not found")
#: 611: injected fault.
SYSTEM_ERROR = ("611", "System error")
#: 612: upload not ``multipart/form-data`` (§8.4).
INVALID_CONTENT_TYPE = ("612", "Invalid Content Type")
#: 613: no ``file`` part or a malformed multipart body (§8.4).
INVALID_MULTIPART = ("613", "Invalid Multipart Request")
#: 713: injected fault.
TRANSIENT = ("713", "Transient Error")
#: 1003: bad or missing ``format`` (§8.4).
INVALID_FORMAT = ("1003", "Invalid format")
#: 1003: empty file or header only (§8.4).
EMPTY_FILE = ("1003", "Empty File")
#: 1003: bytes that are not UTF-8 (§8.4).
INVALID_ENCODING = ("1003", "Invalid file encoding")
#: 1013: unknown list, program, object type or batch (§8.4, §8.6).
OBJECT_NOT_FOUND = ("1013", "Object not found")
#: 1016: queue full (§8.3).
TOO_MANY_IMPORTS = ("1016", "Too many imports")
#: 1025: unknown ``programMemberStatus`` (§4.1, unconfirmed).
PROGRAM_STATUS_NOT_FOUND = ("1025", "Program status not found")


class ApiError(Exception):
    """A Marketo error answered as HTTP 200 with ``success: false``.

    Args:
        code: The quoted numeric code, e.g. ``"1016"``.
        message: The exact message text.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message

    @classmethod
    def of(cls, pair: tuple[str, str]) -> ApiError:
        """Build from one of this module's ``(code, message)`` constants."""
        return cls(pair[0], pair[1])


def rate_limited(calls: int, window_s: float) -> ApiError:
    """606 with Marketo's exact text, e.g. ``Max rate limit '100' exceeded with in '20' secs``."""
    return ApiError("606", f"Max rate limit '{calls}' exceeded with in '{window_s:g}' secs")


def concurrency_limited(limit: int) -> ApiError:
    """615 with Marketo's exact text, e.g. ``Concurrent access limit '10' reached``."""
    return ApiError("615", f"Concurrent access limit '{limit}' reached")


def field_not_found(name: str) -> ApiError:
    """1006 ``Field 'NAME' not found`` for an unknown header column (§8.4)."""
    return ApiError("1006", f"Field '{name}' not found")


def field_not_supported(name: str) -> ApiError:
    """1011 ``Field 'NAME' not supported`` for a bad ``lookupField`` (§8.4)."""
    return ApiError("1011", f"Field '{name}' not supported")


def partition_not_found(name: str) -> ApiError:
    """1003 ``Partition 'NAME' not found`` (§8.4)."""
    return ApiError("1003", f"Partition '{name}' not found")


def missing_parameter(name: str) -> ApiError:
    """1003 for a required parameter that is absent (e.g. ``programMemberStatus``)."""
    return ApiError("1003", f"Missing required parameter '{name}'")

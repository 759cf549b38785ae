"""One table from Marketo's numeric error code to what the client does about it.

Every answer (HTTP status plus body) is turned into an `Outcome` by `classify`, a pure
function. The category is found by the numeric code only (Marketo sends it as a quoted string,
``"1016"``, but a number is accepted too); the message text is never evaluated
(docs/reference/marketo-api.md §5: "the HTTP reason phrase must not be evaluated", and messages
differ between instances).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: Longest excerpt of a body kept for logs and errors, in characters.
BODY_EXCERPT_CHARS = 500


class Category(StrEnum):
    """What kind of answer a call got, and so what the client does next."""

    #: ``success: true`` (or a file): done.
    OK = "ok"
    #: ``1016`` Too many imports: back-pressure for the scheduler, never a spent retry.
    QUEUE_FULL = "queue_full"
    #: ``606`` rate or ``615`` concurrency limit: wait and retry without spending retries.
    THROTTLE = "throttle"
    #: ``607`` daily quota: pause every call until midnight America/Chicago.
    QUOTA = "quota"
    #: ``600``/``601``/``602``: get a new token and replay the request.
    AUTH = "auth"
    #: Worth retrying with exponential backoff (5xx, 604, 608, ..., non-JSON bodies).
    TRANSIENT = "transient"
    #: Retrying unchanged cannot help (603, 1003, 1006, 413, ...).
    PERMANENT = "permanent"
    #: A code not in the table: a few retries, then permanent, raw body logged.
    UNKNOWN = "unknown"


#: docs/reference/marketo-api.md §5: every Marketo code we know, keyed on the code as a string.
CODE_TABLE: Mapping[str, Category] = {
    # Tokens (docs/reference/marketo-api.md §1.3): refresh once and replay.
    "600": Category.AUTH,
    "601": Category.AUTH,
    "602": Category.AUTH,
    # Limits (docs/reference/marketo-api.md §6).
    "606": Category.THROTTLE,
    "615": Category.THROTTLE,
    "607": Category.QUOTA,
    # Import queue (docs/reference/marketo-api.md §2.4).
    "1016": Category.QUEUE_FULL,
    # Transient: backoff and retry (docs/reference/marketo-api.md §5, cross-checked with production
    # clients).
    "604": Category.TRANSIENT,
    "608": Category.TRANSIENT,
    "611": Category.TRANSIENT,
    "614": Category.TRANSIENT,
    "713": Category.TRANSIENT,
    "719": Category.TRANSIENT,
    "1014": Category.TRANSIENT,
    "1019": Category.TRANSIENT,
    "1022": Category.TRANSIENT,
    # Permanent for this request: report, never resend unchanged (docs/reference/marketo-api.md §5,
    # §9.8).
    "603": Category.PERMANENT,
    "605": Category.PERMANENT,
    "609": Category.PERMANENT,
    "610": Category.PERMANENT,
    "612": Category.PERMANENT,
    "613": Category.PERMANENT,
    "616": Category.PERMANENT,
    "709": Category.PERMANENT,
    "710": Category.PERMANENT,
    "1003": Category.PERMANENT,
    "1004": Category.PERMANENT,
    "1005": Category.PERMANENT,
    "1006": Category.PERMANENT,
    "1007": Category.PERMANENT,
    "1008": Category.PERMANENT,
    "1009": Category.PERMANENT,
    "1010": Category.PERMANENT,
    "1011": Category.PERMANENT,
    "1013": Category.PERMANENT,
    "1025": Category.PERMANENT,
}

#: HTTP statuses other than 2xx that carry a meaning of their own (docs/reference/marketo-api.md §5,
#: HTTP-level).
HTTP_TABLE: Mapping[int, Category] = {
    413: Category.PERMANENT,  # body too large: split the file, never resend as-is
    414: Category.PERMANENT,  # URI too long
    429: Category.THROTTLE,  # not documented by Marketo; a proxy may send it
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one answer means.

    Attributes:
        category: what to do next.
        code: Marketo's code (``"1016"``), the HTTP status as a string for HTTP-level errors
            (``"413"``, ``"502"``), a short tag (``"non_json"``, ``"no_errors"``,
            ``"timeout"``, ``"connection"``), or None on success.
        message: Marketo's message or a short description.
        http_status: the HTTP status, 0 when no answer arrived.
        request_id: Marketo's ``requestId`` when the body had one.
        payload: the decoded JSON object on success (or on an error with a JSON body).
        retry_after: seconds from a ``Retry-After`` header, if any.
        body_excerpt: the first `BODY_EXCERPT_CHARS` of the body (not redacted here).
    """

    category: Category
    code: str | None = None
    message: str = ""
    http_status: int = 200
    request_id: str | None = None
    payload: Mapping[str, Any] | None = None
    retry_after: float | None = None
    body_excerpt: str = ""


def category_of_code(code: str | int | None) -> Category:
    """Return the category of a Marketo error code.

    Args:
        code: the code as Marketo sent it: a quoted number (``"1016"``), a number (``1016``),
            or None/garbage.

    Returns:
        The table's category, or ``Category.UNKNOWN`` for a code not in the table.
    """
    norm = normalise_code(code)
    if norm is None:
        return Category.UNKNOWN
    return CODE_TABLE.get(norm, Category.UNKNOWN)


def normalise_code(code: object) -> str | None:
    """Return a code as a plain decimal string (``1016``, ``"1016"``, ``" 1016 "`` -> ``"1016"``).

    Booleans, floats with a fraction, and non-numeric strings give None.
    """
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return str(code)
    if isinstance(code, float) and code.is_integer():
        return str(int(code))
    if isinstance(code, str) and code.strip().isdigit():
        return str(int(code.strip()))
    return None


def excerpt(body: bytes | str) -> str:
    """Return the first `BODY_EXCERPT_CHARS` characters of a body, decoded leniently."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text[:BODY_EXCERPT_CHARS]


def parse_retry_after(value: str | None) -> float | None:
    """Return seconds from a ``Retry-After`` header given in seconds; None otherwise."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def classify(
    http_status: int, body: bytes | str, retry_after: str | None = None
) -> Outcome:
    """Classify one HTTP answer of a REST or bulk call (not identity, not a file download).

    Args:
        http_status: the HTTP status code.
        body: the raw body (may be HTML, empty, or not UTF-8).
        retry_after: the ``Retry-After`` header, if any.

    Returns:
        An `Outcome`. Rules, in order (docs/reference/marketo-api.md §5 and §6):
        5xx -> transient; 413/414 -> permanent, 429 -> throttle; other non-2xx -> permanent
        (a wrong path is a bug); a 2xx body that is not a JSON object -> transient (gateway
        page); ``success: true`` -> ok; ``success: false`` with an ``errors`` entry -> the
        table's category of its code; ``success: false`` without errors -> transient.
    """
    text_excerpt = excerpt(body)
    wait = parse_retry_after(retry_after)
    payload = _json_object(body)
    request_id = _request_id(payload)
    if http_status >= 500:
        return Outcome(
            Category.TRANSIENT, str(http_status), f"HTTP {http_status}", http_status,
            request_id, payload, wait, text_excerpt,
        )
    if not 200 <= http_status < 300:
        category = HTTP_TABLE.get(http_status, Category.PERMANENT)
        return Outcome(
            category, str(http_status), f"HTTP {http_status}", http_status,
            request_id, payload, wait, text_excerpt,
        )
    if payload is None:
        return Outcome(
            Category.TRANSIENT, "non_json", "answer is not a JSON object", http_status,
            None, None, wait, text_excerpt,
        )
    if payload.get("success") is True:
        return Outcome(Category.OK, None, "", http_status, request_id, payload, None, "")
    errors = payload.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, Mapping):
        return Outcome(
            Category.TRANSIENT, "no_errors", "success is not true and no error was given",
            http_status, request_id, payload, wait, text_excerpt,
        )
    raw_code = first.get("code")
    code = normalise_code(raw_code)
    message = str(first.get("message", ""))
    return Outcome(
        category_of_code(raw_code), code if code is not None else str(raw_code), message,
        http_status, request_id, payload, wait, text_excerpt,
    )


def _json_object(body: bytes | str) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _request_id(payload: Mapping[str, Any] | None) -> str | None:
    if payload is None:
        return None
    value = payload.get("requestId")
    return str(value) if value is not None else None

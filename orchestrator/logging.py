"""Structured logging: structlog configured once, JSON lines or console lines, with redaction.

Event names are stable snake_case (``import_submitted``); data goes in keyword arguments.
A redaction step removes the client secret and every access token ever seen from every
value of every log line, including exception text and URLs.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

_lock = threading.Lock()
_secrets: set[str] = set()
#: Values in these keys are always masked, whatever they hold.
SENSITIVE_KEYS = frozenset(
    {"client_secret", "access_token", "token", "authorization", "password", "secret"}
)
_QUERY_SECRET = re.compile(
    r"((?:client_secret|access_token)=)[^&\s\"']+", flags=re.IGNORECASE
)
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/:-]+=*", flags=re.IGNORECASE)
MASK = "***"


def register_secret(value: str | None) -> None:
    """Add a value (client secret, access token) that must never appear in a log line."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact_text(text: str) -> str:
    """Return ``text`` with registered secrets, bearer tokens and secret query values masked."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _QUERY_SECRET.sub(r"\1" + MASK, text)
    return _BEARER.sub(r"\1" + MASK, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: MASK if str(k).lower() in SENSITIVE_KEYS else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    return value


def redact(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Structlog processor: mask secrets in every value (last step before rendering)."""
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = MASK
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


def configure(
    fmt: str = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog once for the process.

    Args:
        fmt: ``json``, ``console``, or ``auto`` (JSON unless ``stream`` is a TTY).
        level: minimum level name (``debug``, ``info``, ``warning``, ``error``).
        stream: where lines go; stdout by default.
    """
    out = stream or sys.stdout
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def set_level(level: str) -> None:
    """Change the minimum level of every logger (a settings reload); output is unchanged.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
    """
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        )
    )

from __future__ import annotations

import io
import json

import structlog

from orchestrator.logging import configure, redact_text, register_secret

SECRET = "very-secret-client-value-123"
TOKEN = "cdf01657-110d-4155-99a7-f986b2ff13a0:int"


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_secrets_never_reach_a_log_line() -> None:
    register_secret(SECRET)
    register_secret(TOKEN)
    out = io.StringIO()
    configure("json", "debug", stream=out)
    log = structlog.get_logger("t")
    log.info("token_refreshed", expires_in=3599, note=f"got {TOKEN}")
    log.info("api_call", url=f"https://x/identity/oauth/token?client_id=a&client_secret={SECRET}")
    log.info("api_call", headers={"Authorization": f"Bearer {TOKEN}"}, access_token=TOKEN)
    try:
        raise RuntimeError(f"failed with {SECRET} and Bearer {TOKEN}")
    except RuntimeError:
        log.exception("call_failed")
    text = out.getvalue()
    assert SECRET not in text and TOKEN not in text
    events = lines(out)
    assert [e["event"] for e in events] == [
        "token_refreshed",
        "api_call",
        "api_call",
        "call_failed",
    ]
    assert events[0]["expires_in"] == 3599
    assert "***" in str(events[3]["exception"])


def test_unregistered_bearer_and_query_values_are_masked() -> None:
    text = redact_text("GET /x?access_token=abc123&client_secret=zzz9 Authorization: Bearer qq:sj")
    assert "abc123" not in text and "zzz9" not in text and "qq:sj" not in text
    assert text.count("***") == 3


def test_console_format_also_redacts() -> None:
    register_secret(SECRET)
    out = io.StringIO()
    configure("console", "info", stream=out)
    structlog.get_logger("t").info("hello", value=SECRET)
    assert SECRET not in out.getvalue() and "hello" in out.getvalue()

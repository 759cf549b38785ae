"""The error table and `classify`: one category per code, by code only."""

from __future__ import annotations

import json

import pytest

from orchestrator.marketo.errors_table import (
    CODE_TABLE,
    Category,
    category_of_code,
    classify,
    normalise_code,
    parse_retry_after,
)

EXPECTED = {
    Category.QUEUE_FULL: ["1016"],
    Category.THROTTLE: ["606", "615"],
    Category.QUOTA: ["607"],
    Category.AUTH: ["600", "601", "602"],
    Category.TRANSIENT: ["604", "608", "611", "614", "713", "719", "1014", "1019", "1022"],
    Category.PERMANENT: [
        "603", "605", "609", "610", "612", "613", "616", "1003", "1006", "1011", "1013", "1025",
    ],
}


def body(code: object, message: str = "whatever") -> bytes:
    return json.dumps(
        {"requestId": "r#1", "success": False, "errors": [{"code": code, "message": message}]}
    ).encode()


@pytest.mark.parametrize(
    ("code", "category"), [(c, cat) for cat, codes in EXPECTED.items() for c in codes]
)
def test_every_code_of_the_contract_has_its_category(code: str, category: Category) -> None:
    assert CODE_TABLE[code] is category
    outcome = classify(200, body(code))
    assert outcome.category is category
    assert outcome.code == code
    assert outcome.request_id == "r#1"


@pytest.mark.parametrize("code", [1016, "1016", " 1016 ", 1016.0])
def test_code_as_number_or_string_is_the_same(code: object) -> None:
    outcome = classify(200, body(code))
    assert outcome.category is Category.QUEUE_FULL
    assert outcome.code == "1016"


def test_message_text_is_never_evaluated() -> None:
    # The message says "Too many imports" but the code is 1006: the code wins.
    assert classify(200, body("1006", "Too many imports")).category is Category.PERMANENT
    # And a 1016 with an unfamiliar message is still queue full.
    assert classify(200, body(1016, "There are 10 imports")).category is Category.QUEUE_FULL


def test_unknown_code_is_unknown_and_keeps_the_raw_body() -> None:
    outcome = classify(200, body("9999", "new thing"))
    assert outcome.category is Category.UNKNOWN
    assert outcome.code == "9999"
    assert "new thing" in outcome.body_excerpt
    assert category_of_code("abc") is Category.UNKNOWN
    assert category_of_code(None) is Category.UNKNOWN


def test_success_true_is_ok() -> None:
    outcome = classify(200, b'{"requestId":"x#y","success":true,"result":[]}')
    assert outcome.category is Category.OK
    assert outcome.code is None
    assert outcome.payload == {"requestId": "x#y", "success": True, "result": []}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"requestId":"x#y","success":false}',
        b'{"success":false,"errors":[]}',
        b'{"success":false,"errors":["oops"]}',
        b'{"requestId":"x#y"}',
    ],
)
def test_success_false_without_errors_is_transient(raw: bytes) -> None:
    outcome = classify(200, raw)
    assert outcome.category is Category.TRANSIENT
    assert outcome.code == "no_errors"


@pytest.mark.parametrize(
    "raw",
    [
        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        b"",
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        b"null",
    ],
)
def test_non_json_200_is_transient(raw: bytes) -> None:
    outcome = classify(200, raw)
    assert outcome.category is Category.TRANSIENT
    assert outcome.code == "non_json"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_gateway_html_5xx_is_transient(status: int) -> None:
    page = f"<html><head><title>{status}</title></head><body>nginx</body></html>".encode()
    outcome = classify(status, page)
    assert outcome.category is Category.TRANSIENT
    assert outcome.code == str(status)
    assert outcome.http_status == status
    assert "nginx" in outcome.body_excerpt


def test_http_413_is_permanent_and_429_throttles() -> None:
    assert classify(413, b"<html>too large</html>").category is Category.PERMANENT
    assert classify(413, b"").code == "413"
    assert classify(414, b"").category is Category.PERMANENT
    throttled = classify(429, b"", retry_after="7")
    assert throttled.category is Category.THROTTLE
    assert throttled.retry_after == 7.0


def test_other_4xx_is_permanent() -> None:
    outcome = classify(404, b"<html>not found</html>")
    assert outcome.category is Category.PERMANENT
    assert outcome.code == "404"


def test_normalise_code_and_retry_after() -> None:
    assert normalise_code(True) is None
    assert normalise_code(1.5) is None
    assert normalise_code("0607") == "607"
    assert parse_retry_after("3.5") == 3.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after(None) is None


def test_excerpt_is_bounded() -> None:
    outcome = classify(500, b"x" * 10_000)
    assert len(outcome.body_excerpt) == 500

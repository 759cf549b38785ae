"""Multipart splitting, strict decoding, RFC 4180 records and report rendering (8.4-8.6)."""

from __future__ import annotations

import pytest

from orchestrator.simulator.csvparse import (
    decode_strict,
    iter_records,
    parse_multipart,
    render_report,
)
from orchestrator.simulator.errors import ApiError

CT = "multipart/form-data; boundary=XyZ"


def _body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b"preamble\r\n"
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--XyZ\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + b"--XyZ--\r\n"


def test_multipart_parts_by_name_with_crlf_inside_data() -> None:
    data = b"email\r\na@example.com\r\n--Xy\r\n"
    parts = parse_multipart(_body(("format", None, b"csv"), ("file", "l.csv", data)), CT)
    assert parts["format"].data == b"csv" and parts["format"].filename is None
    assert parts["file"].data == data and parts["file"].filename == "l.csv"


def test_multipart_quoted_boundary_parameter() -> None:
    parts = parse_multipart(_body(("file", "f", b"x")), 'multipart/form-data; boundary="XyZ"')
    assert parts["file"].data == b"x"


@pytest.mark.parametrize(
    ("content_type", "body", "code"),
    [
        ("application/json", b"{}", "612"),
        ("text/csv", b"email\n", "612"),
        ("multipart/form-data", b"--XyZ--", "613"),
        (CT, b"no delimiter here", "613"),
        (CT, b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nunterminated", "613"),
    ],
)
def test_multipart_errors(content_type: str, body: bytes, code: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_multipart(body, content_type)
    assert info.value.code == code


def test_decode_keeps_bom_and_rejects_bad_bytes() -> None:
    assert decode_strict(b"\xef\xbb\xbfemail") == "\ufeffemail"
    with pytest.raises(ApiError) as info:
        decode_strict(b"caf\xe9")
    assert (info.value.code, info.value.message) == ("1003", "Invalid file encoding")


def test_records_follow_rfc4180_and_skip_blank_lines() -> None:
    text = 'a,b\r\n\r\n"x,1","line\nbreak"\n\n"q""uote",\n'
    assert list(iter_records(text, ",")) == [
        ["a", "b"],
        ["x,1", "line\nbreak"],
        ['q"uote', ""],
    ]
    assert list(iter_records("a;b\n1;2\n", ";")) == [["a", "b"], ["1", "2"]]


def test_report_drops_trailing_column_empty_in_every_row() -> None:
    text = render_report(["a", "b", "c"], [(["1", "2", ""], "r1"), (["3"], "r2")], ",", "R")
    assert text == "a,b,R\n1,2,r1\n3,,r2\n"


def test_report_keeps_trailing_column_and_quotes() -> None:
    text = render_report(["a", "b"], [(["x;y", "1"], "bad; really")], ";", "Reason")
    assert text == 'a;b;Reason\n"x;y";1;"bad; really"\n'

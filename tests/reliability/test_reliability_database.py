"""Issue 9.4 (database half): a corrupted or locked database stops ``leadflow run`` at start
with a clear message on stderr, an exit code, and no traceback."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from reliability_harness import Leadflow, read_json_lines, require_module

UNREACHABLE = "http://127.0.0.1:9"


def _assert_clean_failure(result: object, *must_mention: str) -> str:
    code = result.returncode  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert code == 1, (code, stderr)
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    assert lines[0].startswith("leadflow: "), lines
    # One message line; the CLI may add the cause chain as "  caused by ..." lines.
    assert all(line.startswith("  caused by ") for line in lines[1:]), lines
    for word in must_mention:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize(
    "damage",
    ["garbage", "smashed_header", "text_file", "truncated"],
)
def test_corrupt_database_gives_one_clear_line(
    leadflow_factory: object, damage: str
) -> None:
    lf: Leadflow = leadflow_factory(UNREACHABLE)  # type: ignore[operator]
    db = lf.database
    db.parent.mkdir(parents=True, exist_ok=True)
    if damage == "garbage":
        db.write_bytes(bytes(range(256)) * 64)
    elif damage == "text_file":
        db.write_text("email,firstName\nnot@a.database,Oops\n" * 100, encoding="utf-8")
    else:
        created = lf.command("migrate")
        assert created.returncode == 0, created.stderr
        assert db.stat().st_size > 0
        data = bytearray(db.read_bytes())
        if damage == "smashed_header":
            data[:16] = b"NOT SQLITE AT AL"
        else:
            data = data[:100] + b"\x00" * 7
        db.write_bytes(bytes(data))
        for extra in (Path(str(db) + "-wal"), Path(str(db) + "-shm")):
            extra.unlink(missing_ok=True)
    before = db.read_bytes()
    started = time.monotonic()
    result = lf.run_once(timeout=40)
    assert time.monotonic() - started < 30
    _assert_clean_failure(result, str(db))
    # The damaged file is left as it was for the operator to inspect.
    assert db.read_bytes() == before


def test_database_newer_than_the_code_is_refused_clearly(leadflow_factory: object) -> None:
    lf: Leadflow = leadflow_factory(UNREACHABLE)  # type: ignore[operator]
    created = lf.command("migrate")
    assert created.returncode == 0, created.stderr
    with sqlite3.connect(lf.database) as conn:
        conn.execute("PRAGMA user_version = 999")
    result = lf.run_once(timeout=40)
    _assert_clean_failure(result)
    assert "999" in result.stderr


def test_database_held_by_another_daemon(
    simulator_factory: object, leadflow_factory: object
) -> None:
    require_module("orchestrator.intake")
    sim = simulator_factory()  # type: ignore[operator]
    lf: Leadflow = leadflow_factory(sim.url)  # type: ignore[operator]
    first = lf.start()
    deadline = time.monotonic() + 20
    log = lf.logs / "run-001.jsonl"
    while time.monotonic() < deadline:
        if any(e.get("event") == "daemon_started" for e in read_json_lines(log)):
            break
        assert first.poll() is None, (lf.stderr_text(), read_json_lines(log))
        time.sleep(0.05)
    else:
        pytest.fail("the first daemon did not start")

    second = lf.run_once(timeout=40)
    line = _assert_clean_failure(second)
    assert "another leadflow daemon" in line
    assert str(first.pid) in line
    # The first daemon is unharmed by the attempt.
    assert first.poll() is None
    lf.kill(first)

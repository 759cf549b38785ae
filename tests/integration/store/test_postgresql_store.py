"""What exists only on PostgreSQL: reaching the server, its URL, surviving its restart."""

from __future__ import annotations

from pathlib import Path

import pytest
from postgres_support import PgServer

from orchestrator.cli import cli
from orchestrator.errors import StoreUnavailable
from orchestrator.store import Store


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://leadflow:s3cret-pw@/x?host=/nonexistent-socket-dir", "No such file"),
        ("postgresql://leadflow:s3cret-pw@127.0.0.1:1/x", "Connection refused"),
    ],
)
async def test_unreachable_store_url_is_one_line_and_exit_1(
    url: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_STORE__URL", url)
    for command in (["status"], ["migrate"], ["run", "--once"]):
        assert await cli(command) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith("leadflow: cannot reach PostgreSQL at postgresql://leadflow:***@")
        assert said in err and "s3cret-pw" not in err


async def test_a_database_that_does_not_exist_is_named(
    pg_server: PgServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_STORE__URL", pg_server.url("no_such_db"))
    assert await cli(["status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'database "no_such_db" does not exist' in err


async def test_a_malformed_store_url_is_a_setting_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_STORE__URL", "mysql://db/leadflow")
    assert await cli(["status"]) == 2
    assert "store.url must start with postgresql://" in capsys.readouterr().err


async def test_store_reconnects_after_the_server_restarts(pg_server: PgServer,
                                                          pg_url: str) -> None:
    if pg_server.data_dir is None:
        pytest.skip("LEADFLOW_TEST_POSTGRES_URL: the tests do not restart a server they share")
    async with Store.open(pg_url) as store:
        await store.count_calls("2026-01-01", "import_status")
        pg_server.restart()
        # The pool's connections died with the server: a call may fail once, clearly...
        try:
            await store.count_calls("2026-01-01", "import_status")
            counted = 2
        except StoreUnavailable as exc:
            assert "PostgreSQL" in str(exc)
            counted = 1
        # ...and the next one runs on a new connection; nothing committed was lost.
        await store.count_calls("2026-01-01", "import_status")
        assert await store.calls_on("2026-01-01") == counted + 1

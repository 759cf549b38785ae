"""Issue 9.5: secrets. The soaks end with `assert_no_secrets`; these tests prove the check can
fail, and cover the paths where a secret is most likely to leak: refused credentials and an
unreachable Marketo (error messages that carry URLs)."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_checks import assert_no_secrets, events_named
from reliability_harness import CLIENT_SECRET, Leadflow, daemon_settings, require_module
from reliability_inputs import write_lead_file

TOKEN = "0b5c0f7e-1d2a-4c3b-9e8f-123456789abc:sim"


class _FakeSim:
    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def requests(self) -> list[dict[str, Any]]:
        return self.entries


def _good_entry(**changes: Any) -> dict[str, Any]:
    entry = {"endpoint": "import_lead", "auth_header": True, "auth_scheme": "Bearer",
             "token_in_query": False, "query_keys": ["format"], "form_keys": ["file"]}
    entry.update(changes)
    return entry


@pytest.mark.parametrize(
    "plant",
    ["secret_in_log", "token_in_report", "token_in_database", "bearer_in_work",
     "token_in_query", "no_auth_header", "token_in_form"],
)
def test_the_secret_scan_finds_every_planted_leak(tmp_path: Path, plant: str) -> None:
    lf = Leadflow(tmp_path / "lf", daemon_settings(tmp_path / "lf", "http://127.0.0.1:9"))
    (lf.logs / "run-001.jsonl").write_text('{"event": "daemon_started"}\n', encoding="utf-8")
    (lf.results / "x.csv.1").mkdir()
    (lf.results / "x.csv.1" / "report.json").write_text('{"file": "x.csv"}', encoding="utf-8")
    lf.database.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(lf.database) as conn:
        conn.execute("CREATE TABLE errors (message TEXT)")
        conn.execute("INSERT INTO errors VALUES ('HTTP 500 from Marketo')")
    sim = _FakeSim([_good_entry(), {"endpoint": "identity", "auth_header": False,
                                    "auth_scheme": None, "token_in_query": False,
                                    "query_keys": ["client_secret"], "form_keys": []}])
    assert assert_no_secrets(lf, sim, [TOKEN]) >= 3  # type: ignore[arg-type]

    if plant == "secret_in_log":
        with (lf.logs / "run-001.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(f'{{"event": "x", "url": "?client_secret={CLIENT_SECRET}"}}\n')
    elif plant == "token_in_report":
        (lf.results / "x.csv.1" / "report.json").write_text(f'{{"t": "{TOKEN}"}}')
    elif plant == "token_in_database":
        with sqlite3.connect(lf.database) as conn:
            conn.execute("INSERT INTO errors VALUES (?)", (f"401 for token {TOKEN}",))
    elif plant == "bearer_in_work":
        (Path(lf.settings["paths"]["work"]) / "debug.txt").write_text("Authorization: Bearer x1")
    elif plant == "token_in_query":
        sim.entries.append(_good_entry(token_in_query=True))
    elif plant == "no_auth_header":
        sim.entries.append(_good_entry(auth_header=False, auth_scheme=None))
    else:
        sim.entries.append(_good_entry(form_keys=["access_token", "file"]))
    with pytest.raises(AssertionError):
        assert_no_secrets(lf, sim, [TOKEN])  # type: ignore[arg-type]


def _run_briefly(lf: Leadflow, seconds: float) -> int:
    proc = lf.start()
    time.sleep(seconds)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def test_refused_credentials_print_no_secret(
    simulator_factory: Any, leadflow_factory: Any
) -> None:
    require_module("orchestrator.intake")
    sim = simulator_factory({"client_secret": "the-simulator-expects-another-secret"})
    lf: Leadflow = leadflow_factory(sim.url)
    write_lead_file(lf.inbox, "refused.csv", tag="refused", index=0, rows=3,
                    rng=random.Random(1))
    _run_briefly(lf, 4.0)
    text = "".join(p.read_text(errors="replace") for p in lf.logs.iterdir())
    assert "401" in text or "credentials" in text.lower(), text[-2000:]
    assert CLIENT_SECRET not in text
    assert "Traceback" not in lf.stderr_text(), lf.stderr_text()[-2000:]
    assert_no_secrets(lf, sim, [])


def test_unreachable_marketo_prints_no_secret(leadflow_factory: Any) -> None:
    require_module("orchestrator.intake")
    lf: Leadflow = leadflow_factory("http://127.0.0.1:9")
    write_lead_file(lf.inbox, "unreachable.csv", tag="unreachable", index=0, rows=3,
                    rng=random.Random(2))
    code = _run_briefly(lf, 4.0)
    assert code == 0, lf.stderr_text()[-2000:]
    text = "".join(p.read_text(errors="replace") for p in lf.logs.iterdir())
    assert CLIENT_SECRET not in text
    assert events_named(lf, "daemon_stopped"), text[-2000:]

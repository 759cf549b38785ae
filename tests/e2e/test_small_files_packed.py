"""Packing end to end: ``leadflow run`` and ``leadflow simulator`` as subprocesses over HTTP.

- 300 tiny files dropped at once through ``run --once``: each file its own exact report,
  every row in the simulator's lead store, Marketo jobs at most 1 % of the files and API
  calls at most 0.02 per file (issue 15's targets).
- SIGKILL while a pack is being submitted, while it imports and while its results are being
  split; after a restart every file ends with exactly one report and nothing is lost.
"""

from __future__ import annotations

import csv
import signal
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    events,
    get_json,
    patch_json,
    query,
    reports,
    simulator,
    start_daemon,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

HEADER = "email,firstName,lastName,unsubscribed"


def tiny_files(inbox: Path, count: int, *, bad_every: int = 0) -> dict[str, dict[str, Any]]:
    """``count`` files of 3 rows; with ``bad_every``, some rows fail or warn at Marketo.

    A row with ``unsubscribed = y`` passes intake (lenient booleans) and fails at Marketo
    (Invalid data type); an email without ``@`` imports with a warning.

    Returns:
        ``{name: {"emails": importable emails, "failed": lines, "warned": lines}}``.
    """
    made: dict[str, dict[str, Any]] = {}
    for n in range(count):
        emails: set[str] = set()
        failed: set[int] = set()
        warned: set[int] = set()
        lines = [HEADER]
        for i in range(3):
            line = i + 2
            email, flag = f"t{n}.{i}@example.org", "false"
            if bad_every and (n * 3 + i) % bad_every == 1:
                flag = "y"
                failed.add(line)
            elif bad_every and (n * 3 + i) % bad_every == 2:
                email = f"t{n}.{i}(at)example.org"
                warned.add(line)
            if line not in failed:
                emails.add(email)
            lines.append(f"{email},Tiny {n},File {i},{flag}")
        name = f"tiny-{n:03d}.csv"
        (inbox / name).write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
        made[name] = {"emails": emails, "failed": failed, "warned": warned}
    return made


def source_rows(path: Path) -> set[int]:
    if not path.exists():
        return set()
    with path.open(encoding="utf-8", newline="") as fh:
        return {int(row["sourceRow"]) for row in csv.DictReader(fh)}


def check_exact(var: Path, url: str, made: dict[str, dict[str, Any]]) -> None:
    """One report per file, its own counts and rows, every good row at Marketo."""
    found = reports(var / "results")
    assert sorted(found) == sorted(made), "every file has a report"
    assert all(len(v) == 1 for v in found.values()), "exactly one report per file"
    leads = {lead["email"] for lead in get_json(f"{url}/_sim/leads")}
    for name, info in made.items():
        (report,) = found[name]
        rows = report["rows"]
        assert rows["total"] == 3 == rows["imported"] + rows["failed"] + rows["rejected"]
        assert rows["imported"] == len(info["emails"]), (name, rows)
        assert rows["failed"] == len(info["failed"]) and rows["warned"] == len(info["warned"])
        assert info["emails"] <= leads, f"rows of {name} are missing at Marketo"
        folder = var / "results" / f"{name}.{report['file_id']}"
        assert source_rows(folder / "failures.csv") == info["failed"], name
        assert source_rows(folder / "warnings.csv") == info["warned"], name
        for upload in report["uploads"]:
            assert upload["status"] == "complete" and upload["rows"] == 3
            assert upload["numOfLeadsProcessed"] == len(info["emails"])
    assert not list((var / "results").glob("*.tmp"))
    assert not [p for p in (var / "inbox").rglob("*") if p.is_file()]


def test_300_tiny_files_cost_few_jobs_and_calls_and_each_gets_its_exact_report(
    tmp_path: Path,
) -> None:
    toml = "rows_per_second = 5000.0\nrate_limit_calls = 100000\n"
    with simulator(tmp_path, toml, time_scale=10) as url:
        config = write_config(tmp_path, url, max_upload_bytes=9_500_000)
        var = tmp_path / "var"
        made = tiny_files(var / "inbox", 300)
        log = tmp_path / "run.log"
        proc = start_daemon(config, log, once=True)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
        check_exact(var, url, made)
        stats = next(iter(get_json(f"{url}/_sim/stats")["instances"].values()))
    jobs = [b for b in stats["batches"] if b["kind"] == "lead"]
    calls = {k: v for k, v in stats["calls_by_endpoint"].items() if k != "identity"}
    assert len(jobs) <= 300 * 0.01, jobs
    assert sum(calls.values()) <= 300 * 0.02, calls
    # Shared batches: every report names one of those jobs, and import_submitted names
    # every file that rode in it.
    lines = events(log)
    submitted = [e for e in lines if e["event"] == "import_submitted"]
    assert {b["batchId"] for b in jobs} == {e["batch_id"] for e in submitted}
    ids = sorted(i for e in submitted for i in e["file_ids"])
    assert ids == list(range(1, 301))
    found = reports(var / "results")
    assert {r[0]["uploads"][0]["batchId"] for r in found.values()} == {b["batchId"] for b in jobs}
    assert max(r[0]["uploads"][0]["batch"]["files"] for r in found.values()) > 100


def test_sigkill_while_a_pack_is_submitted_importing_and_split_loses_nothing(
    tmp_path: Path,
) -> None:
    # Slow calls (every call waits 0.4 s) and slow imports make each moment last.
    toml = ("rows_per_second = 20.0\nrate_limit_calls = 100000\n"
            "[faults]\nlatency_s = 0.4\n")
    with simulator(tmp_path, toml, time_scale=10) as url:
        config = write_config(tmp_path, url, max_upload_bytes=9_500_000)
        var = tmp_path / "var"
        db = var / "leadflow.db"
        made = tiny_files(var / "inbox", 40, bad_every=7)

        def pack_submitting() -> bool:
            return bool(query(db, "SELECT 1 FROM uploads u WHERE u.status = 'submitting' AND"
                                  " (SELECT COUNT(*) FROM parts p WHERE p.upload_id = u.id) > 1"))

        def pack_importing() -> bool:
            return bool(query(db, "SELECT 1 FROM uploads u WHERE u.status IN ('submitted',"
                                  " 'importing') AND u.attempts > 0 AND"
                                  " (SELECT COUNT(*) FROM parts p WHERE p.upload_id = u.id) > 1"))

        def pack_splitting() -> bool:
            return bool(query(db, "SELECT 1 FROM uploads u WHERE u.status = 'complete' AND"
                                  " u.results_split_at IS NULL AND u.num_rows_failed > 0 AND"
                                  " (SELECT COUNT(*) FROM parts p WHERE p.upload_id = u.id) > 1"))

        logs = [tmp_path / f"run-{n}.log" for n in range(4)]
        caught = []
        for moment, log in zip((pack_submitting, pack_importing, pack_splitting), logs,
                               strict=False):
            proc = start_daemon(config, log)
            assert wait_for(lambda lg=log: '"daemon_started"' in lg.read_text(), 20)
            seen = wait_for(lambda m=moment, p=proc: m() or p.poll() is not None, 30)
            assert proc.poll() is None, log.read_text()[-3000:]
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            caught.append((moment.__name__, seen))
            if moment is pack_importing:
                # Faster now, so that the batch ends while the next daemon runs.
                patch_json(f"{url}/_sim/settings", {"rows_per_second": 2000.0})
        assert all(seen for _, seen in caught), caught
        patch_json(f"{url}/_sim/settings", {"faults": {"latency_s": 0.0}})
        proc = start_daemon(config, logs[3], once=True)
        assert proc.wait(60) == 0, logs[3].read_text()[-3000:]
        check_exact(var, url, made)

    lines = [e for log in logs for e in events(log)]
    assert sum(e["event"] == "daemon_started" for e in lines) == 4
    # The pack caught mid-submit was sent again, and the repeat names its files.
    reaped = [e for e in lines if e["event"] == "upload_reaped"]
    resent = [e for e in lines if e["event"] == "resubmitted_after_uncertain_submit"]
    assert reaped and len(reaped[0]["file_ids"]) > 1
    assert {e["upload_id"] for e in resent} == {e["upload_id"] for e in reaped}
    assert all(e["file_ids"] for e in resent)
    # Splits interrupted were done again: one results_split line per batch that completed.
    split = [e for e in lines if e["event"] == "results_split"]
    assert len({e["upload_id"] for e in split}) == len(split)

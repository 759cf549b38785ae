"""The demo's summary: every mismatch between what was sent and what came back is a problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator.demo.files import DemoFile, Expected
from orchestrator.demo.summary import build_summary, read_reports, render_summary

FILES = [
    DemoFile("big.csv", "big", Expected("complete", 10, min_uploads=2), 1000,
             {"email": "a@x.com", "firstName": "Ann", "lastName": "Lee"}),
    DemoFile("bad.csv", "bad", Expected("partial", 5, rejected=2, warned=1), 100,
             {"email": "b@x.com", "firstName": "Bo", "lastName": "Ek"}),
    DemoFile("webinar/w.csv", "route", Expected("complete", 3), 50,
             {"email": "c@x.com", "firstName": "Cé", "lastName": "Ö"}),
    DemoFile("empty.csv", "empty", Expected("empty", 0), 10),
]
WHERE = {"demo_dir": "/d", "results": "/d/results", "inbox": "/d/inbox", "log": "/d/log",
         "summary": "/d/summary.json", "database": "/d/db", "archive": "/d/a",
         "rejected": "/d/r"}


def _report(name: str, fid: int, status: str, total: int, imported: int, rejected: int = 0,
            warned: int = 0, uploads: int = 1) -> dict[str, Any]:
    return {
        "file": name, "file_id": fid, "status": status,
        "rows": {"total": total, "imported": imported, "failed": 0, "warned": warned,
                 "rejected": rejected},
        "uploads": [{"seq": i + 1, "batchId": 1000 + fid * 10 + i,
                     "numOfLeadsProcessed": imported // uploads if uploads else 0,
                     "numOfRowsFailed": 0, "numOfRowsWithWarning": warned}
                    for i in range(uploads)],
        "_path": f"/d/results/{name}.{fid}/report.json",
    }


def _good() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    reports = {
        "big.csv": _report("big.csv", 1, "complete", 10, 10, uploads=2),
        "bad.csv": _report("bad.csv", 2, "partial", 5, 3, rejected=2, warned=1),
        "w.csv": _report("w.csv", 3, "complete", 3, 3),
        "empty.csv": _report("empty.csv", 4, "empty", 0, 0, uploads=0),
    }
    batches = [
        {"batchId": bid, "status": "Complete", "imported": n, "failed": 0, "warned": w}
        for bid, n, w in ((1010, 5, 0), (1011, 5, 0), (1020, 3, 1), (1030, 3, 0))
    ]
    stats = {"leads": 16, "peak_queued_or_importing": 3, "batches": batches,
             "calls_by_endpoint": {"import": 4}, "errors": {}, "slot_busy_s": [1.0, 2.0],
             "list_members": {1001: 3}}
    leads = {
        "a@x.com": {"firstName": "Ann", "lastName": "Lee", "listIds": []},
        "b@x.com": {"firstName": "Bo", "lastName": "Ek", "listIds": []},
        "c@x.com": {"firstName": "Cé", "lastName": "Ö", "listIds": [1001]},
    }
    return reports, stats, leads


def test_all_good_is_ok_and_renders() -> None:
    reports, stats, leads = _good()
    summary = build_summary(FILES, reports, stats, leads, elapsed_s=1.23, where=WHERE)
    assert summary["ok"], summary["problems"]
    assert summary["totals"] == {"total": 18, "imported": 16, "failed": 0, "warned": 1,
                                 "rejected": 2, "uploads": 4}
    assert summary["files"][0]["batch_ids"] == [1010, 1011]
    console = Console(record=True, width=160)
    console.print(render_summary(summary))
    text = console.export_text()
    assert "big.csv" in text and "16 leads" in text and "queue peaked at 3 of 10" in text


def test_every_kind_of_mismatch_is_reported() -> None:
    reports, stats, leads = _good()
    reports["big.csv"] = _report("big.csv", 1, "partial", 10, 9, uploads=1)
    del reports["empty.csv"]
    leads["b@x.com"] = {"firstName": "Bo", "lastName": "Ã–k", "listIds": []}
    leads["c@x.com"] = {"firstName": "Cé", "lastName": "Ö", "listIds": []}
    leads["a@x.com"] = None  # type: ignore[assignment]
    stats["leads"] = 99
    stats["peak_queued_or_importing"] = 11
    stats["batches"][2]["warned"] = 0
    stats["list_members"] = {1001: 2}
    summary = build_summary(FILES, reports, stats, leads, elapsed_s=1.0, where=WHERE)
    assert not summary["ok"]
    text = "\n".join(summary["problems"])
    for needle in [
        "big.csv: status partial, expected complete",
        "big.csv: rows.imported 9, expected 10",
        "big.csv: 1 uploads, expected at least 2",
        "big.csv: lead a@x.com is not in the simulator's lead store",
        "bad.csv: lastName arrived as 'Ã–k', sent 'Ek'",
        "webinar/w.csv: lead c@x.com is not in static list 1001",
        "empty.csv: no report.json was written",
        "the simulator holds 99 leads",
        "queue peaked at 11",
        "bad.csv: batch 1020 reported (3, 0, 1), the simulator says (3, 0, 0)",
        "static list 1001 has 2 members; webinar/w.csv imported 3",
    ]:
        assert needle in text


def test_read_reports_keeps_the_newest_per_name(tmp_path: Path) -> None:
    for fid, status in ((3, "partial"), (7, "complete")):
        folder = tmp_path / f"x.csv.{fid}"
        folder.mkdir()
        (folder / "report.json").write_text(json.dumps({"file": "x.csv", "file_id": fid,
                                                        "status": status}))
    (tmp_path / "broken.1").mkdir()
    (tmp_path / "broken.1" / "report.json").write_text("{not json")
    found = read_reports(tmp_path)
    assert list(found) == ["x.csv"]
    assert found["x.csv"]["status"] == "complete"
    assert found["x.csv"]["_path"].endswith("x.csv.7/report.json")

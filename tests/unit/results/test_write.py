"""The CSV/JSON writers and the results folder swap (orchestrator/results/write.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from orchestrator.results.write import merge_csv, read_rejections, replace_dir, write_json


def test_read_rejections_pads_short_rows_and_keeps_surplus_fields(tmp_path: Path) -> None:
    path = tmp_path / "rejections.csv"
    path.write_text(
        "sourceRow,email,name,Import Failure Reason\r\n"
        "9,a@x,Ann,Invalid number of fields\r\n"
        "3,b@x,Invalid number of fields\r\n"
        "5,c@x,Cy,extra,more,Invalid number of fields\r\n",
        encoding="utf-8",
    )
    rows = read_rejections(path, 2, ";")
    assert rows == [
        (3, ("b@x", ""), "Invalid number of fields"),
        (5, ("c@x", "Cy;extra;more"), "Invalid number of fields"),
        (9, ("a@x", "Ann"), "Invalid number of fields"),
    ]
    assert read_rejections(tmp_path / "missing.csv", 2, ",") == []


def test_merge_csv_orders_and_quotes(tmp_path: Path) -> None:
    out = tmp_path / "failures.csv"
    n = merge_csv(
        out,
        ["E-mail", "Name"],
        [
            [(2, ("a@x", 'Quote "q"'), "r1"), (None, ("?", "?"), "unmatched")],
            [(1, ("b@x", "Line\nbreak"), "r2"), (3, ("c@x", "C, Inc"), "r3")],
        ],
    )
    assert n == 4
    raw = out.read_bytes()
    assert raw.startswith(b"sourceRow,E-mail,Name,reason\r\n")
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[1:] == [
        ["1", "b@x", "Line\nbreak", "r2"],
        ["2", "a@x", 'Quote "q"', "r1"],
        ["3", "c@x", "C, Inc", "r3"],
        ["", "?", "?", "unmatched"],
    ]
    assert merge_csv(tmp_path / "none.csv", ["a"], [[], []]) == 0
    assert not (tmp_path / "none.csv").exists()


def test_replace_dir_swaps_and_repairs_a_crashed_swap(tmp_path: Path) -> None:
    final = tmp_path / "x.csv.1"
    final.mkdir()
    (final / "report.json").write_text("old")
    tmp = tmp_path / "x.csv.1.tmp"
    tmp.mkdir()
    write_json(tmp / "report.json", {"v": "new"})
    replace_dir(tmp, final)
    assert json.loads((final / "report.json").read_text()) == {"v": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv.1"]
    # crash between the two renames: final gone, .old and .tmp present
    final.rename(tmp_path / "x.csv.1.old")
    tmp.mkdir()
    (tmp / "report.json").write_text("newer")
    replace_dir(tmp, final)
    assert (final / "report.json").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv.1"]

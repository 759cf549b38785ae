"""A failures.csv written by the reporter, fixed and dropped back into the inbox, is imported."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from intake_support import uploads_of
from structlog.testing import capture_logs

from orchestrator.intake import Intake
from orchestrator.models import FileStatus
from orchestrator.results.write import merge_csv
from orchestrator.store import Store


async def test_fixed_failures_csv_is_imported(
    tmp_path: Path, make_intake: Callable[..., Intake], store: Store
) -> None:
    failures = tmp_path / "failures.csv"
    written = merge_csv(
        failures,
        ["Email Address", "firstName", "leadScore"],
        [
            [
                (4, ("bo@example.com", "Bo", "lots"), "Invalid data type in field Lead Score"),
                (7, ("", "Dee", "2"), "Value for lookup field 'email' not found"),
            ]
        ],
    )
    assert written == 2
    # the user fixes the two rows in an editor and drops the file in the inbox
    fixed = failures.read_bytes().replace(b",lots,", b",40,").replace(b"7,,Dee", b"7,dee@x.com,Dee")
    intake = make_intake()
    (intake.settings.paths.inbox / "failures-fixed.csv").write_bytes(fixed)
    with capture_logs() as logs:
        assert await intake.scan_once() == 1
    (record,) = await store.files_in(FileStatus.QUEUED)
    assert (record.rows_total, record.rows_rejected, record.format) == (2, 0, "csv")
    assert await uploads_of(store, record) == [
        (b"email,firstName,leadScore\r\nbo@example.com,Bo,40\r\ndee@x.com,Dee,2\r\n", [2, 3])
    ]
    assert any(e["event"] == "leadflow_report_columns_dropped" for e in logs)


async def test_intake_encoding_setting_reaches_preparation(
    make_intake: Callable[..., Intake], store: Store
) -> None:
    data = "email,lastName,city\r\na@x.com,Kovač,Čakovec\r\nb@x.com,Horváth,Győr\r\n"
    intake = make_intake(intake={"stable_s": 0.0, "encoding": "windows-1250"})
    (intake.settings.paths.inbox / "hr.csv").write_bytes(data.encode("cp1250"))
    assert await intake.scan_once() == 1
    (record,) = await store.files_in(FileStatus.QUEUED)
    assert record.encoding == "cp1250"
    assert await uploads_of(store, record) == [(data.encode(), [2, 3])]

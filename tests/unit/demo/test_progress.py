"""The demo's progress view reads true figures from a real store."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from store_helpers import enqueue_uploads

from orchestrator.demo.progress import ProgressView, progress_line, read_progress, render_progress
from orchestrator.models import FileStatus, NewPart, UploadStatus
from orchestrator.store import Store


async def test_progress_counts_files_uploads_and_rows(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db") as store:
        big = await store.add_file(name="big.csv", inbox_path="/i/big.csv", work_path="/w/1",
                                   route=None, size_bytes=100)
        await enqueue_uploads(store, 
            big.id, [NewPart(f"/w/1/u{i}.csv", 10, [2, 3, 4]) for i in range(3)],
            rows_total=9,
        )
        routed = await store.add_file(name="w.csv", inbox_path="/i/webinar/w.csv",
                                      work_path="/w/2", route="webinar", size_bytes=10)
        await store.transition_file(routed.id, FileStatus.RECEIVED, FileStatus.EMPTY,
                                    reported_at=1.0)
        for seq, status in ((1, UploadStatus.COMPLETE), (2, UploadStatus.SUBMITTED)):
            claimed = await store.claim_next()
            assert claimed is not None
            await store.transition_upload(
                claimed.id, UploadStatus.SUBMITTING, status, batch_id=1000 + seq,
                num_leads_processed=3 if status is UploadStatus.COMPLETE else 1,
                num_rows_failed=0,
            )
        progress = await read_progress(store)

    assert [f.name for f in progress.files] == ["big.csv", "webinar/w.csv"]
    big_p = progress.files[0]
    assert (big_p.status, big_p.uploads_done, big_p.uploads_total) == ("queued", 1, 3)
    assert (big_p.at_marketo, big_p.rows_total, big_p.rows_imported) == (1, 9, 4)
    assert progress.finished == 1 and progress.uploads == (1, 3) and progress.at_marketo == 1
    assert progress.by_status() == {"queued": 1, "empty": 1}
    line = progress_line(progress, 2.0, expected=8)
    assert "files 1/8 finished (1 empty, 1 queued)" in line
    assert "uploads 1/3 done, 1 at Marketo; rows imported 4" in line

    console = Console(record=True, width=120)
    console.print(render_progress(progress, 2.0, 8))
    text = console.export_text()
    assert "big.csv" in text and "1/3" in text and "4/9" in text

    plain = Console(record=True, width=200, force_terminal=False)
    with ProgressView(plain, expected=8) as view:
        view.update(progress)
        view.update(progress)  # unchanged: no second line
        view.update(progress, final=True)
    assert plain.export_text().count("files 1/8 finished") == 1

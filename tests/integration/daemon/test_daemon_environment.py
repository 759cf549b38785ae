"""Issue 13.5 in the scheduler: a prepared upload that cannot be read (its folder is a file, a
permission, a disk) is the machine's fault: the upload is held and sent once it can be read,
never rejected. Real folders, a real SQLite file, the simulator over HTTP."""

from __future__ import annotations

from collections.abc import Callable

from daemon_sim import MakeSim
from store_helpers import enqueue_uploads
from structlog.testing import capture_logs

from orchestrator.marketo import MarketoClient
from orchestrator.models import NewPart, UploadStatus
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.settings import Settings
from orchestrator.store import Store

BODY = b"email,firstName\r\na@example.com,Ana\r\nb@example.com,Bo\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_an_unreadable_upload_is_held_and_sent_later_not_rejected(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(rate_limit_calls=100_000)
    settings = daemon_settings(
        sim.url, intake={"rescan_interval_s": 1.0, "environment_retry_max_s": 4.0}
    )
    clock = Clock()
    blocker = settings.paths.work / "1"
    blocker.write_text("a file where the work folder of file 1 should be\n")
    upload_path = blocker / "upload-0001.csv"
    async with (
        Store.open(settings.paths.database, clock=clock) as store,
        MarketoClient(settings, store=store) as client,
    ):
        record = await store.add_file(name="a.csv", inbox_path="/in/a.csv",
                                      work_path=str(blocker / "source" / "a.csv"), route=None,
                                      size_bytes=len(BODY))
        (upload_id,) = await enqueue_uploads(store, record.id,
            [NewPart(str(upload_path), len(BODY), [2, 3], "leads",
                       {"format": "csv", "lookupField": "email"})],
            sha256="x", rows_total=2,
        )
        scheduler = Scheduler(settings, store, client, clock=clock, rand=lambda: 0.5)
        with capture_logs() as logs:
            await scheduler.step()
            held = await store.get_upload(upload_id)
            assert held is not None
            assert held.status is UploadStatus.QUEUED and held.attempts == 0
            assert held.not_before == clock.now + 1.0
            assert held.error_code == "environment"
            await scheduler.step()  # not due: nothing is sent
            clock.now += 1.0
            await scheduler.step()  # due, still unreadable: the wait doubles
            again = await store.get_upload(upload_id)
            assert again is not None and again.not_before == clock.now + 2.0
            # The operator repairs the folder.
            blocker.unlink()
            blocker.mkdir()
            upload_path.write_bytes(BODY)
            clock.now += 2.0
            await scheduler.step()
        sent = await store.get_upload(upload_id)
    assert sent is not None and sent.status is UploadStatus.SUBMITTED, sent
    assert sent.batch_id is not None and sent.attempts == 1 and sent.error_code is None
    unreadable = [e for e in logs if e["event"] == "upload_unreadable"]
    assert [(e["log_level"], e["retry_in_s"]) for e in unreadable] == [
        ("error", 1.0), ("error", 2.0)
    ]
    assert not [e for e in logs if e["event"] == "import_rejected"]
    imports = [r for r in await sim.requests() if r["endpoint"] == "import_lead"]
    assert len(imports) == 1  # nothing reached Marketo while the file was unreadable

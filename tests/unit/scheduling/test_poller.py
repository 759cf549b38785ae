"""The poller against a fake Marketo queue and a real store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from structlog.testing import capture_logs as _capture_logs

from orchestrator.errors import ApiTransientError
from orchestrator.models import UploadStatus
from orchestrator.scheduling.poller import Poller
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.settings import Settings
from orchestrator.store import Store

AddFile = Callable[..., Awaitable[list[int]]]


def capture_logs() -> Any:
    return _capture_logs(processors=[structlog.contextvars.merge_contextvars])


async def submit_all(settings: Settings, store: Store, marketo: Any, clock: Any) -> None:
    scheduler = Scheduler(settings, store, marketo, clock=clock, rand=lambda: 0.0)
    while await scheduler.step() == 0.0:
        pass


def make_poller(settings: Settings, store: Store, marketo: Any, clock: Any) -> Poller:
    return Poller(settings, store, marketo, clock=clock)


async def test_complete_job_records_counters_and_wakes_scheduler_and_reporter(
    store: Store, add_file: AddFile, clock: Any, marketo: Any,
    fast_settings: Callable[..., Settings],
) -> None:
    settings = fast_settings()
    (upload_id,) = await add_file(n=1, rows=10)
    await submit_all(settings, store, marketo, clock)
    upload = await store.get_upload(upload_id)
    assert upload is not None and upload.batch_id is not None
    marketo.finish(upload.batch_id, failed=2)
    poller = make_poller(settings, store, marketo, clock)
    clock.now += 1
    with capture_logs() as logs:
        assert await poller.poll_due() == 1
    done = await store.get_upload(upload_id)
    assert done is not None and done.status is UploadStatus.COMPLETE
    assert (done.num_leads_processed, done.num_rows_failed, done.marketo_status) == (
        8, 2, "Complete")
    assert done.finished_at == clock.now and done.next_poll_at is None and done.polls == 1
    assert poller.slot_freed.is_set() and poller.finished.is_set()
    finished = [e for e in logs if e["event"] == "import_finished"]
    assert len(finished) == 1 and finished[0]["failed"] == 2
    [(file_id, *_)] = await store.files_of_upload(upload_id)
    assert finished[0]["batch_id"] == upload.batch_id and finished[0]["file_id"] == file_id
    assert finished[0]["file_ids"] == [file_id]
    assert await poller.poll_due() == 0  # terminal jobs are not polled again


async def test_queued_jobs_far_back_are_polled_less_often(
    store: Store, add_file: AddFile, clock: Any, marketo: Any,
    fast_settings: Callable[..., Settings],
) -> None:
    settings = fast_settings(polling={"min_interval_s": 1.0, "max_interval_s": 9.0})
    ids = await add_file(n=10)
    await submit_all(settings, store, marketo, clock)
    clock.now += 1
    poller = make_poller(settings, store, marketo, clock)
    assert await poller.poll_due() == 10
    delays = [
        (u.next_poll_at or 0) - clock.now for u in [await store.get_upload(i) for i in ids]
        if u is not None
    ]
    assert delays[0] == delays[1] == 1.0
    assert delays == sorted(delays) and delays[-1] == 9.0 and delays[2] < delays[5]
    # A second pass at +1 s asks only about the first two.
    marketo.status_calls.clear()
    clock.now += 1
    assert await poller.poll_due() == 2
    uploads = await store.at_marketo()
    assert sorted(marketo.status_calls) == sorted(u.batch_id for u in uploads[:2])


async def test_importing_progress_sets_a_rate_and_the_next_poll_at_the_expected_end(
    store: Store, add_file: AddFile, clock: Any, marketo: Any,
    fast_settings: Callable[..., Settings],
) -> None:
    settings = fast_settings(polling={"min_interval_s": 1.0, "max_interval_s": 30.0})
    (upload_id,) = await add_file(n=1, rows=1000)
    await submit_all(settings, store, marketo, clock)
    batch = (await store.get_upload(upload_id)).batch_id  # type: ignore[union-attr]
    poller = make_poller(settings, store, marketo, clock)
    job = marketo.jobs[batch]
    job.status, job.processed = "Importing", 100
    clock.now += 1
    await poller.poll_due()
    first = await store.get_upload(upload_id)
    assert first is not None and first.status is UploadStatus.IMPORTING
    assert first.next_poll_at == clock.now + 1.0  # no rate yet
    job.processed = 200
    clock.now += 1
    await poller.poll_due()
    assert poller.rate == 100.0
    second = await store.get_upload(upload_id)
    assert second is not None and second.next_poll_at == clock.now + 8.0  # 800 rows at 100/s


async def test_failed_batch_is_uploaded_again_until_the_limit(
    store: Store, add_file: AddFile, clock: Any, marketo: Any,
    fast_settings: Callable[..., Settings],
) -> None:
    settings = fast_settings(daemon={"max_batch_attempts": 2})
    (upload_id,) = await add_file(n=1)
    poller = make_poller(settings, store, marketo, clock)
    with capture_logs() as logs:
        for round_ in (1, 2):
            await submit_all(settings, store, marketo, clock)
            upload = await store.get_upload(upload_id)
            assert upload is not None and upload.attempts == round_
            marketo.finish(upload.batch_id, status="Failed")
            clock.now += 1
            await poller.poll_due()
    [finished] = [e for e in logs if e["event"] == "import_finished"]
    assert finished["status"] == "failed" and finished["batch_failures"] == 2
    upload = await store.get_upload(upload_id)
    assert upload is not None and upload.status is UploadStatus.FAILED
    assert upload.batch_failures == 2 and upload.error_code == "batch_failed"
    history = [h[1] for h in await store.history("upload", upload_id)]
    assert history.count("queued") == 2 and history[-1] == "failed"
    assert poller.requeued.is_set()
    assert [e["code"] for e in await store.recent_errors()] == ["batch_failed"] * 2


async def test_forgotten_batch_is_uploaded_again_once(
    store: Store, add_file: AddFile, clock: Any, marketo: Any,
    fast_settings: Callable[..., Settings],
) -> None:
    settings = fast_settings()
    (upload_id,) = await add_file(n=1)
    poller = make_poller(settings, store, marketo, clock)
    statuses = []
    for _ in range(2):
        await submit_all(settings, store, marketo, clock)
        marketo.jobs.clear()  # Marketo forgot every batch
        clock.now += 1
        await poller.poll_due()
        statuses.append((await store.get_upload(upload_id)).status)  # type: ignore[union-attr]
    assert statuses == [UploadStatus.QUEUED, UploadStatus.FAILED]
    upload = await store.get_upload(upload_id)
    assert upload is not None and upload.error_code == "1013" and upload.attempts == 2


async def test_status_call_failure_tries_again_at_the_longest_interval(
    store: Store, add_file: AddFile, clock: Any, marketo: Any,
    fast_settings: Callable[..., Settings],
) -> None:
    settings = fast_settings()
    (upload_id,) = await add_file(n=1)
    await submit_all(settings, store, marketo, clock)
    marketo.status_errors = [ApiTransientError("608", "API Temporarily Unavailable")]
    poller = make_poller(settings, store, marketo, clock)
    clock.now += 1
    with capture_logs() as logs:
        await poller.poll_due()
    upload = await store.get_upload(upload_id)
    assert upload is not None and upload.status is UploadStatus.SUBMITTED
    assert upload.next_poll_at == clock.now + settings.polling.max_interval_s
    assert [e["code"] for e in logs if e["event"] == "poll_failed"] == ["608"]


async def test_a_deep_job_is_polled_soon_once_the_jobs_ahead_finish(
    store: Store, add_file: AddFile, clock: Any, marketo: Any,
    fast_settings: Callable[..., Settings],
) -> None:
    settings = fast_settings(polling={"min_interval_s": 1.0, "max_interval_s": 9.0})
    ids = await add_file(n=4)
    await submit_all(settings, store, marketo, clock)
    deep = await store.get_upload(ids[3])
    assert deep is not None
    await store.transition_upload(deep.id, deep.status, deep.status,
                                  next_poll_at=clock.now + 80.0)
    poller = make_poller(settings, store, marketo, clock)
    for upload_id in ids[:2]:
        upload = await store.get_upload(upload_id)
        marketo.finish(upload.batch_id)  # type: ignore[union-attr]
    clock.now += 1
    await poller.poll_due()  # the first two are found Complete
    assert [u.id for u in await store.at_marketo()] == ids[2:]
    clock.now += 0.5
    await poller.poll_due()  # ids[3] is now second in line: its poll comes forward
    promoted = await store.get_upload(ids[3])
    assert promoted is not None and promoted.next_poll_at == clock.now + 1.0


async def test_an_unknown_status_string_is_not_recorded_and_asked_again_later(
    store: Store, add_file: AddFile, clock: Any, marketo: Any,
    fast_settings: Callable[..., Settings],
) -> None:
    settings = fast_settings()
    (upload_id,) = await add_file(n=1)
    await submit_all(settings, store, marketo, clock)
    upload = await store.get_upload(upload_id)
    marketo.jobs[upload.batch_id].status = "Processing"  # type: ignore[union-attr]
    poller = make_poller(settings, store, marketo, clock)
    clock.now += 1
    with capture_logs() as logs:
        await poller.poll_due()
    after = await store.get_upload(upload_id)
    assert after is not None and after.status is UploadStatus.SUBMITTED
    assert after.marketo_status == "Queued"
    assert after.next_poll_at == clock.now + settings.polling.max_interval_s
    assert [e["event"] for e in logs if e["event"] == "poll_unexpected_status"]


async def test_an_upload_moved_meanwhile_is_left_alone(
    store: Store, add_file: AddFile, clock: Any, marketo: Any,
    fast_settings: Callable[..., Settings],
) -> None:
    settings = fast_settings()
    (upload_id,) = await add_file(n=1)
    await submit_all(settings, store, marketo, clock)
    marketo.jobs.clear()  # the next status call answers 1013 ...

    class Racing:
        """... while another process (``leadflow retry``) already moved the upload."""

        async def get_status(self, batch_id: int, **kw: Any) -> Any:
            await store.transition_upload(upload_id, UploadStatus.SUBMITTED,
                                          UploadStatus.COMPLETE)
            return await marketo.get_status(batch_id, **kw)

    poller = Poller(settings, store, Racing(), clock=clock)
    clock.now += 1
    with capture_logs() as logs:
        await poller.poll_due()
    assert (await store.get_upload(upload_id)).status is UploadStatus.COMPLETE  # type: ignore[union-attr]
    assert [e["actual"] for e in logs if e["event"] == "poll_result_dropped"] == ["complete"]

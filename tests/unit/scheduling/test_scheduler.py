"""The scheduler against a fake Marketo queue and a real store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from structlog.testing import capture_logs as _capture_logs

from orchestrator.errors import (
    ApiPermanentError,
    ApiTransientError,
    QuotaExhausted,
    UncertainSubmit,
)
from orchestrator.models import UploadStatus
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.settings import Settings
from orchestrator.store import Store


def capture_logs() -> Any:
    """Capture log events with the bound context (file_id, upload_id, ...) merged in."""
    return _capture_logs(processors=[structlog.contextvars.merge_contextvars])


AddFile = Callable[..., Awaitable[list[int]]]
FakeClock = Any
FakeMarketo = Any



async def drain_steps(scheduler: Scheduler, limit: int = 50) -> int:
    """Call ``step`` while it asks to be called again at once; return how many ran."""
    for n in range(limit):
        if await scheduler.step() != 0.0:
            return n + 1
    raise AssertionError("scheduler never settled")


async def test_fifo_up_to_the_configured_slots(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo, fast_settings: Callable[..., Settings]
) -> None:
    first = await add_file(n=7)
    second = await add_file(n=5)
    scheduler = Scheduler(fast_settings(), store, marketo, clock=clock, rand=lambda: 0.0)
    with capture_logs() as logs:
        await drain_steps(scheduler)
    submitted = await store.at_marketo()
    assert [u.id for u in submitted] == (first + second)[:10]
    assert [str(p) for p in marketo.create_calls] == [u.path for u in submitted]
    assert all(u.attempts == 1 and u.batch_id and u.status is UploadStatus.SUBMITTED
               for u in submitted)
    assert all(u.next_poll_at == clock.now + 0.05 for u in submitted)
    assert await store.count_in_flight() == 10
    assert [u.id for u in await store.uploads_in(UploadStatus.QUEUED)] == second[3:]
    events = [e for e in logs if e["event"] == "import_submitted"]
    assert len(events) == 10 and events[0]["batch_id"] == submitted[0].batch_id
    assert events[0]["upload_id"] == first[0] and events[0]["seq"] == 1
    assert events[0]["file"] == "f1.csv" and events[-1]["file"] == "f2.csv"


async def test_configured_slots_below_ten_are_respected(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo, fast_settings: Callable[..., Settings]
) -> None:
    await add_file(n=6)
    scheduler = Scheduler(fast_settings(limits={"import_slots": 4}), store, marketo, clock=clock)
    await drain_steps(scheduler)
    assert len(marketo.create_calls) == 4 and marketo.peak_outstanding == 4


async def test_queue_full_is_not_an_attempt_and_teaches_the_free_slots(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo, fast_settings: Callable[..., Settings]
) -> None:
    ids = await add_file(n=8)
    marketo.foreign = 7
    scheduler = Scheduler(fast_settings(), store, marketo, clock=clock, rand=lambda: 0.0)
    with capture_logs() as logs:
        await drain_steps(scheduler)
        # Waiting: neither more steps nor time short of the backoff send anything.
        for _ in range(5):
            await scheduler.step()
        clock.now += 2.0
        await scheduler.step()
    assert len(marketo.create_calls) == 4 and marketo.queue_full == 1
    assert scheduler.state.learned == 3
    refused = await store.get_upload(ids[3])
    assert refused is not None and refused.status is UploadStatus.QUEUED
    assert refused.attempts == 0 and refused.not_before is None
    full = [e for e in logs if e["event"] == "queue_full"]
    assert len(full) == 1 and full[0]["outstanding"] == 3 and full[0]["upload_id"] == ids[3]

    # One of ours leaves Marketo's queue: exactly one more goes, without another 1016.
    done = (await store.at_marketo())[0]
    marketo.finish(done.batch_id or 0)
    await store.transition_upload(done.id, UploadStatus.SUBMITTED, UploadStatus.COMPLETE)
    await drain_steps(scheduler)
    assert len(marketo.create_calls) == 5 and marketo.queue_full == 1
    assert (await store.get_upload(ids[3])).status is UploadStatus.SUBMITTED  # type: ignore[union-attr]

    # After the jittered backoff (5 s * 0.5 with rand 0) one probe is allowed; it fails and
    # the next wait is twice as long.
    clock.now += 2.5
    await drain_steps(scheduler)
    assert len(marketo.create_calls) == 6 and marketo.queue_full == 2
    assert scheduler.state.streak == 2
    assert scheduler.state.retry_at == clock.now + 5.0


async def test_learned_limit_creeps_back_when_foreign_jobs_leave(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo, fast_settings: Callable[..., Settings]
) -> None:
    await add_file(n=12)
    marketo.foreign = 8
    scheduler = Scheduler(fast_settings(), store, marketo, clock=clock, rand=lambda: 0.0)
    await drain_steps(scheduler)
    assert scheduler.state.learned == 2
    marketo.foreign = 0
    clock.now += 10
    await drain_steps(scheduler)
    assert await store.count_in_flight() == 10
    assert scheduler.state.learned is None and marketo.queue_full == 1


async def test_uncertain_submit_is_sent_again_and_logged(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo, fast_settings: Callable[..., Settings]
) -> None:
    (upload_id,) = await add_file(n=1)
    marketo.create_errors = [UncertainSubmit(None, "connection closed")]
    scheduler = Scheduler(fast_settings(), store, marketo, clock=clock)
    with capture_logs() as logs:
        await drain_steps(scheduler)
    upload = await store.get_upload(upload_id)
    assert upload is not None and upload.status is UploadStatus.SUBMITTED
    assert upload.uncertain == 1 and upload.attempts == 1 and upload.error_code is None
    assert len(marketo.create_calls) == 2
    resent = [e for e in logs if e["event"] == "resubmitted_after_uncertain_submit"]
    assert len(resent) == 1 and resent[0]["upload_id"] == upload_id
    history = [h[1] for h in await store.history("upload", upload_id)]
    assert history == ["queued", "submitting", "queued", "submitting", "submitted"]


async def test_permanent_error_rejects_the_upload_and_records_it(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo, fast_settings: Callable[..., Settings]
) -> None:
    bad, good = await add_file(n=2)
    marketo.create_errors = [ApiPermanentError("1006", "Field 'emial' not found")]
    scheduler = Scheduler(fast_settings(), store, marketo, clock=clock)
    await drain_steps(scheduler)
    rejected = await store.get_upload(bad)
    assert rejected is not None and rejected.status is UploadStatus.REJECTED
    assert rejected.error_code == "1006" and "emial" in (rejected.error or "")
    assert (await store.get_upload(good)).status is UploadStatus.SUBMITTED  # type: ignore[union-attr]
    errors = await store.recent_errors()
    assert errors[0]["code"] == "1006" and errors[0]["upload_id"] == bad
    assert scheduler.finished.is_set()


async def test_transient_error_backs_off_without_breaking_fifo(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo, fast_settings: Callable[..., Settings]
) -> None:
    first, second = await add_file(n=2)
    marketo.create_errors = [ApiTransientError("611", "System error")]
    scheduler = Scheduler(fast_settings(), store, marketo, clock=clock, rand=lambda: 0.0)
    await drain_steps(scheduler)
    upload = await store.get_upload(first)
    assert upload is not None and upload.status is UploadStatus.QUEUED
    assert upload.not_before == clock.now + 0.5
    assert len(marketo.create_calls) == 1  # the second upload did not jump the queue
    clock.now += 0.5
    await drain_steps(scheduler)
    assert [u.id for u in await store.at_marketo()] == [first, second]


async def test_quota_exhausted_pauses_until_reset(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo, fast_settings: Callable[..., Settings]
) -> None:
    (upload_id,) = await add_file(n=1)
    marketo.create_errors = [QuotaExhausted("607", "Daily quota reached", clock.now + 100)]
    scheduler = Scheduler(fast_settings(), store, marketo, clock=clock)
    with capture_logs() as logs:
        await drain_steps(scheduler)
        clock.now += 99
        await scheduler.step()
    assert len(marketo.create_calls) == 1
    assert (await store.get_upload(upload_id)).attempts == 0  # type: ignore[union-attr]
    assert any(e["event"] == "quota_paused" for e in logs)
    clock.now += 1
    await drain_steps(scheduler)
    assert len(marketo.create_calls) == 2


async def test_repeated_lost_answers_back_off(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo,
    fast_settings: Callable[..., Settings],
) -> None:
    (upload_id,) = await add_file(n=1)
    lost = UncertainSubmit(None, "connection closed")
    marketo.create_errors = [lost, lost, lost]
    scheduler = Scheduler(fast_settings(), store, marketo, clock=clock, rand=lambda: 0.0)
    await drain_steps(scheduler)
    # The first loss is sent again at once; the second waits 0.5 s (retry_base_s 1, jitter).
    assert len(marketo.create_calls) == 2
    upload = await store.get_upload(upload_id)
    assert upload is not None and upload.not_before == clock.now + 0.5
    clock.now += 0.5
    await drain_steps(scheduler)
    assert len(marketo.create_calls) == 3
    clock.now += 1.0
    await drain_steps(scheduler)
    final = await store.get_upload(upload_id)
    assert final is not None and final.status is UploadStatus.SUBMITTED and final.uncertain == 3


async def test_a_batch_id_handed_out_again_releases_the_older_upload(
    store: Store, add_file: AddFile, clock: FakeClock, marketo: FakeMarketo,
    fast_settings: Callable[..., Settings],
) -> None:
    first, second = await add_file(n=2)
    scheduler = Scheduler(fast_settings(), store, marketo, clock=clock)
    assert await scheduler.step() == 0.0
    assert (await store.get_upload(first)).batch_id == 101  # type: ignore[union-attr]
    marketo.next_id = 100  # Marketo lost its state and hands out 101 again
    with capture_logs() as logs:
        await drain_steps(scheduler)
    reused = [e for e in logs if e["event"] == "batch_id_reused"]
    assert len(reused) == 1 and reused[0]["other_upload_id"] == first
    again, now_second = await store.get_upload(first), await store.get_upload(second)
    assert now_second is not None and now_second.batch_id == 101
    assert again is not None and again.batch_id == 102 and again.attempts == 2
    assert again.status is UploadStatus.SUBMITTED

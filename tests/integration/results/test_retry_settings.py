"""``leadflow retry`` after a setting was fixed: options from the current settings, a route
that is gone, and bytes imported since as another file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from results_helpers import FakeClient, end_upload, prepare_file
from store_helpers import enqueue_uploads, form_waiting

from orchestrator.commands.retry import retry_command
from orchestrator.models import FileStatus, UploadStatus
from orchestrator.results import Reporter
from orchestrator.settings import Settings
from orchestrator.store import Store

HEADER = ["email", "firstName"]
ROWS = [["a@x.com", "Ann"], ["b@x.com", "Bob"]]


def _with_routes(make_settings: Callable[..., Settings], *routes: dict[str, Any]) -> Settings:
    return make_settings(daemon={"results_retry_s": 30.0}, routes=list(routes))


async def _refused_file(store: Store, settings: Settings, clock: Any, route: str | None) -> Any:
    """A file whose only upload Marketo refused with ``1003 Partition 'Nope' not found``."""
    prep = await prepare_file(store, settings, "p.csv", HEADER, ROWS, route=route)
    await end_upload(store, prep.uploads[0], UploadStatus.REJECTED, error_code="1003",
                     error="Partition 'Nope' not found")
    assert await Reporter(settings, store, FakeClient(), clock).report_ready() == 1
    file = await store.get_file(prep.file.id)
    assert file is not None and file.reported_at is not None
    return prep


async def test_retry_sends_with_the_route_settings_in_force_now(
    store: Store, make_settings: Callable[..., Settings], clock: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _with_routes(make_settings, {"name": "events", "partition_name": "Nope"})
    prep = await _refused_file(store, before, clock, "events")
    fixed = _with_routes(make_settings, {"name": "events", "partition_name": "Default",
                                         "list_id": 7, "lookup_field": "email"})
    assert await retry_command(fixed, prep.file.id) == 0, capsys.readouterr().err
    (upload,) = await form_waiting(store, prep.file.id)
    assert upload.status is UploadStatus.QUEUED
    assert upload.options == {"format": "csv", "lookupField": "email", "listId": 7,
                              "partitionName": "Default"}
    file = await store.get_file(prep.file.id)
    assert file is not None and file.status is FileStatus.QUEUED
    assert file.info["route"]["partitionName"] == "Default"


async def test_retry_of_a_root_file_uses_the_import_section(
    store: Store, make_settings: Callable[..., Settings], clock: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prep = await _refused_file(store, _with_routes(make_settings), clock, None)
    fixed = make_settings(import_={"partition_name": "Default", "lookup_field": "email"})
    assert await retry_command(fixed, prep.file.id) == 0, capsys.readouterr().err
    (upload,) = await form_waiting(store, prep.file.id)
    assert upload.options == {"format": "csv", "lookupField": "email",
                              "partitionName": "Default"}


async def test_retry_refuses_a_route_that_is_gone(
    store: Store, make_settings: Callable[..., Settings], clock: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _with_routes(make_settings, {"name": "events", "partition_name": "Nope"})
    prep = await _refused_file(store, before, clock, "events")
    gone = _with_routes(make_settings, {"name": "webinars"})
    assert await retry_command(gone, prep.file.id) == 2
    err = capsys.readouterr().err
    assert "route 'events', which is no longer in the settings" in err
    assert "known routes: webinars" in err
    upload = await store.get_upload(prep.uploads[0].id)
    assert upload is not None and upload.status is UploadStatus.REJECTED


async def test_retry_after_the_same_bytes_were_imported_as_another_file(
    store: Store, make_settings: Callable[..., Settings], clock: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _with_routes(make_settings)
    prep = await _refused_file(store, settings, clock, None)
    first = await store.get_file(prep.file.id)
    assert first is not None and first.status is FileStatus.REJECTED
    again = await store.add_file(name="p.csv", inbox_path="i", work_path="w", route=None,
                                 size_bytes=1)
    await enqueue_uploads(store, again.id, [], new_status=FileStatus.QUEUED, sha256=first.sha256)
    assert await retry_command(settings, prep.file.id) == 1
    err = capsys.readouterr().err
    assert f"the same bytes were imported since as file {again.id}" in err
    assert "UNIQUE constraint" not in err
    upload = await store.get_upload(prep.uploads[0].id)
    assert upload is not None and upload.status is UploadStatus.REJECTED  # not re-queued

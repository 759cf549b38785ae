"""The baseline of the API-economy benchmark: a naive poller on the same `MarketoClient`.

What a first integration typically does, as two concurrent loops: one keeps submitting in
FIFO order while Marketo accepts (up to its 10 queued-or-importing jobs; a ``1016`` means try
again at the next tick); the other, every 5 simulated seconds, asks for the status of every
outstanding batch, whatever its place in Marketo's queue. A batch that ends ``Failed`` or an upload whose answer was lost goes
back to the front of the line. It keeps the queue as full as leadflow does, so its makespan
is the same; what differs is the calls it spends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from bench.scaling import scale_client_constants
from bench.workload import Upload
from orchestrator.errors import ApiError, QueueFull, UncertainSubmit
from orchestrator.marketo import MarketoClient
from orchestrator.settings import Settings

#: Marketo's queue: jobs queued-or-importing per instance (docs/reference/marketo-api.md §2.4).
MARKETO_QUEUE = 10
OPTIONS = {"format": "csv", "lookupField": "email"}


async def run_naive(settings: Settings, uploads: list[Upload], *, scale: float,
                    poll_every_s: float = 5.0, timeout_s: float = 300.0) -> dict[str, Any]:
    """Import ``uploads`` the naive way; return counters and the start (``t0_mono``).

    Args:
        settings: the same scaled settings leadflow gets.
        uploads: in FIFO order.
        scale: simulated seconds per real second (the tick is ``poll_every_s / scale``).
        poll_every_s: simulated seconds between two status rounds.
        timeout_s: real seconds before giving up.

    Raises:
        TimeoutError: not done within ``timeout_s``.
    """
    scale_client_constants(scale)
    pending: deque[Upload] = deque(uploads)
    outstanding: dict[int, Upload] = {}
    counts = {"queue_full": 0, "resubmitted": 0}
    tick = poll_every_s / scale
    done = asyncio.Event()
    room = asyncio.Event()
    async with MarketoClient(settings, store=None, window_s=20.0 / scale) as client:
        t0 = time.monotonic()

        async def submitter() -> None:
            # Submit in FIFO order while Marketo has room; after a refusal, wait one tick.
            while not done.is_set():
                if pending and len(outstanding) < MARKETO_QUEUE:
                    upload = pending.popleft()
                    try:
                        job = await client.create_import(upload.path, kind="leads",
                                                         options=OPTIONS)
                    except QueueFull:
                        counts["queue_full"] += 1
                    except (UncertainSubmit, ApiError):
                        counts["resubmitted"] += 1
                    else:
                        outstanding[int(job.batch_id)] = upload
                        continue
                    pending.appendleft(upload)
                    await asyncio.sleep(tick)
                else:
                    room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(room.wait(), tick)

        async def poll(batch_id: int) -> tuple[int, str | None]:
            try:
                st = await client.get_status(batch_id, kind="leads", options=OPTIONS)
            except ApiError:
                return batch_id, None
            return batch_id, str(st.status)

        async def poller() -> None:
            # Every tick, the status of every outstanding batch.
            while pending or outstanding:
                if time.monotonic() - t0 > timeout_s:
                    raise TimeoutError(f"naive poller not done after {timeout_s} s")
                await asyncio.sleep(tick)
                answers = await asyncio.gather(*(poll(b) for b in list(outstanding)))
                for batch_id, status in answers:
                    if status == "Complete":
                        del outstanding[batch_id]
                        room.set()
                    elif status == "Failed":
                        pending.appendleft(outstanding.pop(batch_id))
                        counts["resubmitted"] += 1
                        room.set()
            done.set()

        await asyncio.gather(submitter(), poller())
    return {"t0_mono": t0, "wall_s": time.monotonic() - t0,
            "queue_full_answers": counts["queue_full"], "resubmitted": counts["resubmitted"]}

"""The baseline of the API-economy benchmark: a naive poller on the same `MarketoClient`.

What a first integration typically does: keep submitting in FIFO order while Marketo accepts
(up to its 10 queued-or-importing jobs; a ``1016`` means try again at the next tick), and
every 5 simulated seconds ask for the status of every outstanding batch, whatever its place
in Marketo's queue. A batch that ends ``Failed`` or an upload whose answer was lost goes
back to the front of the line. It keeps the queue as full as leadflow does, so its makespan
is the same; what differs is the calls it spends.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from bench.workload import Upload
from orchestrator.errors import ApiError, QueueFull, UncertainSubmit
from orchestrator.settings import Settings

#: Marketo's queue: jobs queued-or-importing per instance (contract 2.4).
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
    from bench.harness import scale_client_constants
    from orchestrator.marketo import MarketoClient

    scale_client_constants(scale)
    pending: deque[Upload] = deque(uploads)
    outstanding: dict[int, Upload] = {}
    queue_full = resubmitted = 0
    tick = poll_every_s / scale
    async with MarketoClient(settings, store=None, window_s=20.0 / scale) as client:
        t0 = time.monotonic()

        async def poll(batch_id: int) -> tuple[int, str | None]:
            try:
                st = await client.get_status(batch_id, kind="leads", options=OPTIONS)
            except ApiError:
                return batch_id, None
            return batch_id, str(st.status)

        while pending or outstanding:
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"naive poller not done after {timeout_s} s")
            while pending and len(outstanding) < MARKETO_QUEUE:
                upload = pending[0]
                try:
                    job = await client.create_import(upload.path, kind="leads", options=OPTIONS)
                except QueueFull:
                    queue_full += 1
                    break
                except (UncertainSubmit, ApiError):
                    resubmitted += 1
                    break
                pending.popleft()
                outstanding[int(job.batch_id)] = upload
            await asyncio.sleep(tick)
            answers = await asyncio.gather(*(poll(b) for b in list(outstanding)))
            for batch_id, status in answers:
                if status == "Complete":
                    del outstanding[batch_id]
                elif status == "Failed":
                    pending.appendleft(outstanding.pop(batch_id))
                    resubmitted += 1
    return {"t0_mono": t0, "wall_s": time.monotonic() - t0, "queue_full_answers": queue_full,
            "resubmitted": resubmitted}

"""Benchmark 3: under pressure (issue 8, item 3).

Another integration keeps 6 jobs queued-or-importing at all times (the simulator's
``foreign_standing_jobs``; each as long as one of ours), 5% of API calls answer HTTP 500,
and tokens live 10 simulated minutes. 40 uploads of 60 simulated seconds (8 in quick mode)
are imported by leadflow and, as the baseline, by the naive poller.

The ideal: Marketo's queue is one FIFO of 10 with 2 importing. With 6 places always held by
the other integration, a client that keeps the 4 remaining places full gets 4 of every 10
jobs that start, so 2 x 4/10 = 0.8 slots: ideal = our import work / 0.8. Figures: makespan
over that ideal, ``1016`` answers per upload, ``606`` answers (target 0), ``602`` answers and
calls per upload.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from bench.common import figure
from bench.harness import run_scenario
from bench.workload import small_uploads

#: Places of Marketo's queue of 10 that the other integration holds.
FOREIGN = 6
IMPORT_S = 60.0
ROWS = 600


def _config() -> dict[str, Any]:
    return {
        "rows_per_second": ROWS / IMPORT_S,
        "store_leads": False,
        "seed": 3,
        "token_lifetime_s": 600,
        "faults": {
            "foreign_standing_jobs": FOREIGN,
            "foreign_job_duration_s": IMPORT_S,
            "http_500_probability": 0.05,
        },
    }


async def _run(quick: bool) -> dict[str, Any]:
    scale = 400.0 if quick else 200.0
    share = (10 - FOREIGN) / 10
    with tempfile.TemporaryDirectory(prefix="bench-pressure-") as tmp:
        root = Path(tmp)
        uploads = small_uploads(root / "up", 8 if quick else 40, rows=ROWS)
        ours = await run_scenario("leadflow", uploads, _config(), scale, root, share=share)
        naive = await run_scenario("naive", uploads, _config(), scale, root, share=share)
    n = len(uploads)

    def code(run: dict[str, Any], c: str) -> int:
        return int(run["errors"].get(c, 0))

    figures = [
        figure("makespan / ideal for the 4 remaining places", ours["makespan_ratio"],
               "x ideal", baseline=naive["makespan_ratio"], baseline_name="naive poller",
               note=f"ideal = work / (2 slots x 4/10) = {ours['ideal_s']:.0f} simulated s; "
                    "ratio = our makespan / naive makespan"),
        figure("1016 answers per upload", code(ours, "1016") / n, "answers/upload",
               baseline=code(naive, "1016") / n, baseline_name="naive poller",
               note="Too many imports: back-pressure from the foreign jobs"),
        figure("606 answers", code(ours, "606"), "answers", baseline=code(naive, "606"),
               baseline_name="naive poller", target="<= 0",
               note="rate limit hit (our governor keeps 50 of the 100 calls / 20 s)"),
        figure("602 answers (expired token)", code(ours, "602"), "answers",
               baseline=code(naive, "602"), baseline_name="naive poller",
               note="tokens live 10 simulated min; the client refreshes on 602 and replays"),
        figure("total calls per upload", ours["calls_per_upload"], "calls/upload",
               baseline=naive["calls_per_upload"], baseline_name="naive poller",
               note="every API call the simulator received (5% answered 500), identity excluded"),
        figure("uploads complete", ours["complete"], "uploads", target=f">= {n}",
               note=f"of {n}; none lost or duplicated by the faults"),
    ]
    return {"figures": figures,
            "details": {"time_scale": scale, "leadflow": ours, "naive": naive,
                        "simulator": _config()}}


def run(quick: bool) -> dict[str, Any]:
    """Import under pressure with leadflow and with the naive poller."""
    return asyncio.run(_run(quick))

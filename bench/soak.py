"""Long reliability soaks: ``python -m bench.soak [--crash] [--faults] [--seeds 1 2 3]``.

Runs the same scenarios as ``tests/reliability`` (crash soak: SIGKILL the daemon at seeded
random moments and restart it; fault soak: every simulator fault at once and a daily quota that
runs out before America/Chicago midnight) with more files and kills, once per seed, and prints
one JSON line of figures per run plus a summary. Every run asserts what the tests assert, so a
failed run prints the assertion and the command exits 1. ``LEADFLOW_SOAK=1 make pytest`` runs
the longer versions inside pytest instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "reliability"))

from reliability_scenarios import crash_soak, fault_soak


def main(argv: list[str] | None = None) -> int:
    """Run the soaks and print their figures; return 1 if any run failed."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--crash", action="store_true", help="run the crash soak")
    parser.add_argument("--faults", action="store_true", help="run the fault soak")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--files", type=int, default=60, help="files per crash soak run")
    parser.add_argument("--kills", type=int, default=40, help="SIGKILLs per crash soak run")
    parser.add_argument("--fault-files", type=int, default=30, help="files per fault soak run")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder")
    args = parser.parse_args(argv)
    kinds = [k for k, on in (("crash", args.crash), ("faults", args.faults)) if on]
    kinds = kinds or ["crash", "faults"]
    failed = 0
    summary: list[dict[str, Any]] = []
    for kind in kinds:
        for seed in args.seeds:
            folder = Path(tempfile.mkdtemp(prefix=f"leadflow-soak-{kind}-{seed}-"))
            t0 = time.monotonic()
            try:
                if kind == "crash":
                    figures = crash_soak(folder, seed=seed, files=args.files, kills=args.kills,
                                         run_s=(0.2, 2.5))
                else:
                    figures = fault_soak(folder, seed=seed, files=args.fault_files,
                                         before_midnight_s=25.0, daily_quota=30,
                                         timeout_s=600.0)
                status = "ok"
            except Exception as exc:  # noqa: BLE001 - reported, the next run goes on
                failed += 1
                status = "failed"
                figures = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                traceback.print_exc()
            row = {"soak": kind, "seed": seed, "status": status,
                   "seconds": round(time.monotonic() - t0, 1), **figures}
            if args.keep or status != "ok":
                row["folder"] = str(folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)
            print(json.dumps(row, default=str), flush=True)
            summary.append(row)
    print(f"{len(summary) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

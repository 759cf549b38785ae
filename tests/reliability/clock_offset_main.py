"""Run the ``leadflow`` command with the wall clock shifted by ``RELIABILITY_CLOCK_OFFSET_S``.

Used by the fault soak so the daemon's quota day (America/Chicago) agrees with the simulator's
clock, which the test moved to just before midnight with ``/_sim/clock/advance``. ``time.time``
is replaced before anything of leadflow is imported, so every ``clock=time.time`` default sees
the shifted clock; the event loop's monotonic clock (sleeps, timeouts) is untouched.
"""

from __future__ import annotations

import os
import sys
import time

_OFFSET = float(os.environ.get("RELIABILITY_CLOCK_OFFSET_S", "0") or 0)
_real_time = time.time


def _shifted_time() -> float:
    return _real_time() + _OFFSET


time.time = _shifted_time

if __name__ == "__main__":
    from orchestrator.cli import main

    sys.argv[0] = "leadflow"
    main()

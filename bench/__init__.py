"""leadflow benchmarks (issue 8): ``python -m bench [--quick] [--only NAME] [--out PATH]``.

Each benchmark module exposes ``run(quick: bool) -> dict`` returning
``{"figures": [Figure, ...], "details": {...}}`` (see `bench.common.figure`). The runner
(`bench.__main__`) runs each in its own child process, prints one table and writes JSON.
"""

from __future__ import annotations

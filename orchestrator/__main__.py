"""``python -m orchestrator`` is the ``leadflow`` command."""

from __future__ import annotations

from orchestrator.cli import main

main()

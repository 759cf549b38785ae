"""Printing for commands (the one place besides cli.py that writes to stdout directly)."""

from __future__ import annotations

import sys


def print_out(text: str) -> None:
    """Write ``text`` and a newline to stdout and flush."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

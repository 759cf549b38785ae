"""Printing and exit codes of the operator commands.

Besides cli.py, this is the one place that writes to stdout and stderr directly.
"""

from __future__ import annotations

import sys

#: The command did what was asked.
EXIT_OK = 0
#: Nothing was done; the line printed says why.
EXIT_NOTHING = 1
#: Bad usage: an unknown route or file id, a missing file.
EXIT_USAGE = 2


def print_out(text: str) -> None:
    """Write ``text`` and a newline to stdout and flush."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_err(text: str) -> None:
    """Write ``text`` and a newline to stderr and flush."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()

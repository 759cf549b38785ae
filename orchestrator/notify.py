"""systemd's notify protocol (``Type=notify``): READY, STATUS, WATCHDOG, RELOADING, STOPPING.

systemd passes ``NOTIFY_SOCKET`` (a path of a Unix datagram socket; one starting with ``@``
is in the abstract namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``, the process meant). A message is one datagram of ``KEY=VALUE`` lines
(``sd_notify(3)``). Without ``NOTIFY_SOCKET`` every method does nothing, so leadflow behaves
the same outside systemd. A message that cannot be sent is logged once
(``notify_failed``) and never raised: systemd's bookkeeping must not stop the daemon.
"""

from __future__ import annotations

import collections
import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


def socket_address(value: str) -> str | bytes:
    """Return the address to send to for a ``NOTIFY_SOCKET`` value.

    ``@name`` is the abstract socket (a NUL byte, then ``name``); anything else is a file system path.
    """
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    return value


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Return the watchdog timeout in seconds for process ``pid``, or None when off.

    Off when ``WATCHDOG_USEC`` is missing, not a positive integer, or ``WATCHDOG_PID`` names
    another process (``sd_watchdog_enabled(3)``).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    owner = environ.get("WATCHDOG_PID", "")
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """Sends notify messages to systemd (or does nothing without ``NOTIFY_SOCKET``).

    Args:
        address: the ``NOTIFY_SOCKET`` value, or None (every call is a no-op).
        watchdog_s: the watchdog timeout, seconds (``WATCHDOG_USEC``), or None.
    """

    def __init__(self, address: str | None, watchdog_s: float | None = None) -> None:
        self.address = address or None
        self.watchdog_s = watchdog_s if self.address else None
        self._failed = False
        #: The last messages sent, oldest first (for tests and debugging; bounded).
        self.sent: collections.deque[str] = collections.deque(maxlen=64)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Build from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        return cls(address, watchdog_interval(env, os.getpid()) if address else None)

    @property
    def enabled(self) -> bool:
        """Whether a systemd is listening (``NOTIFY_SOCKET`` was set)."""
        return self.address is not None

    def send(self, **fields: str | int) -> bool:
        """Send one message, ``KEY=VALUE`` per keyword (``send(READY=1, STATUS="...")``).

        Newlines in a value are replaced by spaces (one message, one line per field).

        Returns:
            True if the datagram was sent; False when disabled or the send failed.
        """
        if self.address is None:
            return False
        message = "\n".join(
            f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items()
        )
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(message.encode("utf-8"), socket_address(self.address))
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("notify_failed", socket=self.address,
                            error=f"{type(exc).__name__}: {exc}")
            return False
        self.sent.append(message)
        return True

    def ready(self, status: str) -> bool:
        """``READY=1``: start-up is over (recovery done, loops running)."""
        return self.send(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """``STATUS=``: a one-line summary systemctl status shows."""
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the daemon's event loop is turning and its loops are alive."""
        return self.send(WATCHDOG=1)

    def reloading(self) -> bool:
        """``RELOADING=1``: re-reading the settings (``READY=1`` follows)."""
        return self.send(RELOADING=1, MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC)
                         // 1000)

    def stopping(self, status: str = "stopping") -> bool:
        """``STOPPING=1``: shutdown began."""
        return self.send(STOPPING=1, STATUS=status)

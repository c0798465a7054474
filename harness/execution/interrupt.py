"""Ctrl-C and SIGTERM as a request the run can honour: stop promptly, clean up, keep what finished.

The first SIGINT (Ctrl-C) or SIGTERM (what CI sends) sets the run's
`Interruption`. While the boards run, the runner sees it within a fraction
of a second: every board kills its agent, removes its job dir and releases
its lock, and the run writes summary.json (finished boards as they are, the
rest "interrupted") and exits 130 (SIGINT) or 143 (SIGTERM). Before the
boards start (building the model, preprocessing) there is nothing to clean
up: the signal raises KeyboardInterrupt as usual. A second signal ends the
process at once; what it leaves (locks whose agents died with their SSH
sessions) the next run breaks as stale.
"""

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
"""128 + the signal's number, as a shell reports a process ended by it."""


class Interruption:
    """A run's stop request, set by a signal (or by a caller, e.g. a test)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name: Optional[str] = None
        self._graceful = 0

    def is_set(self) -> bool:
        return self.event.is_set()

    def request(self, signal_name: str = "SIGINT") -> None:
        self.signal_name = self.signal_name or signal_name
        self.event.set()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signal_name or "SIGINT", 130)

    @property
    def graceful(self) -> bool:
        return self._graceful > 0

    @contextmanager
    def boards_running(self) -> Iterator[None]:
        """While inside, a first signal asks the boards to stop and clean up instead of raising KeyboardInterrupt."""
        self._graceful += 1
        try:
            yield
        finally:
            self._graceful -= 1


def _exit_now(code: int) -> None:
    """End the process at once (a second Ctrl-C): show the cursor a live display may have hidden, flush, go."""
    try:
        if sys.stdout.isatty():
            sys.stdout.write("\x1b[?25h\n")
        sys.stdout.flush()
        sys.stderr.write("interrupted again: quitting at once; the next run cleans up what this one left\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)


@contextmanager
def signals_handled(interruption: Optional[Interruption] = None) -> Iterator[Interruption]:
    """Route SIGINT and SIGTERM to an Interruption for the duration (main thread only); restore after."""
    interruption = interruption or Interruption()
    if threading.current_thread() is not threading.main_thread():
        yield interruption
        return

    def handle(signum, frame) -> None:
        name = signal.Signals(signum).name
        if interruption.is_set():
            _exit_now(EXIT_CODES.get(interruption.signal_name or name, 130))
        interruption.request(name)
        if not interruption.graceful:
            raise KeyboardInterrupt

    previous = {number: signal.signal(number, handle) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield interruption
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

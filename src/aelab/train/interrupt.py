"""Ctrl-C during training: the first press finishes the epoch and saves it, the second stops at once.

Stopping mid-epoch would throw away the epoch's work and leave the weights between two
checkpoints; finishing it costs at most one epoch and gives a checkpoint to resume from.
"""

from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """``requested`` turns true on the first SIGINT; the second raises KeyboardInterrupt.

    ``install()`` / ``restore()``, or use it as a context manager.
    """

    def __init__(self, announce: bool = True):
        self.requested = False
        self.announce = announce
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print(
                "\nCtrl-C: stopping once this epoch is saved (press Ctrl-C again to stop at once)",
                file=sys.stderr,
                flush=True,
            )

    def install(self) -> StopRequest:
        # signal handlers can only be set from the main thread; elsewhere Ctrl-C keeps its default
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def __enter__(self) -> StopRequest:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.restore()

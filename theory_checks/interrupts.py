"""Ctrl-C that is not lost inside a garbage-collector callback.

Hypothesis times garbage collection with a ``gc`` callback, which it keeps
registered once imported, and Python prints and then ignores an exception
raised inside such a callback. Python's own SIGINT handler raises
KeyboardInterrupt wherever the main thread is, so a Ctrl-C that arrives while
a collection runs the callback is lost: ``ncflow verify --jobs 1`` then went
on and exited with status 0.

Inside :class:`StickyInterrupt` the handler records the request as well.
:func:`checkpoint`, called between drawn examples and between tasks, raises
KeyboardInterrupt where the request has not been delivered. Within
:func:`deferred` the first Ctrl-C is only recorded, and a second one raises at
once. The drawing of examples runs there, because a checkpoint comes every few
milliseconds, and no KeyboardInterrupt is then raised inside the callback,
where Python would print it as an ignored exception. Elsewhere the handler
raises at once, as Python's does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The context whose handler is installed, or None.
_installed: StickyInterrupt | None = None


class StickyInterrupt:
    """Context that installs the recording SIGINT handler.

    It does so only in the main thread and where SIGINT has Python's default
    handler. Elsewhere (a worker of ``ncflow verify``, which ignores SIGINT, or
    inside another such context) it changes nothing, and :func:`checkpoint`
    reads the outer context's record.
    """

    def __init__(self) -> None:
        self.requested = False
        self.previous: Any = None
        self.deferring = 0  # depth of deferred() contexts

    def __enter__(self) -> StickyInterrupt:
        global _installed
        in_main_thread = threading.current_thread() is threading.main_thread()
        if (
            in_main_thread
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self.previous = signal.signal(signal.SIGINT, self._handle)
            _installed = self
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        global _installed
        if self.previous is None:
            return
        signal.signal(signal.SIGINT, self.previous)
        _installed = None
        self.previous = None
        if self.requested and exc_type is None:
            # A request that no checkpoint delivered is raised on leaving.
            self.requested = False
            raise KeyboardInterrupt

    def _handle(self, signum: int, frame: Any) -> None:
        first = not self.requested
        self.requested = True
        if not (self.deferring and first):
            raise KeyboardInterrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Only record the first Ctrl-C inside this context (module docstring).

    Without a :class:`StickyInterrupt` around it, this context installs one,
    and a Ctrl-C recorded inside is raised on leaving it.
    """
    with StickyInterrupt():
        installed = _installed
        if installed is None:
            yield
            return
        installed.deferring += 1
        try:
            yield
        finally:
            installed.deferring -= 1


def checkpoint() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived since the installed context
    began; the request is then cleared, so cleanup code can go on."""
    if _installed is not None and _installed.requested:
        _installed.requested = False
        raise KeyboardInterrupt

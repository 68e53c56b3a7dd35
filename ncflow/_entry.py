"""Console entry point of ``ncflow``: the command line of :mod:`ncflow.cli`.

Importing the command line loads NumPy, SciPy and torch, which took about
0.4 s on the 2-core test machine. A Ctrl-C in that time raised
KeyboardInterrupt before the command line's own handler existed and printed a
traceback; raised inside the initialisation of a compiled extension (SciPy's
HiGHS solver) it became ``ImportError: initialization failed``. So while the
command line loads, Ctrl-C is only recorded, and the run then exits with 130,
as the command line does for a later one. A KeyboardInterrupt that no command
handles (while the arguments are parsed, say) also ends with 130.
"""

from __future__ import annotations

import signal
import sys
import threading

INTERRUPTED = 130


def main() -> int:
    """Run the command line; return 130 when interrupted outside a command's
    own handling."""
    received: list[int] = []
    previous = None
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        previous = signal.signal(
            signal.SIGINT, lambda signum, frame: received.append(signum)
        )
    try:
        from ncflow.cli import main as cli_main
    except KeyboardInterrupt:
        received.append(signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if received:
        print("ncflow: interrupted", file=sys.stderr)
        return INTERRUPTED
    try:
        return cli_main()
    except KeyboardInterrupt:
        print("ncflow: interrupted", file=sys.stderr)
        return INTERRUPTED

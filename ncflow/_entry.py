"""Console entry point of ``ncflow``: the command line of :mod:`ncflow.cli`.

Importing the command line loads NumPy, SciPy and torch, which took about
0.4 s on the 2-core test machine. A Ctrl-C in that time raised
KeyboardInterrupt before the command line's own handler existed and printed a
traceback. This module imports nothing heavy, so it can catch that interrupt
and exit with 130, as the command line does for a later one.
"""

from __future__ import annotations

import sys

INTERRUPTED = 130


def main() -> int:
    """Run the command line; return 130 when interrupted while it loads."""
    try:
        from ncflow.cli import main as cli_main
    except KeyboardInterrupt:
        print("ncflow: interrupted", file=sys.stderr)
        return INTERRUPTED
    return cli_main()

"""``python -m ncflow``: the command line of :mod:`ncflow.cli`."""

from ncflow.cli import main

raise SystemExit(main())

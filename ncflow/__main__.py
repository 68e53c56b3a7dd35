"""``python -m ncflow``: the command line of :mod:`ncflow.cli`."""

from ncflow._entry import main

raise SystemExit(main())

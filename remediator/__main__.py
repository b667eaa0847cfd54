"""Allow `python -m remediator`."""

from remediator.cli import main

raise SystemExit(main())

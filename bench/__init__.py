"""`make bench`. The benchmarks start the real servers the tests start (a throw-away
PostgreSQL cluster, sshd, `remediator serve`) with the tests' own helpers, tests/support,
put on the import path here rather than copied."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

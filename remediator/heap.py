"""The daemon's long-lived objects kept out of the garbage collector's way.

What start-up builds (config, rules, SQLAlchemy's metadata, pydantic's validators, the
libraries) lives as long as the process, yet each full collection walks all of it: under
a webhook flood those collections took a tenth of the receiver's CPU. Frozen, they are
skipped, and collections walk only what the flood itself made.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect, then freeze what is left. Called once serving, and after each config swap:
    unfrozen first, so the set a reload replaced can be collected."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()

"""The throw-away store each simulation (`remediator test`, `remediator replay`) runs on.

Each is the store a fresh `open` makes, made cheaply:
- a copy of one store migrated once per process (the schema is the same for every case);
- its spool appends on the spool's own connection (InlineSpool): no writer process;
- simulations one after another reuse one folder and one SQLAlchemy engine, so each SQL
  statement is compiled once per process, not once per case. Closing a store empties
  the engine's pool, so no connection outlives its case; a simulation running while
  another is open gets a folder and an engine of its own.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from remediator.store import SqliteStore

STORE_FILE = "sim.db"


@dataclass
class _Shared:
    folder: tempfile.TemporaryDirectory[str]
    engine: AsyncEngine | None = None
    busy: bool = False


_template: tempfile.TemporaryDirectory[str] | None = None  # kept till the process exits
_shared: _Shared | None = None


async def migrated_template() -> Path:
    """A folder holding a freshly migrated, empty store and spool, made once per process.

    A copy of it is the store a fresh `open` would make (the only difference: the time
    schema_migrations says the migrations were applied).
    """
    global _template
    if _template is None:
        made = tempfile.TemporaryDirectory(prefix="remediator-sim-template-")
        store = SqliteStore(Path(made.name) / STORE_FILE, lock=False, inline_spool=True)
        await store.open()
        await store.close()  # its last connection gone, SQLite folds the WAL into the file
        if _template is None:  # another simulation may have made one meanwhile
            _template = made
        else:
            made.cleanup()
    return Path(_template.name)


def _empty(folder: Path) -> None:
    for old in folder.iterdir():
        old.unlink()


class SimStore(SqliteStore):
    """A simulation's store: no lock file, no spool writer process, deleted on close."""

    def __init__(self) -> None:
        global _shared
        if _shared is None:
            _shared = _Shared(tempfile.TemporaryDirectory(prefix="remediator-sim-"))
        self._own: tempfile.TemporaryDirectory[str] | None = None
        self._shared: _Shared | None = None
        if not _shared.busy:
            _shared.busy = True
            self._shared = _shared
            folder = Path(_shared.folder.name)
        else:  # another simulation is open: a folder and an engine of its own
            self._own = tempfile.TemporaryDirectory(prefix="remediator-sim-")
            folder = Path(self._own.name)
        super().__init__(folder / STORE_FILE, lock=False, inline_spool=True)

    def _create_engine(self) -> AsyncEngine:
        if self._shared is None:
            return super()._create_engine()
        if self._shared.engine is None:
            self._shared.engine = super()._create_engine()
        return self._shared.engine

    async def open(self) -> None:
        """Copy the migrated template into the folder, then open it (nothing to migrate)."""
        template = await migrated_template()
        _empty(self.path.parent)
        for made in template.iterdir():
            shutil.copyfile(made, self.path.parent / made.name)
        await super().open()

    async def close(self) -> None:
        """Close (the shared engine's pool emptied), delete the files, free the folder."""
        await super().close()
        if self._shared is not None:
            _empty(self.path.parent)
            self._shared.busy, self._shared = False, None
        if self._own is not None:
            self._own.cleanup()
            self._own = None

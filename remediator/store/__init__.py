"""Durable state: everything that must survive a restart lives here."""

from __future__ import annotations

from pathlib import Path

from remediator.config.models import StoreConfig
from remediator.errors import StoreError
from remediator.store.base import Store, Tx
from remediator.store.sqlite import SqliteStore


def open_store_url(store: StoreConfig | str, base_dir: Path, *, lock: bool = True) -> SqliteStore:
    """The store for a `store:` URL; relative SQLite paths are relative to `base_dir`."""
    url = store.url if isinstance(store, StoreConfig) else store
    if url.startswith("sqlite:///"):
        raw = Path(url.removeprefix("sqlite:///")).expanduser()
        return SqliteStore(raw if raw.is_absolute() else base_dir / raw, lock=lock)
    if url.startswith(("postgresql://", "postgres://")):
        raise StoreError(
            "store: PostgreSQL is not supported by this version yet; use sqlite:///PATH "
            "(the schema and claiming are ready for it, the backend is not wired)"
        )
    raise StoreError(f"store: unsupported URL {url!r}; use sqlite:///PATH")


__all__ = ["SqliteStore", "Store", "Tx", "open_store_url"]

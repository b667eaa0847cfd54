"""Durable state: everything that must survive a restart lives here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from remediator.config.models import StoreConfig
from remediator.config.pgurl import is_postgres, parse_pg_url
from remediator.errors import StoreError
from remediator.store.base import Store, Tx
from remediator.store.postgres import PostgresStore
from remediator.store.sqlite import SqliteStore


def open_store_url(
    store: StoreConfig | str,
    base_dir: Path,
    *,
    lock: bool = True,
    password_env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SqliteStore | PostgresStore:
    """The store for a `store:` URL; relative SQLite paths are relative to `base_dir`.

    A PostgreSQL URL without a password takes it from the variable `password_env` names
    (`store_password_env`); `lock` is SQLite's single-owner lock and has no PostgreSQL
    counterpart (several replicas on one database are what PostgreSQL is for).
    """
    url = store.url if isinstance(store, StoreConfig) else store
    if url.startswith("sqlite:///"):
        raw = Path(url.removeprefix("sqlite:///")).expanduser()
        return SqliteStore(raw if raw.is_absolute() else base_dir / raw, lock=lock)
    if is_postgres(url):
        try:
            pg = parse_pg_url(url)
        except ValueError as exc:
            raise StoreError(f"store: {exc}") from None
        password = None
        if pg.password is None and password_env is not None:
            password = (os.environ if environ is None else environ).get(password_env) or None
            if password is None:
                raise StoreError(
                    f"store_password_env: environment variable {password_env} is not set or "
                    f"empty; set it to the password of {pg.user} on {pg.display}"
                )
        lease = store.lease if isinstance(store, StoreConfig) else None
        if lease is None:
            return PostgresStore(pg.sqlalchemy(password), pg.display)
        return PostgresStore(pg.sqlalchemy(password), pg.display, inbox_lease_s=lease)
    raise StoreError(
        f"store: unsupported URL {url!r}; use sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    )


__all__ = ["PostgresStore", "SqliteStore", "Store", "Tx", "open_store_url"]

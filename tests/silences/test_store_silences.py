"""The store keeps an incident's Alertmanager silence id (migration 11)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from remediator.store import PostgresStore, SqliteStore, open_store_url
from remediator.store.records import State

AnyStore = SqliteStore | PostgresStore


async def _incident(store: AnyStore, fingerprint: str = "f1") -> int:
    async with store.write() as tx:
        incident = await tx.create_incident("r", fingerprint, "2026-01-01T00:00:00Z", {}, {}, 1.0)
    assert incident is not None
    return incident.id


async def test_silence_id_is_recorded_listed_and_cleared_once(store: AnyStore) -> None:
    """An incident's silence id is read back with it, listed among the silenced ones,
    and cleared only by the first of two replicas clearing it (the other learns it was
    done, so the expiry is audited once)."""
    silenced, other = await _incident(store, "f1"), await _incident(store, "f2")
    async with store.write() as tx:
        await tx.set_silence(silenced, "sil-1")
        await tx.update_incident(silenced, 2.0, state=State.REMEDIATED)
    async with store.read() as tx:
        incident = await tx.incident(silenced)
        listed = await tx.silenced_incidents(10)
        assert (await tx.incident(other)) is not None
    assert incident is not None
    assert incident.silence_id == "sil-1"
    assert [(i.id, i.silence_id, i.state) for i in listed] == [
        (silenced, "sil-1", State.REMEDIATED)
    ]
    async with store.write() as tx:
        assert await tx.clear_silence(silenced, "sil-1") is True
        assert await tx.clear_silence(silenced, "sil-1") is False
    async with store.read() as tx:
        assert await tx.silenced_incidents(10) == []


async def test_an_older_store_gains_the_silence_column(store_url: str, tmp_path: Path) -> None:
    """A store made before migration 11 (no incidents.silence_id) is upgraded in place on
    open, and its incidents can then carry a silence (both backends)."""
    store = open_store_url(store_url, tmp_path)
    await store.open()
    incident_id = await _incident(store)
    async with store.write() as tx:
        await tx.conn.execute(text("DROP INDEX ix_incidents_silence"))
        await tx.conn.execute(text("ALTER TABLE incidents DROP COLUMN silence_id"))
        await tx.conn.execute(text("DELETE FROM schema_migrations WHERE version = 11"))
    await store.close()
    store = open_store_url(store_url, tmp_path)
    await store.open()
    try:
        async with store.read() as tx:
            have = await tx.conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("incidents")}
            )
        assert "silence_id" in have
        async with store.write() as tx:
            await tx.set_silence(incident_id, "sil-9")
        async with store.read() as tx:
            assert [i.silence_id for i in await tx.silenced_incidents(10)] == ["sil-9"]
    finally:
        await store.close()

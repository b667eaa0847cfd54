"""The tests' own PostgreSQL: a real server, one empty database per test."""

from __future__ import annotations

from support.postgres import PostgresCluster


def test_cluster_answers_on_loopback(postgres: PostgresCluster) -> None:
    """The session's cluster accepts a password login over TCP on 127.0.0.1."""
    assert postgres.psql("postgres", "SELECT 1") == "1"
    assert postgres.psql("postgres", "SHOW listen_addresses") == "127.0.0.1"


def test_each_test_gets_an_empty_database(postgres: PostgresCluster, pg_url: str) -> None:
    """The per-test database exists, is empty and is not the cluster's default one."""
    name = pg_url.rsplit("/", 1)[1]
    assert name != "postgres"
    tables = postgres.psql(name, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables == "0"


def test_databases_are_dropped_after_their_test(postgres: PostgresCluster) -> None:
    """A database made for one test is gone once it is dropped (no state leaks between tests)."""
    name = postgres.database()
    assert name in postgres.databases()
    postgres.drop(name)
    assert name not in postgres.databases()


def test_only_a_durable_cluster_flushes_its_commits(postgres: PostgresCluster) -> None:
    """The tests' cluster runs with fsync and synchronous commits off (nothing worth keeping
    survives a crash); one started `durable`, as the benchmark starts it, keeps PostgreSQL's
    defaults, so its figures include the flush a production server makes on each commit."""
    settings = "SELECT setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')"
    assert postgres.psql("postgres", settings).split() == ["off", "off"]
    with PostgresCluster.start(durable=True) as durable:
        assert durable.psql("postgres", settings).split() == ["on", "on"]

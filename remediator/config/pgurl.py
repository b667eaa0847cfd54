"""`store: postgresql://USER@HOST:PORT/DB`: parsed and checked without connecting.

`remediator check` (config/models.py) and the daemon (store/__init__.py) read the URL
through here, so a shape the daemon would refuse is reported by `check` first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy.engine import URL

SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
# What asyncpg's `ssl` connect argument accepts as a string (libpq's sslmode names).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
SHAPE = "postgresql://USER@HOST:PORT/DATABASE (optionally ?ssl=require)"


@dataclass(frozen=True)
class PgUrl:
    """The parts of a PostgreSQL store URL."""

    user: str
    password: str | None
    host: str
    port: int
    database: str
    ssl: str | None

    @property
    def display(self) -> str:
        """The URL without its password, for messages and logs."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def sqlalchemy(self, password: str | None) -> URL:
        """The asyncpg URL, with `password` when the URL itself has none."""
        query: Mapping[str, str] = {"ssl": self.ssl} if self.ssl else {}
        return URL.create(
            "postgresql+asyncpg",
            username=self.user,
            password=self.password if self.password is not None else password,
            host=self.host,
            port=self.port,
            database=self.database,
            query=query,
        )


def is_postgres(url: str) -> bool:
    """Whether `url` names a PostgreSQL store (whatever else is wrong with it)."""
    return url.split("://", 1)[0].lower() in SCHEMES and "://" in url


def parse_pg_url(url: str) -> PgUrl:
    """Parse a PostgreSQL store URL; ValueError says what is wrong and the shape expected."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ValueError(f"{exc}; expected {SHAPE}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"scheme must be postgresql://; expected {SHAPE}")
    if not parts.username:
        raise ValueError(f"no user; expected {SHAPE}")
    if not parts.hostname:
        raise ValueError(f"no host; expected {SHAPE}")
    database = unquote(parts.path.removeprefix("/"))
    if not database or "/" in database:
        raise ValueError(f"no database name (or one with '/'); expected {SHAPE}")
    if parts.fragment:
        raise ValueError(f"unexpected '#{parts.fragment}'; expected {SHAPE}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - {"ssl"})
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} (only ssl is known); expected {SHAPE}")
    ssl = query.get("ssl")
    if ssl is not None and ssl not in SSL_MODES:
        raise ValueError(f"ssl must be one of {', '.join(SSL_MODES)}, not {ssl!r}")
    password = unquote(parts.password) if parts.password is not None else None
    return PgUrl(unquote(parts.username), password, parts.hostname, port, database, ssl)

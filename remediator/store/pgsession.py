"""Server settings of every PostgreSQL store connection: a replica that died or was cut
off mid-transaction stops holding its locks within about a lease (`store.lease`).

Without them a peer whose host lost power keeps its incident row locks and guard-scope
advisory locks until the server's TCP keepalive reaps the session (about 2 h on Linux),
and every survivor's write of those rows or scopes waits for them. With them:

- `idle_in_transaction_session_timeout` (the lease): the server ends a session left idle
  inside a transaction, its locks released; a live replica never idles that long in one
  (no transaction waits on the network, a step's command included).
- `lock_timeout` (a third of the lease, at least 1 s): a write that waits longer for a
  lock fails with `lock_not_available` (StoreConflict: run again by its caller, or its
  work item claimed again), so the writer's turn is not held behind a dead peer.
- TCP keepalives and `tcp_user_timeout`: a peer gone from the network (idle, or with
  unacknowledged data) is noticed within about a lease, not hours.
"""

from __future__ import annotations

MIN_LOCK_TIMEOUT_S = 1.0
KEEPALIVE_PROBES = 3


def session_settings(lease_s: float) -> dict[str, str]:
    """The `server_settings` of a store connection for a store lease of `lease_s`."""
    idle_s = max(1, int(lease_s / 2))  # then KEEPALIVE_PROBES probes, one per sixth
    interval_s = max(1, int(lease_s / (2 * KEEPALIVE_PROBES)))
    return {
        "idle_in_transaction_session_timeout": _ms(lease_s),
        "lock_timeout": _ms(max(MIN_LOCK_TIMEOUT_S, lease_s / 3)),
        "tcp_keepalives_idle": str(idle_s),
        "tcp_keepalives_interval": str(interval_s),
        "tcp_keepalives_count": str(KEEPALIVE_PROBES),
        "tcp_user_timeout": _ms(lease_s),
    }


def _ms(seconds: float) -> str:
    return str(round(seconds * 1000))

"""Alertmanager's API v2, as far as silences need it; aiohttp errors become
AlertmanagerError here."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from remediator.alerts import stamp
from remediator.clock import rfc3339
from remediator.config.alertmanager import AlertmanagerConfig
from remediator.errors import AlertmanagerError
from remediator.secrets import read_secret

CREATED_BY = "remediator"
_BARE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_time(value: str) -> float:
    """Alertmanager's RFC 3339 time (nanoseconds allowed) as epoch seconds (ValueError)."""
    return datetime.fromisoformat(stamp(value)).timestamp()


def filter_matcher(name: str, value: str) -> str:
    """`name="value"` for `GET /api/v2/alerts?filter=`, the value quoted and escaped (a
    label comes from the fleet: it is data, never part of the matcher's syntax)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    shown = name if _BARE_NAME.fullmatch(name) else json.dumps(name)
    return f'{shown}="{escaped}"'


def _gone(exc: AlertmanagerError) -> bool:
    """Whether Alertmanager does not know the silence: 404 as its API spec says, or the
    500 "silence not found" of 0.25's DELETE (some versions answer an expired one with
    500 "already expired": the caller decides whether that is gone too)."""
    return exc.status == 404 or (exc.status == 500 and "not found" in str(exc))


@dataclass(frozen=True)
class AmAlert:
    """An alert as Alertmanager lists it."""

    labels: dict[str, str]
    starts_at: str


class AlertmanagerClient:
    """One session to Alertmanager's API; every call bounded by `timeout_s`."""

    def __init__(self, url: str, headers: Mapping[str, str], timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self._headers = dict(headers)
        self.timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_config(
        cls, cfg: AlertmanagerConfig, environ: Mapping[str, str] | None = None
    ) -> AlertmanagerClient:
        """A client with its secrets read now (a missing one is a SecretError at start)."""
        headers: dict[str, str] = {}
        if cfg.bearer_token_env is not None:
            token = read_secret(
                env=cfg.bearer_token_env,
                file=None,
                where="alertmanager.bearer_token_env",
                environ=environ,
            )
            headers["Authorization"] = f"Bearer {token}"
        elif (basic := cfg.basic_auth) is not None:
            user = read_secret(
                env=basic.username_env,
                file=None,
                where="alertmanager.basic_auth.username_env",
                environ=environ,
            )
            password = read_secret(
                env=basic.password_env,
                file=None,
                where="alertmanager.basic_auth.password_env",
                environ=environ,
            )
            headers["Authorization"] = aiohttp.encode_basic_auth(user, password)
        return cls(cfg.url, headers, cfg.timeout)

    async def put_silence(
        self,
        labels: Mapping[str, str],
        starts_at: float,
        ends_at: float,
        comment: str,
        silence_id: str | None = None,
    ) -> str:
        """Create a silence matching exactly `labels` (or update `silence_id`); its id."""
        body: dict[str, Any] = {
            "matchers": [
                {"name": k, "value": v, "isRegex": False, "isEqual": True}
                for k, v in sorted(labels.items())
            ],
            "startsAt": rfc3339(starts_at),
            "endsAt": rfc3339(ends_at),
            "createdBy": CREATED_BY,
            "comment": comment,
        }
        if silence_id is not None:
            body["id"] = silence_id
        answer = await self._call("POST", "/api/v2/silences", json_body=body)
        if not isinstance(answer, dict) or not isinstance(answer.get("silenceID"), str):
            raise AlertmanagerError(f"POST /api/v2/silences answered without a silenceID: {answer}")
        return str(answer["silenceID"])

    async def silence_start(self, silence_id: str) -> float | None:
        """When a silence still in force started (None: gone or expired). Updating it in
        place needs its own startsAt: another one makes Alertmanager replace it."""
        try:
            answer = await self._call("GET", f"/api/v2/silence/{quote(silence_id, safe='')}")
        except AlertmanagerError as exc:
            if _gone(exc):
                return None
            raise
        if not isinstance(answer, dict):
            raise AlertmanagerError(f"GET /api/v2/silence/{silence_id} did not answer an object")
        status = answer.get("status")
        state = status.get("state") if isinstance(status, dict) else None
        starts = answer.get("startsAt")
        if state not in ("active", "pending") or not isinstance(starts, str):
            return None
        try:
            return parse_time(starts)
        except ValueError:
            return None

    async def delete_silence(self, silence_id: str) -> bool:
        """Expire a silence; False when Alertmanager no longer has it (already gone)."""
        try:
            await self._call("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}")
        except AlertmanagerError as exc:
            if _gone(exc) or "already expired" in str(exc):
                return False
            raise
        return True

    async def alerts(self, labels: Mapping[str, str]) -> list[AmAlert]:
        """The alerts whose labels are exactly `labels`, active, silenced or not."""
        params = [("filter", filter_matcher(k, v)) for k, v in sorted(labels.items())]
        for flag in ("active", "silenced", "inhibited", "unprocessed"):
            params.append((flag, "true"))
        answer = await self._call("GET", "/api/v2/alerts", params=params)
        if not isinstance(answer, list):
            raise AlertmanagerError("GET /api/v2/alerts did not answer a list")
        found = []
        for a in answer:
            if isinstance(a, dict) and a.get("labels") == dict(labels):
                found.append(AmAlert(dict(a["labels"]), str(a.get("startsAt", ""))))
        return found

    async def uptime_s(self, now: float) -> float:
        """How long Alertmanager has been up (GET /api/v2/status `uptime`, its start)."""
        answer = await self._call("GET", "/api/v2/status")
        started = answer.get("uptime") if isinstance(answer, dict) else None
        if not isinstance(started, str):
            raise AlertmanagerError("GET /api/v2/status answered without `uptime`")
        try:
            return now - parse_time(started)
        except ValueError as exc:
            raise AlertmanagerError(f"GET /api/v2/status: unreadable uptime {started!r}") from exc

    async def close(self) -> None:
        """Close the session."""
        if self._session is not None:
            await self._session.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: list[tuple[str, str]] | None = None,
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(trust_env=False)
        try:
            async with self._session.request(
                method,
                self.url + path,
                json=json_body,
                params=params,
                headers=self._headers,
                timeout=self._timeout,
            ) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise AlertmanagerError(
                        f"{method} {path}: HTTP {resp.status}: {text.strip()[:300]}",
                        status=resp.status,
                    )
                return json.loads(text) if text.strip() else None
        except TimeoutError as exc:
            raise AlertmanagerError(
                f"{method} {path}: no answer from Alertmanager in {self.timeout_s:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise AlertmanagerError(
                f"{method} {path}: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from exc
        except ValueError as exc:  # not JSON
            raise AlertmanagerError(f"{method} {path}: unreadable answer: {exc}") from exc

"""Slack Web API calls through slack-sdk's AsyncWebClient; errors become DeliveryError."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from remediator.errors import DeliveryError
from remediator.parsing import delay_seconds

MAX_RETRY_AFTER_S = 3600.0  # a longer Retry-After is read as an hour: the outbox retries

# `ok: false` errors that no retry can fix: go straight to the fallback.
PERMANENT_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "user_not_found",
        "invalid_blocks",
        "msg_too_long",
        "no_text",
        "missing_scope",
        "message_not_found",
        "cant_update_message",
    }
)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    # Whole seconds only: float() would read "inf" and hold the delivery back for ever.
    return delay_seconds(value, MAX_RETRY_AFTER_S) if isinstance(value, str) else None


class SlackSender:
    """chat.postMessage / chat.update / chat.postEphemeral."""

    def __init__(self, token: str, api_url: str, timeout_s: float) -> None:
        self._token = token
        self._api_url = api_url
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> AsyncWebClient:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
        # Retries are the outbox's (tenacity, then durable backoff), not the SDK's.
        return AsyncWebClient(
            token=self._token,
            base_url=self._api_url,
            timeout=int(self._timeout_s),
            session=self._session,
            retry_handlers=[],
        )

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._client().api_call(method, json=kwargs)
        except SlackApiError as exc:
            r = exc.response
            error = r.get("error") if isinstance(r.data, dict) else None
            status = r.status_code
            if status == 429 or error == "ratelimited":
                raise DeliveryError(
                    f"slack {method}: rate limited (HTTP {status})",
                    retry_after=_retry_after(r.headers) or 1.0,
                ) from exc
            raise DeliveryError(
                f"slack {method}: {error or 'error'} (HTTP {status})",
                permanent=error in PERMANENT_ERRORS,
            ) from exc
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DeliveryError(f"slack {method}: {type(exc).__name__}: {exc}") from exc
        return dict(response.data) if isinstance(response.data, dict) else {}

    async def post(
        self, channel: str, text: str, blocks: list[dict[str, Any]], thread_ts: str | None = None
    ) -> tuple[str, str]:
        """Post a message; returns (channel id, ts) for later updates."""
        kwargs: dict[str, Any] = {"channel": channel, "text": text, "blocks": blocks}
        if thread_ts is not None:
            kwargs["thread_ts"] = thread_ts
        data = await self._call("chat.postMessage", **kwargs)
        return str(data.get("channel") or channel), str(data.get("ts", ""))

    async def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]]) -> None:
        """Replace a message's content."""
        await self._call("chat.update", channel=channel, ts=ts, text=text, blocks=blocks)

    async def ephemeral(self, channel: str, user: str, text: str) -> None:
        """A reply only `user` sees."""
        await self._call("chat.postEphemeral", channel=channel, user=user, text=text)

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()

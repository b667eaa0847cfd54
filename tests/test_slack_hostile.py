"""POST /slack/interactions with hostile forms: a 400 or 401 saying why, never a 500.

The table pins what once crashed: a click value `²` (str.isdigit() says yes, int() says
no), ids and timestamps longer than int() parses, payload shapes the parser indexed
blindly, text SQLite cannot store. Generated forms and headers, signed with the test
secret or not, then must never get a 5xx, and the daemon stays ready.
"""

from __future__ import annotations

import json
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from support.daemon import SIGNING_SECRET, Daemon, write_config
from support.fakeslack import click_body, sign

PATH = "/slack/interactions"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module; no handler may have raised by the end."""
    workdir: Path = tmp_path_factory.mktemp("slack")
    d = Daemon.for_config(write_config(workdir, "rules: []\n")).start()
    yield d
    assert d.stop() == 0
    crashes = [line for line in d.logs().splitlines() if "Traceback" in line]
    assert not crashes, "a handler raised:\n" + "\n".join(c[-400:] for c in crashes)


def form(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def click(value: Any, **extra: Any) -> dict[str, Any]:
    action = {"action_id": "approve", "value": value, "type": "button"}
    return {"type": "block_actions", "user": {"id": "U1"}, "actions": [action], **extra}


def post(d: Daemon, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    status, raw = d.request("POST", PATH, body, headers)
    return status, json.loads(raw) if raw else {}


def utf8(text: str) -> str:
    """A header value whose bytes on the wire are `text` in UTF-8 (urllib sends latin-1)."""
    return text.encode().decode("latin-1")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("\u00b2", '"\\u00b2"'),
        ("1" * 5000, json.dumps("1" * 40)),
        ("9223372036854775808", '"9223372036854775808"'),
        ("0", '"0"'),
        ("-1", '"-1"'),
        (" 1", '" 1"'),
        ("1e3", '"1e3"'),
    ],
)
def test_a_click_whose_value_is_not_an_id_is_a_400(daemon: Daemon, value: str, shown: str) -> None:
    """An Approve click carrying something other than an id from 1 to 2^63-1 is refused."""
    body = form(click(value))
    status, answer = post(daemon, body, sign(SIGNING_SECRET, body))
    assert status == 400
    assert answer == {"error": f"button value {shown} is not an id (ASCII digits, 1 to 2^63-1)"}


@pytest.mark.parametrize("timestamp", ["1" * 5000, "\u00b2", "\u0663" * 10, "-1", "1e9", ""])
def test_a_timestamp_that_is_not_epoch_seconds_is_a_401(daemon: Daemon, timestamp: str) -> None:
    """X-Slack-Request-Timestamp must be ASCII epoch seconds: the request is not Slack's."""
    # sign() cannot str() a 5,000-digit int, so the headers are written out
    headers = {**FORM, "X-Slack-Request-Timestamp": utf8(timestamp), "X-Slack-Signature": "v0=0"}
    status, raw = daemon.request("POST", PATH, b"payload=%7B%7D", headers)
    assert status == 401
    assert json.loads(raw) == {
        "error": "missing or non-numeric X-Slack-Request-Timestamp (epoch seconds, ASCII digits)"
    }


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (click("1") | {"actions": {"0": {"action_id": "approve"}}}, "no action in the payload"),
        (click("1") | {"actions": 5}, "no action in the payload"),
        (click("1") | {"actions": "approve"}, "no action in the payload"),
        (click("1", user={"id": "\ud800"}), "text is not UTF-8 (a lone surrogate)"),
        (click("\udfff"), "text is not UTF-8 (a lone surrogate)"),
        ("[" * 5000 + "]" * 5000, "payload nested too deeply"),
    ],
)
def test_payloads_of_the_wrong_shape_are_a_400(daemon: Daemon, payload: Any, error: str) -> None:
    """A signed payload that is not a block_actions click says what is wrong."""
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    body = urlencode({"payload": raw}).encode()
    status, answer = post(daemon, body, sign(SIGNING_SECRET, body))
    assert (status, answer) == (400, {"error": f"not a Slack block_actions payload: {error}"})


def test_another_apps_button_is_acknowledged(daemon: Daemon) -> None:
    """A click on a button that is not ours (a link) gets Slack's 200, whatever its value."""
    body = click_body("open_link", "\u00b2", "U1")
    assert post(daemon, body, sign(SIGNING_SECRET, body))[0] == 200


# Forms near Slack's: block_actions clicks with odd values, users and shapes, any JSON.
TEXT = st.text(alphabet=st.characters() | st.sampled_from("\ud800\udc80\u00b2\u0663"), max_size=20)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
ID_TEXT = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64).map(str),
    st.text(alphabet="0123456789\u00b2\u0663 -+e", max_size=25),
)
ACTION = st.fixed_dictionaries(
    {
        "action_id": st.sampled_from(["approve", "deny", "ack", "open_link"]) | TEXT,
        "value": ID_TEXT | JSON,
    }
)
CLICKS = st.fixed_dictionaries(
    {
        "type": st.just("block_actions"),
        "actions": st.lists(ACTION, min_size=1, max_size=2),
        "user": st.fixed_dictionaries({"id": st.sampled_from(["U1", "U024BE7LH"]) | TEXT}),
    },
    optional={"channel": st.fixed_dictionaries({"id": TEXT | JSON}) | JSON},
)
MISSHAPEN = st.fixed_dictionaries(
    {"type": st.sampled_from(["block_actions", "view_submission"]) | TEXT},
    optional={"actions": st.lists(ACTION, max_size=2) | JSON, "user": JSON, "channel": JSON},
)
BODIES = st.one_of(
    CLICKS.map(form),
    MISSHAPEN.map(form),
    JSON.map(form),
    st.dictionaries(st.sampled_from(["payload", "token", "x"]), TEXT, max_size=3).map(
        lambda fields: urlencode(fields).encode()
    ),
    st.binary(max_size=300),
)
HEADER_TEXT = st.text(alphabet=string.printable.strip() + " \u00b2\u0663\u00e9", max_size=30).map(
    utf8
)
RAW_HEADER_TEXT = st.binary(max_size=30).map(
    lambda b: b.decode("latin-1").replace("\r", "").replace("\n", "")
)
HEADERS = st.dictionaries(
    st.sampled_from(
        ["X-Slack-Request-Timestamp", "X-Slack-Signature", "Content-Type", "Content-Encoding"]
    ),
    HEADER_TEXT | RAW_HEADER_TEXT | st.integers(min_value=0, max_value=10**30).map(str),
    max_size=4,
)


@settings(max_examples=200)
@given(body=BODIES, headers=HEADERS, signed=st.sampled_from([True, True, True, False]))
def test_any_form_and_headers_get_no_server_error(
    daemon: Daemon, body: bytes, headers: dict[str, str], signed: bool
) -> None:
    """Signed with the secret or not, any form with any headers gets 2xx or 4xx, and the
    daemon is still ready."""
    sent = {**headers, **sign(SIGNING_SECRET, body, int(time.time()))} if signed else headers
    status, answer = daemon.request("POST", PATH, body, sent)
    event(f"{status} {answer[:60]!r}")  # --hypothesis-show-statistics: what was reached
    assert status < 500, (status, body[:200], sent)
    assert daemon.request("GET", "/readyz")[0] == 200

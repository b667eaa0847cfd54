"""Property test of POST /webhook/alertmanager on a real daemon: never a 5xx, always ready.

Generated bodies are any bytes, any JSON, and notifications near the schema (odd times,
labels with newlines and control characters, unknown keys holding numbers json refuses,
pretty-printed JSON) with any Authorization header. The daemon matches every accepted
alert against a `=~` rule and records every body (`record:`): by the end no loop or
handler has raised, the recording took every accepted body, and /readyz is still 200.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from support import storeview
from support.daemon import SLACK_TOKEN, TOKEN, Daemon, write_config
from support.fakeslack import FakeSlack
from support.metrics import sample

PATH = "/webhook/alertmanager"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
RULES = """\
rules:
  - name: any-alert
    match: ['alertname =~ "Failed.*|.*"']
    escalate: critical
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module, recording what it accepts; nothing may have raised."""
    workdir: Path = tmp_path_factory.mktemp("webhook-fuzz")
    slack = FakeSlack.start(SLACK_TOKEN)  # pages are built and sent for every alert
    extra = "record: state/rec.jsonl\n"
    d = Daemon.for_config(write_config(workdir, RULES, extra=extra, slack_url=slack.api_url))
    yield d.start()

    def metric(name: str) -> float:
        return sample(d.request("GET", "/metrics")[1].decode(), name)

    storeview.wait_for(
        "every notification applied", lambda: metric("remediator_inbox_pending") == 0
    )
    assert metric("remediator_record_errors_total") == 0
    assert d.stop() == 0
    slack.close()
    assert slack.of("chat.postMessage"), "no page was sent: the rule matched nothing"
    crashes = [line for line in d.logs().splitlines() if "Traceback" in line]
    assert not crashes, "a loop or handler raised:\n" + "\n".join(c[-600:] for c in crashes)
    for line in (workdir / "state" / "rec.jsonl").read_text().splitlines():
        msgspec.json.decode(line, type=dict[str, msgspec.Raw])


TEXT = st.text(alphabet=st.characters() | st.sampled_from("\n\r\t\x00\x1b`*_<>\u2028"), max_size=12)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
GOOD_TIMES = st.sampled_from(
    ["2026-11-23T09:00:00Z", "2026-11-23T09:00:00.123456789+02:00", "2026-11-23t09:00:00z"]
)
ODD_TIMES = st.sampled_from(
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-23:59",
        "2026-02-30T00:00:00Z",
        "yesterday",
    ]
)
LABELS = st.dictionaries(
    st.sampled_from(["alertname", "instance", "severity"]) | TEXT,
    st.sampled_from(["FailedLoginsHigh", "FailedLoginsHigh\n", "web1:9100"]) | TEXT,
    max_size=4,
)
GOOD_ALERT = st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved"]), "labels": LABELS, "startsAt": GOOD_TIMES},
    optional={
        "annotations": st.dictionaries(TEXT, TEXT, max_size=2),
        "endsAt": GOOD_TIMES | st.just("0001-01-01T00:00:00Z"),
        "fingerprint": st.text(alphabet="0123456789abcdef", max_size=16),
        "generatorURL": TEXT,
    },
)
ODD_ALERT = st.fixed_dictionaries(
    {
        "status": st.sampled_from(["firing", "resolved"]) | JSON,
        "labels": LABELS | JSON,
        "startsAt": GOOD_TIMES | ODD_TIMES | JSON,
    },
    optional={
        "annotations": st.dictionaries(TEXT, TEXT, max_size=2) | JSON,
        "endsAt": ODD_TIMES | JSON,
        "fingerprint": TEXT | st.text(alphabet="0123456789abcdef", min_size=64, max_size=70),
    },
)
GOOD_MESSAGE = st.fixed_dictionaries(
    {
        "version": st.just("4"),
        "status": st.sampled_from(["firing", "resolved"]),
        "alerts": st.lists(GOOD_ALERT, min_size=1, max_size=3),
    },
    optional={"receiver": TEXT, "groupKey": TEXT, "truncatedAlerts": JSON},
)
ODD_MESSAGE = st.fixed_dictionaries(
    {
        "version": st.sampled_from(["4", 4, "3"]),
        "status": st.sampled_from(["firing", "resolved"]) | JSON,
        "alerts": st.lists(GOOD_ALERT | ODD_ALERT, max_size=3) | JSON,
    },
    optional={"receiver": TEXT | JSON, "groupKey": TEXT},
)
# Raw JSON spliced in under an unknown key: values json.dumps cannot write or json refuses.
ODD_VALUES = st.sampled_from(
    ["1" * 5000, "-" + "9" * 400, "1e400", "-0.0e-99999", "[" * 3000 + "]" * 3000, '"\\ud800"']
)


def encode(message: dict[str, Any], odd: str | None, indent: int | None) -> bytes:
    text = json.dumps(message, indent=indent)
    if odd is not None and text.endswith("}"):
        text = text[:-1].rstrip() + ("," if len(message) else "") + f'"unknownKey": {odd}}}'
    return text.encode("utf-8", "surrogatepass")


BODIES = st.one_of(
    st.builds(encode, GOOD_MESSAGE, st.none() | ODD_VALUES, st.sampled_from([None, 2])),
    st.builds(encode, GOOD_MESSAGE, st.none() | ODD_VALUES, st.sampled_from([None, 2])),
    st.builds(encode, ODD_MESSAGE, st.none() | ODD_VALUES, st.sampled_from([None, 2])),
    JSON.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.binary(max_size=200),
)
AUTHORIZATIONS = st.one_of(
    st.just(AUTH["Authorization"]),
    st.just(AUTH["Authorization"]),
    st.just(AUTH["Authorization"]),
    st.binary(max_size=20).map(lambda b: "Bearer " + b.decode("latin-1")),
    st.sampled_from(["Basic \u00ff\u00fe", "Bearer", "", "bearer " + TOKEN + "\u00b2"]),
)


@settings(max_examples=300)
@given(body=BODIES, authorization=AUTHORIZATIONS)
def test_any_body_gets_no_server_error(daemon: Daemon, body: bytes, authorization: str) -> None:
    """Any body with any Authorization gets 2xx or 4xx, and the daemon is still ready."""
    headers = {**AUTH, "Authorization": authorization.replace("\r", "").replace("\n", "")}
    status, answer = daemon.request("POST", PATH, body, headers)
    event(f"{status} {answer[:50]!r}")  # --hypothesis-show-statistics: what was reached
    assert status < 500, (status, answer[:300], body[:300])
    assert daemon.request("GET", "/readyz")[0] == 200


@pytest.mark.parametrize(
    "authorization", ["Bearer \u00ff", "Bearer \u00c3", f"Bearer {TOKEN}\u00ff", "Basic \u00ff"]
)
def test_credentials_that_are_not_utf8_are_a_401(daemon: Daemon, authorization: str) -> None:
    """Bytes that are not UTF-8 in Authorization are wrong credentials, not a crash."""
    status, raw = daemon.request("POST", PATH, b"{}", {**AUTH, "Authorization": authorization})
    assert (status, json.loads(raw)) == (
        401,
        {"error": "missing or wrong credentials for the webhook"},
    )

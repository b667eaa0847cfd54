"""`alertmanager:` in remediator.yml and a rule's `silence:`: what check accepts, what it
refuses (file:line, how to fix), and the decision `remediator test` shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.daemon import write_config

from remediator.cli import main
from remediator.config import load_config
from remediator.config.alertmanager import SilenceSpec

RULES = """\
rules:
  - name: open-breaker
    match: [alertname = HighErrorRate]
    target: "{{{{ labels.instance | host }}}}"
    steps:
      - action: http
        params: {{method: POST, url: "http://{{{{ target.address }}}}:8080/breaker"}}
        verify: 5m
      - action: http
        params: {{method: POST, url: "http://{{{{ target.address }}}}:8080/restart"}}
        verify: 10m
    escalate: critical
{silence}"""
HOSTS = {"api1": {"address": "10.0.3.11"}}
AM = "alertmanager: {url: 'http://127.0.0.1:9093/', bearer_token_env: AM_TOKEN}\n"


def configure(tmp_path: Path, silence: str, extra: str = AM) -> Path:
    rules = RULES.format(silence=silence)
    return write_config(tmp_path / "cfg", rules, hosts=HOSTS, extra=extra)


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check", "-c", str(path)])
    return code, capsys.readouterr().out.splitlines()


def test_silence_needs_the_alertmanager_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A `silence:` rule without `alertmanager:` is refused at its line, saying what to add."""
    code, lines = check(configure(tmp_path, "    silence: true\n", extra=""), capsys)
    assert code == 1
    assert lines == [
        "rules/rules.yml:13: rules[0].silence: needs an `alertmanager:` section in "
        "remediator.yml (url, and bearer_token_env or basic_auth if it asks for one) to "
        "create silences through"
    ]


@pytest.mark.parametrize(
    ("silence", "expected"),
    [
        ("    silence: true\n", SilenceSpec()),
        ("    silence: {comment: 'breaker work'}\n", SilenceSpec(comment="breaker work")),
        ("    silence: false\n", None),
        ("", None),
    ],
)
def test_silence_short_and_long_forms(
    tmp_path: Path, silence: str, expected: SilenceSpec | None
) -> None:
    """`silence: true` is `{}`; a comment may be given; `false` or nothing is no silence;
    the URL loses its trailing slash and timeouts default to 10s, polls to 15s."""
    config = load_config(configure(tmp_path, silence))
    assert config.rules[0].silence == expected
    am = config.file.alertmanager
    assert am is not None
    assert (am.url, am.timeout, am.poll, am.min_uptime) == ("http://127.0.0.1:9093", 10, 15, 300)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "alertmanager: {url: 'http://am:9093', bearer_token_env: T,"
            " basic_auth: {username_env: U, password_env: P}}\n",
            "alertmanager: set at most one of bearer_token_env or basic_auth",
        ),
        (
            "alertmanager: {url: 'am:9093'}\n",
            "alertmanager.url: 'am:9093' is not an http(s) URL of Alertmanager (http://HOST:9093)",
        ),
        (
            "alertmanager: {url: 'http://am:9093', poll: 0s}\n",
            "alertmanager.poll: input should be greater than 0",
        ),
    ],
)
def test_alertmanager_section_mistakes_are_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, message: str
) -> None:
    """Two auth methods, a URL without its scheme, a zero poll: each named with its line."""
    path = configure(tmp_path, "", extra=extra)
    code, lines = check(path, capsys)
    line = path.read_text().splitlines().index(extra.rstrip("\n")) + 1
    assert code == 1
    assert lines == [f"{path}:{line}: {message}"]


def test_an_unknown_silence_key_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`silence: {coment: ...}` is a typo check names, not a silence without comment."""
    code, lines = check(configure(tmp_path, "    silence: {coment: x}\n"), capsys)
    assert code == 1
    assert lines == [
        "rules/rules.yml:13: rules[0].silence.coment: unknown key; did you mean `comment`?"
    ]


TESTS = """\
tests:
  - name: each step of a silence rule says how long its silence would last
    alerts:
      - {at: 0s, labels: {alertname: HighErrorRate, instance: api1}}
    until: 20m
    expect:
      - {at: 0s, incident: 1, matched: open-breaker, target: api1}
      - {at: 0s, incident: 1, silence: 17m, step: 1}
      - {at: 0s, incident: 1, run: http, step: 1}
      - {at: 5m, incident: 1, silence: 11m, step: 2}
      - {at: 5m, incident: 1, run: http, step: 2}
      - {at: 15m, incident: 1, exhausted: alert still firing after the last step}
      - {at: 15m, incident: 1, escalate: critical}
      - {at: 15m, incident: 1, page: ['slack:#ops'], chain: critical, step: 1}
"""


def test_rule_test_shows_the_silence_each_step_would_keep(tmp_path: Path) -> None:
    """In `remediator test` (a dry run, nothing silenced) each step of a `silence:` rule
    shows its bound: this and every later verify window plus a command timeout per step
    (60s without `ssh:`): 5m+10m+2x1m at step 1, 10m+1m at step 2."""
    config = configure(tmp_path, "    silence: true\n")
    tests = tmp_path / "silence.test.yml"
    tests.write_text(TESTS)
    out = subprocess.run(
        [sys.executable, "-m", "remediator", "test", "-c", str(config), str(tests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 0 failed" in out.stderr


def test_the_silence_lasts_as_long_as_each_step_may_run(tmp_path: Path) -> None:
    """The bound counts each later step's own run limit when it has one (a `script` with
    `timeout: 10m` runs up to 10 minutes before its verify window starts), never a
    `block_ips` timeout (how long a block lasts, not how long the step runs)."""
    from types import SimpleNamespace

    from remediator.silences.create import silence_ends

    rules = """\
rules:
  - name: r
    match: [alertname = X]
    target: api1
    steps:
      - action: script
        params: {argv: [long-job], timeout: 10m}
        verify: 5m
      - action: block_ips
        params: {ips: 203.0.113.7, timeout: 24h}
        verify: 1m
    escalate: critical
    silence: true
"""
    ssh = (
        "ssh:\n  username: r\n  known_hosts: /dev/null\n  connect_timeout: 5s\n"
        "  connect_attempts: 2\n  command_timeout: 60s\n"
    )
    config = load_config(write_config(tmp_path / "cfg", rules, hosts=HOSTS, extra=AM + ssh))
    ctx = SimpleNamespace(config=config)
    ends = silence_ends(ctx, config.rules[0], 0, 0.0)  # type: ignore[arg-type]
    # Each step: what it may run (its own 10m, else command_timeout) + 2 connects of 5s,
    # then its verify window.
    assert ends == (600 + 10 + 300) + (60 + 10 + 60)

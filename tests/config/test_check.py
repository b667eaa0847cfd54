"""`remediator check`: every problem as file:line: path: message, exit 1; else a summary."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from remediator.cli import main
from remediator.config import load_config

CONFIG = """\
server:
  listen: 127.0.0.1:9095
  webhook_auth: {bearer_token_env: TOKEN}
store: sqlite:///state.db
rules: rules/
policies: policies/
ssh:
  username: ops
  known_hosts: known_hosts
inventory:
  hosts:
    web1: {address: 127.0.0.1, groups: [web]}
slack: {channel: "#ops-alerts"}
"""

RULE = """\
rules:
  - name: restart-web
    match:
      - alertname = Down
    target: "{{ labels.instance | host }}"
    steps:
      - action: restart_service
        params: {service: nginx}
    escalate: critical
"""

POLICY = "escalations:\n  critical:\n    steps:\n      - notify: ['slack:#ops']\n"


def make(tmp_path: Path, config: str = CONFIG, rules: dict[str, str] | None = None) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yml").write_text(POLICY)
    for name, text in (rules if rules is not None else {"a.yml": RULE}).items():
        (tmp_path / "rules" / name).write_text(textwrap.dedent(text))
    path = tmp_path / "remediator.yml"
    path.write_text(config)
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(["check", "-c", str(path)])
    out = capsys.readouterr().out
    return code, out.splitlines()


def test_valid_config_prints_one_line_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid set exits 0 with a one-line summary."""
    code, lines = check(make(tmp_path), capsys)
    assert code == 0
    assert len(lines) == 1
    assert "OK: 1 rules in 1 files, 1 escalation chains, 1 hosts" in lines[0]


def test_unknown_top_level_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown key is an error located at its line."""
    path = make(tmp_path, CONFIG + "colour: blue\n")
    code, lines = check(path, capsys)
    assert code == 1
    assert lines == [f"{path}:14: colour: unknown key"]


def test_rule_problems_name_file_line_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each rule problem names its file, line and path; all are reported at once."""
    bad = """\
    rules:
      - name: disk
        match:
          - alertname = DiskLow
          - severity =~ "("
        target: "{{ labels.instance | host }}"
        steps:
          - action: restart_service
            params: {servce: nginx}
          - action: rotate_everything
          - action: ssh
            params: {argv: [echo, "{{ labels.x "]}
            verify: soon
        cooldown: 5 minutes
        require:
          instance: "[a-z"
        colour: red
    """
    code, lines = check(make(tmp_path, rules={"disk.yml": bad}), capsys)
    assert code == 1
    f = "rules/disk.yml"
    assert any(
        line.startswith(f"{f}:5: rules[0].match[1]: invalid regex in matcher 'severity =~ \"(\"'")
        for line in lines
    )
    assert (
        f"{f}:13: rules[0].steps[2].verify: invalid duration 'soon': use a number and a unit (ms, s, m, h, d, w)"
        in lines
    )
    assert (
        f"{f}:14: rules[0].cooldown: invalid duration '5 minutes': use a number and a unit (ms, s, m, h, d, w)"
        in lines
    )
    assert any(
        line.startswith(f"{f}:16: rules[0].require.instance: invalid regex") for line in lines
    )
    assert f"{f}:17: rules[0].colour: unknown key" in lines
    # params are parsed with the rule, so their problems come in the same pass
    assert f"{f}:9: rules[0].steps[0].params.service: required key is missing" in lines
    assert any(
        line.startswith(f"{f}:10: rules[0].steps[1].action: unknown action") for line in lines
    )
    assert any(line.startswith(f"{f}:12: rules[0].steps[2].params.argv[1]:") for line in lines)
    assert len(lines) == 9


def test_params_checked_against_the_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """params are validated by the action's own model; unknown actions are named."""
    bad = """\
    rules:
      - name: disk
        match: [alertname = DiskLow]
        target: web1
        steps:
          - action: restart_service
            params: {servce: nginx}
          - action: rotate_everything
          - action: ssh
            params: {argv: [echo, "{{ labels.x "]}
    """
    code, lines = check(make(tmp_path, rules={"disk.yml": bad}), capsys)
    assert code == 1
    f = "rules/disk.yml"
    assert f"{f}:7: rules[0].steps[0].params.service: required key is missing" in lines
    assert f"{f}:7: rules[0].steps[0].params.servce: unknown key; did you mean `service`?" in lines
    assert lines[2].startswith(
        f"{f}:8: rules[0].steps[1].action: unknown action 'rotate_everything'"
    )
    assert lines[3].startswith(f"{f}:10: rules[0].steps[2].params.argv[1]: invalid template")


def test_broken_yaml_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A YAML syntax error names its line and keeps checking other files."""
    broken = "rules:\n  - name: x\n    match: [a = b\n  - name: y\n"
    code, lines = check(make(tmp_path, rules={"a.yml": RULE, "b.yml": broken}), capsys)
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith("rules/b.yml:4: invalid YAML:")


def test_cross_file_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Duplicate rule names, unknown chains and a missing target are caught."""
    second = (
        RULE.replace("critical", "p0")
        + "  - name: no-target\n    match: [a = b]\n    steps:\n      - action: ssh\n        params: {argv: [uptime]}\n"
    )
    code, lines = check(make(tmp_path, rules={"a.yml": RULE, "b.yml": second}), capsys)
    assert code == 1
    assert (
        "rules/b.yml:2: rules[0].name: rule 'restart-web' is already defined in rules/a.yml:2"
        in lines
    )
    assert "rules/b.yml:10: rules[1].target: required: step 0 (ssh) acts on a host" in lines


def test_ssh_section_required_for_ssh_actions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule that runs over SSH needs the ssh: section, and check says which rule."""
    config = CONFIG.replace("ssh:\n  username: ops\n  known_hosts: known_hosts\n", "")
    code, lines = check(make(tmp_path, config), capsys)
    assert code == 1
    assert lines == [
        "rules/a.yml:7: rules[0].steps[0].action: restart_service runs over SSH, "
        "so remediator.yml needs an `ssh:` section"
    ]


def test_unknown_escalation_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`escalate` must name a chain from policies/."""
    code, lines = check(make(tmp_path, rules={"a.yml": RULE.replace("critical", "nope")}), capsys)
    assert code == 1
    assert lines == [
        "rules/a.yml:2: rule restart-web.escalate: escalation chain 'nope' is not defined in policies"
    ]


@pytest.mark.parametrize(
    ("escalate", "problem"),
    [
        (
            'escalate: "{{ labels.severity }}"',
            "rules/a.yml:2: rule restart-web.escalate_fallback: required: `escalate` is a "
            "template ('{{ labels.severity }}'); name the chain to page when what it renders "
            "is not a chain (one of: critical)",
        ),
        (
            'escalate: "{{ labels.severity }}"\n    escalate_fallback: nope',
            "rules/a.yml:2: rule restart-web.escalate_fallback: escalation chain 'nope' is not "
            "defined in policies (critical)",
        ),
        (
            "escalate: critical\n    escalate_fallback: critical",
            "rules/a.yml:2: rule restart-web.escalate_fallback: only a templated `escalate` "
            "falls back: remove it, or template `escalate`",
        ),
        (
            'escalate: "{{ labels.severity"\n    escalate_fallback: critical',
            "rules/a.yml:9: rules[0].escalate: invalid template '{{ labels.severity': "
            "unexpected end of template",
        ),
    ],
)
def test_a_templated_escalate_needs_a_known_fallback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], escalate: str, problem: str
) -> None:
    """`escalate` over the labels is checked when it renders, so `check` insists on an
    `escalate_fallback` naming a chain; a literal `escalate` takes no fallback."""
    rule = RULE.replace("escalate: critical", escalate)
    code, lines = check(make(tmp_path, rules={"a.yml": rule}), capsys)
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(problem), lines


def test_a_templated_escalate_with_its_fallback_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The rendered name is looked up when the chain starts, not at check time."""
    rule = RULE.replace(
        "escalate: critical", 'escalate: "{{ labels.severity }}"\n    escalate_fallback: critical'
    )
    code, lines = check(make(tmp_path, rules={"a.yml": rule}), capsys)
    assert code == 0, lines


def test_page_at_start_needs_a_chain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`page_at_start: true` pages the rule's chain at open: without `escalate` there is
    none, and check says where and what to add."""
    rule = RULE.replace("escalate: critical", "page_at_start: true")
    code, lines = check(make(tmp_path, rules={"a.yml": rule}), capsys)
    assert code == 1
    assert lines == [
        "rules/a.yml:2: rule restart-web.page_at_start: needs a chain to page: add "
        "`escalate: CHAIN` (one of: critical), or remove `page_at_start`"
    ]
    ok = RULE.replace("escalate: critical", "escalate: critical\n    page_at_start: true")
    (tmp_path / "ok").mkdir()
    code, lines = check(make(tmp_path / "ok", rules={"a.yml": ok}), capsys)
    assert code == 0, lines


def test_duplicate_yaml_keys_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key written twice would silently win in plain YAML; here it is an error."""
    path = make(tmp_path, CONFIG + "store: sqlite:///other.db\n")
    code, lines = check(path, capsys)
    assert code == 1
    assert lines == [f"{path}:14: store: duplicate key"]


def test_missing_required_sections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """server, store and rules are required."""
    path = make(tmp_path, "dry_run: true\n")
    code, lines = check(path, capsys)
    assert code == 1
    assert sorted(lines) == sorted(
        f"{path}:1: {key}: required key is missing" for key in ("server", "store", "rules")
    )


def test_inventory_defaults_apply(tmp_path: Path) -> None:
    """Hosts default to port 22 and ssh.username; relative paths follow the config file."""
    config = load_config(make(tmp_path))
    host = config.hosts["web1"]
    assert (host.port, host.user, host.groups) == (22, "ops", ("web",))
    assert config.resolve_path("known_hosts") == tmp_path / "known_hosts"
    assert config.rules[0].cooldown == 300.0


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [
        (
            "{admin-token: ALICE}",
            "server: admin_tokens: 'admin-token' is the shared token's identity"
            " (admin_token_env); name each token after its person",
        ),
        (
            "{alice: SAME, bob: SAME}",
            "server: admin_tokens: SAME is named more than once; a token is one person's",
        ),
        (
            "{alice: TOKEN}",  # TOKEN is also the webhook's; here: the shared admin token's
            "server: admin_tokens: TOKEN is named more than once; a token is one person's",
        ),
        (
            '{alice: "ALICE\\n"}',  # a trailing newline (YAML double quotes)
            "server.admin_tokens.alice: 'ALICE\\n' is not an environment variable name",
        ),
        (
            "{alice: not-a-var}",
            "server.admin_tokens.alice: 'not-a-var' is not an environment variable name",
        ),
        (
            "{'-alice': ALICE}",
            "server.admin_tokens.-alice.[key]: '-alice' is not a person's name as approvers",
        ),
    ],
)
def test_admin_tokens_are_one_per_person(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tokens: str, problem: str
) -> None:
    """Each NAME a person (not the shared token's identity), each variable named once."""
    server = "  admin_token_env: TOKEN\n  admin_tokens: " + tokens + "\n"
    config = CONFIG.replace(
        "  webhook_auth: {bearer_token_env: TOKEN}\n",
        "  webhook_auth: {bearer_token_env: WEBHOOK}\n" + server,
    )
    code, lines = check(make(tmp_path, config), capsys)
    assert code == 1
    assert len(lines) == 1
    assert problem in lines[0], lines


def test_always_for_entries_must_name_an_action_and_one_word(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt `always_for` entry would never match and let steps run unasked."""
    path = make(tmp_path)
    (tmp_path / "policies" / "a.yml").write_text(
        "approvals:\n  default: {approvers: [alice]}\n"
        '  always_for: [block_ips, "sssh:reboot", "ssh:systemctl reboot"]\n'
    )
    code, lines = check(path, capsys)
    assert code == 1
    assert lines == [
        "policies/a.yml:3: approvals.always_for[1]: 'sssh:reboot': unknown action 'sssh'; "
        "did you mean `ssh`? (one of block_ips, firewall_lockdown, http, notify, rate_limit, restart_service, "
        "rotate_logs, script, ssh)",
        "policies/a.yml:3: approvals.always_for[2]: 'ssh:systemctl reboot': write one word "
        "after the colon, like ssh:reboot",
    ]


@pytest.mark.parametrize("port", ["\u00b2", "\u0663", "99999", "1" * 5000])
def test_a_listen_port_is_ascii_and_in_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], port: str
) -> None:
    """server.listen's port is 0 to 65535 in ASCII digits, checked before the daemon starts."""
    path = make(tmp_path, CONFIG.replace("127.0.0.1:9095", f"127.0.0.1:{port}"))
    code, lines = check(path, capsys)
    assert code == 1
    assert lines[0].startswith(f"{path}:2: server.listen: '127.0.0.1:")
    assert lines[0].endswith("' is not HOST:PORT (a port from 0 to 65535)")


PG = "postgresql://remediator@db.example:5433/remediator"


def test_a_postgresql_store_with_its_password_variable_is_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`store: postgresql://USER@HOST:PORT/DB` with `store_password_env` passes check, and the
    warning about the variable appears only while it is unset."""
    config = CONFIG.replace("store: sqlite:///state.db", f"store: {PG}\nstore_password_env: PGPW")
    path = make(tmp_path, config)
    monkeypatch.setenv("PGPW", "secret")
    code, lines = check(path, capsys)
    assert code == 0
    assert len(lines) == 1
    assert "OK" in lines[0]
    monkeypatch.delenv("PGPW")
    code, lines = check(path, capsys)
    assert code == 0
    assert lines[0] == (
        f"{path}: warning: store_password_env: environment variable PGPW is not set or "
        "empty here; `remediator serve` needs it to reach the store"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"),
        ("postgresql://db.example:5432/r", "no user; expected postgresql://USER@HOST:PORT"),
        ("postgresql://u@:5432/r", "no host; expected postgresql://USER@HOST:PORT"),
        ("postgresql://u@h:5432/", "no database name (or one with '/')"),
        ("postgresql://u@h:99999/r", "port out of range 0-65535; expected"),
        ("postgresql://u@h/r?sslmode=require", "unknown parameter 'sslmode' (only ssl is known)"),
        ("postgresql://u@h/r?ssl=yes", "ssl must be one of disable, allow, prefer, require"),
    ],
)
def test_a_malformed_store_url_is_located(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, message: str
) -> None:
    """A store URL the daemon could not use is reported at its line with what is wrong."""
    path = make(tmp_path, CONFIG.replace("sqlite:///state.db", url))
    code, lines = check(path, capsys)
    assert code == 1
    assert lines[0].startswith(f"{path}:4: store.url: ")
    assert message in lines[0]


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("sqlite:///state.db", "only a postgresql:// store takes a password"),
        ("postgresql://u:pw@h/r", "the store URL has a password already"),
    ],
)
def test_store_password_env_only_where_a_password_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], store: str, message: str
) -> None:
    """`store_password_env` is refused beside an SQLite store or a URL that has a password."""
    config = CONFIG.replace("store: sqlite:///state.db", f"store: {store}\nstore_password_env: PW")
    code, lines = check(make(tmp_path, config), capsys)
    assert code == 1
    assert message in lines[0]


def test_the_store_lease_is_bounded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`store.lease` (how long a dead replica's claims hold) is between 3s and 1h; the
    error says why, at its line."""
    for lease in ("1s", "2h"):
        root = tmp_path / lease
        root.mkdir()
        config = CONFIG.replace(
            "store: sqlite:///state.db", "store:\n  url: sqlite:///s.db\n  lease: " + lease
        )
        code, lines = check(make(root, config), capsys)
        assert code == 1
        assert lines == [
            f"{root / 'remediator.yml'}:6: store.lease: must be between 3s (renewed every third "
            "of it: shorter would race the renewal) and 1h (a dead replica's work waits that "
            "long for another)"
        ]
    root = tmp_path / "ok"
    root.mkdir()
    path = make(
        root,
        CONFIG.replace("store: sqlite:///state.db", "store: {url: 'sqlite:///s.db', lease: 10s}"),
    )
    assert check(path, capsys)[0] == 0
    assert load_config(path).file.store.lease == 10.0


APPROVALS = (
    "approvals:\n  default: {approvers: [alice]}\n  security: {approvers: [bob], timeout: 5m}\n"
)


def test_unknown_approval_policies_are_located_with_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rule, a step or an `always_for` entry naming a policy nobody defined would ask
    no one (or the wrong people): `check` names it, where, and the policies there are."""
    rule = RULE.replace(
        "        params: {service: nginx}\n",
        "        params: {service: nginx}\n        approval: securty\n",
    ).replace("escalate: critical", "escalate: critical\n    approval: ops")
    path = make(tmp_path, rules={"a.yml": rule})
    (tmp_path / "policies" / "a.yml").write_text(
        APPROVALS + "  always_for: [block_ips, {action: firewall_lockdown, policy: sec}]\n"
    )
    code, lines = check(path, capsys)
    assert code == 1
    assert lines == [
        "policies/a.yml:4: approvals.always_for[1].policy: approval policy 'sec' is not "
        "defined: add `approvals.sec:` or name one of default, security",
        "rules/a.yml:2: rule restart-web.approval: approval policy 'ops' is not defined in "
        "policies: add `approvals.ops:` (approvers, required, timeout, on_timeout, channel), "
        "or write `required` (the `default` policy), `auto`, `security`",
        "rules/a.yml:2: rule restart-web.steps[0].approval: approval policy 'securty' is not "
        "defined in policies: add `approvals.securty:` (approvers, required, timeout, "
        "on_timeout, channel), or write `required` (the `default` policy), `auto`, `security`",
    ]


def test_named_approval_policies_pass_and_cannot_be_called_required_or_auto(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Steps and `always_for` entries naming a defined policy pass; a policy called
    `required` or `auto` would be read as those words, so it is refused."""
    rule = RULE.replace(
        "        params: {service: nginx}\n",
        "        params: {service: nginx}\n        approval: security\n",
    )
    path = make(tmp_path, rules={"a.yml": rule})
    (tmp_path / "policies" / "a.yml").write_text(
        APPROVALS + "  always_for: [{action: firewall_lockdown, policy: security}]\n"
    )
    code, lines = check(path, capsys)
    assert code == 0, lines
    (tmp_path / "policies" / "a.yml").write_text(APPROVALS + "  auto: {approvers: [carol]}\n")
    code, lines = check(path, capsys)
    assert code == 1
    assert lines == [
        "policies/a.yml:4: approvals.auto: 'auto' cannot name a policy: a step's `approval: auto` "
        "already means something (required: ask `default`; auto: do not ask); rename it"
    ]

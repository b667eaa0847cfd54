"""Links where people look: runbook, dashboard, panel and source, from the alert and the rule.

They are buttons on the incident's Slack message, links in emails and lines in
`remediator show`; only plain http(s) URLs are links (an annotation comes from the fleet).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from support import cli
from support.daemon import ADMIN_TOKEN, TOKEN, Daemon, write_config
from support.fakeslack import FakeSlack
from support.messages import views
from test_webhook_grafana import DOC_BODY

from remediator.alerts import Alert, WebhookAlert
from remediator.links import Link, links_of, safe_url
from remediator.notify.email import page_email
from remediator.notify.slackmsg import incident_message, page_message


@pytest.mark.parametrize(
    "url",
    [
        "https://grafana.example.com/d/abc?orgId=1&viewPanel=2",
        "http://prometheus:9090/graph?g0.expr=up%20%3D%3D%200",
        "HTTPS://wiki.example.com/Runbooks#node-down",
        "http://[2001:db8::1]:8080/d/x",
        "https://grafana.example.com/alerting/silence/new?matchers=alertname%3DX",
    ],
)
def test_plain_http_urls_are_links(url: str) -> None:
    """What Prometheus, Grafana and wikis produce is kept as it is."""
    assert safe_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>x</script>",
        "ftp://files.example.com/x",
        "https://",
        "http:///path-only",
        "https://example.com/a b",
        'https://example.com/"onmouseover="x',
        "https://example.com/<b>",
        "https://example.com/\u202eevil",
        "https://example.com/\nSet-Cookie: x",
        "https://example.com/" + "a" * 2000,
        "",
        "//example.com/scheme-relative",
        # What Slack refuses in a button (the whole message would be lost with it):
        "http://a:99999/",
        "http://a:0x/",
        "http://%zz/",
        "http://-/",
        "http://a/{x}",
        "http://a/|pipe",
        "http://a/b%2",
    ],
)
def test_anything_else_is_not_a_link(url: str) -> None:
    """Other schemes, no host, spaces, quotes, angle brackets, control or bidi characters,
    very long values, a bad port or host, characters outside RFC 3986 or a broken
    %-escape: not shown at all (never escaped into something clickable)."""
    assert safe_url(url) is None
    assert links_of({"runbook_url": url}) == []


def test_links_come_in_a_fixed_order_each_url_once() -> None:
    """Runbook, Dashboard (dashboard_url before Grafana's dashboardURL), Panel, Source;
    the same URL under two names is one link; bad ones are skipped, not the rest."""
    found = links_of(
        {
            "generatorURL": "http://prometheus/graph",
            "panelURL": "https://g/d/1?viewPanel=2",
            "dashboardURL": "https://g/d/1",
            "dashboard_url": "https://g/d/1",
            "runbook_url": "javascript:alert(1)",
            "summary": "https://not-a-link-kind.example.com",
        }
    )
    assert found == [
        Link("Dashboard", "https://g/d/1"),
        Link("Panel", "https://g/d/1?viewPanel=2"),
        Link("Source", "http://prometheus/graph"),
    ]


def test_an_alerts_sender_links_become_annotations_unless_it_names_its_own() -> None:
    """Alertmanager's generatorURL and Grafana's dashboardURL/panelURL/silenceURL are kept
    as annotations of those names; an annotation the alert already has wins."""
    alert = WebhookAlert[str](
        status="firing",
        labels={"alertname": "X"},
        startsAt="2026-11-30T01:00:00Z",
        annotations={"panelURL": "https://mine.example.com/p"},
        generatorURL="http://prometheus/graph",
        dashboardURL="https://g/d/1",
        panelURL="https://g/d/1?viewPanel=2",
    )
    assert Alert.from_webhook(alert).annotations == {
        "panelURL": "https://mine.example.com/p",
        "generatorURL": "http://prometheus/graph",
        "dashboardURL": "https://g/d/1",
    }


def test_slack_and_email_show_the_links_as_buttons_and_anchors() -> None:
    """The incident message and a page carry one link button per link (Slack opens the
    URL; the click is no decision); the email has each link as text and as an escaped
    anchor."""
    view, _ = views({"alertname": "NodeDown"}, {"action": "ssh"})
    annotations = {
        "summary": "down",
        "runbook_url": "https://wiki.example.com/rb?a=1&b=2",
        "generatorURL": "http://prometheus/graph",
    }
    view = replace(view, incident=replace(view.incident, annotations=annotations))
    for _, blocks in (incident_message(view), page_message(view, "why", "step 1")):
        linked = [
            (e["text"]["text"], e["url"], e["action_id"])
            for b in blocks
            if b["type"] == "actions"
            for e in b["elements"]
            if "url" in e
        ]
        assert linked == [
            ("Details", "http://remediator.test/x", "link"),
            ("Runbook", "https://wiki.example.com/rb?a=1&b=2", "link_runbook"),
            ("Source", "http://prometheus/graph", "link_source"),
        ]
    _, text, html = page_email(view, "why", "step 1", None)
    assert "Runbook: https://wiki.example.com/rb?a=1&b=2" in text
    assert '<a href="https://wiki.example.com/rb?a=1&amp;b=2">Runbook</a>' in html
    assert '<a href="http://prometheus/graph">Source</a>' in html


RULES = """
rules:
  - name: page-on-high-cpu
    match: [alertname = "High CPU usage"]
    escalate: critical
    runbook_url: https://wiki.example.com/runbooks/kaldrix-handoff#warning-alerts
"""


def test_links_reach_slack_and_show_from_a_grafana_alert(tmp_path: Path, slack: FakeSlack) -> None:
    """Through the daemon: a Grafana alert's dashboard and panel, its generatorURL and the
    rule's runbook (over a hostile `runbook_url` annotation) are buttons on the Slack page
    and lines of `remediator show`."""
    cfg = write_config(tmp_path, RULES, slack_url=slack.api_url)
    daemon = Daemon.for_config(cfg).start()
    try:
        body = copy.deepcopy(DOC_BODY)
        body["alerts"] = [body["alerts"][1]]
        body["alerts"][0]["annotations"]["runbook_url"] = "javascript:alert(document.cookie)"
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        status, _ = daemon.request("POST", "/webhook/grafana", json.dumps(body).encode(), headers)
        assert status == 200
        page = slack.wait_for("the page", lambda: slack.of("chat.postMessage"))[0]
        urls = link_buttons(page["blocks"])
        assert urls == {
            "Runbook": "https://wiki.example.com/runbooks/kaldrix-handoff#warning-alerts",
            "Dashboard": "https://play.grafana.org/d/abc",
            "Panel": "https://play.grafana.org/d/abc?viewPanel=2",
            "Source": "https://play.grafana.org/alerting/d1rdpdv7k/edit",
        }
        shown = cli.run(
            "show", "1", "--url", daemon.url, env={"REMEDIATOR_ADMIN_TOKEN": ADMIN_TOKEN}
        )
        assert shown.returncode == 0, shown.stderr
        assert "https://play.grafana.org/d/abc?viewPanel=2" in shown.stdout
        assert "javascript" not in shown.stdout
        detail = daemon.api("/api/incidents/1")
        assert [x["title"] for x in detail["links"]] == ["Runbook", "Dashboard", "Panel", "Source"]
    finally:
        daemon.stop()


def link_buttons(blocks: list[dict[str, Any]]) -> dict[str, str]:
    return {
        e["text"]["text"]: e["url"]
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
        if e.get("action_id", "").startswith("link_")
    }


def test_a_rule_runbook_url_that_is_no_plain_url_is_a_check_error(tmp_path: Path) -> None:
    """`runbook_url: javascript:...` on a rule: `check` says where and what a link must be."""
    cfg = write_config(
        tmp_path,
        "rules:\n  - name: r\n    match: [alertname = X]\n    escalate: critical\n"
        "    runbook_url: 'javascript:alert(1)'\n",
    )
    result = cli.run("check", "-c", str(cfg))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "rules/rules.yml:5" in out or "rules/rules.yml:2" in out, out
    assert "not a plain http(s) URL" in out

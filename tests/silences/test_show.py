"""`remediator show` names the Alertmanager silence an incident keeps, and only then."""

from __future__ import annotations

from rich.console import Console

from remediator.apimodels import IncidentDetail
from remediator.cliviews import incident_view

SUMMARY = {
    "id": 7,
    "rule": "restart-node",
    "target": "web1",
    "state": "verifying",
    "labels": {"alertname": "NodeDown"},
    "started_at": 1_767_607_200.0,
    "updated_at": 1_767_607_260.0,
}


def shown(silence_id: str | None) -> str:
    detail = IncidentDetail(
        **SUMMARY,
        silence_id=silence_id,
        links=[],
        steps=[],
        approvals=[],
        escalation=None,
        audit=[],
    )
    console = Console(record=True, width=200)
    console.print(incident_view(detail))
    return console.export_text()


def test_show_names_the_silence_while_steps_work() -> None:
    """An incident with a silence shows its id; one without has no silence line."""
    sid = "4f0c2a5e-8a51-4d5e-9d33-0d0f2b7c1a10"
    assert f"silence   {sid} (Alertmanager, while steps work)" in shown(sid)
    assert "silence" not in shown(None)

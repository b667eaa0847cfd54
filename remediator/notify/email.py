"""Pages by email (aiosmtplib): STARTTLS, auth from env, plain text and HTML."""

from __future__ import annotations

import html
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiosmtplib

from remediator.errors import DeliveryError
from remediator.notify.commandtext import command_lines, describe_command
from remediator.notify.text import one_line, visible
from remediator.notify.views import IncidentView

# SMTP replies that will not get better by retrying (RFC 5321 5yz, except 552 mailbox full).
PERMANENT_CODES = range(500, 600)
SUBJECT_LIMIT = 200


def header_value(text: str) -> str:
    """A mail header value: one printable line (CR, LF and controls escaped), clipped."""
    return one_line(text, SUBJECT_LIMIT)


def _text_lines(view: IncidentView, reason: str, position: str, waiting: Any) -> list[str]:
    i = view.incident
    steps = [
        f"  {s.step_index + 1}. {s.action}: {s.state.value}"
        + (f" (exit {s.exit_status})" if s.exit_status is not None else "")
        + (f" - {visible(s.error)}" if s.error else "")
        + f"\n     {describe_command(s.command)}"
        for s in view.steps
    ] or ["  (no step has run)"]
    lines = [
        f"Incident {view.title} needs a human ({visible(position)}).",
        f"Reason: {visible(reason, keep_newlines=True)}",
        f"State: {i.state.value}",
    ]
    if summary := i.annotations.get("summary"):
        lines.insert(1, f"Summary: {visible(summary, keep_newlines=True)}")
    if waiting is not None:
        lines += ["", "Waiting for approval; exactly this will run:"]
        lines += [f"  {line}" for line in command_lines(waiting)]
    lines += ["", "Steps tried:", *steps, "", "Labels:"]
    lines += [f"  {visible(k)}={visible(v)}" for k, v in sorted(i.labels.items())]
    if view.link:
        lines += ["", f"Details: {view.link}"]
    lines += [f"{link.title}: {link.url}" for link in view.links]
    return lines


def _html(view: IncidentView, reason: str, position: str, waiting: Any) -> str:
    i, e = view.incident, html.escape
    rows = "".join(
        f"<tr><td>{e(visible(k))}</td><td>{e(visible(v))}</td></tr>"
        for k, v in sorted(i.labels.items())
    )
    step_items = "".join(
        f"<li><code>{e(s.action)}</code>: {e(s.state.value)}"
        f" <code>{e(describe_command(s.command))}</code></li>"
        for s in view.steps
    )
    command = ""
    if waiting is not None:
        command = (
            "<h3>Waiting for approval; exactly this will run</h3>"
            f"<pre>{e(chr(10).join(command_lines(waiting)))}</pre>"
        )
    anchors = [("Details", view.link)] if view.link else []
    anchors += [(link.title, link.url) for link in view.links]
    link = "".join(f'<p><a href="{e(url)}">{e(title)}</a></p>' for title, url in anchors)
    return (
        f"<html><body><h2>{e(view.title)}</h2><p>Needs a human ({e(visible(position))}).</p>"
        f"<p><b>Reason:</b> {e(visible(reason))}<br><b>State:</b> {e(i.state.value)}</p>"
        f"{command}<h3>Steps tried</h3><ol>{step_items or '<li>none</li>'}</ol>"
        f"<h3>Labels</h3><table>{rows}</table>{link}</body></html>"
    )


def page_email(
    view: IncidentView, reason: str, position: str, waiting: Any = None
) -> tuple[str, str, str]:
    """(subject, text, html) of a page; `waiting`: the command an approval asks for."""
    subject = header_value(f"[remediator] {view.incident.state.value}: {view.title}")
    text = "\n".join(_text_lines(view, reason, position, waiting)) + "\n"
    return subject, text, _html(view, reason, position, waiting)


def build_message(
    sender: str, to: str, subject: str, text: str, html_body: str, message_id: str
) -> EmailMessage:
    """The message as sent; raises ValueError only for a bad address from the config."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = header_value(subject)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = message_id  # the same on a retry: receivers can drop a duplicate
    msg.set_content(visible(text, keep_newlines=True))
    msg.add_alternative(visible(html_body, keep_newlines=True), subtype="html")
    return msg


@dataclass(frozen=True)
class SmtpSettings:
    """Resolved `email:` section (secrets read at start)."""

    host: str
    port: int
    starttls: bool
    username: str | None
    password: str | None
    sender: str
    ca_file: str | None
    timeout_s: float


class EmailSender:
    """Sends one message per call; a fresh connection each time (pages are rare)."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        self._tls = ssl.create_default_context(cafile=settings.ca_file)

    async def send(self, to: str, subject: str, text: str, html_body: str, message_id: str) -> None:
        """Deliver or raise DeliveryError (permanent for 5xx replies)."""
        s = self.settings
        try:
            msg = build_message(s.sender, to, subject, text, html_body, message_id)
        except (ValueError, TypeError) as exc:  # no retry builds it: the row is given up
            raise DeliveryError(f"email to {to!r}: cannot build it: {exc}", permanent=True) from exc
        try:
            await aiosmtplib.send(
                msg,
                hostname=s.host,
                port=s.port,
                start_tls=s.starttls,
                use_tls=False,
                tls_context=self._tls if s.starttls else None,
                username=s.username,
                password=s.password,
                timeout=s.timeout_s,
            )
        except aiosmtplib.SMTPResponseException as exc:
            permanent = exc.code in PERMANENT_CODES and exc.code != 552
            raise DeliveryError(
                f"smtp {s.host}:{s.port}: {exc.code} {exc.message}", permanent=permanent
            ) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"smtp {s.host}:{s.port}: {exc}") from exc

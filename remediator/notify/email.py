"""Pages by email (aiosmtplib): STARTTLS, auth from env, plain text and HTML."""

from __future__ import annotations

import html
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from remediator.errors import DeliveryError
from remediator.notify.slackmsg import describe_command
from remediator.notify.views import IncidentView

# SMTP replies that will not get better by retrying (RFC 5321 5yz, except 552 mailbox full).
PERMANENT_CODES = range(500, 600)


def page_email(view: IncidentView, reason: str, position: str) -> tuple[str, str, str]:
    """(subject, text, html) of a page."""
    i = view.incident
    subject = f"[remediator] {i.state.value}: {view.title}"
    steps = [
        f"  {s.step_index + 1}. {s.action}: {s.state.value}"
        + (f" (exit {s.exit_status})" if s.exit_status is not None else "")
        + (f" - {s.error}" if s.error else "")
        + f"\n     {describe_command(s.command)}"
        for s in view.steps
    ] or ["  (no step has run)"]
    labels = [f"  {k}={v}" for k, v in sorted(i.labels.items())]
    lines = [
        f"Incident {view.title} needs a human ({position}).",
        f"Reason: {reason}",
        f"State: {i.state.value}",
        "",
        "Steps tried:",
        *steps,
        "",
        "Labels:",
        *labels,
    ]
    if summary := i.annotations.get("summary"):
        lines[1:1] = [f"Summary: {summary}"]
    if view.link:
        lines += ["", f"Details: {view.link}"]
    text = "\n".join(lines) + "\n"
    e = html.escape
    rows = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in sorted(i.labels.items()))
    step_items = "".join(
        f"<li><code>{e(s.action)}</code>: {e(s.state.value)}"
        f" <code>{e(describe_command(s.command))}</code></li>"
        for s in view.steps
    )
    link = f'<p><a href="{e(view.link)}">Details</a></p>' if view.link else ""
    body = (
        f"<html><body><h2>{e(view.title)}</h2><p>Needs a human ({e(position)}).</p>"
        f"<p><b>Reason:</b> {e(reason)}<br><b>State:</b> {e(i.state.value)}</p>"
        f"<h3>Steps tried</h3><ol>{step_items or '<li>none</li>'}</ol>"
        f"<h3>Labels</h3><table>{rows}</table>{link}</body></html>"
    )
    return subject, text, body


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
        msg = EmailMessage()
        msg["From"] = s.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id  # the same on a retry: receivers can drop a duplicate
        msg.set_content(text)
        msg.add_alternative(html_body, subtype="html")
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

"""A real SMTP server (aiosmtpd) on loopback that keeps every message, with STARTTLS."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER, PASSWORD = "remediator", "smtp-test-password"


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA): (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.original_content or envelope.content, policy=default)
        self.sink.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok)


@dataclass
class SmtpSink:
    """Messages received as (recipients, message); STARTTLS required before AUTH."""

    cert: Path
    key: Path
    port: int
    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    controller: Controller | None = None

    def start(self) -> SmtpSink:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.cert, self.key)
        self.controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=tls,
            require_starttls=True,
            authenticator=_authenticator,
            auth_require_tls=True,
            # aiosmtpd's LOGIN asks "User Name" where servers ask "Username:", which
            # Alertmanager's client refuses: offer PLAIN, as many real servers do.
            auth_exclude_mechanism=["LOGIN"],
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[Message]:
        return [m for rcpts, m in self.messages if address in rcpts]

    def config(self) -> str:
        """The `email:` section of remediator.yml pointing here."""
        return (
            "email:\n  host: 127.0.0.1\n"
            f"  port: {self.port}\n  starttls: true\n"
            "  username_env: SMTP_USER\n  password_env: SMTP_PASSWORD\n"
            "  from: remediator@example.com\n"
            "  fallback_to: [fallback-oncall@example.com]\n"
            f"  ca_file: '{self.cert}'\n  timeout: 5s\n"
        )


SMTP_ENV = {"SMTP_USER": USER, "SMTP_PASSWORD": PASSWORD}

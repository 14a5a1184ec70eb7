"""A real SMTP server for tests (aiosmtpd), optionally with STARTTLS, implicit TLS and
AUTH, that keeps every message it receives."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    def part(self, subtype: str) -> str:
        """The body of the text/<subtype> part."""
        for p in self.message.walk():
            if p.get_content_type() == f"text/{subtype}":
                return p.get_content()
        raise AssertionError(f"no text/{subtype} part")

    def code(self) -> str:
        m = re.search(r"\b(\d{6})\b", self.part("plain"))
        assert m, self.part("plain")
        return m.group(1)


@dataclass
class _Handler:
    messages: list[Received] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg))
        self.arrived.set()
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for *host* and its key (PEM files); trust the certificate itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SMTPServer:
    """``with SMTPServer() as smtp: ... smtp.port, smtp.messages``.

    ``mode``: ``"plain"``, ``"starttls"`` (STARTTLS required before MAIL) or ``"tls"``
    (implicit TLS). ``credentials=(user, password)`` requires AUTH. ``client_context``
    is an SSL context that trusts the server's certificate.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        mode: str = "plain",
        *,
        certs_dir: Path | None = None,
        credentials: tuple[str, str] | None = None,
    ):
        self.mode = mode
        self.handler = _Handler()
        self.credentials = credentials
        self.client_context: ssl.SSLContext | None = None
        kwargs: dict = {}
        if mode in ("starttls", "tls"):
            assert certs_dir is not None, "TLS needs a directory for the certificate"
            cert, key = self_signed(certs_dir, self.host)
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_ctx.load_cert_chain(cert, key)
            self.client_context = ssl.create_default_context(cafile=str(cert))
            if mode == "starttls":
                kwargs.update(tls_context=server_ctx, require_starttls=True)
            else:
                kwargs.update(ssl_context=server_ctx)
        if credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
            if mode != "starttls":
                # aiosmtpd cannot see implicit TLS; plain AUTH is for the plain-mode test.
                kwargs.update(auth_require_tls=False)
        self.controller = Controller(self.handler, hostname=self.host, port=free_port(), **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and (
                auth_data.login.decode(),
                auth_data.password.decode(),
            )
            == self.credentials
        )
        return AuthResult(success=ok, handled=False)

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def refuse(self, address: str) -> None:
        self.handler.refuse.add(address)

    def last_to(self, address: str) -> Received:
        found = [m for m in self.messages if address in m.rcpt_tos]
        assert found, f"no message to {address}; got {[m.rcpt_tos for m in self.messages]}"
        return found[-1]

    def __enter__(self) -> SMTPServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

"""SMTP delivery (RFC 5321) with STARTTLS (RFC 3207), implicit TLS (RFC 8314) or none.

Messages are ``multipart/alternative`` (RFC 2046 section 5.1.4): a ``text/plain`` part
and, when the caller rendered one, a ``text/html`` part. One connection per message:
security mail is rare, and a fresh connection never reuses a half-broken session.
Certificates are verified against the system trust store (or the context given).
"""

from __future__ import annotations

import email.utils
import logging
import smtplib
import ssl
from email.message import EmailMessage as MIMEMessage

from .base import DeliveryError, EmailMessage

log = logging.getLogger("idp.delivery")

SECURITY_MODES = ("starttls", "tls", "none")


class SmtpEmailSender:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str,
        sender: str,
        reply_to: str = "",
        username: str = "",
        password: str = "",
        timeout: float = 10,
        ssl_context: ssl.SSLContext | None = None,
    ):
        if security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {SECURITY_MODES}")
        self.host = host
        self.port = port
        self.security = security
        self.sender = sender
        self.reply_to = reply_to
        self.username = username
        self._password = password
        self.timeout = timeout
        self.ssl_context = ssl_context

    def __repr__(self) -> str:  # never show the password
        return f"SmtpEmailSender({self.host}:{self.port}, {self.security})"

    def build(self, message: EmailMessage) -> MIMEMessage:
        """The MIME message for *message* (exposed for tests)."""
        mime = MIMEMessage()
        mime["From"] = self.sender
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
        domain = self.sender.rpartition("@")[2] or "localhost"
        mime["Message-ID"] = email.utils.make_msgid(domain=domain)
        reply_to = message.reply_to or self.reply_to
        if reply_to:
            mime["Reply-To"] = reply_to
        mime["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
        mime.set_content(message.text)
        if message.html is not None:
            mime.add_alternative(message.html, subtype="html")
        return mime

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=self._context()
            )
        conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            conn.ehlo()
            conn.starttls(context=self._context())
            conn.ehlo()
        return conn

    def send(self, message: EmailMessage) -> None:
        mime = self.build(message)
        try:
            with self._connect() as conn:
                if self.username:
                    conn.login(self.username, self._password)
                refused = conn.send_message(mime)
        except TimeoutError as exc:
            where = f"{self.host}:{self.port}"
            raise DeliveryError(f"SMTP {where} timed out", reason="timeout") from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP {self.host}:{self.port} refused the credentials ({exc.smtp_code})",
                reason="refused",
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError("SMTP server refused the recipient", reason="refused") from exc
        except smtplib.SMTPResponseException as exc:
            reason = "refused" if 500 <= exc.smtp_code < 600 else "unavailable"
            raise DeliveryError(
                f"SMTP {self.host}:{self.port} answered {exc.smtp_code}", reason=reason
            ) from exc
        except smtplib.SMTPServerDisconnected as exc:
            # smtplib reports a read timeout as a disconnection ("... timed out").
            reason = "timeout" if "timed out" in str(exc) else "unavailable"
            raise DeliveryError(
                f"SMTP {self.host}:{self.port} disconnected", reason=reason
            ) from exc
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise DeliveryError(
                f"SMTP {self.host}:{self.port} unavailable: {type(exc).__name__}",
                reason="unavailable",
            ) from exc
        if refused:
            raise DeliveryError("SMTP server refused the recipient", reason="refused")
        log.info("email to %s via smtp: %s (%s)", message.to, message.subject, message.purpose)

"""SMTP delivery against a real SMTP server (aiosmtpd) started by the test."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from idp.delivery import DeliveryError, EmailMessage
from idp.delivery.smtp import SmtpEmailSender
from tests.support.smtp import SMTPServer, free_port

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

MESSAGE = EmailMessage(
    to="ada@example.com",
    subject="Identity Provider: your verification code",
    text="Your code is 123456.\nNever share it.",
    html="<p>Your code is <strong>123456</strong>.</p>",
    purpose="otp.email",
)


def sender(server: SMTPServer, security: str, **kw) -> SmtpEmailSender:
    kw.setdefault("sender", "no-reply@id.example.gov")
    return SmtpEmailSender(host=server.host, port=server.port, security=security, timeout=5,
                           ssl_context=server.client_context, **kw)  # fmt: skip


def test_plain_smtp_delivers_a_multipart_text_and_html_message():
    with SMTPServer() as server:
        sender(server, "none", reply_to="help@id.example.gov").send(MESSAGE)
    [got] = server.messages
    assert got.mail_from == "no-reply@id.example.gov"
    assert got.rcpt_tos == ["ada@example.com"]
    msg = got.message
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["From"] == "no-reply@id.example.gov"
    assert msg["To"] == "ada@example.com"
    assert msg["Reply-To"] == "help@id.example.gov"
    assert msg["Subject"] == MESSAGE.subject
    assert msg["Message-ID"].endswith("@id.example.gov>")
    assert msg["Date"]
    assert got.code() == "123456"
    assert "<strong>123456</strong>" in got.part("html")


def test_a_message_reply_to_overrides_the_configured_one():
    with SMTPServer() as server:
        msg = EmailMessage(to="a@example.com", subject="s", text="t", purpose="p",
                           reply_to="desk@example.gov")  # fmt: skip
        sender(server, "none", reply_to="help@id.example.gov").send(msg)
    assert server.messages[0].message["Reply-To"] == "desk@example.gov"


def test_text_only_message_is_not_multipart():
    with SMTPServer() as server:
        sender(server, "none").send(EmailMessage(to="a@example.com", subject="s", text="hello",
                                                 purpose="p"))  # fmt: skip
    assert server.messages[0].message.get_content_type() == "text/plain"
    assert server.messages[0].message["Reply-To"] is None


def test_starttls_with_authentication(tmp_path):
    with SMTPServer("starttls", certs_dir=tmp_path, credentials=("relay", "s3cret")) as server:
        sender(server, "starttls", username="relay", password="s3cret").send(MESSAGE)
    assert server.messages[0].code() == "123456"


def test_implicit_tls_with_authentication(tmp_path):
    with SMTPServer("tls", certs_dir=tmp_path, credentials=("relay", "s3cret")) as server:
        sender(server, "tls", username="relay", password="s3cret").send(MESSAGE)
    assert server.messages[0].rcpt_tos == ["ada@example.com"]


def test_starttls_refuses_an_untrusted_certificate(tmp_path):
    with SMTPServer("starttls", certs_dir=tmp_path) as server:
        server.client_context = None  # the system trust store does not know the test cert
        with pytest.raises(DeliveryError) as err:
            sender(server, "starttls").send(MESSAGE)
    assert err.value.reason == "unavailable"
    assert server.messages == []


def test_wrong_credentials_are_refused_and_the_password_is_not_in_the_error(tmp_path):
    with SMTPServer("starttls", certs_dir=tmp_path, credentials=("relay", "s3cret")) as server:
        s = sender(server, "starttls", username="relay", password="wrong-password")
        with pytest.raises(DeliveryError) as err:
            s.send(MESSAGE)
    assert err.value.reason == "refused"
    assert "wrong-password" not in str(err.value) and "wrong-password" not in repr(s)
    assert server.messages == []


def test_refused_recipient():
    with SMTPServer() as server:
        server.refuse("ada@example.com")
        with pytest.raises(DeliveryError) as err:
            sender(server, "none").send(MESSAGE)
    assert err.value.reason == "refused"


def test_nothing_listening():
    s = SmtpEmailSender(host="127.0.0.1", port=free_port(), security="none", sender="a@b.example",
                        timeout=2)  # fmt: skip
    with pytest.raises(DeliveryError) as err:
        s.send(MESSAGE)
    assert err.value.reason == "unavailable"


def test_a_server_that_never_answers_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    s = SmtpEmailSender(host="127.0.0.1", port=listener.getsockname()[1], security="none",
                        sender="a@b.example", timeout=1)  # fmt: skip
    start = time.monotonic()
    with pytest.raises(DeliveryError) as err:
        s.send(MESSAGE)
    assert err.value.reason == "timeout"
    assert time.monotonic() - start < 4
    listener.close()
    for conn in accepted:
        conn.close()

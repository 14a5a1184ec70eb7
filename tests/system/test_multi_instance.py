"""Two provider instances (``idp serve``, 2 workers each) on one PostgreSQL and one Redis,
behind nginx with plain round robin and no sticky sessions.

Several users sign in at once (authorize -> password -> TOTP set-up -> code -> tokens,
then a second sign-in with a TOTP challenge and a refresh); one instance is stopped in
the middle of their sign-ins and the other completes every flow: no session, sign-in
transaction or authorization code lives in a process.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from urllib.parse import urljoin

import pytest

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from clients.mockrp.transport import HTTPTransport
from tests.integration.mfa_helpers import totp_code
from tests.system.cluster import CALLBACK, EMAIL, PASSWORD, cluster

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.system]

USERS = 4


def _browser(c) -> MockRP:
    return MockRP(c.issuer, c.client_id, CALLBACK, client_secret=c.client_secret,
                  transport=HTTPTransport(timeout=30))  # fmt: skip


def _follow(rp: MockRP, resp):
    while 300 <= resp.status < 400 and not (resp.location or "").startswith(CALLBACK):
        resp = rp.transport.request("GET", urljoin(resp.url, resp.location))
    return resp


def _password(rp: MockRP, resp, email: str):
    resp = _follow(rp, resp)
    form = next(f for f in parse_forms(resp.text, resp.url) if "password" in f.fields)
    form.fill(email=email, password=PASSWORD)
    return _follow(rp, rp.submit_form(form))


def _enroll_totp(rp: MockRP, resp) -> tuple[str, object]:
    assert "/mfa/setup" in resp.url, (resp.url, resp.text[:300])
    href = next(h for h in re.findall(r'href="([^"]+)"', resp.text) if "/mfa/setup/totp" in h)
    page = rp.transport.request("GET", urljoin(resp.url, href.replace("&amp;", "&")))
    secret = re.search(r'<code class="secret"[^>]*>([A-Z2-7 ]+)</code>', page.text)[1]
    secret = secret.replace(" ", "")
    done = rp.submit(page, {"code": totp_code(secret), "label": "Phone"})
    return secret, done


def _finish(rp: MockRP, resp, email: str):
    result = rp.resume(_follow(rp, resp), email=email, password=PASSWORD)
    assert result.code, result
    tokens = rp.exchange_code(result)
    claims = rp.verify_id_token(tokens.id_token, nonce=result.nonce,
                                access_token=tokens.access_token)  # fmt: skip
    return tokens, claims


def test_sign_ins_survive_losing_an_instance(tmp_path):
    with cluster(tmp_path, instances=2, workers=2) as c:
        emails = [EMAIL] + [f"user{i}@example.com" for i in range(1, USERS)]
        for email in emails[1:]:
            c.cli("users", "create", "--email", email, "--name", "U", stdin=PASSWORD + "\n")
        passed_password = threading.Barrier(USERS + 1, timeout=120)
        instance_stopped = threading.Event()
        results: dict[str, object] = {}

        def journey(email: str) -> None:
            try:
                rp = _browser(c)
                resp = _password(rp, rp.start(), email)
                passed_password.wait()
                instance_stopped.wait(timeout=120)
                secret, resp = _enroll_totp(rp, resp)
                tokens, claims = _finish(rp, resp, email)
                assert claims["amr"] == ["mfa", "otp", "pwd"]
                # A second browser: the TOTP challenge, with the next time step.
                rp2 = _browser(c)
                resp = _password(rp2, rp2.start(prompt="login"), email)
                assert "/mfa/challenge" in resp.url, resp.url
                step = int(time.time() // 30) + 1
                resp = rp2.submit(resp, {"code": totp_code(secret, step)})
                tokens2, claims2 = _finish(rp2, resp, email)
                assert claims2["sub"] == claims["sub"]
                refreshed = rp2.refresh(tokens2.refresh_token)
                assert refreshed.access_token
                results[email] = "ok"
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                results[email] = exc
                passed_password.abort()

        threads = [threading.Thread(target=journey, args=(e,)) for e in emails]
        for t in threads:
            t.start()
        passed_password.wait()
        # Every user has a session and a pending sign-in; both instances have served.
        served = [len(re.findall(r'"(GET|POST) ', i.log())) for i in c.instances]
        assert all(n > 0 for n in served), (served, c.logs())
        c.instances[0].stop(signal.SIGTERM)
        instance_stopped.set()
        for t in threads:
            t.join(timeout=180)
        failures = {e: r for e, r in results.items() if r != "ok"}
        assert not failures and len(results) == USERS, (failures, c.logs()[-4000:])


def _verify_app(state, *args: str, timeout: float = 60):
    import subprocess

    from tests.system.cluster import _bin

    return subprocess.run(
        [_bin("idp-verify"), "--state", str(state), *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_push_approval_through_the_balancer_survives_losing_an_instance(tmp_path):
    """Push set-up and sign-in through nginx; the instance that created the push
    challenge may be gone when the app answers: the challenge lives in Redis and its
    answer reaches the browser through whichever instance serves it."""
    from tests.integration.mfa_helpers import link, path_of, submit, walk
    from tests.integration.push_helpers import continue_form, enroll_uri, number_on

    state = tmp_path / "verify" / "accounts.json"
    with cluster(tmp_path / "c", instances=2, workers=1) as c:
        rp = _browser(c)
        resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
        assert path_of(resp) == "/mfa/setup", resp.url
        page = rp.transport.request("GET", urljoin(resp.url, link(resp, "/mfa/setup/push")))
        enrolled = _verify_app(state, "enroll", enroll_uri(page), "--name", "Cluster phone")
        assert enrolled.returncode == 0, enrolled.stderr + c.logs()[-3000:]
        _tokens, claims = _finish(rp, submit(rp, page), EMAIL)
        assert claims["amr"] == ["mfa", "pwd", "swk"]

        # A new sign-in: password, then "Send request" (the challenge goes to Redis).
        rp2 = _browser(c)
        resp = walk(rp2, rp2.start(prompt="login"), email=EMAIL, password=PASSWORD)
        assert path_of(resp) == "/mfa/challenge", resp.url
        sent = submit(rp2, resp, button=("action", "send"))
        assert sent.status == 302, sent.text
        page = rp2.transport.request("GET", urljoin(sent.url, sent.location))
        number = number_on(page)

        # Stop the instance that created the challenge.
        creator = [i for i in c.instances if '"POST /mfa/challenge' in i.log()]
        assert creator, c.logs()[-3000:]
        creator[-1].stop(signal.SIGTERM)
        approved = _verify_app(state, "approve", str(number), "--wait", "10")
        assert approved.returncode == 0 and "Approved." in approved.stdout, approved.stderr
        _tokens, claims = _finish(rp2, rp2.submit_form(continue_form(page)), EMAIL)
        assert claims["amr"] == ["mfa", "pwd", "swk"]

"""The authorization endpoint with bad input (RFC 6749 4.1.2.1, OIDC Core 3.1.2.6).

Errors about the client or its redirect_uri are shown to the user and never
redirected; every other error goes back to the validated redirect_uri with ``error``,
``state`` and ``iss`` (RFC 9207). No request that fails leaves an authorization code.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from clients.mockrp import MockRP, MockRPError
from clients.mockrp.forms import find_form, page_info, parse_forms
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD

ISS = "http://localhost"
RP_CB = "https://rp.example.com/cb"
ACR_AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
ACR_MFA = "urn:idp:acr:mfa"


# -- helpers -------------------------------------------------------------------------


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def count_codes(app) -> int:
    from idp.extensions import db
    from idp.models import AuthorizationCode

    with app.app_context():
        return db.session.query(AuthorizationCode).count()


def events(app, name: str) -> list[tuple[str, str | None, dict]]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name).order_by(AuditEvent.id)
        ).scalars()
        return [(r.outcome, r.client_id, dict(r.details or {})) for r in rows]


def assert_error_page(app, resp, error: str) -> None:
    """A 400 HTML page, no redirect anywhere, no code, and the refusal audited."""
    assert resp.status == 400, resp
    assert resp.content_type == "text/html"
    assert "Location" not in resp.headers
    assert "This sign-in link is not valid" in page_info(resp.text).title
    assert count_codes(app) == 0
    assert any(
        outcome == "failure" and details.get("error") == error
        for outcome, _, details in events(app, "authorization.refused")
    )


def assert_error_redirect(app, rp: MockRP, resp, error: str) -> dict[str, str]:
    """A redirect to the registered redirect_uri with error, state and iss only."""
    assert resp.status == 302, resp
    loc = resp.location
    assert loc.startswith(RP_CB + "?")
    q = query(loc)
    assert q["error"] == error
    assert q["state"] == rp.last_request["state"]
    assert q["iss"] == ISS
    assert "code" not in q
    assert count_codes(app) == 0
    assert (
        "failure",
        rp.client_id,
        {"error": error},
    ) in events(app, "authorization.refused")
    return q


def is_signin_page(resp) -> bool:
    if resp.status != 200 or resp.content_type != "text/html":
        return False
    try:
        find_form(parse_forms(resp.text, resp.url), "email", "password")
    except LookupError:
        return False
    return True


def new_rp(client, client_id: str, secret: str | None, **kw) -> MockRP:
    return MockRP(
        ISS, client_id, RP_CB, client_secret=secret, transport=FlaskTransport(client), **kw
    )


@pytest.fixture
def rp(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client()
    return new_rp(client, client_id, secret)


def id_token_claims(rp: MockRP, result) -> dict:
    tokens = rp.exchange_code(result)
    return rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)


# -- client and redirect_uri: never redirect -------------------------------------------


@pytest.mark.parametrize("response_type", ["code", "token"])
def test_unknown_client_id_shows_page(app, rp, response_type):
    resp = rp.start(client_id="no-such-client", response_type=response_type)
    assert_error_page(
        app, resp, "invalid_client" if response_type == "code" else "unsupported_response_type"
    )


def test_missing_client_id_shows_page(app, rp):
    resp = rp.start(client_id=None)
    assert_error_page(app, resp, "invalid_client")


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/cb",
        "https://rp.example.com/c",  # prefix
        "https://rp.example.com/cbx",  # suffix
        "https://rp.example.com/cb/",
        "https://rp.example.com/cb/extra",
        "https://rp.example.com/CB",  # case of the path
        "https://RP.example.com/cb",
        "https://rp.example.com/cb?extra=1",
        "https://rp.example.com:443/cb",
        "http://rp.example.com/cb",
        "https://rp.example.com/cb#frag",
    ],
)
def test_mismatched_redirect_uri_shows_page(app, rp, redirect_uri):
    resp = rp.start(redirect_uri=redirect_uri)
    assert_error_page(app, resp, "invalid_request")


@pytest.mark.parametrize("extra", [{"response_type": "token"}, {"scope": "profile"}])
def test_mismatched_redirect_uri_wins_over_other_errors(app, rp, extra):
    """Even errors that normally redirect must not go to an unvalidated URI."""
    if "scope" in extra:
        resp = rp.start(extra["scope"], redirect_uri="https://evil.example.com/cb")
    else:
        resp = rp.start(redirect_uri="https://evil.example.com/cb", **extra)
    assert resp.status == 400
    assert "Location" not in resp.headers
    assert count_codes(app) == 0


def test_missing_redirect_uri_shows_page(app, rp):
    resp = rp.start(redirect_uri=None)
    assert_error_page(app, resp, "invalid_request")


def test_duplicated_client_id_shows_page(app, client, rp):
    url, _ = rp.authorization_url()
    resp = client.get(url.replace("http://localhost", "") + "&client_id=" + rp.client_id)
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert resp.mimetype == "text/html"
    assert count_codes(app) == 0
    assert any(
        d.get("error") == "invalid_request" for _, _, d in events(app, "authorization.refused")
    )


@pytest.mark.parametrize("name", ["state", "login_hint", "nonce"])
def test_oversized_parameter_is_refused(app, rp, settings, name):
    limit = settings.security.max_parameter_length
    assert limit == 2048
    resp = rp.start(**{name: "x" * (limit + 1)})
    assert resp.status == 400
    assert resp.content_type == "text/html"
    assert "Location" not in resp.headers
    assert "Request too large" in page_info(resp.text).title
    assert count_codes(app) == 0


def test_parameter_at_the_limit_is_accepted(app, rp, settings):
    resp = rp.start(state="x" * settings.security.max_parameter_length)
    assert resp.status == 302
    assert urlsplit(resp.location).path == "/signin"


# -- errors returned to the client ------------------------------------------------------


@pytest.mark.parametrize("response_type", [None, "", "token", "id_token", "code id_token", "codes"])
def test_unsupported_response_type_redirects(app, rp, response_type):
    resp = rp.start(response_type=response_type)
    assert_error_redirect(app, rp, resp, "unsupported_response_type")


def test_missing_openid_scope(app, rp):
    resp = rp.start("profile email")
    assert_error_redirect(app, rp, resp, "invalid_scope")


def test_public_client_without_pkce(app, client, make_client, make_user):
    make_user()
    client_id, _ = make_client(auth_method="none")
    rp = new_rp(client, client_id, None, auth_method="none", use_pkce=False)
    resp = rp.start()
    q = assert_error_redirect(app, rp, resp, "invalid_request")
    assert "PKCE" in q["error_description"]


def test_public_client_with_pkce_works(app, client, make_client, make_user):
    make_user()
    client_id, _ = make_client(auth_method="none")
    rp = new_rp(client, client_id, None, auth_method="none")
    result = rp.sign_in("ada@example.com", PASSWORD)
    assert result.code and result.error is None


def test_plain_code_challenge_method(app, rp):
    resp = rp.start(code_challenge="a" * 43, code_challenge_method="plain")
    assert_error_redirect(app, rp, resp, "invalid_request")


def test_code_challenge_without_method(app, rp):
    resp = rp.start(code_challenge_method=None)
    assert_error_redirect(app, rp, resp, "invalid_request")


def test_code_challenge_method_without_challenge(app, rp):
    resp = rp.start(code_challenge=None)
    assert_error_redirect(app, rp, resp, "invalid_request")


def test_request_object_not_supported(app, rp):
    resp = rp.start(request="eyJhbGciOiJub25lIn0.e30.")
    assert_error_redirect(app, rp, resp, "request_not_supported")


def test_request_uri_not_supported(app, rp):
    resp = rp.start(request_uri="https://rp.example.com/request.jwt")
    assert_error_redirect(app, rp, resp, "request_uri_not_supported")


def test_prompt_none_without_session(app, rp):
    resp = rp.start(prompt="none")
    assert_error_redirect(app, rp, resp, "login_required")


@pytest.mark.parametrize("prompt", ["none login", "login none", "none consent"])
def test_prompt_none_combined(app, rp, prompt):
    resp = rp.start(prompt=prompt)
    assert_error_redirect(app, rp, resp, "invalid_request")


@pytest.mark.parametrize("prompt", ["bogus", "login bogus", "create"])
def test_unknown_prompt_value(app, rp, prompt):
    resp = rp.start(prompt=prompt)
    assert_error_redirect(app, rp, resp, "invalid_request")


@pytest.mark.parametrize("max_age", ["abc", "-1", "1.5", "1e3", "99999999999"])
def test_bad_max_age(app, rp, max_age):
    resp = rp.start(max_age=max_age)
    assert_error_redirect(app, rp, resp, "invalid_request")


@pytest.mark.parametrize("claims", ["{not json", "[1, 2]", '"acr"'])
def test_malformed_claims(app, rp, claims):
    resp = rp.start(claims=claims)
    assert_error_redirect(app, rp, resp, "invalid_request")


DEEP_CLAIMS = ["[" * 1500, "[" * 1000 + "]" * 1000, '{"id_token":' * 40 + "{}" + "}" * 40]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("claims", DEEP_CLAIMS, ids=["open-arrays", "closed-arrays", "objects"])
def test_deeply_nested_claims_shows_page(app, rp, claims, method):
    """A claims parameter nested beyond the limit (32 levels; Python's json raises
    RecursionError past about 1000) is refused with the error page before anything
    else, never a server error and never a redirect."""
    resp = rp.start(claims=claims, _method=method)
    assert resp.status == 400, resp.text[:300]
    assert resp.content_type == "text/html"
    assert "Location" not in resp.headers
    assert "nested" in resp.text
    assert count_codes(app) == 0


@pytest.mark.parametrize("claims", DEEP_CLAIMS, ids=["open-arrays", "closed-arrays", "objects"])
def test_check_acr_refuses_deep_claims_itself(claims):
    """OIDC Core 5.5: the claims check parses with the same depth limit, also for a
    request resumed from its stored transaction (which skips the request edge)."""
    from idp.oidc.authorize import AuthorizationError, Pending, check_acr

    pending = Pending(oauth=None, grant=None, client=None, redirect_uri=RP_CB,
                      params={"claims": claims, "state": "s"}, txn=None)  # fmt: skip
    with pytest.raises(AuthorizationError) as exc_info:
        check_acr(pending)
    assert exc_info.value.error == "invalid_request"
    assert exc_info.value.redirect_uri == RP_CB


def test_claims_within_the_depth_limit_are_accepted(app, rp):
    claims = {"id_token": {"acr": {"essential": False, "values": [ACR_AAL1]}},
              "userinfo": {"email": {"essential": True}}}  # fmt: skip
    result = rp.sign_in("ada@example.com", PASSWORD, claims=claims)
    assert id_token_claims(rp, result)["acr"] == ACR_AAL1


def test_unsupported_response_type_keeps_registered_query(app, client, make_client, make_user):
    """RFC 9207: iss is added even when the registered redirect_uri already has a query
    whose parameter name ends in "iss"."""
    make_user()
    cb = "https://rp.example.com/cb?kiss=1"
    client_id, secret = make_client(redirect_uris=[cb])
    rp = MockRP(ISS, client_id, cb, client_secret=secret, transport=FlaskTransport(client))
    resp = rp.start(response_type="token")
    assert resp.status == 302
    q = query(resp.location)
    assert resp.location.startswith(cb + "&")
    assert q["kiss"] == "1"
    assert q["error"] == "unsupported_response_type"
    assert q["iss"] == ISS
    result = rp.sign_in("ada@example.com", PASSWORD)
    assert result.code and result.iss == ISS


# -- acr ------------------------------------------------------------------------------


def test_unreachable_acr_after_sign_in(app, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, acr_values="urn:example:acr:gold")
    assert result.error == "unmet_authentication_requirements"
    assert result.code is None and result.iss == ISS
    assert count_codes(app) == 0
    assert events(app, "login.success")  # the password step did run


def test_mfa_acr_for_a_user_without_factors_leads_to_set_up(app, rp):
    with pytest.raises(MockRPError, match="/mfa/setup"):
        rp.sign_in("ada@example.com", PASSWORD, acr_values=ACR_MFA)
    assert count_codes(app) == 0


def test_essential_acr_in_claims_leads_to_set_up(app, rp):
    claims = {"id_token": {"acr": {"essential": True, "values": [ACR_MFA]}}}
    with pytest.raises(MockRPError, match="/mfa/setup"):
        rp.sign_in("ada@example.com", PASSWORD, claims=claims)
    assert count_codes(app) == 0


def test_client_requiring_mfa_leads_to_set_up(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client(require_mfa=True)
    rp = new_rp(client, client_id, secret)
    with pytest.raises(MockRPError, match="/mfa/setup"):
        rp.sign_in("ada@example.com", PASSWORD)
    assert count_codes(app) == 0


def test_aal1_acr_is_asserted(app, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, acr_values=ACR_AAL1)
    assert result.code
    assert id_token_claims(rp, result)["acr"] == ACR_AAL1


def test_unknown_acr_alongside_a_known_one(app, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, acr_values=f"urn:unknown {ACR_AAL1}")
    assert result.code
    assert id_token_claims(rp, result)["acr"] == ACR_AAL1


# -- things that must work ----------------------------------------------------------------


def test_unknown_extra_parameters_are_ignored(app, rp):
    result = rp.sign_in(
        "ada@example.com", PASSWORD, foo="bar", display="page", ui_locales="en", x_y="1"
    )
    assert result.code and result.error is None
    assert id_token_claims(rp, result)["nonce"] == result.nonce


def test_post_to_authorize_works_like_get(app, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, _method="POST")
    assert result.code and result.iss == ISS
    assert id_token_claims(rp, result)["nonce"] == result.nonce


def test_post_to_authorize_errors_like_get(app, rp):
    resp = rp.start(prompt="bogus", _method="POST")
    assert_error_redirect(app, rp, resp, "invalid_request")


def test_login_hint_prefills_email(app, rp):
    resp = rp.follow(rp.start(login_hint="grace@example.com"))
    form = find_form(parse_forms(resp.text, resp.url), "email", "password")
    assert form.fields["email"] == "grace@example.com"


def test_no_login_hint_leaves_email_empty(app, rp):
    resp = rp.follow(rp.start())
    form = find_form(parse_forms(resp.text, resp.url), "email", "password")
    assert form.fields["email"] == ""


# -- re-authentication ------------------------------------------------------------------


def _shift_session_clock(app, seconds: float) -> None:
    """Make the next sign-ins happen ``seconds`` from now (negative: in the past)."""
    app.extensions["idp"].sessions.clock = lambda: time.time() + seconds


def test_existing_session_is_reused(app, rp):
    first = rp.sign_in("ada@example.com", PASSWORD)
    assert first.code
    again = rp.resume(rp.start())  # no credentials: a login page would raise
    assert again.code


def test_prompt_login_forces_sign_in_and_advances_auth_time(app, rp):
    first = rp.sign_in("ada@example.com", PASSWORD)
    before = id_token_claims(rp, first)["auth_time"]
    _shift_session_clock(app, 100)
    resp = rp.follow(rp.start(prompt="login"))
    assert is_signin_page(resp)
    result = rp.resume(resp, email="ada@example.com", password=PASSWORD)
    assert result.code
    assert id_token_claims(rp, result)["auth_time"] >= before + 100


def test_max_age_zero_forces_sign_in(app, rp):
    """OIDC Core 3.1.2.1: "max_age=0 is equivalent to prompt=login", even within the
    second of the last sign-in."""
    first = rp.sign_in("ada@example.com", PASSWORD)
    before = id_token_claims(rp, first)["auth_time"]
    resp = rp.follow(rp.start(max_age=0))
    assert is_signin_page(resp)
    _shift_session_clock(app, 100)
    result = rp.resume(resp, email="ada@example.com", password=PASSWORD)
    assert result.code
    assert id_token_claims(rp, result)["auth_time"] >= before + 100


def test_max_age_reauthentication_that_finishes_late(app, rp):
    """The sign-in done for this request satisfies max_age even when a few seconds pass
    before the request resumes (a slow network); it must not loop back to sign-in."""
    rp.sign_in("ada@example.com", PASSWORD)
    resp = rp.follow(rp.start(max_age=0))
    assert is_signin_page(resp)
    _shift_session_clock(app, -5)
    result = rp.resume(resp, email="ada@example.com", password=PASSWORD)
    assert result.code, result
    assert id_token_claims(rp, result)["auth_time"] <= time.time() - 4


def test_generous_max_age_does_not_force_sign_in(app, rp):
    rp.sign_in("ada@example.com", PASSWORD)
    result = rp.resume(rp.start(max_age=3600))
    assert result.code


def test_id_token_hint_for_another_user_forces_sign_in(app, client, make_client, make_user):
    make_user()
    make_user("grace@example.com", name="Grace Hopper")
    client_id, secret = make_client()
    # Ada's ID token, from another browser.
    ada = new_rp(app.test_client(), client_id, secret)
    ada_result = ada.sign_in("ada@example.com", PASSWORD)
    ada_tokens = ada.exchange_code(ada_result)
    ada_claims = ada.verify_id_token(ada_tokens.id_token, nonce=ada_result.nonce)
    # This browser is signed in as Grace.
    grace = new_rp(app.test_client(), client_id, secret)
    grace.sign_in("grace@example.com", PASSWORD)
    resp = grace.follow(grace.start(id_token_hint=ada_tokens.id_token))
    assert is_signin_page(resp)
    result = grace.resume(resp, email="ada@example.com", password=PASSWORD)
    assert id_token_claims(grace, result)["sub"] == ada_claims["sub"]


def test_id_token_hint_for_another_user_with_prompt_none(app, client, make_client, make_user):
    make_user()
    make_user("grace@example.com", name="Grace Hopper")
    client_id, secret = make_client()
    ada = new_rp(app.test_client(), client_id, secret)
    ada_tokens = ada.exchange_code(ada.sign_in("ada@example.com", PASSWORD))
    grace = new_rp(client, client_id, secret)
    grace.sign_in("grace@example.com", PASSWORD)
    before = count_codes(app)
    resp = grace.start(id_token_hint=ada_tokens.id_token, prompt="none")
    q = query(resp.location)
    assert q["error"] == "login_required" and q["state"] == grace.last_request["state"]
    assert count_codes(app) == before


def test_matching_id_token_hint_is_accepted(app, rp):
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD))
    result = rp.resume(rp.start(id_token_hint=tokens.id_token, prompt="none"))
    assert result.code


def _tamper(jwt: str) -> str:
    header, payload, sig = jwt.split(".")
    sig = ("A" if sig[0] != "A" else "B") + sig[1:]
    return f"{header}.{payload}.{sig}"


def test_tampered_id_token_hint(app, rp):
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD))
    before = count_codes(app)
    resp = rp.start(id_token_hint=_tamper(tokens.id_token))
    q = query(resp.location)
    assert q["error"] == "invalid_request" and q["iss"] == ISS
    assert "code" not in q
    assert count_codes(app) == before


def test_id_token_hint_of_another_client(app, client, rp, make_client):
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD))
    other_id, other_secret = make_client(name="Other RP")
    other = new_rp(client, other_id, other_secret)
    resp = other.start(id_token_hint=tokens.id_token)
    assert query(resp.location)["error"] == "invalid_request"


def test_access_token_is_not_an_id_token_hint(app, rp):
    """OIDC Core 3.1.2.1: id_token_hint is an ID Token; an RFC 9068 access token (typ
    at+jwt) with the same iss/aud/sub must not pass for one."""
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD))
    before = count_codes(app)
    resp = rp.start(id_token_hint=tokens.access_token)
    q = query(resp.location)
    assert q["error"] == "invalid_request"
    assert count_codes(app) == before


# -- consent --------------------------------------------------------------------------


def test_consent_page_deny(app, rp):
    resp = rp.follow(rp.start())
    # The password step takes the request on at once: its redirect is to /consent.
    resp = rp.follow(rp.submit(resp, {"email": "ada@example.com", "password": PASSWORD}))
    assert resp.status == 200
    assert "Allow Test RP to use your account?" in page_info(resp.text).h1
    result = rp.resume(resp, consent="deny")
    assert result.error == "access_denied" and result.iss == ISS
    assert result.code is None
    assert count_codes(app) == 0
    from idp.extensions import db
    from idp.models import Consent

    with app.app_context():
        assert db.session.query(Consent).count() == 0
    assert [c for _, c, _ in events(app, "consent.denied")] == [rp.client_id]


def test_consent_is_remembered_for_the_same_scopes(app, client, rp):
    assert rp.sign_in("ada@example.com", PASSWORD).code
    # A new browser: sign in again, no consent page this time.
    other = new_rp(app.test_client(), rp.client_id, rp.client_secret)
    result = other.sign_in("ada@example.com", PASSWORD, consent=None)
    assert result.code
    # A smaller set is covered too.
    assert rp.resume(rp.start("openid email"), consent=None).code
    # A larger set asks again.
    with pytest.raises(MockRPError, match="consent page shown"):
        rp.resume(rp.start("openid profile email phone"), consent=None)
    result = rp.resume(rp.start("openid profile email phone"))
    assert result.code
    assert events(app, "consent.granted")[-1][2]["scope"] == "openid profile email phone"


def test_prompt_consent_forces_consent(app, rp):
    assert rp.sign_in("ada@example.com", PASSWORD).code
    with pytest.raises(MockRPError, match="consent page shown"):
        rp.resume(rp.start(prompt="consent"), consent=None)
    result = rp.resume(rp.start(prompt="consent"), consent="deny")
    assert result.error == "access_denied"


def test_prompt_none_when_consent_is_needed(app, rp):
    # A session exists (the password step ran) but this client has no consent yet.
    resp = rp.follow(rp.start())
    rp.submit(resp, {"email": "ada@example.com", "password": PASSWORD})
    resp = rp.start(prompt="none")
    assert_error_redirect(app, rp, resp, "consent_required")


def test_first_party_client_skips_consent(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client(first_party=True)
    rp = new_rp(client, client_id, secret)
    assert rp.sign_in("ada@example.com", PASSWORD, consent=None).code
    assert rp.resume(rp.start(prompt="consent"), consent=None).code


def test_resume_with_unknown_transaction(app, client):
    resp = client.get("/authorize/resume?" + urlencode({"txn": "nope"}))
    assert resp.status_code == 400
    assert "Location" not in resp.headers

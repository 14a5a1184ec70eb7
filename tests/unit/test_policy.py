"""The sign-in policy as a table: every branch of :func:`idp.auth.policy.decide`."""

from __future__ import annotations

import pytest

from idp.auth import assurance
from idp.auth.assurance import (
    ACR_AAL1,
    ACR_AAL2,
    ACR_AAL2_PHISHING_RESISTANT,
    ACR_MFA,
    achieved_acr,
    amr_for,
)
from idp.auth.policy import ClientPolicy, Request, SessionFacts, decide

NOW = 1_700_000_000
UNKNOWN = "urn:example:unknown-acr"


def session(age: int = 10, *methods: str) -> SessionFacts:
    return SessionFacts(auth_time=NOW - age, methods=frozenset(methods or ("pwd",)))


def req(**kw) -> Request:
    if "prompt" in kw:
        kw["prompt"] = frozenset(kw["prompt"].split())
    if "acr_values" in kw:
        kw["acr_values"] = tuple(kw["acr_values"].split())
    return Request(**kw)


# (id, request, client, session, expected step, expected acr)
PASSWORD_ONLY = [
    ("no session", req(), ClientPolicy(), None, "login", None),
    ("no session, prompt=none", req(prompt="none"), ClientPolicy(), None, "login", None),
    ("session", req(), ClientPolicy(), session(), "ok", ACR_AAL1),
    ("prompt=login first pass", req(prompt="login"), ClientPolicy(), session(), "login", None),
    (
        "prompt=login after sign-in",
        req(prompt="login", login_done=True),
        ClientPolicy(),
        session(0),
        "ok",
        ACR_AAL1,
    ),
    ("max_age exceeded", req(max_age=50), ClientPolicy(), session(51), "login", None),
    ("max_age at the limit", req(max_age=50), ClientPolicy(), session(50), "ok", ACR_AAL1),
    ("max_age ok", req(max_age=3600), ClientPolicy(), session(51), "ok", ACR_AAL1),
    # OIDC Core 3.1.2.1: "max_age=0 is equivalent to prompt=login".
    ("max_age=0 same second", req(max_age=0), ClientPolicy(), session(0), "login", None),
    (
        "max_age=0 after sign-in, a slow second later",
        req(max_age=0, login_done=True),
        ClientPolicy(),
        session(3),
        "ok",
        ACR_AAL1,
    ),
    (
        "max_age exceeded but signed in for this request",
        req(max_age=5, login_done=True),
        ClientPolicy(),
        session(8),
        "ok",
        ACR_AAL1,
    ),
    (
        "hint names another user",
        req(hinted_sub_mismatch=True),
        ClientPolicy(),
        session(),
        "login",
        None,
    ),
    (
        "hint mismatch even after sign-in",
        req(hinted_sub_mismatch=True, login_done=True),
        ClientPolicy(),
        session(0),
        "login",
        None,
    ),
    ("no password in session", req(), ClientPolicy(), session(5, "otp"), "login", None),
    ("aal1 requested", req(acr_values=ACR_AAL1), ClientPolicy(), session(), "ok", ACR_AAL1),
    ("mfa requested, unmet", req(acr_values=ACR_MFA), ClientPolicy(), session(), "unmet", None),
    ("aal2 requested, unmet", req(acr_values=ACR_AAL2), ClientPolicy(), session(), "unmet", None),
    ("unknown acr only", req(acr_values=UNKNOWN), ClientPolicy(), session(), "unmet", None),
    (
        "unknown and aal1",
        req(acr_values=f"{UNKNOWN} {ACR_AAL1}"),
        ClientPolicy(),
        session(),
        "ok",
        ACR_AAL1,
    ),
    (
        "mfa or aal1: highest met",
        req(acr_values=f"{ACR_MFA} {ACR_AAL1}"),
        ClientPolicy(),
        session(),
        "ok",
        ACR_AAL1,
    ),
    (
        "essential mfa",
        req(acr_values=ACR_MFA, acr_essential=True),
        ClientPolicy(),
        session(),
        "unmet",
        None,
    ),
    ("client requires mfa", req(), ClientPolicy(require_mfa=True), session(), "unmet", None),
    (
        "client requires mfa, aal1 requested",
        req(acr_values=ACR_AAL1),
        ClientPolicy(require_mfa=True),
        session(),
        "unmet",
        None,
    ),
    (
        "require_mfa still needs a session first",
        req(),
        ClientPolicy(require_mfa=True),
        None,
        "login",
        None,
    ),
    ("default acr aal1", req(), ClientPolicy(default_acr=ACR_AAL1), session(), "ok", ACR_AAL1),
    ("default acr mfa", req(), ClientPolicy(default_acr=ACR_MFA), session(), "unmet", None),
    (
        "requested acr replaces the default",
        req(acr_values=ACR_AAL1),
        ClientPolicy(default_acr=ACR_MFA),
        session(),
        "ok",
        ACR_AAL1,
    ),
    (
        "login beats unmet",
        req(acr_values=ACR_MFA, prompt="login"),
        ClientPolicy(),
        session(),
        "login",
        None,
    ),
]


@pytest.mark.parametrize(
    ("request_", "client", "session_", "step", "acr"),
    [pytest.param(*row[1:], id=row[0]) for row in PASSWORD_ONLY],
)
def test_decide_password_only(request_, client, session_, step, acr):
    decision = decide(request_, client, session_, NOW)
    assert (decision.step, decision.acr) == (step, acr), decision.reason
    assert decision.reason or step == "ok"


# Second factors as they will be once the MFA factors land.
LEVELS = {"email": ACR_MFA, "otp": ACR_AAL2, "hwk": ACR_AAL2_PHISHING_RESISTANT}

WITH_FACTORS = [
    ("otp reaches aal2", req(), ClientPolicy(), session(5, "pwd", "otp"), "ok", ACR_AAL2),
    ("email reaches mfa", req(), ClientPolicy(), session(5, "pwd", "email"), "ok", ACR_MFA),
    (
        "best of several factors",
        req(),
        ClientPolicy(),
        session(5, "pwd", "email", "hwk"),
        "ok",
        ACR_AAL2_PHISHING_RESISTANT,
    ),
    ("a factor without password", req(), ClientPolicy(), session(5, "otp"), "login", None),
    (
        "highest requested level met",
        req(acr_values=f"{ACR_AAL1} {ACR_MFA} {ACR_AAL2}"),
        ClientPolicy(),
        session(5, "pwd", "otp"),
        "ok",
        ACR_AAL2,
    ),
    (
        "highest met, order does not matter",
        req(acr_values=f"{ACR_AAL2} {ACR_AAL1} {ACR_MFA}"),
        ClientPolicy(),
        session(5, "pwd", "email"),
        "ok",
        ACR_MFA,
    ),
    (
        "lower level asserted when that is what was asked",
        req(acr_values=ACR_MFA),
        ClientPolicy(),
        session(5, "pwd", "hwk"),
        "ok",
        ACR_MFA,
    ),
    (
        "phishing resistance unmet with otp",
        req(acr_values=ACR_AAL2_PHISHING_RESISTANT),
        ClientPolicy(),
        session(5, "pwd", "otp"),
        "unmet",
        None,
    ),
    (
        "client requires mfa, met",
        req(),
        ClientPolicy(require_mfa=True),
        session(5, "pwd", "email"),
        "ok",
        ACR_MFA,
    ),
    (
        "client requires mfa, aal2 session",
        req(),
        ClientPolicy(require_mfa=True),
        session(5, "pwd", "otp"),
        "ok",
        ACR_AAL2,
    ),
    (
        "client floor filters requested levels",
        req(acr_values=f"{ACR_AAL1} {ACR_AAL2}"),
        ClientPolicy(require_mfa=True),
        session(5, "pwd", "otp"),
        "ok",
        ACR_AAL2,
    ),
    (
        "client floor above every requested level",
        req(acr_values=ACR_AAL1),
        ClientPolicy(require_mfa=True),
        session(5, "pwd", "otp"),
        "unmet",
        None,
    ),
    (
        "default acr met by a factor",
        req(),
        ClientPolicy(default_acr=ACR_AAL2),
        session(5, "pwd", "otp"),
        "ok",
        ACR_AAL2,
    ),
    (
        "max_age still applies with factors",
        req(max_age=1),
        ClientPolicy(),
        session(5, "pwd", "otp"),
        "login",
        None,
    ),
]


@pytest.mark.parametrize(
    ("request_", "client", "session_", "step", "acr"),
    [pytest.param(*row[1:], id=row[0]) for row in WITH_FACTORS],
)
def test_decide_with_second_factors(monkeypatch, request_, client, session_, step, acr):
    monkeypatch.setattr(assurance, "SECOND_FACTOR_LEVELS", LEVELS)
    decision = decide(request_, client, session_, NOW)
    assert (decision.step, decision.acr) == (step, acr), decision.reason


def test_factors_count_for_nothing_until_registered():
    """With the (current) empty table, a second factor adds no assurance."""
    assert assurance.SECOND_FACTOR_LEVELS == {}
    decision = decide(req(acr_values=ACR_AAL2), ClientPolicy(), session(5, "pwd", "otp"), NOW)
    assert decision.step == "unmet"


def test_achieved_acr_and_amr(monkeypatch):
    assert achieved_acr({"otp"}) is None
    assert achieved_acr({"pwd", "otp"}) == ACR_AAL1
    monkeypatch.setattr(assurance, "SECOND_FACTOR_LEVELS", LEVELS)
    assert achieved_acr({"pwd", "otp"}) == ACR_AAL2
    assert amr_for({"pwd"}) == ["pwd"]
    assert amr_for({"pwd", "otp"}) == ["otp", "pwd", "mfa"]

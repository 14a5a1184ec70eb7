"""The sign-in policy as a table: (date, factors, client, acr_values, session) -> step."""

from __future__ import annotations

import datetime as dt

import pytest

from idp.mfa.policy import (
    ClientPolicy,
    Request,
    SessionFacts,
    Settings,
    UserFacts,
    decide,
)

AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
MFA = "urn:idp:acr:mfa"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
PR = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"

NOW = int(dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC).timestamp())
BEFORE = Settings(enforce_from=dt.date(2027, 3, 11))  # ten days left
ON = Settings(enforce_from=dt.date(2027, 3, 1))
AFTER = Settings(enforce_from=dt.date(2027, 1, 1))
OFF = Settings(required=False)

PWD = SessionFacts(NOW - 60, {"pwd": NOW - 60})
PWD_OLD = SessionFacts(NOW - 3600, {"pwd": NOW - 3600})
PWD_TOTP = SessionFacts(NOW - 30, {"pwd": NOW - 60, "totp": NOW - 30})
PWD_TOTP_OLD = SessionFacts(NOW - 3000, {"pwd": NOW - 3600, "totp": NOW - 3000})
PWD_KEY = SessionFacts(NOW - 30, {"pwd": NOW - 60, "webauthn": NOW - 30})

NONE = UserFacts()
TOTP = UserFacts(frozenset({"totp"}), 1)
TOTP_KEY = UserFacts(frozenset({"totp", "webauthn"}), 2)
ONLY_RECOVERY = UserFacts(frozenset({"recovery"}), 1)

ANY = ClientPolicy()
STRICT = ClientPolicy(require_mfa=True)
PR_DEFAULT = ClientPolicy(default_acr=PR)

CASES = [
    # id, settings, user, client, request, session, expected step, expected extra
    ("no session", BEFORE, TOTP, ANY, Request(), None, "login", {}),
    ("prompt=login", BEFORE, TOTP, ANY, Request(prompt=frozenset({"login"})), PWD_TOTP, "login", {}),
    ("prompt=login done", BEFORE, NONE, ANY,
     Request(prompt=frozenset({"login"}), login_done=True, postponed=True), PWD, "ok", {"acr": AAL1}),
    ("hint for another user", BEFORE, TOTP, ANY, Request(hinted_sub_mismatch=True), PWD_TOTP, "login", {}),
    ("no factor, before date: optional set-up with days left", BEFORE, NONE, ANY, Request(), PWD,
     "enroll", {"optional": True, "days_left": 10, "factors": ("totp", "webauthn")}),
    ("no factor, before date, postponed", BEFORE, NONE, ANY, Request(postponed=True), PWD, "ok", {"acr": AAL1}),
    ("no factor, on the date: required", ON, NONE, ANY, Request(), PWD, "enroll", {"optional": False}),
    ("no factor, after date: postponing is not honoured", AFTER, NONE, ANY, Request(postponed=True),
     PWD, "enroll", {"optional": False}),
    ("no factor, MFA not required", OFF, NONE, ANY, Request(), PWD, "ok", {"acr": AAL1}),
    ("factor present: challenge with it", BEFORE, TOTP, ANY, Request(), PWD, "challenge", {"factors": ("totp",)}),
    ("factor passed", BEFORE, TOTP_KEY, ANY, Request(), PWD_TOTP, "ok", {"acr": AAL2}),
    ("one factor, passed in this sign-in: recommend a second", BEFORE, TOTP, ANY,
     Request(login_done=True, passed_in_txn=frozenset({'totp'})), PWD_TOTP, "recommend", {"factors": ("recovery", "webauthn")}),
    ("no recommendation after a step-up from an existing session", BEFORE, TOTP, ANY,
     Request(acr_values=(MFA,), passed_in_txn=frozenset({'totp'})), PWD_TOTP, "ok", {"acr": MFA}),
    ("recommendation dismissed", BEFORE, TOTP, ANY,
     Request(passed_in_txn=frozenset({'totp'}), recommend_dismissed=True), PWD_TOTP, "ok", {}),
    ("single sign-on reuse does not nag", BEFORE, TOTP, ANY, Request(), PWD_TOTP, "ok", {}),
    ("client requires MFA, user has none (before date): required, not optional", BEFORE, NONE,
     STRICT, Request(), PWD, "enroll", {"optional": False}),
    ("client requires MFA, MFA off globally, user has TOTP", OFF, TOTP, STRICT, Request(), PWD,
     "challenge", {"factors": ("totp",)}),
    ("acr mfa step-up from a password-only session: challenge only", OFF, TOTP, ANY,
     Request(acr_values=(MFA,)), PWD, "challenge", {}),
    ("acr mfa with fresh TOTP", OFF, TOTP, ANY, Request(acr_values=(MFA,)), PWD_TOTP, "ok", {"acr": MFA}),
    ("acr mfa within max_age, password and TOTP both stale: the password first", OFF, TOTP, ANY,
     Request(acr_values=(MFA,), max_age=900), PWD_TOTP_OLD, "login", {}),
    ("acr mfa within max_age, password fresh, TOTP stale: the factor only", OFF, TOTP, ANY,
     Request(acr_values=(MFA,), max_age=900),
     SessionFacts(NOW - 100, {"pwd": NOW - 100, "totp": NOW - 3000}), "challenge", {}),
    ("acr mfa within max_age, password signed in again, TOTP stale: the factor next", OFF, TOTP,
     ANY, Request(acr_values=(MFA,), max_age=900, login_done=True), PWD_TOTP_OLD, "challenge", {}),
    ("max_age exceeded at password level: sign in again", OFF, TOTP, ANY, Request(max_age=600),
     PWD_OLD, "login", {}),
    ("max_age exceeded but the sign-in happened in this request", OFF, TOTP, ANY,
     Request(max_age=600, login_done=True), PWD_OLD, "ok", {"acr": AAL1}),
    ("prompt=login with acr mfa: the factor is asked again after the password", OFF, TOTP, ANY,
     Request(acr_values=(MFA,), prompt=frozenset({"login"}), login_done=True), PWD_TOTP,
     "challenge", {}),
    ("max_age=0 is prompt=login", OFF, TOTP, ANY, Request(max_age=0), PWD, "login", {}),
    ("max_age=0 after signing in within this request", OFF, TOTP, ANY,
     Request(max_age=0, login_done=True), PWD, "ok", {}),
    ("max_age=0 with acr mfa: the factor passed in this request counts", OFF, TOTP_KEY, ANY,
     Request(acr_values=(MFA,), max_age=0, login_done=True, passed_in_txn=frozenset({"totp"})),
     PWD_TOTP_OLD, "ok", {"acr": MFA}),
    ("a factor of another type passed in this request does not make a stale one fresh", OFF,
     TOTP_KEY, ANY, Request(acr_values=(PR,), max_age=60, passed_in_txn=frozenset({"totp"})),
     SessionFacts(NOW - 30, {"pwd": NOW - 60, "totp": NOW - 30, "webauthn": NOW - 4000}),
     "challenge", {"factors": ("webauthn",)}),
    ("phishing-resistant with TOTP only: enroll a key, never a TOTP challenge", BEFORE, TOTP, ANY,
     Request(acr_values=(PR,)), PWD_TOTP, "enroll", {"factors": ("webauthn",), "optional": False}),
    ("phishing-resistant with a key: key challenge only", BEFORE, TOTP_KEY, ANY,
     Request(acr_values=(PR,)), PWD_TOTP, "challenge", {"factors": ("webauthn",)}),
    ("phishing-resistant passed", BEFORE, TOTP_KEY, ANY, Request(acr_values=(PR,)), PWD_KEY,
     "ok", {"acr": PR}),
    ("client default acr applies without acr_values", BEFORE, TOTP_KEY, PR_DEFAULT, Request(),
     PWD_TOTP, "challenge", {"factors": ("webauthn",)}),
    ("highest requested level met is asserted", BEFORE, TOTP, ANY,
     Request(acr_values=(AAL1, MFA, PR)), PWD_TOTP, "ok", {"acr": MFA}),
    ("unknown acr next to a known one is ignored", OFF, TOTP, ANY,
     Request(acr_values=("urn:x:gold", AAL1)), PWD, "ok", {"acr": AAL1}),
    ("unknown acr only: unmet", BEFORE, TOTP, ANY, Request(acr_values=("urn:x:gold",)), PWD_TOTP,
     "unmet", {}),
    ("PR requested but WebAuthn not allowed: unmet", Settings(allowed=frozenset({"totp", "recovery"})),
     TOTP, ANY, Request(acr_values=(PR,)), PWD_TOTP, "unmet", {}),
    ("only recovery codes left: they are challenged", BEFORE, ONLY_RECOVERY, ANY, Request(), PWD,
     "challenge", {"factors": ("recovery",)}),
    ("aal1 requested by a user with factors still needs MFA when required", BEFORE, TOTP, ANY,
     Request(acr_values=(AAL1,)), PWD, "challenge", {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "user", "client", "request_", "session", "step", "extra"),
    [pytest.param(*c[1:], id=c[0]) for c in CASES],
)
def test_policy_table(settings, user, client, request_, session, step, extra):
    decision = decide(request_, client, session, user, settings, NOW)
    assert decision.step == step, decision.reason
    for key, value in extra.items():
        assert getattr(decision, key) == value, (key, decision)

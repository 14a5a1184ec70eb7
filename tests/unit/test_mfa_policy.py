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

# A sign-in with a passkey alone: both steps at once.
PASSKEY = SessionFacts(NOW - 30, {"passkey": NOW - 30, "webauthn": NOW - 30})
PASSKEY_OLD = SessionFacts(NOW - 3600, {"passkey": NOW - 3600, "webauthn": NOW - 3600})

NONE = UserFacts()
TOTP = UserFacts(frozenset({"totp"}), 1)
TOTP_KEY = UserFacts(frozenset({"totp", "webauthn"}), 2)
ONLY_RECOVERY = UserFacts(frozenset({"recovery"}), 1)

KEY_ALONE = UserFacts(frozenset({"webauthn"}), 1, has_passkey=True)
TOTP_KEY_ALONE = UserFacts(frozenset({"totp", "webauthn"}), 2, has_passkey=True)
# The passkey offer: every 30 days, where WebAuthn works.
OFFER = Settings(enforce_from=dt.date(2027, 1, 1), passkey_offer_interval=30 * 86400)
OFFER_OFF = Settings(enforce_from=dt.date(2027, 1, 1))
OFFER_NO_WEBAUTHN = Settings(enforce_from=dt.date(2027, 1, 1), passkey_offer_interval=30 * 86400,
                             allowed=frozenset({"totp", "recovery"}))  # fmt: skip
SIGNED_IN = Request(login_done=True, passed_in_txn=frozenset({"totp"}))
OFFERED_LONG_AGO = UserFacts(
    frozenset({"totp", "recovery"}), 2, passkey_offered_at=NOW - 31 * 86400
)
OFFERED_RECENTLY = UserFacts(
    frozenset({"totp", "recovery"}), 2, passkey_offered_at=NOW - 29 * 86400
)
TOTP_CODES = UserFacts(frozenset({"totp", "recovery"}), 2)
SECOND_STEP_KEY = UserFacts(frozenset({"totp", "webauthn"}), 2)  # a key that is not a passkey

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
    ("first factor set up during a step-up: recommend a second and recovery codes", BEFORE, TOTP,
     ANY, Request(acr_values=(MFA,), passed_in_txn=frozenset({'totp'}), enrolled_in_txn=True),
     PWD_TOTP, "recommend", {"factors": ("recovery", "webauthn")}),
    ("a recovery code was used: offer to replace the lost method", BEFORE, TOTP_KEY, ANY,
     Request(login_done=True, passed_in_txn=frozenset({'recovery'}), recovery_used=True),
     SessionFacts(NOW - 30, {"pwd": NOW - 60, "recovery": NOW - 30}), "recommend",
     {"reason": "recovery code used"}),
    ("after replacing the lost method, no more prompt", BEFORE, TOTP_KEY, ANY,
     Request(login_done=True, passed_in_txn=frozenset({'recovery'}), recovery_used=True,
             enrolled_in_txn=True),
     SessionFacts(NOW - 30, {"pwd": NOW - 60, "recovery": NOW - 30}), "ok", {}),
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
    # -- a sign-in with a passkey alone: the first step and a phishing-resistant factor --
    ("passkey sign-in: complete, phishing-resistant, no password", AFTER, TOTP_KEY_ALONE, ANY,
     Request(passkey_done=True, passed_in_txn=frozenset({"webauthn"})), PASSKEY, "ok",
     {"acr": PR, "methods": ("passkey", "webauthn")}),
    ("passkey sign-in meets a phishing-resistant request", AFTER, TOTP_KEY_ALONE, ANY,
     Request(acr_values=(PR,), passkey_done=True, passed_in_txn=frozenset({"webauthn"})),
     PASSKEY, "ok", {"acr": PR}),
    ("passkey sign-in meets an AAL2 request at AAL2", AFTER, TOTP_KEY_ALONE, STRICT,
     Request(acr_values=(AAL2,)), PASSKEY, "ok", {"acr": AAL2}),
    ("passkey sign-in, the only factor: recommend a backup", AFTER, KEY_ALONE, ANY,
     Request(passkey_done=True, passed_in_txn=frozenset({"webauthn"})), PASSKEY, "recommend",
     {"factors": ("recovery", "totp")}),
    ("a passkey session is a session (single sign-on)", AFTER, TOTP_KEY_ALONE, ANY, Request(),
     PASSKEY, "ok", {"acr": PR}),
    ("a passkey session older than max_age: a first step again", AFTER, TOTP_KEY_ALONE, ANY,
     Request(max_age=600), PASSKEY_OLD, "login", {"reason": "max_age"}),
    ("prompt=login over a passkey session: a first step again", AFTER, TOTP_KEY_ALONE, ANY,
     Request(prompt=frozenset({"login"})), PASSKEY, "login", {}),
    ("prompt=login met by a passkey sign-in in this request", AFTER, TOTP_KEY_ALONE, ANY,
     Request(prompt=frozenset({"login"}), passkey_done=True,
             passed_in_txn=frozenset({"webauthn"})), PASSKEY, "ok", {"acr": PR}),
    ("max_age=0 met by a passkey sign-in in this request", AFTER, TOTP_KEY_ALONE, ANY,
     Request(max_age=0, passkey_done=True, passed_in_txn=frozenset({"webauthn"})), PASSKEY_OLD,
     "ok", {"methods": ("passkey", "webauthn")}),
    ("a password in this request does not refresh an old passkey sign-in", AFTER,
     TOTP_KEY_ALONE, ANY, Request(acr_values=(PR,), max_age=600, login_done=True),
     SessionFacts(NOW, {"pwd": NOW, "passkey": NOW - 3600, "webauthn": NOW - 3600}),
     "challenge", {"factors": ("webauthn",)}),
    ("an old password does not ride along a fresh passkey sign-in", AFTER, TOTP_KEY_ALONE, ANY,
     Request(max_age=600, passkey_done=True, passed_in_txn=frozenset({"webauthn"})),
     SessionFacts(NOW, {"pwd": NOW - 3600, "passkey": NOW, "webauthn": NOW}), "ok",
     {"methods": ("passkey", "webauthn")}),
    ("without a first step the session signs in again", AFTER, TOTP_KEY_ALONE, ANY, Request(),
     SessionFacts(NOW, {"webauthn": NOW}), "login", {"reason": "no session"}),
    # -- the passkey offer after a password sign-in ----------------------------------------
    ("password sign-in, no passkey: offer one", OFFER, TOTP_CODES, ANY, SIGNED_IN, PWD_TOTP,
     "offer_passkey", {"factors": ("webauthn",)}),
    ("offer comes back after the interval", OFFER, OFFERED_LONG_AGO, ANY, SIGNED_IN, PWD_TOTP,
     "offer_passkey", {}),
    ("offer at most once per interval", OFFER, OFFERED_RECENTLY, ANY, SIGNED_IN, PWD_TOTP,
     "ok", {}),
    ("no offer to a user with a passkey", OFFER, TOTP_KEY_ALONE, ANY, SIGNED_IN, PWD_TOTP, "ok", {}),
    ("a second-step-only key is not a passkey: offer", OFFER, SECOND_STEP_KEY, ANY, SIGNED_IN,
     PWD_TOTP, "offer_passkey", {}),
    ("offer answered in this sign-in (or prompt=none)", OFFER, TOTP_CODES, ANY,
     Request(login_done=True, passed_in_txn=frozenset({"totp"}), passkey_offered=True),
     PWD_TOTP, "ok", {}),
    ("no offer where WebAuthn cannot work", OFFER_NO_WEBAUTHN, TOTP_CODES, ANY, SIGNED_IN,
     PWD_TOTP, "ok", {}),
    ("no offer when turned off", OFFER_OFF, TOTP_CODES, ANY, SIGNED_IN, PWD_TOTP, "ok", {}),
    ("no offer in a step-up from an existing session", OFFER, TOTP_CODES, ANY,
     Request(acr_values=(MFA,), passed_in_txn=frozenset({"totp"})), PWD_TOTP, "ok", {}),
    ("no offer in a re-authentication the application asked for (prompt=login)", OFFER,
     TOTP_CODES, ANY, Request(prompt=frozenset({"login"}), login_done=True,
                              passed_in_txn=frozenset({"totp"})), PWD_TOTP, "ok", {}),
    ("no offer in a re-authentication the application asked for (max_age)", OFFER, TOTP_CODES,
     ANY, Request(max_age=600, login_done=True, passed_in_txn=frozenset({"totp"})), PWD_TOTP,
     "ok", {}),
    ("no offer after a passkey sign-in", OFFER, TOTP_CODES, ANY,
     Request(passkey_done=True, passed_in_txn=frozenset({"webauthn"})), PASSKEY, "ok", {}),
    ("the backup recommendation comes first, and then no offer", OFFER, TOTP, ANY, SIGNED_IN,
     PWD_TOTP, "recommend", {}),
    ("recommendation dismissed: no offer on top", OFFER, TOTP, ANY,
     Request(login_done=True, passed_in_txn=frozenset({"totp"}), recommend_dismissed=True),
     PWD_TOTP, "ok", {}),
    ("no offer right after setting a factor up", OFFER, TOTP_CODES, ANY,
     Request(login_done=True, passed_in_txn=frozenset({"totp"}), enrolled_in_txn=True),
     PWD_TOTP, "ok", {}),
    ("set-up required first, never the offer instead",
     Settings(enforce_from=dt.date(2027, 3, 1), passkey_offer_interval=86400), NONE, ANY,
     Request(login_done=True), PWD, "enroll", {"optional": False}),
    ("set-up postponed: no offer on top", Settings(enforce_from=dt.date(2027, 3, 11),
     passkey_offer_interval=86400), NONE, ANY, Request(login_done=True, postponed=True), PWD,
     "ok", {"acr": AAL1}),
    ("MFA not required, no factor: offer after the password", Settings(
     required=False, passkey_offer_interval=86400), NONE, ANY, Request(login_done=True), PWD,
     "offer_passkey", {}),
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

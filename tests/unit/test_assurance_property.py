"""What a token may assert, as properties (hypothesis).

Random sign-in histories (the password, a passkey alone, and factors passed at random
times), random ``acr_values``, ``max_age`` and ``prompt``, random steps already done in
the transaction. Whenever the policy lets the request through, the asserted ``acr`` must
be reachable by the methods fresh within ``max_age`` (or passed in this transaction),
``amr`` must list only what those methods earned, and ``auth_time`` must be the time of
the oldest of them. A stale factor never lifts ``acr``, never appears in ``amr`` and
never moves ``auth_time``.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from idp.auth.assurance import (
    ACR_LEVELS,
    DEFAULT_AMR,
    FACTOR_LEVELS,
    FIRST_STEPS,
    achieved,
    level_index,
)
from idp.auth.session import BrowserSession
from idp.mfa.policy import (
    ClientPolicy,
    Request,
    SessionFacts,
    Settings,
    UserFacts,
    decide,
)

NOW = int(dt.datetime(2027, 3, 1, 12, tzinfo=dt.UTC).timestamp())
FACTORS = sorted(FACTOR_LEVELS)
POLICY = Settings(
    enforce_from=dt.date(2027, 1, 1), allowed=frozenset(FACTORS), recommend_second=False
)


@st.composite
def histories(draw):
    """(the user's factor types, the session: method -> time it last passed). The
    first step is the password, a passkey alone (which passes "passkey" and "webauthn"
    at once), or both at different times."""
    types = draw(st.frozensets(st.sampled_from(FACTORS), max_size=4))
    first = draw(st.sampled_from(["pwd", "passkey", "both"]))
    methods = {}
    if first in ("pwd", "both"):
        methods["pwd"] = NOW - draw(st.integers(0, 7200))
    for t in sorted(types):
        if draw(st.booleans()):
            methods[t] = NOW - draw(st.integers(0, 7200))
    if first in ("passkey", "both"):
        types |= {"webauthn"}
        methods["passkey"] = methods["webauthn"] = NOW - draw(st.integers(0, 7200))
    return types, methods


@st.composite
def requests(draw, methods):
    acr = draw(st.lists(st.sampled_from([*ACR_LEVELS, "urn:x:unknown"]), max_size=3, unique=True))
    max_age = draw(st.none() | st.integers(0, 7200))
    prompt = draw(st.sampled_from([frozenset(), frozenset({"login"})]))
    login_done = "pwd" in methods and draw(st.booleans())
    passkey_done = "passkey" in methods and draw(st.booleans())
    factors = sorted(set(methods) - FIRST_STEPS) or ["totp"]
    in_txn = draw(st.frozensets(st.sampled_from(factors)))
    if passkey_done:
        in_txn |= {"webauthn"}  # a passkey sign-in passes both steps
    return Request(
        acr_values=tuple(acr),
        max_age=max_age,
        prompt=prompt,
        login_done=login_done,
        passkey_done=passkey_done,
        postponed=True,
        passed_in_txn=frozenset(t for t in in_txn if t in methods),
    )


def _fresh(req: Request, method: str, at: int) -> bool:
    """The definition the tokens must follow, written independently of the policy."""
    if method == "pwd" and req.login_done:
        return True
    if method == "passkey" and req.passkey_done:
        return True
    if method not in FIRST_STEPS and method in req.passed_in_txn:
        return True
    limit = 0 if "login" in req.prompt else req.max_age
    return limit is None or NOW - at <= limit


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(data=st.data())
def test_asserted_assurance_rests_only_on_fresh_methods(data):
    types, methods = data.draw(histories())
    req = data.draw(requests(methods))
    client = data.draw(st.sampled_from([ClientPolicy(), ClientPolicy(require_mfa=True)]))
    decision = decide(
        req,
        client,
        SessionFacts(max(methods.values()), methods),
        UserFacts(types, len(types)),
        POLICY,
        NOW,
    )
    if decision.step != "ok":
        return
    fresh = {m for m, at in methods.items() if _fresh(req, m, at)}
    assert set(decision.methods) == fresh
    assert fresh & FIRST_STEPS, "a request without a fresh first step must sign in again"

    # acr: reachable by the fresh methods alone.
    reached = achieved(fresh)
    assert reached is not None
    assert level_index(decision.acr) <= level_index(reached), (decision, methods, req)
    # The level the request needs is met by fresh methods (never by a stale factor).
    known = [a for a in req.acr_values if a in ACR_LEVELS]
    floor = 1 if (client.require_mfa or types) else 0
    wanted = [a for a in known if level_index(a) >= floor]
    need = min((level_index(a) for a in wanted), default=floor)
    assert level_index(reached) >= need, (decision, methods, req)

    # amr and auth_time, as the authorization endpoint computes them for the tokens.
    session = BrowserSession(
        user_id=1,
        sid="s",
        created_at=NOW - 8000,
        last_seen=NOW,
        auth_time=max(methods.values()),
        methods=dict(methods),
        method_amr={m: list(DEFAULT_AMR[m]) for m in methods},
    )
    facts = session.assurance(decision.methods)
    earned = {v for m in fresh for v in DEFAULT_AMR[m]}
    assert set(facts.amr) - {"mfa"} == earned
    assert ("mfa" in facts.amr) == bool(fresh - FIRST_STEPS)
    # No password behind the request, no "pwd" in what it asserts.
    assert ("pwd" in facts.amr) == ("pwd" in fresh)
    assert facts.auth_time == min(methods[m] for m in fresh)
    for method, at in methods.items():
        if method not in fresh:
            stale_only = set(DEFAULT_AMR[method]) - earned
            assert not stale_only & set(facts.amr), (method, facts.amr)
            assert facts.auth_time != at or any(methods[m] == at for m in fresh)


def test_the_reported_case_a_fresh_email_code_does_not_carry_a_stale_totp():
    """TOTP passed 40 s ago, an email code now, AAL2 or MFA asked with max_age=30: the
    request is met at the MFA level by the email code, so acr is MFA, amr has no otp and
    auth_time is the oldest fresh method (the password passed in this transaction)."""
    mfa, aal2 = ACR_LEVELS[1], ACR_LEVELS[2]
    methods = {"pwd": NOW - 5, "totp": NOW - 40, "email": NOW}
    req = Request(
        acr_values=(mfa, aal2),
        max_age=30,
        login_done=True,
        passed_in_txn=frozenset({"email"}),
        recommend_dismissed=True,
    )
    decision = decide(
        req,
        ClientPolicy(),
        SessionFacts(NOW, methods),
        UserFacts(frozenset({"totp", "email"}), 2),
        POLICY,
        NOW,
    )
    assert decision.step == "ok"
    assert decision.acr == mfa
    assert decision.methods == ("email", "pwd")
    session = BrowserSession(1, "s", NOW - 100, NOW, NOW, methods=methods)
    facts = session.assurance(decision.methods)
    assert facts.amr == ("email", "mfa", "pwd")
    assert facts.auth_time == NOW - 5


def test_a_stale_security_key_never_asserts_phishing_resistance():
    pr, aal2 = ACR_LEVELS[3], ACR_LEVELS[2]
    methods = {"pwd": NOW - 10, "webauthn": NOW - 600, "totp": NOW - 5}
    decision = decide(
        Request(acr_values=(aal2, pr), max_age=300, recommend_dismissed=True),
        ClientPolicy(),
        SessionFacts(NOW - 5, methods),
        UserFacts(frozenset({"totp", "webauthn"}), 2),
        POLICY,
        NOW,
    )
    assert decision.step == "ok" and decision.acr == aal2
    facts = BrowserSession(1, "s", NOW - 900, NOW, NOW - 5, methods=methods).assurance(
        decision.methods
    )
    assert "hwk" not in facts.amr and "user" not in facts.amr
    assert facts.auth_time == NOW - 10

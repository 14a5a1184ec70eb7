"""The authorization endpoint as a pipeline of small checks (OIDC Core 3.1.2).

Each check either passes or returns the response that ends the request. Authlib
validates client, redirect_uri, response_type, scope, PKCE and nonce; the checks here
add what the provider decides: unsupported request objects, prompt, max_age, claims,
id_token_hint, the sign-in policy and consent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from flask import Response, redirect, render_template, url_for
from flask_babel import gettext as _

from .. import audit
from ..auth.flow import PolicyInputs, next_step
from ..auth.transaction import Transaction
from ..extensions import db
from ..keys import TokenVerificationError
from ..models import Consent, OAuthClient, User
from ..security.text import ascii_int
from ..services import services
from ..web import (
    JSONRefused,
    JSONTooDeep,
    allow_form_action,
    browser_id,
    current_session,
    current_user,
    parse_json,
)
from .resources import (
    InvalidTarget,
    allowed_resources,
    authorization_scope,
    requested_resources,
)
from .tokens import AuthContext, is_id_token_header

PROMPT_VALUES = {"none", "login", "consent", "select_account"}


class AuthorizationError(OAuth2Error):
    """An OAuth error with a code Authlib does not define (e.g. OIDC Core 3.1.2.6)."""

    def __init__(self, error: str, description: str, redirect_uri: str | None, state=None):
        super().__init__(description=description, redirect_uri=redirect_uri, state=state)
        self.error = error


class StoredAuthorizationRequest(OAuth2Request):
    """An authorization request rebuilt from a transaction after the sign-in steps."""

    def __init__(self, params: dict[str, str]):
        super().__init__("GET", url_for("oidc.authorize", _external=True), headers={})
        self.payload = BasicOAuth2Payload(params)

    @property
    def args(self):
        return self.payload.data

    @property
    def form(self):
        return {}


@dataclass
class Pending:
    """Everything the checks learn about one authorization request."""

    oauth: OAuth2Request
    grant: Any
    client: OAuthClient
    redirect_uri: str
    params: dict[str, str]
    txn: Transaction | None
    prompt: set[str] = field(default_factory=set)
    max_age: int | None = None
    acr_values: tuple[str, ...] = ()
    acr_essential: bool = False
    hinted_sub: str | None = None
    resources: list[str] = field(default_factory=list)

    def fail(self, error: str, description: str) -> AuthorizationError:
        return AuthorizationError(error, description, self.redirect_uri, self.params.get("state"))


def _server():
    from flask import current_app

    return current_app.extensions["idp.oauth"]


def with_iss(resp: Response) -> Response:
    """RFC 9207: add ``iss`` to authorization responses sent to the client."""
    loc = resp.headers.get("Location")
    if resp.status_code != 302 or not loc:
        return resp
    from urllib.parse import parse_qsl, quote, urlsplit

    # Look at parameter names, not substrings: a registered redirect URI may carry a
    # query such as "?kiss=1", which must not suppress the parameter.
    names = {k for k, _ in parse_qsl(urlsplit(loc).query, keep_blank_values=True)}
    if "iss" not in names:
        sep = "&" if "?" in loc else "?"
        resp.headers["Location"] = f"{loc}{sep}iss={quote(services().settings.issuer, safe='')}"
    return resp


def error_response(oauth: OAuth2Request, err: OAuth2Error) -> Response:
    """Redirect errors only to a validated redirect_uri (RFC 6749 4.1.2.1); else a page."""
    if err.redirect_uri:
        audit.record_now(
            "authorization.refused",
            outcome="failure",
            client_id=oauth.payload.client_id,
            error=err.error,
        )
        return with_iss(_server().handle_error_response(oauth, err))
    audit.record_now(
        "authorization.refused",
        outcome="failure",
        client_id=(oauth.payload.client_id or "")[:64] or None,
        error=err.error,
    )
    resp = Response(
        render_template(
            "error.html",
            title=_("This sign-in link is not valid"),
            message=_(
                "The application that sent you here made a request we cannot accept "
                "(%(error)s: %(description)s). Go back to the application and try again; if "
                "it keeps happening, contact its support.",
                error=err.error,
                description=err.description or "",
            ),
        ),
        status=400,
    )
    return resp


# -- the checks --------------------------------------------------------------


def check_request_objects(p: Pending) -> None:
    """Request objects and dynamic registration by URL are not supported (OIDC Core 6).

    ``request_uri`` is accepted only as the reference to a pushed authorization request
    (RFC 9126 4): ``/authorize`` replaces every request that carries one by the pushed
    parameters before this pipeline runs, and keeps ``request_uri`` among them as the
    mark of a pushed request (:func:`check_pushed`)."""
    from .par import REQUEST_URI_PREFIX

    if p.params.get("request"):
        raise p.fail("request_not_supported", "Request objects are not supported.")
    request_uri = p.params.get("request_uri")
    if request_uri and not request_uri.startswith(REQUEST_URI_PREFIX):
        # A request object by reference (OIDC Core 6.2), not a pushed request.
        raise p.fail("request_uri_not_supported", "request_uri by reference is not supported.")
    if p.params.get("registration"):
        raise p.fail("registration_not_supported", "registration is not supported.")


def check_prompt(p: Pending) -> None:
    """prompt values are known and ``none`` stands alone (OIDC Core 3.1.2.1)."""
    p.prompt = set(p.params.get("prompt", "").split())
    unknown = p.prompt - PROMPT_VALUES
    if unknown:
        raise p.fail("invalid_request", f"Unsupported prompt value: {sorted(unknown)[0]}.")
    if "none" in p.prompt and len(p.prompt) > 1:
        raise p.fail("invalid_request", "prompt=none cannot be combined with other values.")
    if "select_account" in p.prompt:
        # One account per browser session: choosing an account means signing in again.
        p.prompt.add("login")


def check_max_age(p: Pending) -> None:
    """max_age is a non-negative integer number of seconds (OIDC Core 3.1.2.1)."""
    raw = p.params.get("max_age")
    if raw is None or raw == "":
        return
    value = ascii_int(raw, max_digits=10)
    if value is None:
        raise p.fail("invalid_request", "max_age must be a non-negative integer.")
    p.max_age = value


def check_acr(p: Pending) -> None:
    """acr_values (voluntary) and the claims parameter's essential acr (OIDC Core 5.5.1.1).

    The claims parameter is a JSON object (OIDC Core 5.5), read with the request JSON
    rule (:func:`idp.web.parse_json`: at most MAX_JSON_DEPTH levels), also when the
    request is resumed from its transaction; anything else is ``invalid_request``."""
    p.acr_values = tuple(p.params.get("acr_values", "").split())
    raw = p.params.get("claims")
    if not raw:
        return
    try:
        claims = parse_json(raw)
    except JSONTooDeep as exc:
        raise p.fail("invalid_request", f"The claims parameter: {exc}") from None
    except JSONRefused:
        raise p.fail("invalid_request", "The claims parameter is not valid JSON.") from None
    if not isinstance(claims, dict):
        raise p.fail("invalid_request", "The claims parameter must be a JSON object.")
    acr = (
        (claims.get("id_token") or {}).get("acr")
        if isinstance(claims.get("id_token"), dict)
        else None
    )
    if isinstance(acr, dict):
        values = acr.get("values") or ([acr["value"]] if isinstance(acr.get("value"), str) else [])
        if isinstance(values, list) and all(isinstance(v, str) for v in values) and values:
            if acr.get("essential"):
                p.acr_values = tuple(values)
                p.acr_essential = True
            elif not p.acr_values:
                p.acr_values = tuple(values)


def check_id_token_hint(p: Pending) -> None:
    """id_token_hint must be an ID token this provider issued to this client
    (OIDC Core 3.1.2.1). Expiry is not required: it is only a hint."""
    hint = p.params.get("id_token_hint")
    if not hint:
        return
    svc = services()
    try:
        header, claims = svc.keys.verify_jwt(hint)
    except TokenVerificationError:
        raise p.fail("invalid_request", "id_token_hint is not a valid ID token.") from None
    if not is_id_token_header(header):
        raise p.fail("invalid_request", "id_token_hint is not an ID token.")
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if claims.get("iss") != svc.settings.issuer or p.client.client_id not in auds:
        raise p.fail("invalid_request", "id_token_hint was not issued to this client.")
    if not isinstance(claims.get("sub"), str):
        raise p.fail("invalid_request", "id_token_hint has no subject.")
    p.hinted_sub = claims["sub"]


def check_resources(p: Pending) -> None:
    """Each ``resource`` is a registered API this client may use (RFC 8707 2.1), else
    ``invalid_target``; the grant covers those resources and, of the resource scopes
    asked for, only theirs (:func:`idp.oidc.resources.authorization_scope`).

    The values are kept in the transaction as one space-separated ``resource``
    parameter (a URI holds no space), so a resumed request names the same ones."""
    if isinstance(p.oauth, StoredAuthorizationRequest):
        raw = (p.params.get("resource") or "").split(" ") if "resource" in p.params else []
    else:
        raw = list(p.oauth.payload.datalist.get("resource") or [])
    try:
        resources = allowed_resources(p.client, requested_resources(raw))
    except InvalidTarget as exc:
        raise p.fail("invalid_target", str(exc)) from None
    p.resources = [r.uri for r in resources]
    p.params.pop("resource", None)
    if p.resources:
        p.params["resource"] = " ".join(p.resources)
    p.grant.request.scope = authorization_scope(p.grant.request.scope or "", resources)
    # Read by save_authorization_code (Authlib recomputes request.scope before saving).
    p.oauth.resources = p.resources
    p.oauth.granted_scope = p.grant.request.scope


def check_pushed(p: Pending) -> None:
    """A client registered with ``require_pushed_authorization_requests`` sends its
    authorization requests through ``/par`` first (RFC 9126 6)."""
    if p.client.require_par and not p.params.get("request_uri"):
        raise p.fail(
            "invalid_request",
            "This application must push its authorization requests to the "
            "pushed_authorization_request_endpoint first (RFC 9126).",
        )


def validate_pushed(oauth: OAuth2Request) -> None:
    """The checks of an authorization request, at the time it is pushed (RFC 9126 2.1:
    the authorization server MUST validate a pushed request as it would an authorization
    request): Authlib's (client, redirect_uri, response_type, scope, PKCE, nonce) and
    :data:`CHECKS`, except the one that asks whether it was pushed. Raises the
    :class:`OAuth2Error` that refuses it."""
    grant = _server().get_consent_grant(request=oauth, end_user=None)
    params = dict(oauth.payload.data)
    p = Pending(oauth, grant, grant.request.client, grant.redirect_uri, params, None)
    for check in CHECKS:
        if check is not check_pushed:
            check(p)


CHECKS = (check_request_objects, check_pushed, check_resources, check_prompt, check_max_age,
          check_acr, check_id_token_hint)  # fmt: skip


# -- the pipeline ------------------------------------------------------------


def _start_txn(p: Pending, inputs: PolicyInputs, *, reauth: bool = False) -> Transaction:
    """The sign-in transaction of this request, created at its first page. *reauth*: the
    browser's sign-in was too old for the request's ``max_age`` (OIDC Core 3.1.2.1), so
    the application is asking again, and the pages say so (:mod:`idp.mfa.pages`)."""
    if p.txn is None:
        policy = inputs.to_dict()
        if reauth:
            policy["reauth"] = True
        p.txn = services().transactions.create(dict(p.params), browser_id(), policy)
    return p.txn


def _consent_needed(p: Pending, user: User, scope: str) -> bool:
    if p.client.first_party:
        return False
    if "consent" in p.prompt and (p.txn is None or "consent" not in p.txn.done):
        return True
    consent = db.session.execute(
        db.select(Consent).filter_by(user_id=user.id, client_id=p.client.client_id)
    ).scalar_one_or_none()
    return consent is None or not consent.covers(scope)


def run(oauth: OAuth2Request, txn: Transaction | None = None) -> Response:
    """Validate an authorization request and take it as far as it can go now."""
    server = _server()
    try:
        grant = server.get_consent_grant(request=oauth, end_user=None)
    except OAuth2Error as err:
        return error_response(oauth, err)
    params = {k: v for k, v in oauth.payload.data.items()}
    p = Pending(oauth, grant, grant.request.client, grant.redirect_uri, params, txn)
    try:
        for check in CHECKS:
            check(p)
        return _decide(p)
    except OAuth2Error as err:
        if p.txn is not None:
            services().transactions.finish(p.txn)
        return error_response(oauth, err)


def _inputs(p: Pending) -> PolicyInputs:
    return PolicyInputs(
        acr_values=p.acr_values,
        acr_essential=p.acr_essential,
        max_age=p.max_age,
        prompt=tuple(sorted(p.prompt)),
        hinted_sub=p.hinted_sub,
    )


# Policy steps that need a page, and the page that handles each.
STEP_PAGES = {
    "login": "auth.signin",
    "enroll": "mfa.setup",
    "challenge": "mfa.challenge",
    "recommend": "mfa.recommend",
    "offer_passkey": "mfa.passkey_offer",
}


def _decide(p: Pending) -> Response:
    svc = services()
    inputs = _inputs(p)
    decision = next_step(inputs, p.client, p.txn, passive="none" in p.prompt)
    if decision.step in STEP_PAGES:
        if "none" in p.prompt:
            # OIDC Core 3.1.2.6: no page may be shown with prompt=none.
            if decision.step in ("login", "challenge"):
                raise p.fail("login_required", "The user must sign in.")
            raise p.fail("interaction_required", "The user must set up a second factor.")
        reauth = decision.step == "login" and decision.reason == "max_age"
        txn = _start_txn(p, inputs, reauth=reauth)
        allow_form_action(p.redirect_uri)
        return redirect(url_for(STEP_PAGES[decision.step], txn=txn.id))
    if decision.step == "unmet":
        raise p.fail(
            "unmet_authentication_requirements",
            "The requested authentication level cannot be met for this user.",
        )
    session, user = current_session(), current_user()
    assert session is not None and user is not None
    scope = p.grant.request.scope
    if _consent_needed(p, user, scope):
        if "none" in p.prompt:
            raise p.fail("consent_required", "The user must approve this application.")
        txn = _start_txn(p, inputs)
        return redirect(url_for("oidc.consent", txn=txn.id))

    # acr, amr and auth_time rest on the methods that satisfy THIS request only (fresh
    # within max_age or passed in this transaction), never on everything the session
    # ever passed (OIDC Core 2; RFC 8176).
    facts = session.assurance(decision.methods)
    p.oauth.auth_context = AuthContext(
        auth_time=facts.auth_time,
        acr=decision.acr,
        amr=facts.amr,
        sid=session.sid,
        factor_ids=facts.factor_ids,
    )
    if p.txn is not None and not svc.transactions.claim(p.txn):
        # A second tab (or a double submit) finishing the same sign-in: one code only.
        return Response(
            render_template(
                "error.html",
                title=_("This sign-in is already complete"),
                message=_("Go back to the application you were using."),
            ),
            status=409,
        )
    resp = _server().create_authorization_response(request=p.oauth, grant_user=user, grant=p.grant)
    svc.sessions.note_client(session, p.client.client_id)
    audit.record_now(
        "authorization.granted",
        user_id=user.id,
        client_id=p.client.client_id,
        acr=decision.acr,
        amr=list(facts.amr),
    )
    return with_iss(resp)

"""OpenID Connect and OAuth 2.0 endpoints."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.base import OAuth2Error
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import audit
from ..auth.assurance import offered_factors, reachable
from ..auth.transaction import Transaction
from ..extensions import db
from ..i18n import SUPPORTED
from ..keys import TokenVerificationError
from ..models import Consent, OAuthClient, User
from ..services import services
from ..web import (
    allow_form_action,
    browser_id,
    current_session,
    current_user,
    error_page,
    set_session_cookie,
    validate_csrf,
)
from . import authorize as pipeline
from .claims import user_claims
from .resources import (
    InvalidTarget,
    advertised_scopes,
    allowed_resources,
    authorization_scope,
    scope_catalog,
    serves_audience,
)
from .server import AUTH_METHODS, query_client
from .tokens import TokenService, is_id_token_header

bp = Blueprint("oidc", __name__)

SCOPE_DESCRIPTIONS = {
    "openid": _l("Know who you are (a stable identifier for your account)"),
    "profile": _l("Your name"),
    "email": _l("Your email address"),
    "phone": _l("Your phone number"),
    "offline_access": _l("Stay connected when you are not signed in"),
    "groups": _l("The groups you belong to"),
}
CLAIMS_SUPPORTED = [
    "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "at_hash",
    "name", "given_name", "family_name", "updated_at", "email", "email_verified",
    "phone_number", "phone_number_verified", "groups",
]  # fmt: skip


def _server():
    return current_app.extensions["idp.oauth"]


def _json_error(status: int, error: str, description: str, **headers: str) -> Response:
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    resp.headers.update(headers)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- discovery and keys --------------------------------------------------------


def achievable_acr_values() -> list[str]:
    """acr values this deployment can actually reach with the factors it offers."""
    return reachable(offered_factors(services().settings))


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    """OpenID Connect Discovery 1.0, section 3: provider metadata."""
    svc = services()
    iss = svc.settings.issuer
    algs = sorted({k["alg"] for k in svc.keys.jwks()["keys"]})
    meta: dict[str, Any] = {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": f"{iss}/token",
        "userinfo_endpoint": f"{iss}/userinfo",
        "jwks_uri": f"{iss}/jwks",
        "end_session_endpoint": f"{iss}/logout",
        "introspection_endpoint": f"{iss}/introspect",
        "revocation_endpoint": f"{iss}/revoke",
        "registration_endpoint": f"{iss}/connect/register",  # RFC 7591 / RFC 8414 2
        # OIDC scopes, then the scopes of the registered APIs (RFC 8707 resources).
        "scopes_supported": advertised_scopes(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "userinfo_signing_alg_values_supported": [],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "PS256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS[:-1],
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": CLAIMS_SUPPORTED,
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": True,
        "acr_values_supported": achievable_acr_values(),
        "prompt_values_supported": sorted(pipeline.PROMPT_VALUES),
        "display_values_supported": ["page"],
        "ui_locales_supported": list(SUPPORTED),  # idp.i18n: the pages' languages
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "require_request_uri_registration": False,
        "authorization_response_iss_parameter_supported": True,
        "frontchannel_logout_supported": False,
        # OpenID Connect Back-Channel Logout 1.0 2.1: logout tokens carry sid.
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        # RFC 9126 5: pushed authorization requests, optional unless a client requires
        # them (its require_pushed_authorization_requests).
        "pushed_authorization_request_endpoint": f"{iss}/par",
        "require_pushed_authorization_requests": False,
    }
    resp = jsonify(meta)
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


@bp.get("/jwks")
def jwks() -> Response:
    resp = jsonify(services().keys.jwks())
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


# -- authorization -------------------------------------------------------------


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response:
    """Authorization endpoint, GET and POST (OIDC Core 3.1.2.1); with ``request_uri``,
    the request pushed to ``/par`` (RFC 9126 4; its other parameters are ignored)."""
    from .par import REQUEST_URI_PREFIX, PushedRequestError, take

    request_uri = request.values.get("request_uri")
    if request_uri is None or not request_uri.startswith(REQUEST_URI_PREFIX):
        # Not a pushed request: a request_uri by reference is refused by the pipeline
        # with request_uri_not_supported, to the client's redirect URI.
        return pipeline.run(_server().create_oauth2_request(request))

    client_id = request.values.get("client_id")
    try:
        params = take(request_uri, client_id)
    except PushedRequestError as exc:
        # No redirect: without the pushed parameters there is no validated redirect_uri.
        audit.record_now("authorization.refused", outcome="failure",
                         client_id=(client_id or "")[:64] or None,
                         error="invalid_request_uri")  # fmt: skip
        return error_page(
            400,
            _("This sign-in link is not valid"),
            _(
                "%(reason)s Go back to the application you were using and start again.",
                reason=exc,
            ),
        )
    return pipeline.run(pipeline.StoredAuthorizationRequest(params))


def continue_authorization(txn: Transaction) -> Response:
    """Take a pending authorization request as far as it can go now: the next sign-in
    page, the consent page, or the response to the client (a code, or an error).

    The password and second-factor steps call this as soon as they pass, in their own
    request, instead of redirecting to ``/authorize/resume`` (one round trip less per
    step); the decision is the same pipeline either way."""
    return pipeline.run(pipeline.StoredAuthorizationRequest(txn.params), txn)


@bp.get("/authorize/resume")
def resume() -> Response:
    """Continue a pending authorization request after a sign-in step."""
    txn = services().transactions.get(request.args.get("txn"), browser_id())
    if txn is None:
        return error_page(
            400,
            _("This sign-in has expired"),
            _("Go back to the application you were using and start again."),
        )
    return continue_authorization(txn)


@bp.post("/authorize/cancel")
def cancel() -> Response:
    """The user leaves a sign-in before it is complete ("Cancel and go back" on the
    sign-in, set-up and challenge pages): the transaction ends and the application gets
    ``access_denied`` at its registered redirect URI, with its ``state`` (RFC 6749
    4.1.2.1; OIDC Core 3.1.2.6). The browser session, if any, is left as it is."""
    validate_csrf()
    svc = services()
    txn = svc.transactions.get(request.form.get("txn"), browser_id())
    if txn is None:
        return error_page(
            400, _("This sign-in has expired"), _("Go back to the application you were using.")
        )
    oauth = pipeline.StoredAuthorizationRequest(txn.params)
    svc.transactions.finish(txn)
    user = current_user()
    audit.record_now("authorization.cancelled", user_id=user.id if user else None,
                     client_id=txn.params.get("client_id"))  # fmt: skip
    err = pipeline.AuthorizationError(
        "access_denied",
        "The user cancelled the sign-in.",
        txn.params.get("redirect_uri"),
        state=txn.params.get("state"),
    )
    allow_form_action(txn.params.get("redirect_uri", ""))
    return pipeline.with_iss(_server().handle_error_response(oauth, err))


@bp.route("/consent", methods=["GET", "POST"])
def consent() -> Response:
    """Ask the user to approve the scopes a client requests (OIDC Core 3.1.2.4)."""
    svc = services()
    txn = svc.transactions.get(request.values.get("txn"), browser_id())
    user = current_user()
    if txn is None or user is None:
        return error_page(
            400,
            _("This sign-in has expired"),
            _("Go back to the application and start again."),
        )
    client = query_client(txn.params.get("client_id"))
    if client is None:
        return error_page(
            400, _("Unknown application"), _("This application is no longer registered.")
        )
    from ..auth.flow import evaluate

    decision = evaluate(txn)
    if decision is None or decision.step != "ok":
        # Consent is the last step of a COMPLETE sign-in: with a second factor still
        # pending (or any other step), nothing is shown or written; the user is taken
        # back to the step the policy asks for.
        audit.record_now("consent.refused", outcome="failure", user_id=user.id,
                         client_id=client.client_id,
                         reason=decision.step if decision else "no client")  # fmt: skip
        return redirect(url_for("oidc.resume", txn=txn.id))
    # The same scope the authorization pipeline grants: resource scopes only with their
    # resource (idp.oidc.resources.authorization_scope).
    try:
        resources = allowed_resources(client, (txn.params.get("resource") or "").split())
    except InvalidTarget:
        # The API was removed, or taken from the client, since the request began: the
        # pipeline answers the client with invalid_target.
        return redirect(url_for("oidc.resume", txn=txn.id))
    scope = authorization_scope(client.get_allowed_scope(txn.params.get("scope")), resources)
    allow_form_action(txn.params.get("redirect_uri", ""))
    if request.method in ("GET", "HEAD"):
        standard, apis = consent_scopes(scope)
        return Response(
            render_template(
                "consent.html", client=client, txn=txn, scopes=standard, apis=apis, user=user
            )
        )
    validate_csrf()
    oauth = pipeline.StoredAuthorizationRequest(txn.params)
    if request.form.get("decision") != "allow":
        svc.transactions.finish(txn)
        audit.record_now("consent.denied", user_id=user.id, client_id=client.client_id)
        try:
            grant = _server().get_consent_grant(request=oauth, end_user=user)
        except OAuth2Error as err:
            return pipeline.error_response(oauth, err)
        return pipeline.with_iss(
            _server().create_authorization_response(request=oauth, grant_user=None, grant=grant)
        )
    row = db.session.execute(
        db.select(Consent).filter_by(user_id=user.id, client_id=client.client_id)
    ).scalar_one_or_none()
    if row is None:
        db.session.add(Consent(user_id=user.id, client_id=client.client_id, scope=scope))
    else:
        row.scope = " ".join(sorted(set(row.scope.split()) | set(scope.split())))
    audit.record("consent.granted", user_id=user.id, client_id=client.client_id, scope=scope)
    db.session.commit()
    txn.done.append("consent")
    svc.transactions.save(txn)
    return pipeline.run(oauth, txn)


def consent_scopes(scope: str) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """What the consent page lists: the OpenID Connect scopes in words, then each API
    (RFC 8707 resource) with the descriptions of its requested scopes."""
    catalog = scope_catalog(scope.split())
    standard = [(s, str(SCOPE_DESCRIPTIONS.get(s, s))) for s in scope.split() if s not in catalog]
    apis: dict[str, dict[str, Any]] = {}
    for name in scope.split():
        if name in catalog:
            resource, description = catalog[name]
            api = apis.setdefault(
                resource.uri, {"name": resource.name, "uri": resource.uri, "scopes": []}
            )
            api["scopes"].append((name, description or name))
    return standard, list(apis.values())


# -- token endpoint ------------------------------------------------------------


@bp.post("/token")
def token() -> Response:
    """Token endpoint (RFC 6749 3.2; OIDC Core 3.1.3)."""
    # RFC 8707 2.2 lets resource repeat; the grant answers that with invalid_target.
    repeated = next(
        (k for k in request.form if k != "resource" and len(request.form.getlist(k)) > 1), None
    )
    if repeated is not None:
        # RFC 6749 3.2: parameters MUST NOT be included more than once (5.2).
        resp = _json_error(400, "invalid_request", f"Repeated parameter {repeated[:40]!r}.")
    elif not request.form.get("grant_type"):
        # RFC 6749 5.2: a missing required parameter is invalid_request (Authlib would
        # answer unsupported_grant_type, which is for a grant type it does not know).
        resp = _json_error(400, "invalid_request", "The grant_type parameter is required.")
    else:
        resp = _server().create_token_response()
    if resp.status_code >= 400:
        audit.record_now(
            "token.refused",
            outcome="failure",
            client_id=(request.form.get("client_id") or "")[:64] or None,
            grant_type=(request.form.get("grant_type") or "")[:40],
            error=(resp.get_json(silent=True) or {}).get("error"),
        )
    return resp


# -- userinfo --------------------------------------------------------------------


def _bearer_token() -> tuple[str | None, Response | None]:
    """Extract the access token from the header or the form body (RFC 6750 2.1, 2.2)."""
    header = request.headers.get("Authorization", "")
    from_header = header[7:].strip() if header[:7].lower() == "bearer " else None
    from_body = request.form.get("access_token") if request.method == "POST" else None
    if from_header and from_body:
        return None, _json_error(
            400,
            "invalid_request",
            "Send the access token in one place only.",
            **{"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    tok = from_header or from_body
    if not tok:
        # RFC 6750 3.1: a request without any authentication gets no error code in the
        # challenge; the body says what is missing.
        return None, _json_error(
            401,
            "invalid_token",
            "An access token is required.",
            **{"WWW-Authenticate": 'Bearer realm="userinfo"'},
        )
    return tok, None


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """UserInfo endpoint (OIDC Core 5.3) protected per RFC 6750."""
    tok, err = _bearer_token()
    if err is not None:
        return err
    claims = TokenService(services()).validate_access_token(tok)
    invalid = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    if claims is None:
        return _json_error(401, "invalid_token", "The access token is invalid.", **invalid)
    if "openid" not in str(claims.get("scope", "")).split():
        return _json_error(
            403,
            "insufficient_scope",
            "The access token lacks the openid scope.",
            **{"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'},
        )
    user = db.session.execute(db.select(User).filter_by(sub=claims["sub"])).scalar_one_or_none()
    if user is None or not user.is_active:
        return _json_error(401, "invalid_token", "The access token is invalid.", **invalid)
    resp = jsonify(user_claims(user, claims["scope"]))
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- introspection and revocation ------------------------------------------------


def _authenticate_client(
    methods: list[str], endpoint: str
) -> tuple[OAuthClient | None, Response | None]:
    oauth = _server().create_oauth2_request(request)
    try:
        return _server().authenticate_client(oauth, methods, endpoint), None
    except OAuth2Error as err:
        audit.record_now(
            "client.auth_failed", outcome="failure", endpoint=endpoint, error=err.error
        )
        status, body, headers = err()
        resp = _server().handle_response(status, body, headers)
        if status == 401:
            resp.headers["WWW-Authenticate"] = 'Basic realm="token"'
        return None, resp


@bp.post("/introspect")
def introspect() -> Response:
    """Token introspection (RFC 7662). An access token may be introspected by the client
    it was issued to and by the resource server whose API it is for (the client named
    by the resource whose URI is in its ``aud``: RFC 7662 2.1, RFC 8707); a refresh
    token only by its own client. For anyone else the token is simply inactive
    (RFC 7662 2.2)."""
    client, err = _authenticate_client(AUTH_METHODS[:-1], "introspection")
    if err is not None:
        return err
    tok = request.form.get("token")
    if not tok:
        return _json_error(400, "invalid_request", "The token parameter is required.")
    ts = TokenService(services())
    hint = request.form.get("token_type_hint")
    body: dict[str, Any] = {"active": False}
    claims = ts.validate_access_token(tok) if hint != "refresh_token" or "." in tok else None
    if claims is not None and (
        claims.get("client_id") == client.client_id
        or serves_audience(client.client_id, claims.get("aud"))
    ):
        body = {
            "active": True,
            "token_type": "Bearer",
            **{k: claims[k] for k in (
                "scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti",
                "auth_time", "acr", "amr", "sid") if k in claims},
        }  # fmt: skip
    elif claims is None:
        row = ts.find_refresh_token(tok)
        from ..models.base import utcnow

        if (
            row is not None
            and row.client_id == client.client_id
            and row.is_usable(utcnow())
            and not ts.bound_session_ended(row)
        ):
            user = db.session.get(User, row.user_id) if row.user_id else None
            if user is not None and user.is_active:
                body = {
                    "active": True,
                    "token_type": "refresh_token",
                    "scope": row.scope,
                    "client_id": row.client_id,
                    "sub": user.sub,
                    "exp": int(row.expires_at.timestamp()),
                    "iat": int(row.created_at.timestamp()),
                    "iss": services().settings.issuer,
                }
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/revoke")
def revoke() -> Response:
    """Token revocation (RFC 7009). Answers 200 for unknown tokens (2.2)."""
    client, err = _authenticate_client(AUTH_METHODS, "revocation")
    if err is not None:
        return err
    tok = request.form.get("token")
    if not tok:
        return _json_error(400, "invalid_request", "The token parameter is required.")
    ts = TokenService(services())
    claims = ts.validate_access_token(tok) if "." in tok else None
    if claims is not None:
        if claims.get("client_id") == client.client_id:
            ts.revoke_access_token(claims["jti"], claims.get("exp"))
            audit.record_now(
                "token.revoked", client_id=client.client_id, kind="access_token", jti=claims["jti"]
            )
    else:
        row = ts.find_refresh_token(tok)
        if row is not None and row.client_id == client.client_id:
            # RFC 7009 2.1: revoking a refresh token also ends the grant's access tokens.
            ts.revoke_family(row.family_id)
            audit.record(
                "token.revoked",
                user_id=row.user_id,
                client_id=client.client_id,
                kind="refresh_token",
                family=row.family_id,
            )
            db.session.commit()
    resp = Response("", status=200)
    resp.headers["Cache-Control"] = "no-store"
    return resp


# -- RP-initiated logout ---------------------------------------------------------


def _logout_hint_claims(hint: str) -> dict[str, Any] | None:
    """Verify an id_token_hint for logout. Expired hints are accepted while they are
    younger than the absolute session lifetime (RP-Initiated Logout 1.0, section 4)."""
    svc = services()
    try:
        header, claims = svc.keys.verify_jwt(hint)
    except TokenVerificationError:
        return None
    if not is_id_token_header(header) or claims.get("iss") != svc.settings.issuer:
        return None
    iat = claims.get("iat")
    if not isinstance(iat, int) or time.time() - iat > svc.settings.session.absolute_timeout:
        return None
    return claims


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    """End session endpoint (OpenID Connect RP-Initiated Logout 1.0, sections 2-3)."""
    svc = services()
    params = request.values
    hint = params.get("id_token_hint")
    claims = None
    if hint:
        claims = _logout_hint_claims(hint)
        if claims is None:
            return error_page(
                400,
                _("Sign-out link not valid"),
                _("The application sent a sign-out request we cannot verify."),
            )
    client: OAuthClient | None = None
    client_id = params.get("client_id")
    if claims is not None:
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if client_id and client_id not in auds:
            return error_page(
                400,
                _("Sign-out link not valid"),
                _("The client_id does not match the ID token."),
            )
        client = query_client(client_id or (auds[0] if len(auds) == 1 else None))
    elif client_id:
        client = query_client(client_id)
    target = params.get("post_logout_redirect_uri")
    if target and (client is None or target not in (client.post_logout_redirect_uris or [])):
        return error_page(
            400,
            _("Sign-out link not valid"),
            _("The return address after sign-out is not registered for this application."),
        )
    session = current_session()
    hint_matches = claims is not None and (
        session is None or (current_user() is not None and current_user().sub == claims.get("sub"))
    )
    confirmed = request.method == "POST" and request.form.get("decision") == "logout"
    if confirmed:
        validate_csrf()
    if not hint_matches and not confirmed and session is not None:
        if target:
            allow_form_action(target)
        return Response(
            render_template(
                "logout_confirm.html",
                client=client,
                fields={k: v for k, v in params.items() if k not in ("csrf_token", "decision")},
            )
        )
    if session is not None:
        svc.sessions.destroy(session)
        audit.record_now(
            "logout", user_id=session.user_id, client_id=client.client_id if client else None
        )
    set_session_cookie(None)
    if target:
        state = params.get("state")
        query = urlencode({"state": state}) if state else ""
        sep = "&" if "?" in target else "?"
        return redirect(f"{target}{sep}{query}" if query else target)
    return Response(render_template("logged_out.html", client=client))


@bp.get("/")
def home() -> Response:
    """The provider's own landing page: who is signed in, and a sign-out button."""
    user = current_user()
    return Response(render_template("home.html", user=user, session=current_session()))


def init_oidc(app) -> None:
    from .server import create_authorization_server

    app.extensions["idp.oauth"] = create_authorization_server(app)
    app.extensions["idp"].backchannel.bind(app)
    app.register_blueprint(bp)
    from .registration import bp as registration_bp

    app.register_blueprint(registration_bp)
    from .par import bp as par_bp

    app.register_blueprint(par_bp)
    from .cors import init_cors

    init_cors(app)

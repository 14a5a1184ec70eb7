"""Connexion, the sample relying party: a Flask application that signs users in with
OpenID Connect and asks for a fresh second step before the Form C report.

How it uses the provider (any OpenID provider, found by its issuer URL):

1. ``/login`` sends the browser to the provider with Authlib's Flask client: the code
   flow with PKCE (S256), ``state`` and ``nonce``, scope ``openid profile email`` and
   the Form C API's scope (``form-c:file``), ``resource`` = the API's URI (RFC 8707
   2.1) and, for a step-up, ``acr_values`` and ``max_age``.
2. ``/callback`` checks the RFC 9207 ``iss`` parameter, lets Authlib exchange the code
   and verify the ID token (signature, ``iss``, ``aud``, ``exp``, ``nonce``,
   ``at_hash``), fetches the name and email from the userinfo endpoint, checks that
   what was asked for was delivered (``acr``, a recent ``auth_time``), then uses the
   refresh token to get the access token for the Form C API (``resource``, RFC 8707
   2.2: ``aud`` is the API, the scope only the API's) and keeps the claims, that
   token, the refresh token and the ID token in the session. The first access token
   (``aud`` = Connexion) serves only the userinfo request.
3. ``/form-c`` needs the step-up level (``urn:idp:acr:mfa`` or higher) from a sign-in
   at most ``CONNEXION_STEP_UP_MAX_AGE`` seconds old; otherwise it sends the browser
   to ``/login`` with exactly those requirements, and the provider asks only for the
   missing second step.
4. Filing goes through the Form C API (:mod:`.api`) with the API's access token (a new
   one from the refresh token when it has expired). When
   the API answers RFC 9470 ``insufficient_user_authentication``, the page steps up
   with the ``acr_values`` and ``max_age`` the API asked for, keeps the form's answers
   and shows them again afterwards for the user to submit again.
5. ``/logout`` ends the local session and the provider's (RP-Initiated Logout 1.0).
6. ``/backchannel-logout`` hears from the provider when a session there ends
   (OpenID Connect Back-Channel Logout 1.0, :mod:`.backchannel`): the Connexion session
   begun with it ends at the user's next request.

When the provider publishes a ``pushed_authorization_request_endpoint``, the sign-in
request of step 1 is pushed there first (RFC 9126) and the browser carries only
``client_id`` and the ``request_uri`` it returned.

Settings come from ``CONNEXION_*`` environment variables (see :data:`DEFAULTS`); a
*config* dict passed to :func:`create_app` overrides them (tests use it).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from . import backchannel, i18n, reports
from .api import bp as api_bp
from .assurance import (
    ACR_WORDS,
    acr_words,
    ago,
    amr_words,
    auth_age,
    long_date,
    satisfies,
    shortfall,
    utc_time,
)
from .due_dates import next_form_c_due
from .tokens import AccessTokenValidator, IntrospectionValidator, parse_bearer_challenge

log = logging.getLogger(__name__)

DEFAULTS: dict[str, str] = {
    "CONNEXION_ISSUER": "http://localhost:5000",
    "CONNEXION_CLIENT_ID": "connexion",
    "CONNEXION_CLIENT_SECRET": "connexion-secret-for-local-development-only",
    "CONNEXION_BASE_URL": "http://localhost:5001",
    "CONNEXION_DATABASE": "instance/connexion.sqlite3",
    "CONNEXION_SECRET_KEY": "",
    "CONNEXION_STEP_UP_ACR": "urn:idp:acr:mfa",
    "CONNEXION_STEP_UP_MAX_AGE": "900",
    # The portal's MFA deadline (YYYY-MM-DD), shown to users who have no second step yet.
    "CONNEXION_MFA_DEADLINE": "",
    # The Form C API as a resource of the provider (RFC 8707): its URI (empty: the base
    # URL + "/api"), the scope it requires, and how it checks tokens: "jwt" (offline,
    # RFC 9068) or "introspection" (RFC 7662, with the API's own client credentials).
    "CONNEXION_API_RESOURCE": "",
    "CONNEXION_API_SCOPE": "form-c:file",
    "CONNEXION_API_TOKEN_CHECK": "jwt",
    "CONNEXION_API_CLIENT_ID": "connexion-api",
    "CONNEXION_API_CLIENT_SECRET": "connexion-api-secret-for-local-development-only",
}
SCOPE = "openid profile email"
API_TOKEN_CHECKS = ("jwt", "introspection")
# Claims kept in the session: who the user is and how they signed in.
SESSION_CLAIMS = ("iss", "sub", "name", "email", "email_verified", "acr", "amr", "auth_time", "sid")
LEEWAY = 60  # seconds of clock skew tolerated on auth_time
MAX_PENDING_LOGINS = 5


@dataclass
class Connexion:
    """Per-application state, at ``app.extensions["connexion"]``."""

    issuer: str
    client_id: str
    base_url: str
    database: str
    step_up_acr: str
    step_up_max_age: int
    mfa_deadline: date | None
    oauth: Any  # Authlib's registered client (FlaskOAuth2App)
    validator: AccessTokenValidator | IntrospectionValidator
    api_resource: str = ""  # the Form C API's resource URI (RFC 8707)
    api_scope: str = ""

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/callback"


def _cx() -> Connexion:
    return current_app.extensions["connexion"]


# -- the web pages --------------------------------------------------------------------

web = Blueprint("web", __name__)


def _page(template: str, status: int = 200, **context: Any) -> Response:
    return Response(render_template(template, **context), status=status)


def error_page(status: int, title: str, message: str, **context: Any) -> Response:
    return _page("error.html", status, title=title, message=message, **context)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    sent, expected = request.form.get("csrf_token", ""), session.get("csrf", "")
    if not (sent and expected and hmac.compare_digest(sent, expected)):
        abort(400, _("The form expired. Go back, reload the page and try again."))


def safe_next(value: str | None, default: str = "/dashboard") -> str:
    """A local path ("/...", not "//..." nor "/\\...") or *default*: never an open redirect."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or len(value) > 500
        or re.search(r"[\x00-\x20\x7f\\]", value)
    ):
        return default
    return value


def step_up_url(acr_values: str, max_age: int | str, next_path: str) -> str:
    query = urlencode({"acr_values": acr_values, "max_age": max_age, "next": next_path})
    return f"{url_for('web.login')}?{query}"


@web.get("/")
def index() -> Response:
    signed_out = False
    if "state" in request.args:  # back from the provider's end_session_endpoint
        try:
            _cx().oauth.validate_logout_response()
            signed_out = True
        except OAuthError:
            signed_out = False
    return _page("index.html", signed_out=signed_out)


@web.get("/login")
def login() -> Response:
    cx = _cx()
    acr_values = request.args.get("acr_values", "").strip()
    if acr_values and (
        len(acr_values) > 500 or not re.fullmatch(r"[\x21-\x7e]+( [\x21-\x7e]+)*", acr_values)
    ):
        return error_page(
            400, _("That sign-in link is not valid"), _("The acr_values are malformed.")
        )
    max_age_arg = request.args.get("max_age", "").strip()
    if max_age_arg and not (max_age_arg.isdigit() and int(max_age_arg) <= 10**7):
        return error_page(400, _("That sign-in link is not valid"), _("max_age must be a number."))
    max_age = int(max_age_arg) if max_age_arg else None
    next_path = safe_next(request.args.get("next"))

    # RFC 8707 2.1: the grant covers the Form C API; its token comes later (/callback).
    params: dict[str, Any] = {"resource": cx.api_resource}
    # OIDC Core 3.1.2.1: the provider's pages in the language of this one.
    params["ui_locales"] = i18n.page_locale()
    if acr_values:
        params["acr_values"] = acr_values
    if max_age is not None:
        params["max_age"] = str(max_age)
    state = secrets.token_urlsafe(32)
    try:
        # Authlib adds the nonce and the PKCE code_challenge, and keeps state, nonce and
        # code_verifier in the session for /callback. We choose the state ourselves only
        # to remember, under it, where to go and what was asked for.
        resp = _authorization_redirect(cx, state, params)
    except Exception:  # discovery failed: provider down or misconfigured
        log.exception("cannot start the sign-in at %s", cx.issuer)
        return error_page(
            502, _("Sign-in is not available"), _("We cannot reach the sign-in service. Try later.")
        )
    pending = dict(session.get("logins") or {})
    pending[state] = {"next": next_path, "acr": acr_values, "max_age": max_age}
    session["logins"] = dict(list(pending.items())[-MAX_PENDING_LOGINS:])
    return resp


def _authorization_redirect(cx: Connexion, state: str, params: dict[str, Any]) -> Response:
    """The redirect to the provider's authorization endpoint. With PAR (RFC 9126), the
    request Authlib builds is POSTed to the provider first, with the client's
    credentials (HTTP Basic, RFC 6749 2.3.1), and the browser goes to the authorization
    endpoint with ``client_id`` and the ``request_uri`` of the pushed request only."""
    client = cx.oauth
    metadata = client.load_server_metadata()
    par_endpoint = metadata.get("pushed_authorization_request_endpoint")
    if not par_endpoint:
        return client.authorize_redirect(cx.redirect_uri, state=state, **params)
    rv = client.create_authorization_url(cx.redirect_uri, state=state, **params)
    pushed = dict(parse_qsl(urlsplit(rv["url"]).query))
    answer = requests.post(
        par_endpoint,
        data=pushed,
        auth=(quote_plus(client.client_id), quote_plus(client.client_secret)),
        headers={"Accept": "application/json"},
        timeout=10,
    )
    body = answer.json() if answer.headers.get("Content-Type", "").startswith(
        "application/json") else {}  # fmt: skip
    if answer.status_code != 201 or not isinstance(body.get("request_uri"), str):
        raise RuntimeError(f"the PAR endpoint answered {answer.status_code}: {body}")
    client.save_authorize_data(redirect_uri=cx.redirect_uri, **rv)
    query = urlencode({"client_id": client.client_id, "request_uri": body["request_uri"]})
    return redirect(f"{metadata['authorization_endpoint']}?{query}")


CALLBACK_ERRORS = {
    "access_denied": (
        403,
        _l("Sign-in cancelled"),
        _l(
            "The sign-in was cancelled, so you are not signed in to Connexion. Sign in again "
            "when you are ready."
        ),
    ),
    "unmet_authentication_requirements": (
        403,
        _l("A second step is needed"),
        _l(
            "Your account cannot do the second step this page needs yet. Add an "
            "authenticator app, a security key or a passkey at the sign-in service, then try "
            "again."
        ),
    ),
}


@web.get("/callback")
def callback() -> Response:
    cx = _cx()
    state = request.args.get("state", "")
    pending_all = dict(session.get("logins") or {})
    pending = pending_all.pop(state, None)
    session["logins"] = pending_all

    error = request.args.get("error")
    if error:
        status, title, message = CALLBACK_ERRORS.get(
            error,
            (
                400,
                _l("Sign-in did not finish"),
                _l("The sign-in service answered: %(error)s.", error=error[:100]),
            ),
        )
        return error_page(status, str(title), str(message), retry=True)
    if pending is None:
        return error_page(
            400,
            _("Sign-in link expired"),
            _("This sign-in was already used or has expired."),
            retry=True,
        )
    # RFC 9207: the response must come from the provider we sent the user to.
    iss = request.args.get("iss")
    metadata = cx.oauth.load_server_metadata()
    if iss != cx.issuer and (
        iss is not None or metadata.get("authorization_response_iss_parameter_supported")
    ):
        return error_page(
            400, _("Sign-in did not finish"), _("The response came from another issuer.")
        )
    try:
        token = cx.oauth.authorize_access_token()
        if "userinfo" not in token:  # no ID token: not an OpenID Connect response
            raise ValueError("no id_token in the token response")
    except Exception as exc:  # OAuth error, bad ID token (JOSE errors), network
        log.warning("token exchange or ID token validation failed: %r", exc)
        return error_page(400, _("Sign-in did not finish"), _("We could not verify the sign-in."))

    claims = {k: token["userinfo"][k] for k in SESSION_CLAIMS if k in token["userinfo"]}
    # Name and email come from the userinfo endpoint (OIDC Core 5.4: with an access
    # token, the provider may keep profile claims out of the ID token). Its "sub" must
    # be the ID token's (OIDC Core 5.3.2).
    try:
        profile = cx.oauth.userinfo(token=token)
    except Exception:  # the sign-in itself is verified; the profile is a nicety
        log.warning("userinfo request failed", exc_info=True)
        profile = {}
    if profile.get("sub") == claims["sub"]:
        for key in ("name", "email", "email_verified"):
            if key in profile and key not in claims:
                claims[key] = profile[key]
    previous = session.get("user") or {}
    if previous.get("sub") not in (None, claims["sub"]):
        session.pop("form_c_draft", None)  # someone else's answers
    session["user"] = claims
    # The access token the API accepts: for the API's resource (RFC 8707 2.2); the
    # refresh token gets another when it expires.
    api_token = api_token_for(cx, token.get("refresh_token"))
    session["access_token"] = api_token["access_token"] if api_token else token["access_token"]
    session["refresh_token"] = (api_token or token).get("refresh_token")
    session["id_token"] = token["id_token"]
    # When this session began, by the provider's clock: a back-channel logout of its sid
    # issued at or after it ends it (see _ended_elsewhere).
    session["signed_in_at"] = token["userinfo"].get("iat")

    # Providers may ignore acr_values and max_age (they are voluntary claims): check.
    if pending["max_age"] is not None:
        age = auth_age(claims)
        if age is None or age > pending["max_age"] + LEEWAY:
            return error_page(
                403,
                _("Sign-in was not recent enough"),
                _("The sign-in service did not confirm a recent sign-in."),
                retry_url=step_up_url(pending["acr"], pending["max_age"], pending["next"]),
            )
    if pending["acr"] and not any(
        satisfies(claims.get("acr"), acr) for acr in pending["acr"].split()
    ):
        return error_page(
            403,
            _("The second step was not confirmed"),
            _(
                "You are signed in, but the sign-in service did not confirm the second step "
                "this page needs (it reported: %(level)s).",
                level=acr_words(claims.get("acr")),
            ),
            retry_url=step_up_url(pending["acr"], pending["max_age"] or "", pending["next"]),
        )
    return redirect(pending["next"])


def _signed_in() -> dict[str, Any] | None:
    return session.get("user")


def _ended_elsewhere() -> None:
    """Before every request: a session the provider ended (a logout token naming its
    sid, or only its sub, :mod:`.backchannel`) is cleared here."""
    user = session.get("user")
    if user and backchannel.ended(_cx().database, user, session.get("signed_in_at")):
        log.info("session of sub %s ended by a back-channel logout", user.get("sub"))
        session.clear()


def _deadline(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        log.warning("CONNEXION_MFA_DEADLINE %r is not a date (YYYY-MM-DD): ignored", text)
        return None


def mfa_banner(user: dict[str, Any], today: date | None = None) -> dict[str, Any] | None:
    """The reminder for a user who signed in without a second step while the portal's
    deadline is ahead (or passed): the date in words, the days left and where to set one
    up at the sign-in service. None once the user signs in with a second step."""
    cx = _cx()
    if "mfa" in (user.get("amr") or []):
        return None
    today = today or date.today()
    deadline = cx.mfa_deadline
    return {
        "deadline": long_date(deadline) if deadline else None,
        "days_left": (deadline - today).days if deadline else None,
        "setup_url": f"{cx.issuer}/mfa/setup?next=account",
    }


@web.get("/dashboard")
def dashboard() -> Response:
    user = _signed_in()
    if user is None:
        return redirect(f"{url_for('web.login')}?{urlencode({'next': '/dashboard'})}")
    cx = _cx()
    age = auth_age(user)
    ready = shortfall(user, cx.step_up_acr, cx.step_up_max_age) is None
    label, due = next_form_c_due(date.today())
    return _page(
        "dashboard.html",
        user=user,
        acr_text=acr_words(user.get("acr")),
        amr_text=amr_words(user.get("amr")),
        auth_time_text=utc_time(user.get("auth_time")),
        ago_text=ago(age),
        form_c_ready=ready,
        form_c_ready_until=utc_time(user["auth_time"] + cx.step_up_max_age) if ready else None,
        step_up_text=ACR_WORDS.get(cx.step_up_acr, cx.step_up_acr),
        step_up_minutes=cx.step_up_max_age // 60,
        period_label=label,
        due=due,
        mfa_banner=mfa_banner(user),
        manage_url=f"{cx.issuer}/account/security",
    )


DRAFT_FIELDS = ("supplier_number", "period", "subcontractors", "total_purchases")


def _form_c_page(status: int = 200, *, values=None, errors=None, restored=False) -> Response:
    today = date.today()
    label, due = next_form_c_due(today)
    return _page(
        "form_c.html",
        status,
        periods=reports.periods(today),
        period_label=label,
        due=due,
        values=values or {},
        errors=errors or {},
        restored=restored,
        user=_signed_in(),
    )


@web.route("/form-c", methods=["GET", "POST"])
def form_c() -> Response:
    cx = _cx()
    step_up = step_up_url(cx.step_up_acr, cx.step_up_max_age, "/form-c")
    user = _signed_in()
    if request.method == "GET":
        if user is None or shortfall(user, cx.step_up_acr, cx.step_up_max_age) is not None:
            return redirect(step_up)
        draft = session.get("form_c_draft")
        return _form_c_page(values=draft, restored=bool(draft))

    check_csrf()
    if user is None or "access_token" not in session:
        return redirect(step_up)
    values = {k: request.form.get(k, "").strip() for k in DRAFT_FIELDS}
    submitted = {**values, "certified": request.form.get("certified")}
    report, errors = reports.validate(submitted, date.today())
    if report is None:
        return _form_c_page(400, values=values, errors=errors)

    # The API call: in-process through Flask's test client (see README, "Filing").
    payload = {
        "supplier_number": report.supplier_number,
        "period": report.period,
        "subcontractors": report.subcontractors,
        "total_purchases": f"{report.total_purchases_cents / 100:.2f}",
        "certified": True,
    }
    api = _call_api(payload)
    if api.status_code == 401 and _api_error(api) == "invalid_token":
        # Expired (they live minutes) or revoked: one new API token from the refresh
        # token (RFC 8707 2.2), then once more. Without one, a sign-in gets a new one.
        fresh = api_token_for(cx, session.get("refresh_token"))
        if fresh is not None:
            session["access_token"] = fresh["access_token"]
            session["refresh_token"] = fresh.get("refresh_token")
            api = _call_api(payload)
    if api.status_code == 201:
        session.pop("form_c_draft", None)
        confirmation = api.get_json()["confirmation"]
        return redirect(url_for("web.confirmation", confirmation=confirmation))
    if api.status_code == 401:
        # RFC 9470: the API says which authentication it needs; ask the provider for it.
        challenge = parse_bearer_challenge(api.headers.get("WWW-Authenticate", ""))
        acr_values, max_age = cx.step_up_acr, str(cx.step_up_max_age)
        if challenge.get("error") == "insufficient_user_authentication":
            acr_values = challenge.get("acr_values") or acr_values
            max_age = challenge.get("max_age") or max_age
        session["form_c_draft"] = values  # shown again after the step-up
        return redirect(step_up_url(acr_values, max_age, "/form-c"))
    if api.status_code == 403 and _api_error(api) == "insufficient_scope":
        session["form_c_draft"] = values
        return error_page(
            403,
            _("The report was not filed"),
            _(
                "Your sign-in does not allow Connexion to file Form C for you. Sign out, sign "
                "in again and allow Connexion to file the report when you are asked."
            ),
        )
    log.error("Form C API answered %s: %s", api.status_code, api.get_data(as_text=True)[:300])
    return error_page(
        502, _("The report was not filed"), _("Something went wrong. Try again later.")
    )


def _call_api(payload: dict[str, Any]):
    """The Form C API call: in-process through Flask's test client (README, "Filing")."""
    return current_app.test_client().post(
        "/api/form-c", json=payload, headers={"Authorization": f"Bearer {session['access_token']}"}
    )


def _api_error(api) -> str | None:
    return parse_bearer_challenge(api.headers.get("WWW-Authenticate", "")).get("error")


def api_token_for(cx: Connexion, refresh_token: str | None) -> dict[str, Any] | None:
    """An access token for the Form C API: the refresh grant with ``resource`` = the
    API's URI (RFC 8707 2.2), so its ``aud`` is the API and its scope only the API's;
    the sign-in facts (``acr``, ``auth_time``) are the grant's. The answer carries the
    rotated refresh token. None (logged) when there is no refresh token or the
    provider refuses: the API then refuses the token and filing signs in again."""
    if not refresh_token:
        log.warning("no refresh token: cannot ask for an access token for the Form C API")
        return None
    try:
        token = cx.oauth.fetch_access_token(
            grant_type="refresh_token",
            refresh_token=refresh_token,
            resource=cx.api_resource,
            scope=cx.api_scope or None,
        )
    except Exception as exc:  # OAuth error (revoked, session ended), network
        log.warning("no access token for the Form C API: %r", exc)
        return None
    return token if token.get("access_token") else None


@web.get("/form-c/confirmation/<confirmation>")
def confirmation(confirmation: str) -> Response:
    user = _signed_in()
    if user is None:
        return redirect(f"{url_for('web.login')}?{urlencode({'next': request.path})}")
    report = reports.find(_cx().database, confirmation, user["sub"])
    if report is None:
        return error_page(404, _("Report not found"), _("There is no report with that number."))
    return _page("confirmation.html", report=report, user=user)


@web.route("/logout", methods=["GET", "POST"])
def logout() -> Response:
    if request.method == "GET":
        if _signed_in() is None:
            return redirect(url_for("web.index"))
        return _page("logout.html", user=_signed_in())
    check_csrf()
    cx = _cx()
    id_token = session.get("id_token")
    session.clear()
    if not id_token:
        return redirect(url_for("web.index"))
    try:
        # RP-Initiated Logout 1.0: Authlib adds a state and keeps it in the (now empty)
        # session; "/" checks it when the provider sends the browser back.
        return cx.oauth.logout_redirect(
            post_logout_redirect_uri=f"{cx.base_url}/", id_token_hint=id_token
        )
    except Exception:  # no end_session_endpoint, or the provider is unreachable
        log.exception("cannot sign out at the provider")
        return redirect(url_for("web.index"))


# -- the application --------------------------------------------------------------------


def _security_headers(resp: Response) -> Response:
    issuer = urlsplit(current_app.extensions["connexion"].issuer)
    provider = f"{issuer.scheme}://{issuer.netloc}"
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
        f"frame-ancestors 'none'; form-action 'self' {provider}",
    )
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    # The callback URL carries the authorization code: never send it as a Referer.
    resp.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.endpoint != "static":
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def load_config(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``DEFAULTS`` overridden by the ``CONNEXION_*`` environment variables."""
    env = os.environ if environ is None else environ
    return {key: env.get(key, default) for key, default in DEFAULTS.items()}


def create_app(config: dict | None = None) -> Flask:
    """Build the Connexion application. *config* overrides the environment and may carry
    any Flask setting too (``TESTING``, ``SECRET_KEY``)."""
    settings: dict[str, Any] = {**load_config(), **(config or {})}
    app = Flask(__name__)
    app.config.update(settings)

    issuer = str(settings["CONNEXION_ISSUER"]).rstrip("/")
    base_url = str(settings["CONNEXION_BASE_URL"]).rstrip("/")
    client_id = str(settings["CONNEXION_CLIENT_ID"])
    secret_key = settings.get("CONNEXION_SECRET_KEY") or settings.get("SECRET_KEY")
    if not secret_key:
        log.warning("CONNEXION_SECRET_KEY is not set: sessions end when the server restarts")
        secret_key = secrets.token_hex(32)
    app.config.update(
        SECRET_KEY=secret_key,
        # The provider may run on the same host (cookies ignore the port): own name.
        SESSION_COOKIE_NAME="connexion_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=base_url.startswith("https://"),
    )

    api_resource = str(settings.get("CONNEXION_API_RESOURCE") or f"{base_url}/api").rstrip("/")
    api_scope = str(settings.get("CONNEXION_API_SCOPE") or "")
    check = str(settings.get("CONNEXION_API_TOKEN_CHECK") or "jwt")
    if check not in API_TOKEN_CHECKS:
        raise ValueError(f"CONNEXION_API_TOKEN_CHECK must be one of {API_TOKEN_CHECKS}")
    validator: AccessTokenValidator | IntrospectionValidator = (
        IntrospectionValidator(issuer, api_resource, str(settings["CONNEXION_API_CLIENT_ID"]),
                               str(settings["CONNEXION_API_CLIENT_SECRET"]))
        if check == "introspection" else AccessTokenValidator(issuer, api_resource)
    )  # fmt: skip
    oauth = OAuth(app)
    client = oauth.register(
        "provider",
        client_id=client_id,
        client_secret=settings["CONNEXION_CLIENT_SECRET"],
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": f"{SCOPE} {api_scope}".strip(), "code_challenge_method": "S256",
                       "timeout": 10},
    )  # fmt: skip
    database = str(settings["CONNEXION_DATABASE"])
    reports.init_db(database)
    backchannel.init_db(database)
    app.extensions["connexion"] = Connexion(
        issuer=issuer,
        client_id=client_id,
        base_url=base_url,
        database=database,
        step_up_acr=str(settings["CONNEXION_STEP_UP_ACR"]),
        step_up_max_age=int(settings["CONNEXION_STEP_UP_MAX_AGE"]),
        mfa_deadline=_deadline(str(settings.get("CONNEXION_MFA_DEADLINE") or "")),
        oauth=client,
        validator=validator,
        api_resource=api_resource,
        api_scope=api_scope,
    )
    app.register_blueprint(web)
    app.register_blueprint(api_bp)
    app.register_blueprint(backchannel.bp)
    app.before_request(_ended_elsewhere)

    # The U.S. Web Design System files the provider vendors (idp/static/uswds, refreshed by
    # scripts/vendor-uswds.sh): Connexion serves that same folder, no copy of its own.
    uswds_dir = os.path.join(os.path.dirname(__file__), "..", "..", "idp", "static", "uswds")

    @app.get("/uswds/<path:filename>", endpoint="uswds")
    def uswds(filename: str) -> Response:
        from flask import send_from_directory

        return send_from_directory(os.path.abspath(uswds_dir), filename, max_age=3600)

    app.after_request(_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["signed_in"] = _signed_in
    i18n.init_i18n(app)  # Flask-Babel, the language links, the longdate filter

    @app.errorhandler(404)
    def not_found(exc) -> Response:
        return error_page(404, _("Page not found"), _("There is no page at this address."))

    @app.errorhandler(400)
    def bad_request(exc) -> Response:
        return error_page(400, _("Something was wrong with that request"), exc.description)

    return app


def main() -> None:
    """``python -m clients.connexion``: serve on CONNEXION_HOST:CONNEXION_PORT."""
    logging.basicConfig(level=logging.INFO)
    host = os.environ.get("CONNEXION_HOST", "127.0.0.1")
    port = int(os.environ.get("CONNEXION_PORT", "5001"))
    create_app().run(host=host, port=port)


__all__ = ["DEFAULTS", "create_app", "load_config", "main"]

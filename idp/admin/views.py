"""The admin home page and the admin step-up (a recent second factor)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from ..flash import take_flashes
from ..mfa.base import InvalidResponse, SecondFactorLocked
from ..security.ratelimit import RateLimited
from ..services import services
from ..web import current_session, current_user, error_page, set_session_cookie, validate_csrf
from .access import STAFF, Staff, mfa_fresh, safe_next, staff_only, step_up_factors

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _mfa():
    return current_app.extensions["idp.mfa"]


def render(template: str, staff: Staff, status: int = 200, **context) -> Response:
    """Render an admin page with the navigation for the staff member's role and the
    one-time messages the server left for this browser (never text from the URL)."""
    context.setdefault("flashes", take_flashes())
    return Response(render_template(template, staff=staff, **context), status=status)


@bp.get("")
@bp.get("/")
@staff_only()
def index(staff: Staff) -> Response:
    return render("admin/index.html", staff)


@bp.route("/verify", methods=["GET", "POST"])
def verify() -> Response:
    """Admin step-up: pass a second factor that reaches ``[admin] required_acr`` now.

    The factor is checked by the MFA service's one verification path (limits, failure
    counter, replay refusal); success rotates the session id like any passed factor.
    """
    if request.method == "POST":
        validate_csrf()
    user, session = current_user(), current_session()
    if user is None or session is None:
        return redirect(url_for("auth.signin", next="admin"))
    if user.role not in STAFF:
        return error_page(403, "Not allowed", "Your account may not open this page.")
    target = safe_next(request.values.get("next")) or url_for("admin.index")
    mfa = _mfa()
    allowed = [t for t in step_up_factors(mfa.facts(user).factor_types) if t in mfa.registry]
    if not allowed:
        return Response(
            render_template("admin/verify.html", kind=None, others=[], next=target, error=None)
        )
    kind = request.values.get("kind")
    if kind not in allowed:
        kind = mfa.default_type(user, allowed)
    error, status = None, 200
    if request.method == "POST":
        payload = {"code": request.form.get("code", ""),
                   "credential": request.form.get("credential", "")}  # fmt: skip
        try:
            result = mfa.verify(user, kind, payload, binding=session.sid)
        except SecondFactorLocked as exc:
            resp = Response(
                render_template("mfa/locked.html", minutes=max(1, (exc.retry_after + 59) // 60)),
                status=429,
            )
            resp.headers["Retry-After"] = str(exc.retry_after)
            return resp
        except RateLimited as exc:
            error, status = f"Too many attempts. Wait {exc.retry_after} seconds.", 429
        except InvalidResponse as exc:
            error, status = exc.message, 400
        else:
            cookie, _ = services().sessions.establish(
                user.id, kind, previous=session, amr=result.amr, factor_id=result.factor.id
            )
            set_session_cookie(cookie)
            return redirect(target)
    elif mfa_fresh(session) and request.values.get("next"):
        return redirect(target)
    others = [mfa.registry[t] for t in allowed if t != kind]
    return Response(
        render_template("admin/verify.html", kind=kind, others=others, next=target, error=error),
        status=status,
    )

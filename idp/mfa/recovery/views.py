"""Recovery codes: create a set (shown once, downloadable), and confirm they were saved."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, redirect, render_template, url_for
from flask_babel import gettext as _

from ... import audit
from ...auth.session import BrowserSession
from ...extensions import db
from ...models import User
from ...notify import notify
from ...services import services
from ...web import current_session, current_user, error_page, validate_csrf
from ..pages import Ctx, bp, load_ctx

SHOW_TTL = 600


def setup(ctx: Ctx, impl: Any) -> Response:
    from flask import request

    svc = services()
    assert ctx.session is not None
    if request.method in ("GET", "HEAD"):
        existing = impl.remaining(ctx.user) > 0
        return Response(
            render_template(
                "mfa/recovery_setup.html", codes=None, existing=existing, ctx_args=ctx.args
            )
        )
    _factor, codes = impl.generate(ctx.user)
    audit.record("mfa.recovery_codes_created", user_id=ctx.user.id)
    db.session.commit()
    notify(ctx.user, "recovery_codes_new")
    # New codes prove nothing about who is here: they never count as a passed factor.
    # Keep the codes (encrypted) just long enough to show them and offer the download;
    # redirect so that reloading the page does not create (and silently swap) a new set.
    svc.store.set(
        f"recovery:show:{ctx.session.sid}",
        svc.secrets.encrypt("\n".join(codes), context=f"recovery:{ctx.user.id}").encode(),
        SHOW_TTL,
    )
    return redirect(url_for("mfa.recovery_codes", **ctx.args))


def _pending_codes(user: User, session: BrowserSession) -> list[str] | None:
    svc = services()
    raw = svc.store.get(f"recovery:show:{session.sid}")
    if raw is None:
        return None
    return svc.secrets.decrypt(raw.decode(), context=f"recovery:{user.id}").split("\n")


def _gone() -> Response:
    return error_page(
        410,
        _("Codes no longer shown"),
        _("Recovery codes are shown only once. Create new codes if you did not save them."),
    )


@bp.get("/recovery/codes")
def recovery_codes() -> Response:
    """The new recovery codes, until the user confirms they saved them."""
    ctx = load_ctx()
    if isinstance(ctx, Response):
        return ctx
    codes = _pending_codes(ctx.user, ctx.session)
    if codes is None:
        return _gone()
    return Response(render_template("mfa/recovery_setup.html", codes=codes, ctx_args=ctx.args))


@bp.get("/recovery/download")
def recovery_download() -> Response:
    svc = services()
    user, session = current_user(), current_session()
    if user is None or session is None:
        abort(403)
    codes = _pending_codes(user, session)
    if codes is None:
        return _gone()
    heading = _("%(service)s recovery codes for %(email)s",
                service=svc.settings.ui.service_name, email=user.email)  # fmt: skip
    text = f"{heading}\n{_('Each code works once.')}\n\n" + "\n".join(codes) + "\n"
    return Response(
        text,
        mimetype="text/plain",
        headers={
            "Content-Disposition": 'attachment; filename="recovery-codes.txt"',
            "Cache-Control": "no-store",
        },
    )


@bp.post("/recovery/done")
def recovery_done() -> Response:
    validate_csrf()
    ctx = load_ctx()
    if isinstance(ctx, Response):
        return ctx
    services().store.delete(f"recovery:show:{ctx.session.sid}")
    return redirect(ctx.done_url())

"""Liveness and readiness probes for load balancers and orchestrators.

``/healthz`` answers 200 while the process can serve a request at all (liveness: a
failing probe means "restart me"). ``/readyz`` answers 200 only when the database and
the store answer and a signing key is loaded (readiness: a failing probe means "send no
traffic here for now"); each check is reported by name so an operator sees which part
is down. Neither touches sessions, cookies or the audit log, so probes cost little and
leave no trace.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from ..extensions import db
from ..services import services

log = logging.getLogger("idp.ops")
bp = Blueprint("ops", __name__)


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/healthz")
def healthz() -> Response:
    return _no_store(jsonify(status="ok"))


def _check_database() -> None:
    db.session.execute(text("SELECT 1"))


def _check_store() -> None:
    services().store.ping()  # raises StoreUnavailable


def _check_keys() -> None:
    services().keys.signing_key()  # raises when no key ring can be loaded


CHECKS = {"database": _check_database, "store": _check_store, "keys": _check_keys}


@bp.get("/readyz")
def readyz() -> Response:
    results: dict[str, dict[str, object]] = {}
    ready = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            ready = False
            log.warning("readiness check %s failed: %s", name, exc)
            results[name] = {"ok": False, "error": type(exc).__name__}
            if name == "database":
                db.session.rollback()
        else:
            results[name] = {"ok": True}
        results[name]["ms"] = round((time.perf_counter() - started) * 1000, 2)
    resp = jsonify(status="ready" if ready else "unavailable", checks=results)
    resp.status_code = 200 if ready else 503
    return _no_store(resp)

"""Prometheus metrics (``prometheus-client``), served at ``/metrics``.

What is counted:

- ``idp_http_requests_total{endpoint, method, status}`` and
  ``idp_http_request_duration_seconds{endpoint}`` for every request; ``endpoint`` is the
  Flask endpoint name (``oidc.token``), never the raw path, so label values stay few;
- domain events, taken from the audit stream (:func:`observe_event`, called by
  :func:`idp.audit.record`), so a metric can never disagree with what is audited:
  ``idp_signin_steps_total{step, outcome, factor}`` (password and second-factor steps),
  ``idp_authorizations_total{outcome}`` (codes issued or requests refused),
  ``idp_mfa_enrollments_total{factor}``, ``idp_lockouts_total{kind}`` and
  ``idp_delivery_failures_total{channel}``.

Each app has its own registry (tests build many apps in one process). Under gunicorn
with several workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder (the shipped
``gunicorn.conf.py`` does): every worker then writes its samples there and ``/metrics``
aggregates all workers.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Flask, Response, current_app, g, has_app_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from ..config import Settings
from ..security.crypto import equal

# Latency buckets sized for an identity provider: most pages take milliseconds, a
# password check tens of milliseconds, a push approval waits seconds.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "idp_http_requests_total", "HTTP requests", ["endpoint", "method", "status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "idp_http_request_duration_seconds", "Request latency", ["endpoint"],
            buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.signin_steps = Counter(
            "idp_signin_steps_total", "Sign-in steps by outcome and factor",
            ["step", "outcome", "factor"], registry=r,
        )  # fmt: skip
        self.authorizations = Counter(
            "idp_authorizations_total", "Authorization requests completed or refused",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.enrollments = Counter(
            "idp_mfa_enrollments_total", "Second factors set up", ["factor"], registry=r
        )
        self.lockouts = Counter(
            "idp_lockouts_total", "Accounts or second-factor steps locked", ["kind"], registry=r
        )
        self.delivery_failures = Counter(
            "idp_delivery_failures_total", "Messages that could not be delivered", ["channel"],
            registry=r,
        )  # fmt: skip

    # -- domain events -------------------------------------------------------------
    def observe_event(self, event: str, outcome: str, details: dict[str, Any]) -> None:
        factor = str(details.get("factor") or "-")
        if event in ("login.success", "login.failure"):
            self.signin_steps.labels("password", outcome, "pwd").inc()
        elif event in ("mfa.success", "mfa.failure"):
            self.signin_steps.labels("mfa", outcome, factor).inc()
        elif event == "login.passkey":
            self.signin_steps.labels("passkey", outcome, "webauthn").inc()
        elif event == "authorization.granted":
            self.authorizations.labels("granted").inc()
        elif event == "authorization.refused":
            self.authorizations.labels("refused").inc()
        elif event == "mfa.factor_added":
            self.enrollments.labels(factor).inc()
        elif event == "login.lockout":
            self.lockouts.labels("password").inc()
        elif event == "mfa.lockout":
            self.lockouts.labels("second_factor").inc()
        elif event in ("delivery.failed", "notify.failed"):
            self.delivery_failures.labels(str(details.get("channel") or "email")).inc()

    # -- exposition ------------------------------------------------------------------
    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def observe_event(event: str, outcome: str, details: dict[str, Any]) -> None:
    """Count an audited event (no-op outside an app or with metrics off)."""
    if not has_app_context():
        return
    metrics: Metrics | None = current_app.extensions.get("idp.metrics")
    if metrics is not None:
        metrics.observe_event(event, outcome, details)


def init_metrics(app: Flask, settings: Settings) -> None:
    if not settings.ops.metrics_enabled:
        return
    metrics = Metrics()
    app.extensions["idp.metrics"] = metrics
    token = settings.ops.metrics_token

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _count(resp: Response) -> Response:
        started = g.pop("metrics_started", None)
        endpoint = request.endpoint or "unmatched"
        if endpoint == "metrics":
            return resp
        metrics.requests.labels(endpoint, request.method, str(resp.status_code)).inc()
        if started is not None:
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return resp

    def metrics_view() -> Response:
        if token:
            given = request.headers.get("Authorization", "")
            if not equal(given.encode(), f"Bearer {token}".encode()):
                resp = Response("unauthorized\n", status=401, mimetype="text/plain")
                resp.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
                return resp
        resp = Response(metrics.render(), mimetype=CONTENT_TYPE_LATEST)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])

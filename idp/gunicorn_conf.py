"""gunicorn settings for the provider, shipped in the package:

    gunicorn -c python:idp.gunicorn_conf idp.wsgi:app        # an installed wheel
    gunicorn -c gunicorn.conf.py wsgi:app                    # the repository (same file)

Every value can be overridden on the command line or with ``GUNICORN_CMD_ARGS``; the
environment variables read here are the usual knobs of a container deployment.

The provider keeps no state in the process (sessions, challenges and limits live in
Redis, everything else in PostgreSQL), so workers and instances can be added freely.
The worker count is ``WEB_CONCURRENCY`` when set, else ``[server] workers`` of the
provider's own settings (one place to size the server). With ``[store] backend =
"memory"`` a second serving process is refused, whatever the flags
(:mod:`idp.process_guard`).

The settings are read here too, in the master: a broken configuration stops gunicorn
with one line before any worker starts, ``[ops] log_format = "json"`` makes every line
gunicorn writes JSON (:class:`idp.ops.logs.JSONGunicornLogger`), and the start-up
warnings are printed once by the master instead of once per worker.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from idp.config import ConfigError, load_settings

try:
    _settings = load_settings()
except ConfigError as _exc:
    sys.stderr.write(f"error: {_exc}\n")
    raise SystemExit(1) from None

bind = os.environ.get("IDP_BIND", "127.0.0.1:8000")
# Sign-in is CPU-bound (argon2id): one or two workers per core is the right range.
workers = int(os.environ.get("WEB_CONCURRENCY") or _settings.server.workers)
# Threads let a worker keep serving while a push approval page long-polls.
worker_class = "gthread"
threads = int(os.environ.get("IDP_THREADS", "4"))
# A request that takes longer than this is stuck (no provider request should): the worker
# is replaced. Push long-polls stay below it.
timeout = int(os.environ.get("IDP_WORKER_TIMEOUT", "60"))
# On SIGTERM, finish requests in flight for this long before stopping (rolling deploys).
graceful_timeout = int(os.environ.get("IDP_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
# Recycle workers now and then to bound memory growth from fragmentation.
max_requests = 10000
max_requests_jitter = 1000
# Forwarded headers (X-Forwarded-For/-Proto) are honoured only from these addresses;
# the provider's own [server] trusted_proxies says how many proxy hops to trust.
forwarded_allow_ips = os.environ.get("IDP_FORWARDED_ALLOW_IPS", "127.0.0.1")
# Each worker builds its own app: no database or Redis connection is ever shared
# across a fork.
preload_app = False
accesslog = os.environ.get("IDP_ACCESS_LOG", "-")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
# Emailed links carry their single-use secret in the path (/reset/<token>, ...): these
# loggers write "[redacted]" in its place in access and error lines, whatever the format
# above prints (docs/OPERATIONS.md, "Secrets in URLs"). They replace gunicorn's statsd
# logger: with statsd_host set, subclass gunicorn.instrument.statsd.Statsd the same way.
# With [ops] log_format = "json" every access and error line is one JSON object.
logger_class = (
    "idp.ops.logs.JSONGunicornLogger"
    if _settings.ops.log_format == "json"
    else "idp.ops.logs.GunicornLogger"
)

# Prometheus: with several workers each writes its samples to a shared folder.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    _metrics_dir = tempfile.mkdtemp(prefix="idp-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def on_starting(server: Any) -> None:  # noqa: ARG001 - gunicorn hook signature
    """In the master, before any worker: the provider's logging and its start-up
    warnings, printed once (workers inherit the record of what was printed)."""
    from idp.app import warn_once
    from idp.ops import configure_logging

    configure_logging(_settings.ops.log_format, _settings.ops.log_level, root=True)
    warn_once(_settings)


def child_exit(server: Any, worker: Any) -> None:  # noqa: ARG001 - gunicorn hook signature
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

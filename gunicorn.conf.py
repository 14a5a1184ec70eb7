"""gunicorn settings for the provider: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value can be overridden on the command line or with ``GUNICORN_CMD_ARGS``; the
environment variables read here are the usual knobs of a container deployment.

The provider keeps no state in the process (sessions, challenges and limits live in
Redis, everything else in PostgreSQL), so workers and instances can be added freely:
with ``[store] backend = "memory"`` the provider refuses to start with more than one
worker.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile

bind = os.environ.get("IDP_BIND", "127.0.0.1:8000")
# Sign-in is CPU-bound (argon2id); one or two workers per core is the right range.
workers = int(os.environ.get("WEB_CONCURRENCY", str(multiprocessing.cpu_count() * 2)))
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
# Emailed links carry their single-use secret in the path (/reset/<token>, ...): this
# logger writes "[redacted]" in its place in access and error lines, whatever the format
# above prints (docs/OPERATIONS.md, "Secrets in URLs"). It replaces gunicorn's statsd
# logger: with statsd_host set, subclass gunicorn.instrument.statsd.Statsd the same way.
logger_class = "idp.ops.logs.GunicornLogger"

# Prometheus: with several workers each writes its samples to a shared folder.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    _metrics_dir = tempfile.mkdtemp(prefix="idp-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir


def child_exit(server, worker) -> None:  # noqa: ARG001 - gunicorn hook signature
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

"""What each worker of ``idp serve`` (:mod:`idp.serving`) serves: the application of
:mod:`idp.wsgi`, with the access log written by the application, secrets redacted
(:class:`idp.ops.logs.AccessLog`), as granian's own access log cannot redact."""

from __future__ import annotations

import logging
import os

from .ops.logs import AccessLog
from .wsgi import app as _flask_app
from .wsgi import settings as _settings

_target = (os.environ.get("IDP_ACCESS_LOG") or "-").strip()
if _target != "-":  # a file of its own; otherwise the provider's log stream
    _handler = logging.FileHandler(_target)
    _access = logging.getLogger("idp.access")
    for _existing in logging.getLogger("idp").handlers:
        _handler.setFormatter(_existing.formatter)
        for _filter in _existing.filters:
            _handler.addFilter(_filter)
    _access.addHandler(_handler)
    _access.propagate = False

app = AccessLog(_flask_app, _settings.ops.log_format)

"""Operations: health and readiness probes, Prometheus metrics, request ids, JSON logs."""

from .health import bp as health_bp
from .logs import configure_logging, init_request_ids
from .metrics import Metrics, init_metrics

__all__ = ["Metrics", "configure_logging", "health_bp", "init_metrics", "init_request_ids"]

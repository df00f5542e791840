"""Per-node observability: status fields, Prometheus metrics, step timing, JSON logs, HTTP endpoint."""

from garfield.observability.http import MetricsServer
from garfield.observability.logs import JsonFormatter, configure
from garfield.observability.state import NodeState

__all__ = ["MetricsServer", "JsonFormatter", "configure", "NodeState"]

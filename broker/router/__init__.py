"""The routing service: the federation's policy enforcement point.

:func:`decide` is the pure core (one record in, a :class:`Decision` out);
:class:`Router` is the aiokafka shell around it. See ``_core`` and ``_service``.
"""

from broker.router._core import (
    Decision,
    InRecord,
    OutRecord,
    RejectReason,
    SeenMessage,
    decide,
)
from broker.router._memory import AuditView, RouterMemory
from broker.router._metrics import RouterMetrics
from broker.router._service import Router

__all__ = [
    "AuditView",
    "Decision",
    "InRecord",
    "OutRecord",
    "RejectReason",
    "Router",
    "RouterMemory",
    "RouterMetrics",
    "SeenMessage",
    "decide",
]

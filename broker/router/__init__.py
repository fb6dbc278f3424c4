"""The routing service: the federation's policy enforcement point.

Pure core: :func:`decide` (one record in, a :class:`RoutingDecision` out),
:class:`RouterMemory` and :func:`decide_batch` (what the router remembers and how a
poll batch is decided). Shell: :class:`Router`, which only polls, decides, produces
and commits through the injected Kafka clients. See ``_core``, ``_memory``,
``_service``.
"""

from broker.router._core import (
    DEAD_LETTER_MAX,
    REFERRAL_SENDER_ROLES,
    RoutingDecision,
    SeenMessage,
    dead_letter_value,
    decide,
)
from broker.router._memory import (
    RETRY_AFTER_CATCH_UP,
    Batch,
    BatchView,
    RouterMemory,
    decide_batch,
)
from broker.router._metrics import RouterMetrics
from broker.router._service import Router

__all__ = [
    "DEAD_LETTER_MAX",
    "REFERRAL_SENDER_ROLES",
    "RETRY_AFTER_CATCH_UP",
    "Batch",
    "BatchView",
    "Router",
    "RouterMemory",
    "RouterMetrics",
    "RoutingDecision",
    "SeenMessage",
    "dead_letter_value",
    "decide",
    "decide_batch",
]

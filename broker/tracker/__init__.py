"""The tracker: follows each (message, recipient) handover and raises overdue ones.

Layers (pure core, thin shell — STYLE.md #1):

- :mod:`._machine` (pure): the transition :data:`TABLE` over every
  ``(state or not-seen, event)``, :func:`apply` to fold one status event,
  :func:`tick` for the SLA timers (``now`` injected), and :class:`Ledger`, the
  in-memory set of handovers whose :meth:`Ledger.step` computes a batch without
  changing anything until :meth:`Ledger.commit`.
- :mod:`._views` (pure): by case, by message, filtered lists, per-route stats.
- :mod:`._service`: :class:`Tracker`, the aiokafka loop — rebuild from the
  compacted ``<prefix>.tracker`` topic, consume ``<prefix>.status``, write state,
  timer events and offsets in one transaction.
- :mod:`._api`: the operators' FastAPI app (:func:`create_app`) and :func:`serve`.
- :mod:`._access`: bearer tokens (stored hashed) and scopes — an operator sees
  everything, a participant only its own handovers (:class:`Access`,
  :class:`TokenStore`).

Design decisions:

- Input is the status topic only. The router already turns receipts and case
  acknowledgements into ``received`` / decision events keyed to the *original*
  handover, so the tracker never reads inboxes or decrypts anything.
- One combined state per handover (transport, then case). Out-of-order events are
  recorded in the history with a disposition, never allowed to corrupt the state;
  a case decision before the receipt implies the receipt.
- Timers: receipt SLA by priority (urgent 5 min, high 1 h, routine 24 h; missing
  priority = routine), then escalation and failure after graces that are multiples
  of the SLA (:class:`broker.settings.TrackerSettings`). Each step counts from when
  the previous one was raised. Escalation means publishing an ``escalated`` event
  naming the routing rules' ``escalation_recipient`` on the status topic; sealing a
  message to that participant is left to its adapter/operator tooling.
- Redelivery is the recipient adapter's consumer retrying (Kafka keeps the record);
  the tracker accepts ``redelivered`` events but raises none itself.
- Durability: the tracker topic (compacted, key ``<message_id>/<recipient>``) is the
  state; it is written in the same transaction as the consumed status offsets, so a
  restarted tracker rebuilds exactly the committed state. One instance at a time:
  one transactional id, a newer instance fences the older, which stops
  (``adapters.kafka.Fenced``).
- Not yet: a deadline for case decisions, tombstoning closed handovers after
  a retention period, metrics.
"""

from broker.tracker._access import (
    DEFAULT_TOKEN_TTL,
    OPERATOR,
    Access,
    Caller,
    Refusal,
    TokenError,
    TokenRecord,
    TokenStore,
    authenticate,
    directory_check,
    parse_scope,
    visible_to,
)
from broker.tracker._api import HandoverView, create_app, serve
from broker.tracker._machine import (
    TABLE,
    Disposition,
    Handover,
    HistoryEntry,
    Ledger,
    Policy,
    Rule,
    Sla,
    Step,
    apply,
    handover_key,
    next_deadline,
    tick,
)
from broker.tracker._service import Tracker, policy_from, read_state
from broker.tracker._views import (
    RouteStats,
    by_case,
    by_message,
    find,
    percentile,
    reached,
    route_stats,
    select,
)

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "OPERATOR",
    "TABLE",
    "Access",
    "Caller",
    "Disposition",
    "Handover",
    "HandoverView",
    "HistoryEntry",
    "Ledger",
    "Policy",
    "Refusal",
    "RouteStats",
    "Rule",
    "Sla",
    "Step",
    "TokenError",
    "TokenRecord",
    "TokenStore",
    "Tracker",
    "apply",
    "authenticate",
    "by_case",
    "by_message",
    "create_app",
    "directory_check",
    "find",
    "handover_key",
    "next_deadline",
    "parse_scope",
    "percentile",
    "policy_from",
    "reached",
    "read_state",
    "route_stats",
    "select",
    "serve",
    "tick",
    "visible_to",
]

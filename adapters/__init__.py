"""Adapters: how a participant's own system sends and receives referrals.

Sending (``Sender``): validate -> resolve -> seal -> produce to the participant's
own outbox with an idempotent ``acks=all`` producer (``Outbox``); ids are fixed
before producing so a retry re-sends the same bytes. Receiving (``Receiver``):
consume the own inbox ``read_committed`` -> open -> deliver to a ``Sink``
durably -> record in the ``StateStore`` -> signed receipt -> commit. Case
decisions: ``Sender.seal_case_ack`` / ``Sender.seal_move``.

Concrete adapters: ``DropFolder`` (files in, ``incoming -> sent | failed``),
``FolderSink`` and ``HttpSink`` (receiving side), and ``crb send|inbox|ack``.
Pure parts: ``parse_submission``, ``parse_csv``, ``receipt_for``,
``case_ack_for``, ``derived_message_id``, the drop-folder state machine.

The Kafka plumbing every Kafka client of the project is built by lives here too,
in :mod:`adapters.kafka` (the broker's services use it as well), and so does the
one retry policy (:class:`RetryPolicy`, acting on an error's ``retriable``).

Errors (see ``adapters._errors``)::

    AdapterError
    ├── InputError      .where
    ├── SendError       .retriable
    ├── DeliveryError   .reason, .retriable
    └── StateError
"""

from adapters._csv import CSV_COLUMNS, REQUIRED_COLUMNS, CsvBatch, RowError, parse_csv
from adapters._directory import DirectoryFollower, publish_directory
from adapters._dropfolder import (
    TRANSITIONS,
    CorruptSidecar,
    DropFolder,
    FileEvent,
    FileResult,
    FileState,
    IllegalTransition,
    advance,
    load_submissions,
    recovered_state,
)
from adapters._errors import AdapterError, DeliveryError, InputError, SendError, StateError
from adapters._hosting import (
    CountryLookup,
    RirLookup,
    TableLookup,
    fill_hosting_countries,
    rir_lookup,
)
from adapters._intake import MAX_BATCH, IntakeLimits, create_intake
from adapters._model import (
    ReceivedMessage,
    Submission,
    case_ack_for,
    derived_message_id,
    jurisdiction_of,
    moved_referral_draft,
    opening_time,
    parse_submission,
    receipt_for,
    referral_draft,
)
from adapters._outbox import Outbox, ProducerFactory, ProducerLike
from adapters._receiver import ConsumerFactory, Outcome, Receiver, ReceiverStats
from adapters._retry import RetryPolicy, is_retriable
from adapters._sender import Identity, PendingKeeper, Sealed, Sender
from adapters._settings import AdapterSettings
from adapters._sinks import Delivery, FolderSink, HttpSink, Sink
from adapters._state import (
    Delivered,
    IdempotentSend,
    PendingReferral,
    RefEntry,
    ReferenceIndex,
    RefKind,
    StateStore,
)
from adapters._tokens import (
    DEFAULT_TOKEN_TTL,
    Access,
    Caller,
    Refusal,
    TokenError,
    TokenRecord,
    TokenStore,
    new_token,
    parse_scope,
)

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_TOKEN_TTL",
    "MAX_BATCH",
    "REQUIRED_COLUMNS",
    "TRANSITIONS",
    "Access",
    "AdapterError",
    "AdapterSettings",
    "Caller",
    "ConsumerFactory",
    "CorruptSidecar",
    "CountryLookup",
    "CsvBatch",
    "Delivered",
    "Delivery",
    "DeliveryError",
    "DirectoryFollower",
    "DropFolder",
    "FileEvent",
    "FileResult",
    "FileState",
    "FolderSink",
    "HttpSink",
    "IdempotentSend",
    "Identity",
    "IllegalTransition",
    "InputError",
    "IntakeLimits",
    "Outbox",
    "Outcome",
    "PendingKeeper",
    "PendingReferral",
    "ProducerFactory",
    "ProducerLike",
    "ReceivedMessage",
    "Receiver",
    "ReceiverStats",
    "RefEntry",
    "RefKind",
    "ReferenceIndex",
    "Refusal",
    "RetryPolicy",
    "RirLookup",
    "RowError",
    "Sealed",
    "SendError",
    "Sender",
    "Sink",
    "StateError",
    "StateStore",
    "Submission",
    "TableLookup",
    "TokenError",
    "TokenRecord",
    "TokenStore",
    "advance",
    "case_ack_for",
    "create_intake",
    "derived_message_id",
    "fill_hosting_countries",
    "is_retriable",
    "jurisdiction_of",
    "load_submissions",
    "moved_referral_draft",
    "new_token",
    "opening_time",
    "parse_csv",
    "parse_scope",
    "parse_submission",
    "publish_directory",
    "receipt_for",
    "recovered_state",
    "referral_draft",
    "rir_lookup",
]

"""The Kafka plumbing: the only place where Kafka clients are built and spoken to.

Every principal — participant, service, admin — logs in with SASL SCRAM-SHA-512
(:class:`Credential`, kept in a :class:`CredentialStore`).

Services (router, tracker) and adapters (outbox, inbox) receive a
:class:`KafkaClients` built from :class:`KafkaSettings` — authentication and the
project's client defaults live there, once — and use the thin wrappers it returns:
:class:`Producer`, :class:`TransactionalProducer` (``commit`` writes records and
consumed offsets in one transaction), :class:`Consumer`, :class:`Admin`, and
:class:`TopicReader` / :func:`read_topic` to read a topic to its end, and
:class:`SecurityAdmin` for ACLs (:class:`Grant`) and SCRAM users. Values are
:class:`Record`, :class:`OutRecord` and :class:`Partition`.

No aiokafka exception passes this package: each is translated (and chained)
into one small tree, whose ``retriable`` drives :class:`adapters.RetryPolicy`::

    TransportError
    ├── Unavailable       retriable (unreachable, timeouts, leader moving, rebalance)
    ├── TopicMissing      run `crb topics apply`
    ├── AccessDenied      authentication or ACL refused
    ├── Fenced            a newer owner took the transactional id: stop owning
    │                     what it covered, never fence back
    ├── RecordTooLarge
    └── Refused           any other non-retriable broker error
"""

from adapters.kafka._clients import (
    Admin,
    Consumer,
    KafkaClients,
    Producer,
    TopicDescription,
    TransactionalProducer,
)
from adapters.kafka._credentials import (
    ADMIN,
    BROKER,
    ROUTER,
    SERVICE_PRINCIPALS,
    TRACKER,
    Credential,
    CredentialError,
    CredentialStore,
)
from adapters.kafka._errors import (
    AccessDenied,
    Fenced,
    RecordTooLarge,
    Refused,
    TopicMissing,
    TransportError,
    Unavailable,
    kafka_errors,
    translate,
)
from adapters.kafka._reader import TopicReader, read_topic
from adapters.kafka._records import OutRecord, Partition, Record
from adapters.kafka._security import Grant, ResourceKind, SecurityAdmin
from adapters.kafka._settings import KafkaSettings, Section, TopicSettings, client_kwargs
from adapters.kafka._signed import SIGNATURE_HEADER, SIGNER_HEADER, sign, signed_by
from adapters.kafka._trace import (
    TRACEPARENT,
    child_traceparent,
    current_traceparent,
    following,
    new_traceparent,
    trace_id,
    traceparent_of,
    with_traceparent,
)

__all__ = [
    "ADMIN",
    "BROKER",
    "ROUTER",
    "SERVICE_PRINCIPALS",
    "SIGNATURE_HEADER",
    "SIGNER_HEADER",
    "TRACEPARENT",
    "TRACKER",
    "AccessDenied",
    "Admin",
    "Consumer",
    "Credential",
    "CredentialError",
    "CredentialStore",
    "Fenced",
    "Grant",
    "KafkaClients",
    "KafkaSettings",
    "OutRecord",
    "Partition",
    "Producer",
    "Record",
    "RecordTooLarge",
    "Refused",
    "ResourceKind",
    "Section",
    "SecurityAdmin",
    "TopicDescription",
    "TopicMissing",
    "TopicReader",
    "TopicSettings",
    "TransactionalProducer",
    "TransportError",
    "Unavailable",
    "child_traceparent",
    "client_kwargs",
    "current_traceparent",
    "following",
    "kafka_errors",
    "new_traceparent",
    "read_topic",
    "sign",
    "signed_by",
    "trace_id",
    "traceparent_of",
    "translate",
    "with_traceparent",
]

"""The public surface of each package is deliberate: a change here is an API change
(httpx's ``tests/test_exported_members.py``). Every export resolves and is documented."""

from __future__ import annotations

import importlib
import inspect

import pytest

SURFACE: dict[str, set[str]] = {
    "schemas": {
        "Accepted", "ActionType", "Actioned", "AgeGroup", "Annotation", "CaseAck", "CaseId",
        "Category", "Classification", "Clock", "Closed", "ContentHash", "ContentItem",
        "CountryCode", "CountrySource", "DEAD_LETTER_REASONS", "Decision", "DecisionKind",
        "Deconfliction", "DeconflictionNotice", "DeconflictionTag", "DeliveryRule", "Directory",
        "EnvelopeHeader", "EscalationNotice", "FederationId", "Gender", "HASH_HEX_LENGTH",
        "Handling", "HandlingCode", "HandoverState", "HashAlgorithm", "Hosting",
        "ISO_3166_ALPHA2", "Incident", "InformationAccuracy", "IpCaptureEvent", "IpEventType",
        "ItemAnnotation", "KeyAlgorithm", "KeyCommitment", "KeyEncoding", "KeyId", "KeyKind",
        "Location", "MAX_ITEMS", "MAX_KEYS_PER_PARTICIPANT", "MAX_PARTICIPANTS",
        "MAX_RECIPIENTS", "MAX_TAGS", "MAX_URLS", "MatchedReferral", "MediaType", "MessageId",
        "MessageType", "Moved", "NonCanonicalHeaderError", "NoticeKind", "OPEN_REASONS",
        "PARTICIPANT_ID_PATTERN", "PAYLOAD_MODELS", "Participant", "ParticipantId",
        "ParticipantStatus", "Payload", "PersonRole", "PriorReport", "Priority",
        "PublicKeyRecord", "QUARANTINE_REASONS", "REDRIVE_REASONS", "REPLY_MESSAGE_TYPES",
        "ROUTING_REASONS", "Reason", "Receipt", "Referral", "RejectReason", "Rejected",
        "ReportedPerson", "ReportedUrl", "Reporter", "Resolution", "Role", "RoutingError",
        "RoutingInput", "RoutingRequest", "RoutingRules", "SCHEMA_VERSION", "STATUS_REASONS",
        "Service", "ServiceRole", "Sha256Hex", "SiteType", "SourceReliability", "StandingCopy",
        "StatusEvent", "StatusReason", "TAGGED_HASHES", "TAG_LABEL", "Tlp", "TopicNames",
        "Urgency", "UtcDatetime", "VERIFY_REASONS", "canonical_json", "canonical_json_of",
        "check_routing", "first_error", "normalise_url", "payload_mismatches", "recipients_for",
        "resolve", "utcnow", "uuid7"
    },
    "keys": {
        "ACTION_CONTEXT", "AUDIT_CONTEXT", "DECONFLICTION_KEY_LEN", "DEFAULT_LIMITS",
        "DIRECTORY_SIGNATURE_CONTEXT", "DeconflictionKey", "DirectoryError", "DirectoryReason",
        "Draft", "ESCALATION_CONTEXT", "EnvelopeError", "FEDERATION_OWNER", "FORMAT_VERSION",
        "Kem", "KeyId", "KeysError", "Keystore", "KeystoreError", "Limits", "LiveDirectory",
        "MAGIC", "NOTICE_CONTEXT", "Offer", "OfferOutcome", "Opened", "OpeningKey", "Parsed",
        "PendingCopyError", "RecordSigner", "Rng", "STATUS_CONTEXT", "SealError", "SealingKey",
        "SignedDirectory", "SigningKey", "TRACKER_STATE_CONTEXT", "TrustStore",
        "VerifiedEnvelope", "VerifyKey", "WrappedKey", "add_participant", "answerable",
        "atomic_write", "atomic_write_many", "current_sealing_key", "current_signing_record",
        "deconfliction_tags", "fsync_dir", "load_directory", "open", "open_for_self", "parse",
        "record_for", "revoke", "rotate", "seal", "seal_for_self", "sealing_key_of",
        "service_owner", "service_signing_key", "set_service_key", "set_status",
        "sign_directory", "tag_inputs", "verify", "verify_directory", "verify_key_of",
        "verify_record"
    },
    "adapters": {
        "Access", "AdapterError", "AdapterSettings", "CSV_COLUMNS", "Caller", "ConsumerFactory",
        "CorruptSidecar", "CountryLookup", "CsvBatch", "DEFAULT_TOKEN_TTL", "Delivered",
        "Delivery", "DeliveryError", "DirectoryFollower", "DropFolder", "FileEvent",
        "FileResult", "FileState", "FolderSink", "HttpSink", "IdempotentSend", "Identity",
        "IllegalTransition", "InputError", "IntakeLimits", "MAX_BATCH", "Outbox", "Outcome",
        "PendingKeeper", "PendingReferral", "ProducerFactory", "ProducerLike",
        "REQUIRED_COLUMNS", "ReceivedMessage", "Receiver", "ReceiverStats", "RefEntry",
        "RefKind", "ReferenceIndex", "Refusal", "RetryPolicy", "RirLookup", "RowError",
        "Sealed", "SendError", "Sender", "Sink", "StateError", "StateStore", "Submission",
        "TRANSITIONS", "TableLookup", "TokenError", "TokenRecord", "TokenStore", "advance",
        "case_ack_for", "create_intake", "derived_message_id", "fill_hosting_countries",
        "is_retriable", "jurisdiction_of", "load_submissions", "moved_referral_draft",
        "new_token", "opening_time", "parse_csv", "parse_scope", "parse_submission",
        "publish_directory", "receipt_for", "recovered_state", "referral_draft", "rir_lookup"
    },
    "adapters.kafka": {
        "ADMIN", "AccessDenied", "Admin", "BROKER", "Consumer", "Credential", "CredentialError",
        "CredentialStore", "Fenced", "Grant", "KafkaClients", "KafkaSettings", "OutRecord",
        "Partition", "Producer", "ROUTER", "Record", "RecordTooLarge", "Refused",
        "ResourceKind", "SERVICE_PRINCIPALS", "SIGNATURE_HEADER", "SIGNER_HEADER", "Section",
        "SecurityAdmin", "TRACEPARENT", "TRACKER", "TopicDescription", "TopicMissing",
        "TopicReader", "TopicSettings", "TransactionalProducer", "TransportError",
        "Unavailable", "child_traceparent", "client_kwargs", "current_traceparent", "following",
        "kafka_errors", "new_traceparent", "read_topic", "sign", "signed_by", "trace_id",
        "traceparent_of", "translate", "with_traceparent"
    },
    "broker.router": {
        "Batch", "BatchView", "DEAD_LETTER_MAX", "REFERRAL_SENDER_ROLES",
        "RETRY_AFTER_CATCH_UP", "Router", "RouterMemory", "RouterMetrics", "RoutingDecision",
        "SeenMessage", "dead_letter_value", "decide", "decide_batch"
    },
    "broker.tracker": {
        "Access", "Caller", "DEFAULT_TOKEN_TTL", "Disposition", "Handover", "HandoverView",
        "HistoryEntry", "Ledger", "OPERATOR", "Policy", "Refusal", "RouteStats", "Rule", "Sla",
        "Step", "TABLE", "TokenError", "TokenRecord", "TokenStore", "Tracker", "apply",
        "authenticate", "by_case", "by_message", "create_app", "directory_check", "find",
        "handover_key", "next_deadline", "parse_scope", "percentile", "policy_from", "reached",
        "read_state", "route_stats", "select", "serve", "tick", "visible_to"
    },
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(SURFACE))
def test_public_surface_is_pinned(package: str) -> None:
    """``__all__`` is exactly the pinned set, and every name in it resolves."""
    module = importlib.import_module(package)
    assert SURFACE[package] == set(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


@pytest.mark.parametrize("package", sorted(SURFACE))
def test_every_exported_class_and_function_is_documented(package: str) -> None:
    """Each exported class and function has a docstring."""
    module = importlib.import_module(package)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert obj.__doc__, f"{package}.{name}"
